using System.Collections.Concurrent;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>
/// Who may do what. <c>admin</c>: everything, keys included. <c>trainer</c>: files, models, jobs, campaigns.
/// <c>annotator</c>: only their own labeling queue. <c>viewer</c>: read only.
/// </summary>
public static class Roles
{
    public const string Admin = "admin", Trainer = "trainer", Annotator = "annotator", Viewer = "viewer";
    public static readonly string[] All = [Admin, Trainer, Annotator, Viewer];
    /// <summary>Reading jobs, files, models and campaigns.</summary>
    public static readonly string[] Read = [Admin, Trainer, Viewer];
    /// <summary>Creating and changing files, models, jobs and campaigns.</summary>
    public static readonly string[] Train = [Admin, Trainer];
    /// <summary>Labeling in one's own queue.</summary>
    public static readonly string[] Label = [Admin, Trainer, Annotator];
}

/// <summary>An API key: only its SHA-256 is stored; the secret is shown once, at creation.</summary>
public sealed class ApiKey
{
    public required string Id { get; set; }
    /// <summary>Who holds it; for annotators, their identity in labeling campaigns.</summary>
    public required string Name { get; set; }
    public required string Role { get; set; }
    /// <summary>Hex SHA-256 of the secret.</summary>
    public required string Hash { get; set; }
    /// <summary>The secret's first characters, to tell keys apart in lists.</summary>
    public required string Prefix { get; set; }
    /// <summary>For an annotator's invite: the campaign the link opens.</summary>
    public string? CampaignId { get; set; }
    public long CreatedAt { get; set; }
    public long? RevokedAt { get; set; }
}

/// <summary>Creates, checks and revokes API keys; the first start without keys creates an admin key.</summary>
public sealed class ApiKeyService(IDbContextFactory<AlignHubDb> dbs)
{
    public const string SecretPrefix = "ahk-";
    static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(10);
    // Recently checked secrets (by hash), so a request costs no database read; revocation in this process evicts at
    // once, in other processes within CacheFor.
    readonly ConcurrentDictionary<string, (ApiKey? Key, DateTime Until)> cache = new();

    public const string KeyIdClaim = "alignhub:key_id", KeyHashClaim = "alignhub:key_hash";

    /// <summary>The claims a key gives its holder, on the API and in the dashboard cookie.</summary>
    public static ClaimsPrincipal Principal(ApiKey key, string scheme) => new(new ClaimsIdentity(
    [
        new Claim(ClaimTypes.Name, key.Name), new Claim(ClaimTypes.Role, key.Role), new Claim(KeyIdClaim, key.Id), new Claim(KeyHashClaim, key.Hash),
    ], scheme, ClaimTypes.Name, ClaimTypes.Role));

    public static string HashOf(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));
    public static string NewSecret() => SecretPrefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public static string? Validate(string? name, string? role)
    {
        if (string.IsNullOrWhiteSpace(name) || name.Length > 128 || name.Any(char.IsControl)) return "name is required (1-128 characters, no control characters)";
        if (role is null || !Roles.All.Contains(role)) return $"role must be one of {string.Join(", ", Roles.All)}";
        return null;
    }

    public async Task<(ApiKey Key, string Secret)> CreateAsync(string name, string role, string? campaignId, CancellationToken ct, string? secret = null)
    {
        secret ??= NewSecret();
        var key = new ApiKey
        {
            Id = Ids.New("key-"), Name = name.Trim(), Role = role, Hash = HashOf(secret), Prefix = secret[..Math.Min(secret.Length, 10)],
            CampaignId = campaignId, CreatedAt = Ids.Now(),
        };
        await using var db = await dbs.CreateDbContextAsync(ct);
        db.ApiKeys.Add(key);
        await db.SaveChangesAsync(ct);
        return (key, secret);
    }

    /// <summary>The live key for a secret, or null (unknown or revoked).</summary>
    public Task<ApiKey?> AuthenticateAsync(string secret, CancellationToken ct) =>
        secret.Length is 0 or > 512 ? Task.FromResult<ApiKey?>(null) : LiveKeyAsync(HashOf(secret), ct);

    /// <summary>Whether the key with this id and hash is still live (for dashboard sessions).</summary>
    public async Task<bool> IsLiveAsync(string id, string hash, CancellationToken ct) => (await LiveKeyAsync(hash, ct))?.Id == id;

    async Task<ApiKey?> LiveKeyAsync(string hash, CancellationToken ct)
    {
        if (cache.TryGetValue(hash, out var hit) && hit.Until > DateTime.UtcNow) return hit.Key;
        await using var db = await dbs.CreateDbContextAsync(ct);
        var key = await db.ApiKeys.AsNoTracking().FirstOrDefaultAsync(k => k.Hash == hash && k.RevokedAt == null, ct);
        if (cache.Count > 100_000) cache.Clear();
        cache[hash] = (key, DateTime.UtcNow + CacheFor);
        return key;
    }

    /// <summary>The dashboard path an annotator's invite link opens (<c>Web/SignIn.cs</c> serves it).</summary>
    public static string InvitePath(string secret) => $"/invite/{secret}";

    public async Task<List<ApiKey>> ListAsync(CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.ApiKeys.AsNoTracking().OrderBy(k => k.CreatedAt).ThenBy(k => k.Id).ToListAsync(ct);
    }

    public async Task<ApiKey?> RevokeAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var key = await db.ApiKeys.FirstOrDefaultAsync(k => k.Id == id, ct);
        if (key is null) return null;
        key.RevokedAt ??= Ids.Now();
        await db.SaveChangesAsync(ct);
        cache.TryRemove(key.Hash, out _);
        return key;
    }

    /// <summary>
    /// At start-up: with <paramref name="configuredAdminKey"/>, makes sure that secret is a live admin key; otherwise,
    /// when no key exists at all, creates an admin key and returns its secret (to print once). Safe when several
    /// processes start at once (the hash is unique).
    /// </summary>
    public async Task<string?> BootstrapAsync(string? configuredAdminKey, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        try
        {
            if (!string.IsNullOrEmpty(configuredAdminKey))
            {
                var hash = HashOf(configuredAdminKey);
                if (!await db.ApiKeys.AnyAsync(k => k.Hash == hash, ct))
                    await CreateAsync("admin (AlignHub__AdminKey)", Roles.Admin, null, ct, configuredAdminKey);
                return null;
            }
            if (await db.ApiKeys.AnyAsync(ct)) return null;
            var (_, secret) = await CreateAsync("admin (first start)", Roles.Admin, null, ct);
            return secret;
        }
        catch (DbUpdateException) { return null; } // another process created it first
    }
}

/// <summary>
/// The first response to a POST that carried an <c>Idempotency-Key</c>, per API key: the same key and body get it
/// again; the same key with a different body is refused. <see cref="StatusCode"/> is null while the first request runs.
/// </summary>
public sealed class IdempotencyRecord
{
    /// <summary>The API key that sent it (keys are per caller, so one caller cannot replay another's).</summary>
    public required string Owner { get; set; }
    public required string Key { get; set; }
    /// <summary>Hex SHA-256 of method, path, query and body.</summary>
    public required string RequestHash { get; set; }
    public int? StatusCode { get; set; }
    public string? ContentType { get; set; }
    public byte[]? Body { get; set; }
    public long CreatedAtMs { get; set; }
}
