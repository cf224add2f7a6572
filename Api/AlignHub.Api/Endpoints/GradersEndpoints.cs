using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using Microsoft.AspNetCore.Http.HttpResults;

namespace AlignHub.Api.Endpoints;

/// <summary>Body of OpenAI's <c>graders/validate</c> and <c>graders/run</c>: a grader, and for a run a model sample and a dataset item.</summary>
public sealed record GraderRequest(JsonElement? Grader, string? ModelSample, JsonElement? Item);

/// <summary>OpenAI's <c>/v1/fine_tuning/alpha/graders</c>: try a grader on a sample before training with it.</summary>
public static class GradersEndpoints
{
    public static void MapGraders(this RouteGroupBuilder v1)
    {
        var g = v1.MapGroup("/fine_tuning/alpha/graders").WithTags("Graders");
        g.MapPost("/validate", Validate).Accepts<GraderRequest>("application/json")
            .WithSummary("Validate a grader (OpenAI's shape; types: string_check, text_similarity, score_model, multi, numeric_match, regex_match, json_valid, length_penalty). Role: trainer").RequireAuthorization(Auth.Train);
        g.MapPost("/run", Run).Accepts<GraderRequest>("application/json")
            .WithSummary("Run a grader on a model sample and a dataset item (OpenAI's shape). Role: trainer").RequireAuthorization(Auth.Train);
    }

    static async Task<(GraderRequest? Body, Grader? Grader, Dictionary<string, string[]> Errors)> Read(HttpRequest request, bool run, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        void Err(string f, string m) => errors[f] = errors.TryGetValue(f, out var x) ? [.. x, m] : [m];
        GraderRequest? body;
        try { body = await JsonSerializer.DeserializeAsync<GraderRequest>(request.Body, ApiJson.Options, ct); }
        catch (JsonException e)
        {
            Err(string.IsNullOrEmpty(e.Path) || e.Path == "$" ? "body" : e.Path.TrimStart('$', '.'), "invalid JSON or wrong type at this field");
            return (null, null, errors);
        }
        if (body is null) { Err("body", "a JSON object is required"); return (null, null, errors); }
        Grader? grader = null;
        if (body.Grader is not { ValueKind: not JsonValueKind.Null } g) Err("grader", "grader is required");
        else grader = Domain.Grader.Parse(g, "grader", Err);
        if (run && body.ModelSample is null) Err("model_sample", "model_sample is required");
        if (run && body.Item is { ValueKind: not (JsonValueKind.Object or JsonValueKind.Null) }) Err("item", "item must be an object");
        return (body, grader, errors);
    }

    public static async Task<Results<Ok<Dictionary<string, object?>>, ValidationProblem>> Validate(HttpRequest request, CancellationToken ct)
    {
        var (body, grader, errors) = await Read(request, false, ct);
        if (errors.Count > 0 || grader is null) return TypedResults.ValidationProblem(errors);
        return TypedResults.Ok(new Dictionary<string, object?> { ["grader"] = body!.Grader });
    }

    /// <summary>The reward and OpenAI's metadata (<c>errors</c> all false here: a string check cannot fail once valid).</summary>
    public static async Task<Results<Ok<Dictionary<string, object?>>, ValidationProblem>> Run(HttpRequest request,
        Microsoft.EntityFrameworkCore.IDbContextFactory<AlignHubDb> dbs, CancellationToken ct)
    {
        var (body, grader, errors) = await Read(request, true, ct);
        if (errors.Count > 0 || grader is null) return TypedResults.ValidationProblem(errors);
        var sw = Stopwatch.StartNew();
        // score_model graders ask their model here: through this process's model server, or a judge's endpoint.
        var client = new Domain.Inference.JudgeClient(request.HttpContext.RequestServices.GetService<Domain.Inference.IInferenceService>(),
            id => { using var db = dbs.CreateDbContext(); return ModelService.Find(db, id); });
        grader = grader.Bind(client.GraderAsk(id => { using var db = dbs.CreateDbContext(); return db.Judges.FirstOrDefault(j => j.Id == id); }, ct)); // the request's token: a caller who leaves stops the wait
        double reward;
        try { reward = await Task.Run(() => grader.Grade(body!.Item is { ValueKind: JsonValueKind.Object } item ? item : null, body.ModelSample!), ct); }
        catch (Exception e) when (e is InvalidDataException or InvalidOperationException or Domain.Inference.InferenceException or AggregateException)
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["grader.model"] = [e.InnerException?.Message ?? e.Message] });
        }
        var errorFlags = new Dictionary<string, object?>
        {
            ["formula_parse_error"] = false, ["invalid_variable_error"] = false, ["model_grader_parse_error"] = false,
            ["model_grader_refusal_error"] = false, ["model_grader_server_error"] = false, ["model_grader_server_error_details"] = null,
            ["other_error"] = false, ["python_grader_runtime_error"] = false, ["python_grader_runtime_error_details"] = null,
            ["python_grader_server_error"] = false, ["python_grader_server_error_type"] = null, ["sample_parse_error"] = false,
            ["truncated_observation_error"] = false, ["unresponsive_reward_error"] = false,
        };
        return TypedResults.Ok(new Dictionary<string, object?>
        {
            ["reward"] = reward,
            ["metadata"] = new Dictionary<string, object?>
            {
                ["name"] = grader.Name, ["type"] = body!.Grader!.Value.GetProperty("type").GetString(), ["errors"] = errorFlags,
                ["execution_time"] = sw.Elapsed.TotalSeconds, ["scores"] = new Dictionary<string, object?>(), ["token_usage"] = null, ["sampled_model_name"] = null,
            },
            ["sub_rewards"] = new Dictionary<string, object?>(),
            ["model_grader_token_usage_per_model"] = new Dictionary<string, object?>(),
        });
    }
}
