using Microsoft.AspNetCore.Http.HttpResults;
using AlignHub.Domain;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api;

/// <summary>
/// Every error is ProblemDetails; it also carries OpenAI's <c>error</c> object ({message, type, param, code}) so
/// clients of that API read it unchanged, and the request id. No stack traces or internals.
/// </summary>
public static class ProblemShape
{
    public static void AddOpenAiError(ProblemDetailsContext ctx)
    {
        var pd = ctx.ProblemDetails;
        string? param = null;
        string message = pd.Detail ?? pd.Title ?? "error";
        if (pd is HttpValidationProblemDetails v && v.Errors.Count > 0)
        {
            var first = v.Errors.First();
            param = first.Key;
            message = $"{first.Key}: {string.Join(" ", first.Value)}";
        }
        var status = pd.Status ?? ctx.HttpContext.Response.StatusCode;
        pd.Extensions["error"] = new Dictionary<string, object?>
        {
            ["message"] = message,
            ["type"] = status switch
            {
                400 or 413 or 415 or 422 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                409 => "conflict_error",
                429 => "rate_limit_error",
                _ => "server_error",
            },
            ["param"] = param,
            ["code"] = pd.Extensions.TryGetValue("code", out var c) ? c : null,
        };
        pd.Extensions["request_id"] = ctx.HttpContext.TraceIdentifier;
    }

    /// <summary>A multipart body that could not be read: over the size limit (413) or malformed (400); null for anything else.</summary>
    public static ProblemHttpResult? FormError(Exception e, AlignHubOptions options) => e switch
    {
        BadHttpRequestException { StatusCode: 413 } => TypedResults.Problem(statusCode: 413, title: "Upload too large", detail: $"the body is larger than the upload limit of {options.MaxUploadBytes} bytes"),
        BadHttpRequestException b => TypedResults.Problem(statusCode: b.StatusCode, title: "Bad request", detail: "the request body could not be read"),
        InvalidDataException or IOException => TypedResults.Problem(statusCode: 400, title: "Bad request", detail: "malformed multipart/form-data body"),
        _ => null,
    };

    /// <summary>The status for an exception that reached the exception handler: client errors keep theirs.</summary>
    public static int StatusFor(Exception e) => e switch
    {
        BadHttpRequestException b => b.StatusCode,
        InvalidDataException or System.Text.Json.JsonException => 400,
        OperationCanceledException => 499,
        _ => 500,
    };

    public static ProblemHttpResult NotFound(string what, string id) =>
        TypedResults.Problem(statusCode: 404, title: "Not found", detail: $"{what} \"{id}\" does not exist");

    public static ProblemHttpResult Conflict(string detail) =>
        TypedResults.Problem(statusCode: 409, title: "Conflict", detail: detail);
}

public static class ReadinessEndpoint
{
    public static async Task<IResult> Check(HttpContext http, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        if (await db.Database.CanConnectAsync(ct)) return TypedResults.Ok(new { status = "ready" });
        http.Response.Headers.RetryAfter = DatabaseOutageMiddleware.RetryAfterSeconds.ToString();
        return TypedResults.Problem(statusCode: 503, title: "Database unreachable");
    }
}
