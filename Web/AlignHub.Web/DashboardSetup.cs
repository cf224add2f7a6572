using AlignHub.Web.Components;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using MudBlazor.Services;

namespace AlignHub.Web;

public static class DashboardSetup
{
    public static IServiceCollection AddDashboard(this IServiceCollection services)
    {
        services.AddRazorComponents().AddInteractiveServerComponents();
        services.AddCascadingAuthenticationState();
        services.AddMudServices();
        return services;
    }

    /// <summary>A browser asking for a page (HTML accepted, GET, outside the API, the queues and the framework's files): its 404 is the dashboard's page.</summary>
    public static bool WantsPage(HttpContext http) =>
        HttpMethods.IsGet(http.Request.Method) && !http.Request.Path.StartsWithSegments("/v1") && !http.Request.Path.StartsWithSegments("/hangfire")
        && !http.Request.Path.StartsWithSegments("/_framework") && !http.Request.Path.StartsWithSegments("/_content")
        && http.Request.Headers.Accept.ToString().Contains("text/html", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Before the API's status pages: a page request that finds nothing gets the dashboard's 404 page (status 404, a
    /// link back to the jobs), not the API's JSON. Written here rather than re-executed through the Blazor router, which
    /// runs before this point.
    /// </summary>
    public static WebApplication UseDashboardNotFound(this WebApplication app)
    {
        app.UseWhen(WantsPage, b => b.UseStatusCodePages(async ctx =>
        {
            if (ctx.HttpContext.Response.StatusCode != StatusCodes.Status404NotFound) return;
            ctx.HttpContext.Response.ContentType = "text/html; charset=utf-8";
            await ctx.HttpContext.Response.WriteAsync(NotFoundHtml);
        }));
        return app;
    }

    const string NotFoundHtml = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8" /><meta name="viewport" content="width=device-width, initial-scale=1.0" />
        <title>Not found · AlignHub</title>
        <style>
          body { font-family: Roboto, Helvetica, Arial, sans-serif; margin: 0; background: #fafafa; color: #222; }
          @media (prefers-color-scheme: dark) { body { background: #1e1e24; color: #eee; } }
          header { background: #594ae2; color: #fff; padding: 12px 20px; font-size: 20px; }
          main { max-width: 640px; margin: 48px auto; padding: 0 20px; }
          a.button { display: inline-block; background: #594ae2; color: #fff; padding: 8px 16px; border-radius: 4px; text-decoration: none; }
        </style></head>
        <body><header>AlignHub</header>
        <main id="not-found"><h1>This page does not exist</h1>
        <p>The address may be mistyped, or what it named was deleted.</p>
        <p><a class="button" href="/jobs">Go to jobs</a></p></main></body></html>
        """;

    public static WebApplication MapDashboard(this WebApplication app)
    {
        app.UseAntiforgery();
        app.MapStaticAssets().AllowAnonymous(); // framework and MudBlazor files: nothing private
        app.MapSignIn();
        app.MapRazorComponents<App>().AddInteractiveServerRenderMode().RequireAuthorization();
        return app;
    }
}
