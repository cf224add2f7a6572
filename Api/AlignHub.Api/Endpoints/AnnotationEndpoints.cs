using AlignHub.Domain;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api.Endpoints;

public sealed record SubmitLabelRequest(long? AssignmentId, string? Choice, string? Rationale, int? DurationMs);
public sealed record ExportRequest(bool? IncludeTies);
public sealed record AddItemRequest(string? Prompt, string? ResponseA, string? ResponseB);

public sealed record CampaignObject(string Id, string Name, string File, int AnnotatorsPerItem, string Guidelines, string Question, bool AllowTies,
    string Rationale, int LeaseSeconds, int ItemCount, long CreatedAt)
{
    public string Object => "annotation.campaign";
    public static CampaignObject From(AnnotationCampaign c) => new(c.Id, c.Name, c.SourceFile, c.AnnotatorsPerItem, c.Guidelines, c.Question,
        c.AllowTies, c.Rationale, c.LeaseSeconds, c.ItemCount, c.CreatedAt);
}

public sealed record InviteRequest(string? Annotator);

/// <summary>
/// Labeling campaigns. The caller's annotator identity is their API key's name; annotators only ever see their own
/// queue and labels. An invite creates an annotator key and a link that signs its holder in to the labeling page.
/// </summary>
public static class AnnotationEndpoints
{

    public static void MapAnnotation(this RouteGroupBuilder v1)
    {
        var g = v1.MapGroup("/annotation/campaigns").WithTags("Annotation");
        g.MapPost("/", Create).WithSummary("Create a campaign from a file of items (a prompt and two responses each). Role: trainer").RequireAuthorization(Auth.Train);
        g.MapGet("/", List).WithSummary("List campaigns. Role: viewer").RequireAuthorization(Auth.Read);
        g.MapGet("/{id}", Get).WithSummary("Retrieve a campaign. Role: any role").RequireAuthorization(Auth.Any);
        g.MapPost("/{id}/next", Next).WithSummary("The caller's current item (leased to them), or 204 when none is left (with Retry-After while others hold slots that may come back). Role: annotator").RequireAuthorization(Auth.Label);
        g.MapPost("/{id}/labels", Submit).WithSummary("Label the caller's item: choice left, right, tie or skip (as shown). Role: annotator").RequireAuthorization(Auth.Label);
        g.MapPost("/{id}/undo", Undo).WithSummary("Take back the caller's last label; the item is theirs again. Role: annotator").RequireAuthorization(Auth.Label);
        g.MapGet("/{id}/stats", Stats).WithSummary("Agreement: percent, Cohen's kappa per pair, Fleiss' kappa, per-annotator figures, most contested items. Role: viewer").RequireAuthorization(Auth.Read);
        g.MapPost("/{id}/invites", Invite).WithSummary("Invite an annotator: a new annotator key and a link that signs them in to this campaign's labeling page. Role: trainer")
            .RequireAuthorization(Auth.Train);
        g.MapPost("/{id}/items", AddItem).WithSummary("Add an item (a prompt and two responses) to a campaign. Role: trainer").RequireAuthorization(Auth.Train);
        g.MapPost("/{id}/export", Export).WithSummary("Majority-vote preference pairs as a new file (TRL's rows). Role: trainer").RequireAuthorization(Auth.Train);
    }

    static string? Annotator(HttpRequest r) => r.HttpContext.User.Identity?.Name is { Length: > 0 } a ? a : null;

    static IResult Map(AnnotationService.Result r) => r switch
    {
        AnnotationService.Invalid i => TypedResults.ValidationProblem(new Dictionary<string, string[]> { [i.Field] = [i.Message] }, detail: i.Message),
        AnnotationService.NotFound n => TypedResults.Problem(statusCode: 404, title: "Not found", detail: $"{n.What} not found"),
        AnnotationService.Conflict c => ProblemShape.Conflict(c.Message),
        _ => throw new InvalidOperationException(),
    };

    static IResult NoAnnotator() => TypedResults.Problem(statusCode: 401, title: "Unauthorized", detail: "labeling needs an API key that names its annotator");

