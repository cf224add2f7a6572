using System.Text.Json;
using AlignHub.Domain;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api.Endpoints;

public static class JobsEndpoints
{
    public static void MapFineTuningJobs(this RouteGroupBuilder v1)
    {
        var g = v1.MapGroup("/fine_tuning/jobs").WithTags("Fine-tuning jobs");
        g.MapPost("/", Create).Accepts<CreateJobRequest>("application/json")
            .WithSummary($"Create a job (OpenAI's shape; method.type: {string.Join(", ", Methods.Names)}). Role: trainer").RequireAuthorization(Auth.Train);
        g.MapGet("/", List).WithSummary("List jobs, newest first (after = a job id, limit <= 100). Role: viewer").RequireAuthorization(Auth.Read);
        g.MapGet("/{id}", Get).WithSummary("Retrieve a job. Role: viewer").RequireAuthorization(Auth.Read);
        g.MapPost("/{id}/cancel", Cancel).WithSummary("Cancel a queued or running job (409 once it has finished). Role: trainer").RequireAuthorization(Auth.Train);
        g.MapPost("/{id}/pause", Pause).WithSummary("Pause a queued or running job: its worker saves a checkpoint and stops. Role: trainer").RequireAuthorization(Auth.Train);
        g.MapPost("/{id}/resume", Resume).WithSummary("Resume a paused job from its last checkpoint. Role: trainer").RequireAuthorization(Auth.Train);
        g.MapGet("/{id}/events", Events).WithSummary("A job's events, newest first. Role: viewer").RequireAuthorization(Auth.Read);
        g.MapGet("/{id}/checkpoints", Checkpoints).WithSummary("A job's checkpoints, newest first. Role: viewer").RequireAuthorization(Auth.Read);
        g.MapGet("/{id}/checkpoints/{checkpointId}/content", CheckpointContent)
            .WithSummary("AlignHub: download a checkpoint as an HF model folder (.tar.gz: config.json, model.safetensors, tokenizer files). Role: viewer").RequireAuthorization(Auth.Read);
        g.MapGet("/{id}/samples", Samples).WithSummary("AlignHub: completions an online RL job sampled (every log_completions_steps steps) with rewards and advantages; step = one step, after = a sample id, limit <= 500. Role: viewer").RequireAuthorization(Auth.Read);
        g.MapGet("/{id}/metrics", Metrics).WithSummary("AlignHub: a job's metric rows (step, name, value). Role: viewer").RequireAuthorization(Auth.Read);
    }

