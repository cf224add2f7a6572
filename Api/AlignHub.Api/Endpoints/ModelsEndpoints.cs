using System.Text.Json;
using AlignHub.Domain;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api.Endpoints;

/// <summary>Body of <c>POST /v1/models</c> as JSON: a server folder (<c>path</c>) or a random initialisation (<c>config</c>).</summary>
public sealed record CreateModelRequest
{
    /// <summary>The new model's id, e.g. <c>me/smollm-135m</c>.</summary>
    public string? Id { get; init; }
    /// <summary>A folder on the server under an allowed import root, in the HF layout.</summary>
    public string? Path { get; init; }
    /// <summary>An HF config.json object: the model starts from random weights (seeded by each job).</summary>
    public JsonElement? Config { get; init; }
    /// <summary>With <c>config</c>: <c>byte</c> (the default and only choice without files).</summary>
    public string? Tokenizer { get; init; }
}

public static class ModelsEndpoints
{
    public static void MapModels(this RouteGroupBuilder v1)
    {
        var g = v1.MapGroup("/models").WithTags("Models");
        g.MapPost("/", Create).DisableAntiforgery()
            .WithSummary("Register a model: multipart (file = .tar.gz/.zip of an HF folder, id), or JSON {id, path} or {id, config}. Role: trainer").RequireAuthorization(Auth.Train);
        g.MapGet("/", List).WithSummary("List models: built-in presets, registered models and fine-tuned results. Role: viewer").RequireAuthorization(Auth.Read);
        g.MapGet("/{**id}", Get).WithSummary("Retrieve a model (ids may contain '/'); append /content to download it as an HF folder (.tar.gz; a LoRA model as its PEFT adapter folder, or with ?merged=true as the merged model). Role: viewer").RequireAuthorization(Auth.Read);
        g.MapDelete("/{**id}", Delete).WithSummary("Delete a registered or fine-tuned model. Role: trainer").RequireAuthorization(Auth.Train);
    }

    public static async Task<Results<Ok<ModelObject>, ValidationProblem, ProblemHttpResult>> Create(HttpRequest request, ModelService models, AlignHubOptions options, CancellationToken ct)
    {
        ModelService.RegisterResult result;
        if (request.HasFormContentType)
        {
            IFormCollection form;
            try { form = await request.ReadFormAsync(ct); }
            catch (Exception e) when (ProblemShape.FormError(e, options) is { } problem) { return problem; }
            var file = form.Files.GetFile("file");
            if (file is null) return Invalid("file", "file is required: a .tar.gz, .tar or .zip of a Hugging Face model folder");
            await using var stream = file.OpenReadStream();
            result = await models.RegisterArchiveAsync(form["id"].ToString(), stream, file.FileName, ct);
        }
        else
        {
            CreateModelRequest? body;
            try { body = await request.ReadFromJsonAsync<CreateModelRequest>(ApiJson.Options, ct); }
            catch (Exception e) when (e is JsonException or InvalidOperationException)
            {
                return Invalid("body", "send multipart/form-data (file, id) or a JSON object {id, path} or {id, config}");
            }
            if (body is null) return Invalid("body", "a JSON object is required");
            if ((body.Path is null) == (body.Config is null))
                return Invalid("path", "give exactly one of path (a server folder) and config (random initialisation)");
            result = body.Path is not null
                ? await models.RegisterPathAsync(body.Id, body.Path, ct)
                : await models.RegisterConfigAsync(body.Id, body.Config!.Value, body.Tokenizer, ct);
        }
        return result switch
        {
            ModelService.Registered r => TypedResults.Ok(ModelObject.From(r.Model)),
            ModelService.Invalid i => Invalid(i.Field, i.Message),
            ModelService.TooLarge t => TypedResults.Problem(statusCode: 413, title: "Upload too large", detail: t.Message),
            ModelService.Conflict c => ProblemShape.Conflict(c.Message),
            _ => throw new InvalidOperationException(),
        };
    }

    static ValidationProblem Invalid(string field, string message) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [field] = [message] }, detail: message);

    public static async Task<Ok<ListObject<ModelObject>>> List(ModelService models, CancellationToken ct) =>
        TypedResults.Ok(new ListObject<ModelObject>((await models.ListAsync(ct)).Select(ModelObject.From).ToList(), false));

    public static async Task<IResult> Get(string id, IDbContextFactory<AlignHubDb> dbs, AlignHubOptions options, CancellationToken ct, bool? merged = null)
    {
        const string content = "/content";
        bool download = id.EndsWith(content, StringComparison.Ordinal);
        var modelId = download ? id[..^content.Length] : id;
        await using var db = await dbs.CreateDbContextAsync(ct);
        var m = await ModelService.FindAsync(db, modelId, ct);
        if (m is null) return ProblemShape.NotFound("model", modelId);
        if (!download) return TypedResults.Ok(ModelObject.From(m));
        if (m.WeightsPath is null)
            return ProblemShape.Conflict($"model \"{m.Id}\" has no weights: it is initialised at random by each job's seed; fine-tune it and download the result");
        var folder = options.Resolve(m.WeightsPath);
        if (merged == true)
        {
            // A LoRA job's fine-tuned model keeps the adapter; save_merged_model also wrote base + adapter as one HF folder.
            var mergedFolder = Path.Combine(folder, "merged");
            if (!Directory.Exists(mergedFolder))
                return ProblemShape.Conflict(PeftFolder.Is(folder)
                    ? $"model \"{m.Id}\" is a LoRA adapter without a merged copy; train with save_merged_model: true, or load the adapter onto its base with PEFT"
                    : $"model \"{m.Id}\" holds full weights already; download it without merged=true");
            return Archive(mergedFolder, m.Id.Replace('/', '-').Replace(':', '-') + "-merged");
        }
        return Archive(folder, m.Id.Replace('/', '-').Replace(':', '-'));
    }

    /// <summary>Streams a folder's HF files as a .tar.gz under one top-level folder.</summary>
    public static IResult Archive(string folder, string name)
    {
        if (!Directory.Exists(folder)) return TypedResults.Problem(statusCode: 410, title: "Gone", detail: "the model's files are no longer on this server");
        return TypedResults.Stream(s => ModelService.WriteArchiveAsync(folder, name, s, CancellationToken.None), "application/gzip", name + ".tar.gz");
    }

    public static async Task<Results<Ok<DeletedObject>, ProblemHttpResult>> Delete(string id, IDbContextFactory<AlignHubDb> dbs, AlignHubOptions options, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var m = await db.Models.FirstOrDefaultAsync(x => x.Id == id, ct);
        if (m is null) return ProblemShape.NotFound("model", id);
        if (m.OwnedBy == "alignhub") return ProblemShape.Conflict($"model \"{id}\" is built in and cannot be deleted");
        if (await db.Jobs.AnyAsync(j => j.Model == id && (j.Status == JobStatus.Queued || j.Status == JobStatus.Running || j.Status == JobLifecycle.Pausing || j.Status == JobLifecycle.Cancelling), ct))
            return ProblemShape.Conflict($"model \"{id}\" is used by a queued or running job");
        db.Models.Remove(m);
        await db.SaveChangesAsync(ct);
        // Uploaded folders are ours to remove; checkpoints stay with their job, server paths with their owner.
        if (m.WeightsPath is { } p && p.StartsWith("models" + Path.DirectorySeparatorChar) && Directory.Exists(options.Resolve(p)))
            Directory.Delete(options.Resolve(p), true);
        return TypedResults.Ok(new DeletedObject(id, "model", true));
    }
}
