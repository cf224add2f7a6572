namespace AlignHub.Domain;

/// <summary>Settings under <c>AlignHub</c> (environment: <c>AlignHub__Name</c>).</summary>
public sealed class AlignHubOptions
{
    /// <summary>Folder for the embedded default: SQLite database, uploaded files, checkpoints.</summary>
    public string DataDir { get; set; } = "./data";
    /// <summary>Comma-separated roles of this process: api, web, worker.</summary>
    public string Roles { get; set; } = "api,web,worker";
    /// <summary>Training jobs one worker process runs at once.</summary>
    public int WorkerCount { get; set; } = 1;
    /// <summary>A running job whose worker has not written a heartbeat for this long is taken back and re-queued.</summary>
    public int LeaseSeconds { get; set; } = 60;
    /// <summary>Largest accepted upload.</summary>
    public long MaxUploadBytes { get; set; } = 512L * 1024 * 1024;
    /// <summary>Largest unpacked model archive.</summary>
    public long MaxModelBytes { get; set; } = 64L * 1024 * 1024 * 1024;
    /// <summary>
    /// Comma-separated server folders under which <c>POST /v1/models</c> may register a model in place
    /// (empty: registering server paths is off).
    /// </summary>
    public string ModelImportRoots { get; set; } = "";

    public IReadOnlyList<string> ImportRoots() =>
        ModelImportRoots.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(r => Path.TrimEndingDirectorySeparator(Path.GetFullPath(r))).ToList();

    /// <summary>
    /// An admin API key set by configuration (for automation); without it, the first start with no keys creates one
    /// and prints it once.
    /// </summary>
    public string AdminKey { get; set; } = "";
    /// <summary>Requests per minute one API key may make to /v1 (a token bucket; 0: no limit). Beyond it: 429 with Retry-After.</summary>
    public int RateLimitPerMinute { get; set; } = 1200;
    /// <summary>Torch intra-op threads per training job (0: the library's default).</summary>
    public int TorchThreads { get; set; }
    /// <summary>Settings of the worker role (<c>AlignHub__Worker__Name</c>).</summary>
    public WorkerOptions Worker { get; set; } = new();

    public bool HasRole(string role) =>
        Roles.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
             .Contains(role, StringComparer.OrdinalIgnoreCase);

    public string FullDataDir => Path.GetFullPath(DataDir);
    public string Resolve(string relative) => Path.GetFullPath(Path.Combine(FullDataDir, relative));
}

/// <summary>Settings of a worker process (<c>AlignHub__Worker__...</c>).</summary>
public sealed class WorkerOptions
{
    /// <summary>
    /// Where this worker's tensors live: <c>cpu</c>, <c>cuda</c>, <c>cuda:N</c>, or <c>auto</c> (CUDA when TorchSharp
    /// reports it, else the CPU). Checked when a job starts; a device this machine lacks fails the job saying so.
    /// </summary>
    public string Device { get; set; } = "auto";
    /// <summary>
    /// Comma-separated Hangfire queues this worker takes jobs from (empty: its device kind's, training_cpu or
    /// training_gpu, then training, the queue of jobs with device "any"); "default" (campaign judging) is always added.
    /// </summary>
    public string Queues { get; set; } = "";
    /// <summary>Sequences one served model generates together (continuous batching's pool of rows).</summary>
    public int InferenceBatch { get; set; } = 32;
    /// <summary>The most positions a served request may use (prompt + max_tokens), below the model's own context.</summary>
    public int InferenceContext { get; set; } = 4096;
    /// <summary>Memory the served models may hold together (weights and KV caches); the least recently used idle model goes first.</summary>
    public int InferenceMemoryMiB { get; set; } = 4096;
}