    public static async Task<Results<Ok<JobObject>, ValidationProblem>> Create(HttpRequest request, JobService jobs, CancellationToken ct)
    {
        CreateJobRequest? body;
        try
        {
            body = await JsonSerializer.DeserializeAsync<CreateJobRequest>(request.Body, ApiJson.Options, ct);
        }
        catch (JsonException e)
        {
            var field = string.IsNullOrEmpty(e.Path) || e.Path == "$" ? "body" : e.Path.TrimStart('$', '.');
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { [field] = ["invalid JSON or wrong type at this field"] });
        }
        if (body is null)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["body"] = ["a JSON object is required"] });
        return await jobs.CreateAsync(body, ct) switch
        {
            JobService.Created c => TypedResults.Ok(JobObject.From(c.Job)),
            JobService.Invalid i => TypedResults.ValidationProblem(i.Errors),
            _ => throw new InvalidOperationException(),
        };
    }

    public static async Task<Results<Ok<ListObject<JobObject>>, ValidationProblem>> List(
        JobQueries queries, string? after, int? limit, CancellationToken ct)
    {
        int take = limit ?? 20;
        if (take is < 1 or > 100)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["limit"] = ["limit must be between 1 and 100"] });
        if (await queries.ListAsync(after, take, ct) is not var (jobs, more))
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["after"] = [$"job \"{after}\" does not exist"] });
        var data = jobs.Select(JobObject.From).ToList();
        return TypedResults.Ok(new ListObject<JobObject>(data, more, data.FirstOrDefault()?.Id, data.LastOrDefault()?.Id));
    }

    public static async Task<Results<Ok<JobObject>, ProblemHttpResult>> Get(string id, JobQueries queries, CancellationToken ct) =>
        await queries.GetAsync(id, ct) is { } j ? TypedResults.Ok(JobObject.From(j)) : ProblemShape.NotFound("fine-tuning job", id);

    public static async Task<Results<Ok<JobObject>, ProblemHttpResult>> Cancel(string id, JobService jobs, CancellationToken ct)
    {
        var (outcome, job) = await jobs.CancelAsync(id, ct);
        return outcome switch
        {
            JobService.CancelOutcome.NotFound => ProblemShape.NotFound("fine-tuning job", id),
            JobService.CancelOutcome.AlreadyFinished => ProblemShape.Conflict($"job {id} is {job!.Status}; only queued or running jobs can be cancelled"),
            _ => TypedResults.Ok(JobObject.From(job!)),
        };
    }

    public static async Task<Results<Ok<JobObject>, ProblemHttpResult>> Pause(string id, JobService jobs, CancellationToken ct) =>
        await jobs.PauseAsync(id, ct) switch
        {
            (JobService.PauseOutcome.NotFound, _) => ProblemShape.NotFound("fine-tuning job", id),
            (JobService.PauseOutcome.WrongState, var j) => ProblemShape.Conflict($"job {id} is {j!.Status}; only queued or running jobs can be paused"),
            (_, var j) => TypedResults.Ok(JobObject.From(j!)),
        };

    public static async Task<Results<Ok<JobObject>, ProblemHttpResult>> Resume(string id, JobService jobs, CancellationToken ct) =>
        await jobs.ResumeAsync(id, ct) switch
        {
            (JobService.PauseOutcome.NotFound, _) => ProblemShape.NotFound("fine-tuning job", id),
            (JobService.PauseOutcome.WrongState, var j) => ProblemShape.Conflict($"job {id} is {j!.Status}; only paused jobs can be resumed"),
            (_, var j) => TypedResults.Ok(JobObject.From(j!)),
        };

    public static async Task<Results<Ok<ListObject<EventObject>>, ProblemHttpResult, ValidationProblem>> Events(
        string id, JobQueries queries, string? after, int? limit, CancellationToken ct)
    {
        int take = limit ?? 20;
        if (take is < 1 or > 1000)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["limit"] = ["limit must be between 1 and 1000"] });
        long? before = null;
        if (!string.IsNullOrEmpty(after))
        {
            if (!after.StartsWith("ftevent-") || !long.TryParse(after["ftevent-".Length..], out var cursor))
                return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["after"] = ["after must be an event id (ftevent-...)"] });
            before = cursor;
        }
        if (!await queries.ExistsAsync(id, ct)) return ProblemShape.NotFound("fine-tuning job", id);
        var (events, more) = await queries.EventsAsync(id, before, take, ct);
        return TypedResults.Ok(new ListObject<EventObject>(events.Select(EventObject.From).ToList(), more));
    }

    public static async Task<IResult> CheckpointContent(string id, string checkpointId, JobQueries queries, AlignHubOptions options, CancellationToken ct)
    {
        var c = await queries.CheckpointAsync(id, checkpointId, ct);
        if (c is null) return ProblemShape.NotFound("checkpoint", checkpointId);
        return ModelsEndpoints.Archive(options.Resolve(c.StoragePath), $"{id}-step-{c.Step}");
    }

    public static async Task<Results<Ok<ListObject<CheckpointObject>>, ProblemHttpResult>> Checkpoints(
        string id, JobQueries queries, CancellationToken ct)
    {
        if (!await queries.ExistsAsync(id, ct)) return ProblemShape.NotFound("fine-tuning job", id);
        var rows = await queries.CheckpointsAsync(id, ct);
        return TypedResults.Ok(new ListObject<CheckpointObject>(rows.Select(CheckpointObject.From).ToList(), false,
            rows.FirstOrDefault()?.Id, rows.LastOrDefault()?.Id));
    }

    public static async Task<Results<Ok<ListObject<MetricObject>>, ProblemHttpResult>> Metrics(
        string id, JobQueries queries, string? name, int? afterStep, CancellationToken ct)
    {
        if (!await queries.ExistsAsync(id, ct)) return ProblemShape.NotFound("fine-tuning job", id);
        var rows = await queries.MetricsAsync(id, string.IsNullOrEmpty(name) ? null : [name], afterStep, ct);
        return TypedResults.Ok(new ListObject<MetricObject>(rows.Select(m => new MetricObject(m.Step, m.Name, m.Value, m.CreatedAt)).ToList(), false));
    }

    public static async Task<Results<Ok<ListObject<SampleObject>>, ProblemHttpResult, ValidationProblem>> Samples(
        string id, JobQueries queries, int? step, long? after, int? limit, CancellationToken ct)
    {
        int take = limit ?? 100;
        if (take is < 1 or > 500)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["limit"] = ["limit must be between 1 and 500"] });
        if (!await queries.ExistsAsync(id, ct)) return ProblemShape.NotFound("fine-tuning job", id);
        var (rows, more) = await queries.SamplesAsync(id, step, after, take, ct);
        var data = rows.Select(SampleObject.From).ToList();
        return TypedResults.Ok(new ListObject<SampleObject>(data, more, data.FirstOrDefault()?.Id.ToString(), data.LastOrDefault()?.Id.ToString()));
    }
}
