using AlignHub.Domain;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api.Endpoints;

public static class ModelsEndpoints
{
    public static void MapModels(this RouteGroupBuilder v1)
    {
        var g = v1.MapGroup("/models").WithTags("Models");
        g.MapGet("/", List).WithSummary("List registered models: built-in presets and fine-tuned results");
        g.MapGet("/{**id}", Get).WithSummary("Retrieve a model (ids may contain '/')");
    }

    public static async Task<Ok<ListObject<ModelObject>>> List(IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var rows = await db.Models.AsNoTracking().OrderBy(m => m.CreatedAt).ThenBy(m => m.Id).ToListAsync(ct);
        return TypedResults.Ok(new ListObject<ModelObject>(rows.Select(ModelObject.From).ToList(), false));
    }

    public static async Task<Results<Ok<ModelObject>, ProblemHttpResult>> Get(string id, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var m = await db.Models.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, ct);
        return m is null ? ProblemShape.NotFound("model", id) : TypedResults.Ok(ModelObject.From(m));
    }
}
