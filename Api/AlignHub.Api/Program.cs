using AlignHub.Api;
using AlignHub.Api.Endpoints;
using AlignHub.Domain;
using AlignHub.Web;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Hangfire;
using Scalar.AspNetCore;

// A process that trains tunes glibc's allocator for libtorch before any thread takes an arena of its own
// (AlignHub.Training's NativeAllocator; loading that library loads no libtorch).
if ((Environment.GetEnvironmentVariable("AlignHub__Roles") ?? "worker").Contains("worker", StringComparison.OrdinalIgnoreCase))
    AlignHub.Training.Engine.NativeAllocator.Configure();

var builder = WebApplication.CreateBuilder(args);
var options = builder.AddAlignHub();

var app = builder.Build();
await app.PrepareDatabaseAsync();

var firstAdminKey = await app.Services.GetRequiredService<ApiKeyService>().BootstrapAsync(options.AdminKey, CancellationToken.None);

app.UseExceptionHandler(new ExceptionHandlerOptions { StatusCodeSelector = ProblemShape.StatusFor });
// A browser's page request that finds nothing gets the dashboard's 404 page; everything else ProblemDetails.
if (options.HasRole("web"))
{
    app.UseDashboardNotFound();
    app.UseWhen(http => !DashboardSetup.WantsPage(http), b => b.UseStatusCodePages());
}
else app.UseStatusCodePages();
app.UseMiddleware<DatabaseOutageMiddleware>();
// Every response names its request; error bodies carry the same id, and log lines carry it in their scope.
app.Use((http, next) => { http.Response.Headers["X-Request-Id"] = http.TraceIdentifier; return next(http); });
app.UseAuthentication();
app.UseAuthorization();
app.UseRateLimiter();
app.UseMiddleware<IdempotencyMiddleware>();
app.MapGet("/healthz", () => TypedResults.Ok(new { status = "ok" })).ExcludeFromDescription().AllowAnonymous();
app.MapGet("/readyz", ReadinessEndpoint.Check).ExcludeFromDescription().AllowAnonymous();

if (options.HasRole("api"))
{
    app.MapOpenApi();
    app.MapScalarApiReference();
    var v1 = app.MapGroup("/v1");
    v1.MapFiles();
    v1.MapFineTuningJobs();
    v1.MapGraders();
    v1.MapCompletions();
    v1.MapJudges();
    v1.MapWorkers();
    v1.MapModels();
    v1.MapAnnotation();
    v1.MapApiKeys();
}
if (options.HasRole("web"))
{
    app.MapDashboard();
    // Hangfire's own dashboard (queues, servers, retries) for admins: signed in to the dashboard or with an admin key.
    // Endpoint authorization decides, so Hangfire's own filters (local requests only, by default) are cleared.
    app.MapHangfireDashboard("/hangfire", new DashboardOptions
    {
        Authorization = [], AsyncAuthorization = [], DisplayStorageConnectionString = false, DashboardTitle = "AlignHub queues", AppPath = "/",
    }).RequireAuthorization(Auth.Admin);
}

app.Lifetime.ApplicationStarted.Register(() =>
{
    var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
    foreach (var a in addresses)
        app.Logger.LogWarning("AlignHub ({Roles}) listening on {Address}{Page}", options.Roles, a, options.HasRole("web") ? " - dashboard: " + a + "/" : "");
    Console.WriteLine($"AlignHub dashboard: {string.Join(", ", addresses.Select(a => a + "/"))}  (data: {options.FullDataDir})");
    if (firstAdminKey is not null)
        Console.WriteLine($"""

            First start: created an admin API key. It is shown only this once; keep it somewhere safe.
                {firstAdminKey}
            Use it as "Authorization: Bearer <key>" and to sign in to the dashboard; create more keys at /keys.

            """);
});

app.Run();

/// <summary>Entry point type, for tests that host the app.</summary>
public partial class Program;
