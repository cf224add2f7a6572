using AlignHub.Domain;

namespace AlignHub.Api;

/// <summary>
/// While the database is unreachable (PostgreSQL restarting, the network gone), requests that need it get 503 with
/// <c>Retry-After</c> in the usual error shape, never a 500: clients and SDKs retry a 503. Anything else is left to the
/// exception handler.
/// </summary>
public sealed class DatabaseOutageMiddleware(RequestDelegate next)
{
    public const int RetryAfterSeconds = 2;

    public async Task InvokeAsync(HttpContext http)
    {
        try { await next(http); }
        catch (Exception e) when (DatabaseErrors.IsOutage(e) && !http.Response.HasStarted)
        {
            http.Response.Clear();
            http.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            http.Response.Headers.RetryAfter = RetryAfterSeconds.ToString();
            var problems = http.RequestServices.GetRequiredService<IProblemDetailsService>();
            await problems.WriteAsync(new ProblemDetailsContext
            {
                HttpContext = http,
                ProblemDetails = { Status = 503, Title = "Database unavailable", Detail = $"the database is unreachable; retry in {RetryAfterSeconds} s" },
            });
        }
    }
}