    public static async Task<IResult> Invite(string id, InviteRequest body, HttpRequest request, ApiKeyService keys, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        if (ApiKeyService.Validate(body.Annotator, Roles.Annotator) is { } error)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["annotator"] = [error.Replace("name", "annotator")] });
        await using (var db = await dbs.CreateDbContextAsync(ct))
            if (!await db.Campaigns.AnyAsync(c => c.Id == id, ct)) return ProblemShape.NotFound("campaign", id);
        var (key, secret) = await keys.CreateAsync(body.Annotator!, Roles.Annotator, id, ct);
        var path = ApiKeyService.InvitePath(secret);
        return TypedResults.Ok(new
        {
            @object = "annotation.invite", campaign = id, annotator = key.Name, key_id = key.Id, key = secret, path,
            url = $"{request.Scheme}://{request.Host}{path}",
        });
    }

    public static async Task<IResult> Create(CreateCampaignRequest body, AnnotationService s, CancellationToken ct)
    {
        var r = await s.CreateAsync(body, ct);
        return r is AnnotationService.Ok<AnnotationCampaign> ok ? TypedResults.Ok(CampaignObject.From(ok.Value)) : Map(r);
    }

    public static async Task<Ok<ListObject<CampaignObject>>> List(IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var rows = await db.Campaigns.AsNoTracking().OrderByDescending(c => c.CreatedAt).ThenBy(c => c.Id).ToListAsync(ct);
        return TypedResults.Ok(new ListObject<CampaignObject>(rows.Select(CampaignObject.From).ToList(), false));
    }

    public static async Task<IResult> Get(string id, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var c = await db.Campaigns.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, ct);
        return c is null ? ProblemShape.NotFound("campaign", id) : TypedResults.Ok(CampaignObject.From(c));
    }

    public static async Task<IResult> Next(string id, HttpRequest request, AnnotationService s, CancellationToken ct)
    {
        if (Annotator(request) is not { } who) return NoAnnotator();
        var r = await s.NextAsync(id, who, ct);
        if (r is AnnotationService.Waiting w)
        {
            // Not finished: others hold the last slots this annotator could take. 204 with Retry-After, as a poll that found nothing yet.
            request.HttpContext.Response.Headers.RetryAfter = w.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return TypedResults.NoContent();
        }
        return r is AnnotationService.Ok<AnnotationService.NextItem?> ok ? ok.Value is null ? TypedResults.NoContent() : TypedResults.Ok(ok.Value) : Map(r);
    }

    public static async Task<IResult> Submit(string id, SubmitLabelRequest body, HttpRequest request, AnnotationService s, CancellationToken ct)
    {
        if (Annotator(request) is not { } who) return NoAnnotator();
        if (body.AssignmentId is not long aid) return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["assignment_id"] = ["assignment_id is required"] });
        var r = await s.SubmitAsync(id, who, aid, body.Choice, body.Rationale, body.DurationMs, ct);
        return r is AnnotationService.Ok<string> ok ? TypedResults.Ok(new { assignment_id = aid, label = ok.Value }) : Map(r);
    }

    public static async Task<IResult> Undo(string id, HttpRequest request, AnnotationService s, CancellationToken ct)
    {
        if (Annotator(request) is not { } who) return NoAnnotator();
        var r = await s.UndoAsync(id, who, ct);
        return r is AnnotationService.Ok<AnnotationService.NextItem?> ok ? ok.Value is null ? TypedResults.NoContent() : TypedResults.Ok(ok.Value) : Map(r);
    }

    public static async Task<IResult> Stats(string id, AnnotationService s, CancellationToken ct)
    {
        var r = await s.StatsAsync(id, ct);
        return r is AnnotationService.Ok<AnnotationService.CampaignStats> ok ? TypedResults.Ok(ok.Value) : Map(r);
    }

    public static async Task<IResult> AddItem(string id, AddItemRequest body, AnnotationService s, CancellationToken ct)
    {
        var r = await s.AddItemAsync(id, body.Prompt, body.ResponseA, body.ResponseB, ct);
        return r is AnnotationService.Ok<AnnotationItem> ok
            ? TypedResults.Ok(new { @object = "annotation.item", id = ok.Value.Id, campaign = id, index = ok.Value.Index, prompt = ok.Value.Prompt, response_a = ok.Value.ResponseA, response_b = ok.Value.ResponseB })
            : Map(r);
    }

    public static async Task<IResult> Export(string id, ExportRequest? body, AnnotationService s, CancellationToken ct)
    {
        var r = await s.ExportAsync(id, body?.IncludeTies ?? false, ct);
        return r is AnnotationService.Ok<FileRecord> ok ? TypedResults.Ok(FileObject.From(ok.Value)) : Map(r);
    }
}
