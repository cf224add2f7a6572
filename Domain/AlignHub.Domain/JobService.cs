using System.Text.Json;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>
/// Creates, cancels, pauses and re-queues fine-tuning jobs. The row is written first; every hand-over to Hangfire goes
/// through <see cref="JobDispatcher"/> (a queued row with no <see cref="FineTuningJob.EnqueuedAtMs"/>).
/// </summary>
public sealed class JobService(IDbContextFactory<AlignHubDb> dbs, JobDispatcher dispatcher)
{
    public abstract record CreateResult;
    public sealed record Created(FineTuningJob Job) : CreateResult;
    public sealed record Invalid(Dictionary<string, string[]> Errors) : CreateResult;

    public async Task<CreateResult> CreateAsync(CreateJobRequest req, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        void Err(string field, string message) =>
            errors[field] = errors.TryGetValue(field, out var m) ? [.. m, message] : [message];

        var methodType = req.Method?.Type ?? Methods.Supervised.Name;
        var method = Methods.Find(methodType);
        if (method is null)
        {
            Err("method.type", $"unknown method type \"{methodType}\"; supported: {string.Join(", ", Methods.Names)}");
            return new Invalid(errors);
        }
        if (req.Seed is < 0) Err("seed", "seed must be >= 0");
        int seed = req.Seed is int s0 and >= 0 ? s0 : Random.Shared.Next(0, int.MaxValue);
        var hyperparameters = req.Method is null && method == Methods.Supervised ? req.Hyperparameters : req.Method?.HyperparametersOf(methodType, Err, method.SettingsFields);
        // A settings field (OpenAI's method.reinforcement.grader) is named where it was given.
        void ConfigErr(string field, string message) =>
            Err(method.SettingsFields.FirstOrDefault(f => field == method.Prefix + f || field.StartsWith(method.Prefix + f + ".")) is { } f
                ? $"method.{methodType}.{field[method.Prefix.Length..]}" : field, message);
        var config = Hyperparameters.Resolve(method.ConfigType, hyperparameters, method.Prefix, seed, ConfigErr);
        bool configValid = errors.Count == 0 || errors.Keys.All(k => k == "seed");

        if (req.Suffix is { Length: > 64 }) Err("suffix", "suffix must be at most 64 characters");
        if (req.Suffix is { } s && s.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
            Err("suffix", "suffix may hold only letters, digits, '-', '_' and '.'");
        if (req.Metadata is { Count: > 16 }) Err("metadata", "at most 16 metadata keys");
        var device = (req.Device ?? JobResources.Any).Trim().ToLowerInvariant();
        if (!JobResources.Devices.Contains(device)) Err("device", $"device must be one of {string.Join(", ", JobResources.Devices)}");

        await using var db = await dbs.CreateDbContextAsync(ct);
        ModelRecord? model = null;
        if (string.IsNullOrWhiteSpace(req.Model)) Err("model", "model is required");
        else if ((model = await ModelService.FindAsync(db, req.Model, ct)) is null)
            Err("model", $"model \"{req.Model}\" is not registered (GET /v1/models lists them)");
        var formats = method.FileFormats(config);
        if (string.IsNullOrWhiteSpace(req.TrainingFile)) Err("training_file", "training_file is required");
        else await CheckFile(db, req.TrainingFile, "training_file", method, formats, Err, ct);
        if (req.ValidationFile is not null)
        {
            if (!method.TakesValidationFile) Err("validation_file", $"a {methodType} job reads only training_file");
            else await CheckFile(db, req.ValidationFile, "validation_file", method, formats, Err, ct);
        }
        if (model is not null && !method.AcceptsRewardModel && ModelArchitecture.Parse(model.ConfigJson).IsRewardModel)
            Err("model", $"model \"{model.Id}\" is a reward model; {methodType} needs a language model");
        if (configValid) await method.ValidateAsync(new JobCheck(new DbJobLookup(db), model, config, method.Prefix, ConfigErr), ct);
        if (configValid && model is not null && config is TrainingConfig { UsePeft: true } tc)
        {
            if (model.WeightsPath is null)
                ConfigErr(method.Prefix + "use_peft", $"LoRA adapts stored weights, and model \"{model.Id}\" has none (each job initialises it at random from its seed); " +
                    "fine-tune it without use_peft first, or register a model with weights");
            else if (LoraSettings.TargetError(tc.LoraTargetModules, ModelArchitecture.Parse(model.ConfigJson)) is { } loraError)
                ConfigErr(method.Prefix + "lora_target_modules", loraError);
        }
        if (errors.Count > 0) return new Invalid(errors);

        var estimate = JobResources.Estimate(ModelArchitecture.Parse(model!.ConfigJson), model.Parameters, config);
        var now = Ids.NowMs();
        var job = new FineTuningJob
        {
            Id = Ids.New("ftjob-"),
            Model = req.Model!,
            TrainingFile = req.TrainingFile!,
            ValidationFile = req.ValidationFile,
            Seed = seed,
            Suffix = req.Suffix,
            MetadataJson = req.Metadata is null ? null : JsonSerializer.Serialize(req.Metadata),
            MethodType = methodType,
            ConfigJson = config.ToJson(),
            Status = JobStatus.Queued,
            CreatedAt = now / 1000,
            CreatedAtMs = now,
            Device = device,
            EstimatedMemoryBytes = estimate.TotalBytes,
        };
        db.Jobs.Add(job);
        db.Events.Add(new JobEvent { JobId = job.Id, CreatedAt = job.CreatedAt, Level = "info", Type = "message", Message = method.CreatedMessage(job.Id) });
        db.Events.Add(new JobEvent
        {
            JobId = job.Id, CreatedAt = job.CreatedAt, Level = "info", Type = "message",
            Message = $"Needs about {ResourceEstimate.Format(estimate.TotalBytes)} on {(device == JobResources.Any ? "any device" : "a " + device + " worker")} " +
                $"(weights {ResourceEstimate.Format(estimate.WeightsBytes)}, optimizer state {ResourceEstimate.Format(estimate.TrainingStateBytes)}, " +
                $"activations {ResourceEstimate.Format(estimate.ActivationBytes)}); queue {JobResources.QueueFor(device)}",
            DataJson = JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["device"] = device, ["queue"] = JobResources.QueueFor(device), ["estimated_memory_bytes"] = estimate.TotalBytes,
                ["weights_bytes"] = estimate.WeightsBytes, ["training_state_bytes"] = estimate.TrainingStateBytes, ["activation_bytes"] = estimate.ActivationBytes,
            }),
        });
        await db.SaveChangesAsync(ct);
        dispatcher.Signal(); // hands the id to Hangfire off the request path
        return new Created(job);
    }

    /// <summary>A creation-time check's lookups, over the request's database context.</summary>
    sealed class DbJobLookup(AlignHubDb db) : IJobLookup
    {
        public Task<ModelRecord?> FindModelAsync(string id, CancellationToken ct) => ModelService.FindAsync(db, id, ct);
        public Task<Judge?> FindJudgeAsync(string id, CancellationToken ct) => db.Judges.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, ct);
        public Task<FineTuningJob?> FindJobAsync(string id, CancellationToken ct) => db.Jobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, ct);
        public Task<bool> HasCheckpointsAsync(string jobId, CancellationToken ct) => db.Checkpoints.AnyAsync(x => x.JobId == jobId, ct);
    }

    static async Task CheckFile(AlignHubDb db, string id, string field, JobMethod method, IReadOnlyList<string> formats, Action<string, string> err, CancellationToken ct)
    {
        var f = await db.Files.FindAsync([id], ct);
        if (f is null) err(field, $"file \"{id}\" does not exist");
        else if (f.Purpose != "fine-tune") err(field, $"file \"{id}\" has purpose \"{f.Purpose}\", not \"fine-tune\"");
        else if (!formats.Contains(f.Format)) err(field, $"file \"{id}\" holds {f.Format} rows; {method.Name} needs {method.FileHint}");
    }

    public enum CancelOutcome { Cancelled, NotFound, AlreadyFinished }

    /// <summary>
    /// Cancels a job that has not finished (<see cref="JobLifecycle"/>): one no worker holds is cancelled at once; one a
    /// worker holds becomes <c>cancelling</c>, which its training engine reads before every step, and the worker
    /// writes <c>cancelled</c> when it has stopped.
    /// </summary>
    public async Task<(CancelOutcome, FineTuningJob?)> CancelAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var o = await JobLifecycle.RequestAsync(db, id, JobLifecycle.Request.Cancel, ct);
        if (o.NotFound) return (CancelOutcome.NotFound, null);
        if (o.Refused) return (CancelOutcome.AlreadyFinished, o.Job);
        if (o.Moved)
            await AddEventAsync(db, id, o.To == JobStatus.Cancelled ? "Job cancelled by request" : "Job cancel requested; its worker stops at its next step", ct);
        return (CancelOutcome.Cancelled, o.Job);
    }

    public enum PauseOutcome { Done, NotFound, WrongState }

    /// <summary>
    /// Pauses a queued or running job. A queued one is paused at once; a running one becomes <c>pausing</c>: its
    /// worker reads that at its next step, saves a checkpoint, lets go of the job and writes <c>paused</c>.
    /// </summary>
    public async Task<(PauseOutcome, FineTuningJob?)> PauseAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var o = await JobLifecycle.RequestAsync(db, id, JobLifecycle.Request.Pause, ct);
        if (o.NotFound) return (PauseOutcome.NotFound, null);
        if (o.Refused) return (PauseOutcome.WrongState, o.Job);
        await AddEventAsync(db, id, "Job paused by request", ct);
        return (PauseOutcome.Done, o.Job);
    }

    /// <summary>
    /// Resumes a paused job: queued again, and a worker resumes it from its last checkpoint. A pausing one (its worker
    /// has not reached its next step) goes back to running: the request is withdrawn and it simply keeps training.
    /// </summary>
    public async Task<(PauseOutcome, FineTuningJob?)> ResumeAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var o = await JobLifecycle.RequestAsync(db, id, JobLifecycle.Request.Resume, ct);
        if (o.NotFound) return (PauseOutcome.NotFound, null);
        if (o.Refused) return (PauseOutcome.WrongState, o.Job);
        bool withdrawn = o.From == JobLifecycle.Pausing;
        await AddEventAsync(db, id, withdrawn ? "Job resumed by request before its worker stopped; it keeps training" : "Job resumed by request", ct);
        if (!withdrawn) dispatcher.Signal();
        return (PauseOutcome.Done, o.Job);
    }

    static async Task AddEventAsync(AlignHubDb db, string id, string message, CancellationToken ct)
    {
        db.Events.Add(new JobEvent { JobId = id, CreatedAt = Ids.Now(), Level = "info", Type = "message", Message = message });
        await db.SaveChangesAsync(ct);
    }

    /// <summary>
    /// Moves on the jobs a dead process left behind (<see cref="JobLifecycle.ExpireLeasesAsync"/>): running ones back to
    /// the queue, pausing ones to paused, cancelling ones to cancelled. <paramref name="all"/> (the embedded default at
    /// start-up, where no other process can hold a job): every active job, and every queued one is handed to Hangfire
    /// again. Otherwise: active jobs whose lease has expired. Each job is moved by exactly one process.
    /// </summary>
    public async Task<int> RequeueOrphansAsync(bool all, TimeSpan lease, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var staleBefore = Ids.NowMs() - (long)lease.TotalMilliseconds;
        if (all) await db.Jobs.Where(j => j.Status == JobStatus.Queued).ExecuteUpdateAsync(s => s.SetProperty(j => j.EnqueuedAtMs, (long?)null), ct);
        var moved = await JobLifecycle.ExpireLeasesAsync(db, all, staleBefore, ct);
        foreach (var (id, _, to) in moved)
            db.Events.Add(new JobEvent
            {
                JobId = id, CreatedAt = Ids.Now(), Level = "warn", Type = "message",
                Message = to == JobStatus.Queued ? "Worker lost; job re-queued to resume from its last checkpoint" : $"Worker lost; job {to} (as it had been asked)",
            });
        await db.SaveChangesAsync(ct);
        if (all || moved.Any(m => m.To == JobStatus.Queued)) dispatcher.Signal();
        return moved.Count;
    }
}
