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
        if (configValid) await method.ValidateAsync(new JobCheck(db, model, config, method.Prefix, ConfigErr), ct);
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

    static async Task CheckFile(AlignHubDb db, string id, string field, JobMethod method, IReadOnlyList<string> formats, Action<string, string> err, CancellationToken ct)
    {
        var f = await db.Files.FindAsync([id], ct);
        if (f is null) err(field, $"file \"{id}\" does not exist");
        else if (f.Purpose != "fine-tune") err(field, $"file \"{id}\" has purpose \"{f.Purpose}\", not \"fine-tune\"");
        else if (!formats.Contains(f.Format)) err(field, $"file \"{id}\" holds {f.Format} rows; {method.Name} needs {method.FileHint}");
    }

    public enum CancelOutcome { Cancelled, NotFound, AlreadyFinished }

    /// <summary>
    /// Cancels a job that has not finished: it is cancelled at once for everyone who reads it, and a worker that
    /// holds it is told through the control channel (<see cref="FineTuningJob.RequestedAction"/>), which its
    /// training engine reads before every step.
    /// </summary>
    public async Task<(CancelOutcome, FineTuningJob?)> CancelAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var now = Ids.Now();
        var n = await db.Jobs
            .Where(j => j.Id == id && (j.Status == JobStatus.Queued || j.Status == JobStatus.Running || j.Status == JobStatus.ValidatingFiles || j.Status == JobStatus.Paused))
            .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, JobStatus.Cancelled).SetProperty(j => j.FinishedAt, now)
                .SetProperty(j => j.RequestedAction, j => j.LeaseOwner == null ? null : JobControl.Cancel), ct);
        var job = await db.Jobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, ct);
        if (job is null) return (CancelOutcome.NotFound, null);
        if (n == 0) return (CancelOutcome.AlreadyFinished, job);
        db.Events.Add(new JobEvent { JobId = id, CreatedAt = now, Level = "info", Type = "message", Message = "Job cancelled by request" });
        await db.SaveChangesAsync(ct);
        return (CancelOutcome.Cancelled, job);
    }

    public enum PauseOutcome { Done, NotFound, WrongState }

    /// <summary>
    /// Pauses a queued or running job. A queued one simply waits; a running one's worker reads the request at its
    /// next step, saves a checkpoint and lets go of the job.
    /// </summary>
    public async Task<(PauseOutcome, FineTuningJob?)> PauseAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var n = await db.Jobs.Where(j => j.Id == id && (j.Status == JobStatus.Queued || j.Status == JobStatus.Running || j.Status == JobStatus.ValidatingFiles))
            .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, JobStatus.Paused)
                .SetProperty(j => j.RequestedAction, j => j.LeaseOwner == null ? null : JobControl.Pause), ct);
        var job = await db.Jobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, ct);
        if (job is null) return (PauseOutcome.NotFound, null);
        if (n == 0) return (PauseOutcome.WrongState, job);
        db.Events.Add(new JobEvent { JobId = id, CreatedAt = Ids.Now(), Level = "info", Type = "message", Message = "Job paused by request" });
        await db.SaveChangesAsync(ct);
        return (PauseOutcome.Done, job);
    }

    /// <summary>
    /// Resumes a paused job. Released by its worker (or never started): queued again, and a worker resumes it from
    /// its last checkpoint. Still held by a worker that has not reached its next step: the pause request is
    /// withdrawn and the job simply keeps training.
    /// </summary>
    public async Task<(PauseOutcome, FineTuningJob?)> ResumeAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var n = await db.Jobs.Where(j => j.Id == id && j.Status == JobStatus.Paused && j.LeaseOwner == null)
            .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, JobStatus.Queued).SetProperty(j => j.EnqueuedAtMs, (long?)null)
                .SetProperty(j => j.RequestedAction, (string?)null), ct);
        bool withdrawn = false;
        if (n == 0)
        {
            n = await db.Jobs.Where(j => j.Id == id && j.Status == JobStatus.Paused && j.LeaseOwner != null && j.RequestedAction == JobControl.Pause)
                .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, JobStatus.Running).SetProperty(j => j.RequestedAction, (string?)null), ct);
            withdrawn = n > 0;
        }
        var job = await db.Jobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, ct);
        if (job is null) return (PauseOutcome.NotFound, null);
        if (n == 0) return (PauseOutcome.WrongState, job);
        db.Events.Add(new JobEvent { JobId = id, CreatedAt = Ids.Now(), Level = "info", Type = "message",
            Message = withdrawn ? "Job resumed by request before its worker stopped; it keeps training" : "Job resumed by request" });
        await db.SaveChangesAsync(ct);
        if (!withdrawn) dispatcher.Signal();
        return (PauseOutcome.Done, job);
    }

    /// <summary>
    /// Puts jobs back on the queue that a dead process left behind. <paramref name="all"/> (the embedded default at
    /// start-up, where no other process can hold a job): every queued or running job. Otherwise: running jobs whose
    /// lease has expired. The conditional update makes exactly one process re-queue each job.
    /// </summary>
    public async Task<int> RequeueOrphansAsync(bool all, TimeSpan lease, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var staleBefore = Ids.NowMs() - (long)lease.TotalMilliseconds;
        System.Linq.Expressions.Expression<Func<FineTuningJob, bool>> orphan = all
            ? j => j.Status == JobStatus.Queued || j.Status == JobStatus.Running
            : j => j.Status == JobStatus.Running && j.HeartbeatAtMs < staleBefore;
        var candidates = await db.Jobs.Where(orphan).Select(j => j.Id).ToListAsync(ct);
        int count = 0;
        foreach (var id in candidates)
        {
            int n = await db.Jobs.Where(j => j.Id == id).Where(orphan)
                .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, JobStatus.Queued).SetProperty(j => j.LeaseOwner, (string?)null)
                    .SetProperty(j => j.EnqueuedAtMs, (long?)null).SetProperty(j => j.RequestedAction, (string?)null), ct);
            if (n == 0) continue;
            db.Events.Add(new JobEvent { JobId = id, CreatedAt = Ids.Now(), Level = "warn", Type = "message", Message = "Worker lost; job re-queued to resume from its last checkpoint" });
            await db.SaveChangesAsync(ct);
            count++;
        }
        if (count > 0) dispatcher.Signal();
        return count;
    }
}
