using System.Text.Json;
using AlignHub.Domain;

namespace AlignHub.Api.Endpoints;

/// <summary>OpenAI's list shape.</summary>
public sealed record ListObject<T>(IReadOnlyList<T> Data, bool HasMore, string? FirstId = null, string? LastId = null)
{
    public string Object => "list";
}

public sealed record FileObject(string Id, long Bytes, long CreatedAt, string Filename, string Purpose, string Status, int LineCount, string Format)
{
    public string Object => "file";
    public static FileObject From(FileRecord f) => new(f.Id, f.Bytes, f.CreatedAt, f.Filename, f.Purpose, "processed", f.LineCount, f.Format);
}

public sealed record JobError(string Code, string Message, string? Param);

/// <summary>
/// OpenAI's <c>fine_tuning.job</c>, plus Together-style progress fields. <c>status</c> is in OpenAI's vocabulary
/// (<see cref="JobLifecycle.OpenAiStatus"/>: a job whose worker has yet to act on a pause or cancel reads as paused or
/// cancelled, as OpenAI's own cancel answers); <c>state</c> is AlignHub's exact lifecycle state (pausing, cancelling).
/// </summary>
public sealed record JobObject(
    string Id, long CreatedAt, long? FinishedAt, string Model, string? FineTunedModel, string OrganizationId,
    string Status, string State, string TrainingFile, string? ValidationFile, IReadOnlyList<string> ResultFiles, long? TrainedTokens,
    JobError? Error, int Seed, long? EstimatedFinish, JsonElement Method, IReadOnlyDictionary<string, string>? Metadata,
    string? Suffix, int StepsCompleted, int TotalSteps, int EpochsCompleted, long? SecondsRemaining, JsonElement Config,
    string Device, long? EstimatedMemoryBytes)
{
    public string Object => "fine_tuning.job";

    /// <summary>
    /// <c>method</c> is OpenAI's shape, <c>{"type", "{type}": {"hyperparameters": {...}}}</c>, holding every resolved
    /// hyperparameter of the method's config; <c>config</c> is the whole stored config (with the seed).
    /// </summary>
    public static JobObject From(FineTuningJob j)
    {
        var config = JsonSerializer.Deserialize<JsonElement>(j.ConfigJson);
        var m = Methods.Find(j.MethodType);
        var hyper = m is null ? [] : m.Hyperparameters.Where(h => config.TryGetProperty(h.Name, out _)).ToDictionary(h => h.Name, h => (object?)config.GetProperty(h.Name));
        var settings = new Dictionary<string, object?>();
        foreach (var f in m?.SettingsFields ?? []) // OpenAI's method.reinforcement.grader sits beside the hyperparameters
            if (hyper.Remove(f, out var v)) settings[f] = v;
        settings["hyperparameters"] = hyper;
        var method = JsonSerializer.SerializeToElement(new Dictionary<string, object>
        {
            ["type"] = j.MethodType,
            [j.MethodType] = settings,
        });
        long? remaining = j.EstimatedFinish is long ef && JobLifecycle.IsActive(j.Status) ? Math.Max(0, ef - Ids.Now()) : null;
        return new JobObject(j.Id, j.CreatedAt, j.FinishedAt, j.Model, j.FineTunedModel, "org-alignhub", JobLifecycle.OpenAiStatus(j.Status), j.Status,
            j.TrainingFile, j.ValidationFile, j.ResultFile is null ? [] : [j.ResultFile], j.TrainedTokens == 0 ? null : j.TrainedTokens,
            j.ErrorMessage is null ? null : new JobError(j.ErrorCode ?? "error", j.ErrorMessage, j.ErrorParam),
            j.Seed, j.EstimatedFinish, method,
            j.MetadataJson is null ? null : JsonSerializer.Deserialize<Dictionary<string, string>>(j.MetadataJson),
            j.Suffix, j.StepsCompleted, j.TotalSteps, j.EpochsCompleted, remaining, config, j.Device, j.EstimatedMemoryBytes);
    }
}

public sealed record EventObject(string Id, long CreatedAt, string Level, string Message, string Type, JsonElement? Data)
{
    public string Object => "fine_tuning.job.event";
    public static EventObject From(JobEvent e) => new("ftevent-" + e.Id, e.CreatedAt, e.Level, e.Message, e.Type,
        e.DataJson is null ? null : JsonSerializer.Deserialize<JsonElement>(e.DataJson));
}

public sealed record CheckpointObject(string Id, long CreatedAt, string FineTuningJobId, string FineTunedModelCheckpoint, int StepNumber, JsonElement Metrics)
{
    public string Object => "fine_tuning.job.checkpoint";
    public static CheckpointObject From(JobCheckpoint c) => new(c.Id, c.CreatedAt, c.JobId, c.ModelName, c.Step,
        JsonSerializer.Deserialize<JsonElement>(c.MetricsJson));
}

public sealed record MetricObject(int Step, string Name, double Value, long CreatedAt);

/// <summary>A sampled completion of an online RL job: its step, prompt, text, rewards (total and per source) and advantage.</summary>
public sealed record SampleObject(long Id, int Step, string Prompt, string Completion, double Reward, JsonElement Rewards, double Advantage, string FinishReason, long CreatedAt)
{
    public static SampleObject From(JobSample x) => new(x.Id, x.Step, x.Prompt, x.Completion, x.Reward,
        JsonSerializer.Deserialize<JsonElement>(x.RewardsJson), x.Advantage, x.FinishReason, x.CreatedAt);
}

/// <summary>OpenAI's <c>model</c> object plus AlignHub's fields; <c>has_weights</c> false: random initialisation per job seed.</summary>
public sealed record ModelObject(string Id, long Created, string OwnedBy, string Architecture, long Parameters, string Tokenizer, string? ParentJob,
    bool HasWeights, string Kind, JsonElement Config)
{
    public string Object => "model";
    /// <summary><c>kind</c>: <c>causal_lm</c>, or <c>reward_model</c> (a scalar head; trained by reward_model jobs).</summary>
    public static ModelObject From(ModelRecord m) => new(m.Id, m.CreatedAt, m.OwnedBy, m.Architecture, m.Parameters, m.Tokenizer, m.ParentJobId,
        m.WeightsPath is not null, ModelArchitecture.Parse(m.ConfigJson).IsRewardModel ? "reward_model" : "causal_lm",
        JsonSerializer.Deserialize<JsonElement>(m.ConfigJson));
}

/// <summary>OpenAI's deletion result.</summary>
public sealed record DeletedObject(string Id, string Object, bool Deleted);

/// <summary>A worker process (<c>GET /v1/workers</c>): <c>status</c> online (heartbeat within the lease), lost (none since), or stopped (shut down cleanly).</summary>
public sealed record WorkerObject(string Id, string Host, int Pid, IReadOnlyList<string> Queues, string Device, string Version, int Slots,
    long StartedAt, long LastHeartbeatAt, long? StoppedAt, string Status, string? CurrentJob)
{
    public string Object => "worker";
    public static WorkerObject From(WorkerRecord w, long leaseMs, long nowMs) => new(w.Id, w.Host, w.Pid,
        w.Queues.Split(',', StringSplitOptions.RemoveEmptyEntries), w.Device, w.Version, w.Slots, w.StartedAtMs / 1000, w.HeartbeatAtMs / 1000,
        w.StoppedAtMs / 1000, WorkerPresence.Status(w, leaseMs, nowMs), w.StoppedAtMs is null ? w.CurrentJobId : null);
}
