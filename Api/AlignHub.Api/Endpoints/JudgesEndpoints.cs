using AlignHub.Domain;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api.Endpoints;

/// <summary>A judge as the API shows it: everything but the key (only whether it has one).</summary>
public sealed record JudgeObject(string Id, string Name, string Mode, string? Model, string? BaseUrl, string? RemoteModel, bool HasApiKey,
    string PromptTemplate, double[] Range, int MaxTokens, long CreatedAt)
{
    public string Object => "judge";
    public static JudgeObject From(Judge j) => new(j.Id, j.Name, j.Mode, j.Model, j.BaseUrl, j.RemoteModel, !string.IsNullOrEmpty(j.ApiKeySecret),
        j.PromptTemplate, [j.RangeMin, j.RangeMax], j.MaxTokens, j.CreatedAt);
}

/// <summary>AI judges (<c>/v1/judges</c>): a local model or an OpenAI-compatible endpoint with a prompt template.</summary>
public static class JudgesEndpoints
{
    public static void MapJudges(this RouteGroupBuilder v1)
    {
        var g = v1.MapGroup("/judges").WithTags("Judges");
        g.MapPost("/", Create).WithSummary("Create a judge: a registered model or an OpenAI-compatible endpoint (base_url, remote_model, api_key: stored, never returned), pairwise or pointwise, with a prompt template. Role: trainer")
            .RequireAuthorization(Auth.Train);
        g.MapGet("/", List).WithSummary("List judges (keys never shown). Role: viewer").RequireAuthorization(Auth.Read);
        g.MapGet("/{id}", Get).WithSummary("Retrieve a judge (its key never shown). Role: viewer").RequireAuthorization(Auth.Read);
        g.MapDelete("/{id}", Delete).WithSummary("Delete a judge. Role: trainer").RequireAuthorization(Auth.Train);
    }

    public static async Task<IResult> Create(JudgeService.CreateJudgeRequest body, JudgeService judges, CancellationToken ct) =>
        await judges.CreateAsync(body, ct) switch
        {
            JudgeService.Created c => TypedResults.Ok(JudgeObject.From(c.Judge)),
            JudgeService.Invalid i => TypedResults.ValidationProblem(new Dictionary<string, string[]> { [i.Field] = [i.Message] }),
            _ => throw new InvalidOperationException(),
        };

    public static async Task<IResult> List(IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var rows = await db.Judges.AsNoTracking().OrderByDescending(j => j.CreatedAt).ThenBy(j => j.Id).ToListAsync(ct);
        return TypedResults.Ok(new ListObject<JudgeObject>(rows.Select(JudgeObject.From).ToList(), false));
    }

    public static async Task<IResult> Get(string id, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var j = await db.Judges.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, ct);
        return j is null ? ProblemShape.NotFound("judge", id) : TypedResults.Ok(JudgeObject.From(j));
    }

    public static async Task<IResult> Delete(string id, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        if (await db.Judges.Where(j => j.Id == id).ExecuteDeleteAsync(ct) == 0) return ProblemShape.NotFound("judge", id);
        return TypedResults.Ok(new DeletedObject(id, "judge", true));
    }
}
