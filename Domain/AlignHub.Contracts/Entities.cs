namespace AlignHub.Domain;

/// <summary>
/// Job states as OpenAI's fine-tuning API spells them (and paused); <see cref="JobLifecycle"/> adds pausing and
/// cancelling and holds every transition.
/// </summary>
public static class JobStatus
{
    public const string ValidatingFiles = "validating_files";
    public const string Queued = "queued";
    public const string Running = "running";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";
    /// <summary>Stopped by request with a checkpoint; <c>resume</c> queues it again.</summary>
    public const string Paused = "paused";

    public static bool IsTerminal(string status) => status is Succeeded or Failed or Cancelled;
}

/// <summary>An uploaded file (JSONL rows), stored under the data folder, never in a served folder.</summary>
public sealed class FileRecord
{
    public required string Id { get; set; }
    public required string Filename { get; set; }
    public required string Purpose { get; set; }
    public long Bytes { get; set; }
    public long CreatedAt { get; set; }
    /// <summary>Path relative to the data folder.</summary>
    public required string StoragePath { get; set; }
    public int LineCount { get; set; }
    /// <summary>Row format found on upload, e.g. <c>prompt_completion</c>, <c>messages</c>.</summary>
    public required string Format { get; set; }
}

/// <summary>A model that jobs can name: a built-in preset or a fine-tuned result.</summary>
public sealed class ModelRecord
{
    public required string Id { get; set; }
    public long CreatedAt { get; set; }
    public required string OwnedBy { get; set; }
    public required string Architecture { get; set; }
    /// <summary>HF-style config.json of the architecture.</summary>
    public required string ConfigJson { get; set; }
    public required string Tokenizer { get; set; }
    /// <summary>Folder (relative to the data folder) holding the weights; null: random initialisation from the seed.</summary>
    public string? WeightsPath { get; set; }
    public string? ParentJobId { get; set; }
    public long Parameters { get; set; }
}

public sealed class FineTuningJob
{
    public required string Id { get; set; }
    public required string Model { get; set; }
    public required string TrainingFile { get; set; }
    public string? ValidationFile { get; set; }
    public int Seed { get; set; }
    public string? Suffix { get; set; }
    public string? MetadataJson { get; set; }
    public required string MethodType { get; set; }
    /// <summary>The resolved config (every default filled in), as JSON; copied into every checkpoint.</summary>
    public required string ConfigJson { get; set; }
    public required string Status { get; set; }
    public long CreatedAt { get; set; }
    /// <summary>Milliseconds; orders the job list.</summary>
    public long CreatedAtMs { get; set; }
    public long? StartedAt { get; set; }
    public long? FinishedAt { get; set; }
    public string? FineTunedModel { get; set; }
    public string? ErrorCode { get; set; }
    public string? ErrorMessage { get; set; }
    public string? ErrorParam { get; set; }
    public int StepsCompleted { get; set; }
    public int TotalSteps { get; set; }
    public int EpochsCompleted { get; set; }
    public long TrainedTokens { get; set; }
    public long? EstimatedFinish { get; set; }
    /// <summary>Worker that holds the job while it runs; with <see cref="HeartbeatAtMs"/> it forms a lease.</summary>
    public string? LeaseOwner { get; set; }
    public long? HeartbeatAtMs { get; set; }
    /// <summary>
    /// When the job's id was handed to Hangfire; null while queued and not yet handed over (the job row is written
    /// first, and <see cref="JobDispatcher"/> enqueues it, so a request never waits on the queue).
    /// </summary>
    public long? EnqueuedAtMs { get; set; }
    /// <summary>How many times a worker has started (or resumed) this job.</summary>
    public int Attempts { get; set; }
    /// <summary>A file the job produced (a generate job's completions), listed in <c>result_files</c>.</summary>
    public string? ResultFile { get; set; }
    /// <summary>The device kind the job needs (<see cref="JobResources"/>: any, cpu or gpu); picks its Hangfire queue.</summary>
    public string Device { get; set; } = JobResources.Any;
    /// <summary>Bytes the job is estimated to hold on its device (<see cref="JobResources.Estimate"/>), computed at creation.</summary>
    public long? EstimatedMemoryBytes { get; set; }
    /// <summary>When the job was last said to have no live worker serving its queue (once per hand-over to Hangfire).</summary>
    public long? NoWorkerNoticeAtMs { get; set; }

    /// <summary>OpenAI-style name of the job's result: <c>ft:{model}:{suffix:}{job id}</c>.</summary>
    public string FineTunedModelName => $"ft:{Model}:{(Suffix is null ? "" : Suffix + ":")}{Id}";
}

public sealed class JobEvent
{
    public long Id { get; set; }
    public required string JobId { get; set; }
    public long CreatedAt { get; set; }
    public required string Level { get; set; }
    public required string Type { get; set; }
    public required string Message { get; set; }
    public string? DataJson { get; set; }
}

public sealed class JobMetric
{
    public long Id { get; set; }
    public required string JobId { get; set; }
    public int Step { get; set; }
    public required string Name { get; set; }
    public double Value { get; set; }
    public long CreatedAt { get; set; }
}

public sealed class JobCheckpoint
{
    public required string Id { get; set; }
    public required string JobId { get; set; }
    public int Step { get; set; }
    public long CreatedAt { get; set; }
    /// <summary>Folder relative to the data folder.</summary>
    public required string StoragePath { get; set; }
    public required string MetricsJson { get; set; }
    public required string ModelName { get; set; }
}

/// <summary>
/// One completion an online RL job sampled at a step (every <c>log_completions_steps</c> steps): its prompt, its
/// text, each reward source's score and the advantage it was trained with.
/// </summary>
public sealed class JobSample
{
    public long Id { get; set; }
    public required string JobId { get; set; }
    public int Step { get; set; }
    /// <summary>Position within the step's logged samples.</summary>
    public int Index { get; set; }
    public required string Prompt { get; set; }
    public required string Completion { get; set; }
    public double Reward { get; set; }
    /// <summary>Per-source rewards, <c>{"exact_match": 1}</c>.</summary>
    public required string RewardsJson { get; set; }
    public double Advantage { get; set; }
    public required string FinishReason { get; set; }
    public long CreatedAt { get; set; }
}

/// <summary>
/// A worker process, as it reports itself: written when it starts, its heartbeat and current job every few seconds,
/// and its stop when it shuts down cleanly. A worker whose heartbeat is older than the lease is lost; its job is
/// re-queued by the lease (<c>JobRecoveryService</c>), not by this row.
/// </summary>
public sealed class WorkerRecord
{
    /// <summary>The Hangfire server name and lease owner: host:pid:random.</summary>
    public required string Id { get; set; }
    public required string Host { get; set; }
    public int Pid { get; set; }
    /// <summary>The Hangfire queues it serves, comma-separated.</summary>
    public required string Queues { get; set; }
    /// <summary>The device its training runs on (cpu, cuda:0).</summary>
    public required string Device { get; set; }
    /// <summary>AlignHub's version (the assembly's informational version).</summary>
    public required string Version { get; set; }
    /// <summary>Training jobs it runs at once.</summary>
    public int Slots { get; set; }
    public long StartedAtMs { get; set; }
    public long HeartbeatAtMs { get; set; }
    /// <summary>Set when it shut down cleanly.</summary>
    public long? StoppedAtMs { get; set; }
    /// <summary>The job it holds the lease of (null: idle).</summary>
    public string? CurrentJobId { get; set; }
}
