using System.Net;
using AlignHub.Domain;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace AlignHub.Web;

/// <summary>
/// The dashboard's sign-in: paste an API key once (the form is protected by an antiforgery token), get a cookie. An
/// annotator's invite link signs its holder in the same way and opens their campaign's labeling page.
/// </summary>
public static class SignIn
{
    const string Scheme = CookieAuthenticationDefaults.AuthenticationScheme;

    public static void MapSignIn(this IEndpointRouteBuilder app)
    {
        app.MapGet("/signin", (HttpContext http, IAntiforgery af, string? returnUrl) => Page(http, af, returnUrl, null)).AllowAnonymous().ExcludeFromDescription();
        app.MapPost("/signin", async (HttpContext http, IAntiforgery af, ApiKeyService keys) =>
        {
            if (!await af.IsRequestValidAsync(http)) return Page(http, af, null, "The form expired; try again.", 400);
            var form = await http.Request.ReadFormAsync(http.RequestAborted);
            var returnUrl = form["returnUrl"].ToString();
            var key = await keys.AuthenticateAsync(form["key"].ToString().Trim(), http.RequestAborted);
            if (key is null) return Page(http, af, returnUrl, "That key is not valid (or was revoked).", 401);
            await http.SignInAsync(Scheme, ApiKeyService.Principal(key, Scheme));
            return Results.Redirect(Landing(key, returnUrl));
        }).AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();
        app.MapPost("/signout", async (HttpContext http, IAntiforgery af) =>
        {
            if (!await af.IsRequestValidAsync(http)) return Results.BadRequest();
            await http.SignOutAsync(Scheme);
            return Results.Redirect("/signin");
        }).AllowAnonymous().DisableAntiforgery().ExcludeFromDescription();
        app.MapGet("/invite/{secret}", async (string secret, HttpContext http, IAntiforgery af, ApiKeyService keys) =>
        {
            var key = await keys.AuthenticateAsync(secret, http.RequestAborted);
            if (key is null || key.CampaignId is null) return Page(http, af, null, "This invite link is not valid (or was revoked).", 404);
            await http.SignInAsync(Scheme, ApiKeyService.Principal(key, Scheme));
            return Results.Redirect($"/label/{Uri.EscapeDataString(key.CampaignId)}");
        }).AllowAnonymous().ExcludeFromDescription();
    }

    /// <summary>Where a fresh sign-in goes: the page asked for (same site only), else the role's home.</summary>
    static string Landing(ApiKey key, string? returnUrl)
    {
        if (!string.IsNullOrEmpty(returnUrl) && returnUrl.StartsWith('/') && !returnUrl.StartsWith("//") && !returnUrl.StartsWith("/\\")) return returnUrl;
        return key.Role == Roles.Annotator ? key.CampaignId is { } c ? $"/label/{Uri.EscapeDataString(c)}" : "/signin" : "/jobs";
    }

    static IResult Page(HttpContext http, IAntiforgery af, string? returnUrl, string? error, int status = 200)
    {
        var tokens = af.GetAndStoreTokens(http);
        var who = http.User.Identity?.IsAuthenticated == true
            ? $"<p class=\"who\">Signed in as <b>{WebUtility.HtmlEncode(http.User.Identity.Name)}</b>. This page needs another role, or sign in with another key.</p>" : "";
        var html = $$"""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Sign in - AlignHub</title>
            <style>body{font-family:system-ui,sans-serif;background:#f5f5f5;display:flex;justify-content:center;padding-top:12vh}
            form{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15);width:min(420px,90vw)}
            input[type=password]{width:100%;padding:.6rem;margin:.8rem 0;box-sizing:border-box;font-family:monospace}
            button{padding:.6rem 1.2rem;background:#594ae2;color:#fff;border:0;border-radius:4px;cursor:pointer}
            .error{color:#b00020}.who{color:#555}</style></head>
            <body><form method="post" action="/signin">
            <h2>AlignHub</h2>{{who}}
            <label for="key">API key</label>
            <input type="password" id="key" name="key" autocomplete="off" autofocus required placeholder="ahk-...">
            <input type="hidden" name="{{tokens.FormFieldName}}" value="{{WebUtility.HtmlEncode(tokens.RequestToken)}}">
            <input type="hidden" name="returnUrl" value="{{WebUtility.HtmlEncode(returnUrl ?? "")}}">
            {{(error is null ? "" : $"<p class=\"error\" id=\"signin-error\">{WebUtility.HtmlEncode(error)}</p>")}}
            <button type="submit" id="signin">Sign in</button>
            <p style="color:#666;font-size:.9em">The first start printed an admin key; admins create more keys on the Keys page.</p>
            </form></body></html>
            """;
        return Results.Content(html, "text/html; charset=utf-8", statusCode: status);
    }
}
