using System.Security.Cryptography;
using System.Text;
using AlignHub.Domain;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api;

/// <summary>
/// <c>Idempotency-Key</c> on any POST to /v1: the first request's response is stored per (API key, idempotency key);
/// a retry with the same body gets that response again (header <c>Idempotent-Replayed: true</c>), a different body
/// gets 422, and a retry while the first still runs gets 409. A 5xx is not stored, so a retry runs again. Records are
/// kept for 24 hours.
/// </summary>
public sealed class IdempotencyMiddleware(RequestDelegate next)
{
    public const string Header = "Idempotency-Key";
    static readonly TimeSpan Keep = TimeSpan.FromHours(24);

    public async Task InvokeAsync(HttpContext http, IDbContextFactory<AlignHubDb> dbs)
    {
        var key = http.Request.Headers[Header].ToString();
        var owner = http.User.FindFirst(ApiKeyService.KeyIdClaim)?.Value;
        if (!HttpMethods.IsPost(http.Request.Method) || !Auth.IsApi(http.Request) || key.Length == 0 || owner is null)
        {
            await next(http);
            return;
        }
        if (key.Length > 255 || key.Any(char.IsControl))
        {
            await Auth.Problem(http, 400, $"{Header} must be 1-255 printable characters");
            return;
        }
        var hash = await HashRequest(http.Request);
        var ct = http.RequestAborted;
        await using (var db = await dbs.CreateDbContextAsync(ct))
        {
            var staleBefore = Ids.NowMs() - (long)Keep.TotalMilliseconds;
            await db.IdempotencyRecords.Where(r => r.Owner == owner && r.Key == key && r.CreatedAtMs < staleBefore).ExecuteDeleteAsync(ct);
            db.IdempotencyRecords.Add(new IdempotencyRecord { Owner = owner, Key = key, RequestHash = hash, CreatedAtMs = Ids.NowMs() });
            try { await db.SaveChangesAsync(ct); }
            catch (DbUpdateException)
            {
                db.ChangeTracker.Clear();
                var first = await db.IdempotencyRecords.AsNoTracking().FirstOrDefaultAsync(r => r.Owner == owner && r.Key == key, ct);
                if (first is null) { await Auth.Problem(http, 409, "a request with this Idempotency-Key just finished failing; retry"); return; }
                if (first.RequestHash != hash) { await Auth.Problem(http, 422, $"this {Header} was used with a different request"); return; }
                if (first.StatusCode is not int status) { await Auth.Problem(http, 409, $"a request with this {Header} is still in progress"); return; }
                http.Response.StatusCode = status;
                if (first.ContentType is not null) http.Response.ContentType = first.ContentType;
                http.Response.Headers["Idempotent-Replayed"] = "true";
                if (first.Body is { Length: > 0 } body) await http.Response.Body.WriteAsync(body, ct);
                return;
            }
        }

        // First time: run it, keep a copy of the response.
        var original = http.Response.Body;
        using var copy = new MemoryStream();
        http.Response.Body = copy;
        bool stored = false;
        try
        {
            await next(http);
            copy.Position = 0;
            await copy.CopyToAsync(original, ct);
            if (http.Response.StatusCode < 500)
            {
                await using var db = await dbs.CreateDbContextAsync(CancellationToken.None);
                await db.IdempotencyRecords.Where(r => r.Owner == owner && r.Key == key).ExecuteUpdateAsync(s => s
                    .SetProperty(r => r.StatusCode, http.Response.StatusCode)
                    .SetProperty(r => r.ContentType, http.Response.ContentType)
                    .SetProperty(r => r.Body, copy.ToArray()), CancellationToken.None);
                stored = true;
            }
        }
        finally
        {
            http.Response.Body = original;
            if (!stored)
            {
                await using var db = await dbs.CreateDbContextAsync(CancellationToken.None);
                await db.IdempotencyRecords.Where(r => r.Owner == owner && r.Key == key && r.StatusCode == null).ExecuteDeleteAsync(CancellationToken.None);
            }
        }
    }

    /// <summary>SHA-256 of method, path, query and body; the body is buffered (to disk when large) and rewound for the endpoint.</summary>
    static async Task<string> HashRequest(HttpRequest request)
    {
        request.EnableBuffering();
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes($"{request.Method} {request.Path}{request.QueryString}\n"));
        var buffer = new byte[81920];
        int n;
        while ((n = await request.Body.ReadAsync(buffer, request.HttpContext.RequestAborted)) > 0) sha.AppendData(buffer, 0, n);
        request.Body.Position = 0;
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}

/// <summary>Deletes idempotency records past their 24 hours, once an hour (a reused key also replaces its own stale record).</summary>
public sealed class IdempotencySweepService(IDbContextFactory<AlignHubDb> dbs, ILogger<IdempotencySweepService> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromHours(1));
        do
        {
            try
            {
                await using var db = await dbs.CreateDbContextAsync(stoppingToken);
                var before = Ids.NowMs() - (long)TimeSpan.FromHours(24).TotalMilliseconds;
                var n = await db.IdempotencyRecords.Where(r => r.CreatedAtMs < before).ExecuteDeleteAsync(stoppingToken);
                if (n > 0) log.LogInformation("Removed {Count} idempotency records older than 24 hours", n);
            }
            catch (Exception e) when (e is not OperationCanceledException) { log.LogWarning(e, "Idempotency sweep failed; retrying in an hour"); }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
