using AlignHub.Domain;
using Hangfire;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api.Endpoints;

public sealed record SubmitLabelRequest(long? AssignmentId, string? Choice, string? Rationale, int? DurationMs);
public sealed record ExportRequest(bool? IncludeTies, string? Source);
public sealed record JudgeCampaignRequest(string? Judge, string? Visibility);
public sealed record AddItemRequest(string? Prompt, string? ResponseA, string? ResponseB);

public sealed record CampaignObject(string Id, string Name, string File, int AnnotatorsPerItem, string Guidelines, string Question, bool AllowTies,
    string Rationale, int LeaseSeconds, int ItemCount, long CreatedAt, string? Judge, string JudgeVisibility, int? JudgedItems, string? JudgeError)
{
    public string Object => "annotation.campaign";
    public static CampaignObject From(AnnotationCampaign c, int? judged = null) => new(c.Id, c.Name, c.SourceFile, c.AnnotatorsPerItem, c.Guidelines, c.Question,
        c.AllowTies, c.Rationale, c.LeaseSeconds, c.ItemCount, c.CreatedAt, c.JudgeId, c.JudgeVisibility, judged, c.JudgeError);
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
        g.MapPost("/{id}/judge", SetJudge).WithSummary("Pre-label the campaign with a pairwise judge (both orders asked; disagreement is a tie) and say what annotators see of it: hidden, after (once they answer) or shown. Role: trainer")
            .RequireAuthorization(Auth.Train);
        g.MapGet("/{id}/judgements", Judgements).WithSummary("The judge's verdict per item, with both orders' picks and answers. Role: viewer").RequireAuthorization(Auth.Read);
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
        return TypedResults.Ok(new ListObject<CampaignObject>(rows.Select(c => CampaignObject.From(c)).ToList(), false));
    }

    public static async Task<IResult> Get(string id, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var c = await db.Campaigns.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, ct);
        if (c is null) return ProblemShape.NotFound("campaign", id);
        int? judged = c.JudgeId is null ? null : await db.AnnotationItems.CountAsync(i => i.CampaignId == id && i.JudgeLabel != null, ct);
        return TypedResults.Ok(CampaignObject.From(c, judged));
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

    public static async Task<IResult> Submit(string id, SubmitLabelRequest body, HttpRequest request, AnnotationService s, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        if (Annotator(request) is not { } who) return NoAnnotator();
        if (body.AssignmentId is not long aid) return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["assignment_id"] = ["assignment_id is required"] });
        var r = await s.SubmitAsync(id, who, aid, body.Choice, body.Rationale, body.DurationMs, ct);
        if (r is not AnnotationService.Ok<string> ok) return Map(r);
        // A campaign that shows its judge after an answer (or always) returns the verdict with the label, in the annotator's terms.
        string? judge = null;
        await using (var db = await dbs.CreateDbContextAsync(ct))
        {
            var shown = await db.Assignments.AsNoTracking().Where(a => a.Id == aid)
                .Join(db.AnnotationItems, a => a.ItemId, i => i.Id, (a, i) => new { a.Swapped, i.JudgeLabel })
                .Join(db.Campaigns.Where(c => c.Id == id && c.JudgeVisibility != "hidden"), x => true, c => true, (x, c) => x).FirstOrDefaultAsync(ct);
            if (shown is not null) judge = AnnotationService.Shown(shown.JudgeLabel, shown.Swapped);
        }
        return TypedResults.Ok(new { assignment_id = aid, label = ok.Value, judge });
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

    public static async Task<IResult> SetJudge(string id, JudgeCampaignRequest body, AnnotationService s, IDbContextFactory<AlignHubDb> dbs,
        Hangfire.IBackgroundJobClient hangfire, CancellationToken ct)
    {
        var visibility = body.Visibility ?? "hidden";
        if (visibility is not ("hidden" or "after" or "shown"))
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["visibility"] = ["visibility must be hidden, after or shown"] });
        await using var db = await dbs.CreateDbContextAsync(ct);
        var c = await db.Campaigns.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, ct);
        if (c is null) return ProblemShape.NotFound("campaign", id);
        var judge = body.Judge is null ? null : await db.Judges.AsNoTracking().FirstOrDefaultAsync(j => j.Id == body.Judge, ct);
        if (judge is null) return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["judge"] = [body.Judge is null ? "judge is required" : $"judge \"{body.Judge}\" does not exist"] });
        if (judge.Mode != "pairwise") return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["judge"] = ["a campaign needs a pairwise judge"] });
        // Another judge starts over; the same judge goes on with the items it has not judged.
        if (c.JudgeId != judge.Id)
            await db.AnnotationItems.Where(i => i.CampaignId == id).ExecuteUpdateAsync(u => u.SetProperty(i => i.JudgeLabel, (string?)null).SetProperty(i => i.JudgeDetail, (string?)null), ct);
        await db.Campaigns.Where(x => x.Id == id).ExecuteUpdateAsync(u => u.SetProperty(x => x.JudgeId, judge.Id).SetProperty(x => x.JudgeVisibility, visibility)
            .SetProperty(x => x.JudgeError, (string?)null), ct);
        s.Forget(id);
        hangfire.Enqueue<ICampaignJudging>(ICampaignJudging.Queue, j => j.Run(id, CancellationToken.None));
        var updated = await db.Campaigns.AsNoTracking().FirstAsync(x => x.Id == id, ct);
        return TypedResults.Ok(CampaignObject.From(updated, await db.AnnotationItems.CountAsync(i => i.CampaignId == id && i.JudgeLabel != null, ct)));
    }

    public static async Task<IResult> Judgements(string id, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        if (!await db.Campaigns.AnyAsync(c => c.Id == id, ct)) return ProblemShape.NotFound("campaign", id);
        var items = await db.AnnotationItems.AsNoTracking().Where(i => i.CampaignId == id && i.JudgeLabel != null).OrderBy(i => i.Index).ToListAsync(ct);
        return TypedResults.Ok(new
        {
            @object = "list",
            data = items.Select(i => new
            {
                item = i.Id, index = i.Index, verdict = i.JudgeLabel,
                orders = i.JudgeDetail is null ? (System.Text.Json.JsonElement?)null : System.Text.Json.JsonDocument.Parse(i.JudgeDetail).RootElement.Clone(),
            }).ToList(),
            has_more = false,
        });
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
        var r = await s.ExportAsync(id, body?.IncludeTies ?? false, ct, body?.Source ?? "humans");
        return r is AnnotationService.Ok<FileRecord> ok ? TypedResults.Ok(FileObject.From(ok.Value)) : Map(r);
    }
}
