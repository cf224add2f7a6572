using System.Security.Claims;
using System.Text.Encodings.Web;
using System.Threading.RateLimiting;
using AlignHub.Domain;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;

namespace AlignHub.Api;

/// <summary>
/// API keys (<c>Authorization: Bearer ahk-...</c>) for the API; the dashboard signs in with a key once and then uses a
/// cookie. Cookies authenticate only reads on <c>/v1</c> (downloads from the dashboard): a write needs the key itself,
/// so no other site can make a signed-in browser change anything. Policies are named after <see cref="Roles"/> sets.
/// </summary>
public static class Auth
{
    public const string ApiKeyScheme = "ApiKey", CookieScheme = CookieAuthenticationDefaults.AuthenticationScheme, Select = "ApiKeyOrCookie";
    public const string Read = "read", Train = "train", Label = "label", Admin = "admin", Any = "any";

    public static void AddAlignHubAuth(this IServiceCollection services, AlignHubOptions options)
    {
        services.AddSingleton<ApiKeyService>();
        services.AddAuthentication(Select)
            .AddPolicyScheme(Select, "API key or dashboard cookie", o => o.ForwardDefaultSelector = ctx =>
                ctx.Request.Headers.Authorization.Count > 0 || (IsApi(ctx.Request) && !HttpMethods.IsGet(ctx.Request.Method) && !HttpMethods.IsHead(ctx.Request.Method))
                    ? ApiKeyScheme : CookieScheme)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyHandler>(ApiKeyScheme, null)
            .AddCookie(CookieScheme, o =>
            {
                o.Cookie.Name = "alignhub.auth";
                o.Cookie.HttpOnly = true;
                o.Cookie.SameSite = SameSiteMode.Lax;
                o.LoginPath = "/signin";
                o.AccessDeniedPath = "/signin";
                o.ExpireTimeSpan = TimeSpan.FromDays(7);
                o.SlidingExpiration = true;
                o.Events.OnRedirectToLogin = ctx => IsApi(ctx.Request) ? Problem(ctx.HttpContext, 401, "a valid API key is required (Authorization: Bearer ...)") : Redirect(ctx);
                o.Events.OnRedirectToAccessDenied = ctx => IsApi(ctx.Request) ? Problem(ctx.HttpContext, 403, "this key's role may not do this") : Redirect(ctx);
                // A revoked key ends its dashboard sessions too (checked through the key cache).
                o.Events.OnValidatePrincipal = async ctx =>
                {
                    var keyId = ctx.Principal?.FindFirstValue(ApiKeyService.KeyIdClaim);
                    var hash = ctx.Principal?.FindFirstValue(ApiKeyService.KeyHashClaim);
                    var keys = ctx.HttpContext.RequestServices.GetRequiredService<ApiKeyService>();
                    if (keyId is null || hash is null || !await keys.IsLiveAsync(keyId, hash, ctx.HttpContext.RequestAborted))
                    {
                        ctx.RejectPrincipal();
                        await ctx.HttpContext.SignOutAsync(CookieScheme);
                    }
                };
            });
        services.AddAuthorizationBuilder()
            .AddPolicy(Read, p => p.RequireRole(Roles.Read))
            .AddPolicy(Train, p => p.RequireRole(Roles.Train))
            .AddPolicy(Label, p => p.RequireRole(Roles.Label))
            .AddPolicy(Admin, p => p.RequireRole(Roles.Admin))
            .AddPolicy(Any, p => p.RequireAuthenticatedUser())
            // Anything not marked otherwise needs a signed-in caller.
            .SetFallbackPolicy(new Microsoft.AspNetCore.Authorization.AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build());

        services.AddRateLimiter(o =>
        {
            o.RejectionStatusCode = 429;
            o.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, string>(ctx =>
            {
                if (!IsApi(ctx.Request) || options.RateLimitPerMinute <= 0) return RateLimitPartition.GetNoLimiter("none");
                var who = ctx.User.FindFirstValue(ApiKeyService.KeyIdClaim) ?? "ip:" + ctx.Connection.RemoteIpAddress;
                return RateLimitPartition.GetTokenBucketLimiter(who, _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = options.RateLimitPerMinute,
                    TokensPerPeriod = Math.Max(1, options.RateLimitPerMinute / 60),
                    ReplenishmentPeriod = TimeSpan.FromSeconds(Math.Max(1, 60.0 / options.RateLimitPerMinute)),
                    QueueLimit = 0,
                    AutoReplenishment = true,
                });
            });
            o.OnRejected = async (ctx, ct) =>
            {
                var retry = ctx.Lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? Math.Max(1, (int)Math.Ceiling(after.TotalSeconds)) : 1;
                ctx.HttpContext.Response.Headers.RetryAfter = retry.ToString();
                await Problem(ctx.HttpContext, 429, $"rate limit of {options.RateLimitPerMinute} requests per minute for this key; retry after {retry} s");
            };
        });
    }

    /// <summary>The API and its OpenAPI document: answered with 401/403 bodies, never redirected to the sign-in page.</summary>
    public static bool IsApi(HttpRequest r) => r.Path.StartsWithSegments("/v1") || r.Path.StartsWithSegments("/openapi");

    static Task Redirect(RedirectContext<CookieAuthenticationOptions> ctx)
    {
        ctx.Response.Redirect(ctx.RedirectUri);
        return Task.CompletedTask;
    }

    public static async Task Problem(HttpContext http, int status, string detail)
    {
        http.Response.StatusCode = status;
        if (status == 401) http.Response.Headers.WWWAuthenticate = "Bearer";
        var problems = http.RequestServices.GetRequiredService<IProblemDetailsService>();
        await problems.WriteAsync(new ProblemDetailsContext
        {
            HttpContext = http,
            ProblemDetails = new Microsoft.AspNetCore.Mvc.ProblemDetails
            {
                Status = status, Detail = detail,
                Title = status switch { 401 => "Unauthorized", 403 => "Forbidden", 429 => "Too many requests", _ => "Error" },
            },
        });
    }

}

/// <summary>Checks <c>Authorization: Bearer</c> against the stored key hashes.</summary>
public sealed class ApiKeyHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, ApiKeyService keys)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var header = Request.Headers.Authorization.ToString();
        if (string.IsNullOrEmpty(header)) return AuthenticateResult.NoResult();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return AuthenticateResult.Fail("expected Authorization: Bearer <key>");
        var key = await keys.AuthenticateAsync(header["Bearer ".Length..].Trim(), Context.RequestAborted);
        return key is null ? AuthenticateResult.Fail("invalid or revoked API key")
            : AuthenticateResult.Success(new AuthenticationTicket(ApiKeyService.Principal(key, Scheme.Name), Scheme.Name));
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties) =>
        Auth.Problem(Context, 401, Request.Headers.Authorization.Count > 0 ? "invalid or revoked API key" : "a valid API key is required (Authorization: Bearer ...)");

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties) =>
        Auth.Problem(Context, 403, $"the role \"{Context.User.FindFirstValue(ClaimTypes.Role)}\" may not do this");
}
