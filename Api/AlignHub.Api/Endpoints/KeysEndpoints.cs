using AlignHub.Domain;
using Microsoft.AspNetCore.Http.HttpResults;

namespace AlignHub.Api.Endpoints;

public sealed record CreateKeyRequest(string? Name, string? Role);

/// <summary>An API key as listed: never its secret, which <c>key</c> carries only in the creation response.</summary>
public sealed record ApiKeyObject(string Id, string Name, string Role, string Prefix, string? Campaign, long CreatedAt, long? RevokedAt, string? Key = null)
{
    public string Object => "api_key";
    public static ApiKeyObject From(ApiKey k, string? secret = null) => new(k.Id, k.Name, k.Role, k.Prefix, k.CampaignId, k.CreatedAt, k.RevokedAt, secret);
}

/// <summary>API keys: admins create (the secret is shown once), list and revoke them.</summary>
public static class KeysEndpoints
{
    public static void MapApiKeys(this RouteGroupBuilder v1)
    {
        var g = v1.MapGroup("/api_keys").WithTags("API keys").RequireAuthorization(Auth.Admin);
        g.MapPost("/", Create).WithSummary("Create a key with a role (admin, trainer, annotator, viewer); the response is the only time its secret is shown. Role: admin");
        g.MapGet("/", List).WithSummary("List keys (without secrets). Role: admin");
        g.MapDelete("/{id}", Revoke).WithSummary("Revoke a key: it stops working at once in this process and within 10 s everywhere. Role: admin");
    }

    public static async Task<Results<Ok<ApiKeyObject>, ValidationProblem>> Create(CreateKeyRequest body, ApiKeyService keys, CancellationToken ct)
    {
        if (ApiKeyService.Validate(body.Name, body.Role) is { } error)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { [error.StartsWith("role") ? "role" : "name"] = [error] });
        var (key, secret) = await keys.CreateAsync(body.Name!, body.Role!, null, ct);
        return TypedResults.Ok(ApiKeyObject.From(key, secret));
    }

    public static async Task<Ok<ListObject<ApiKeyObject>>> List(ApiKeyService keys, CancellationToken ct) =>
        TypedResults.Ok(new ListObject<ApiKeyObject>((await keys.ListAsync(ct)).Select(k => ApiKeyObject.From(k)).ToList(), false));

    public static async Task<Results<Ok<ApiKeyObject>, ProblemHttpResult>> Revoke(string id, ApiKeyService keys, CancellationToken ct) =>
        await keys.RevokeAsync(id, ct) is { } k ? TypedResults.Ok(ApiKeyObject.From(k)) : ProblemShape.NotFound("api key", id);
}
