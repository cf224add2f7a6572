using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Evaluation;
using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Sft;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace AlignHub.Workers;

/// <summary>
/// Runs one fine-tuning job on the Hangfire worker thread (synchronously: TorchSharp dispose scopes are per thread).
/// Safe to run again: it claims the job with a conditional update (queued, or running with an expired lease), so a
/// job runs in one place at a time, and it resumes from the job's last checkpoint.
/// </summary>
public sealed class TrainingJob(IDbContextFactory<AlignHubDb> dbs, AlignHubOptions options, JobDispatcher dispatcher, FileService files, ILogger<TrainingJob> log) : ITrainingJob
{
    public static readonly string WorkerId = $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid().ToString("N")[..8]}";
    static readonly object TorchInit = new();
    static bool torchConfigured;

    public void Run(string jobId, CancellationToken cancellationToken)
    {
        using var db = dbs.CreateDbContext();
        var now = Ids.NowMs();
        var staleBefore = now - options.LeaseSeconds * 1000L;
        int claimed = db.Jobs
            .Where(j => j.Id == jobId && (j.Status == JobStatus.Queued || (j.Status == JobStatus.Running && j.HeartbeatAtMs < staleBefore)))
            .ExecuteUpdate(s => s
                .SetProperty(j => j.Status, JobStatus.Running)
                .SetProperty(j => j.LeaseOwner, WorkerId)
                .SetProperty(j => j.HeartbeatAtMs, now)
                .SetProperty(j => j.Attempts, j => j.Attempts + 1)
                .SetProperty(j => j.StartedAt, j => j.StartedAt ?? now / 1000));
        if (claimed == 0)
        {
            log.LogInformation("Job {JobId} is not claimable (finished, cancelled or running elsewhere); nothing to do", jobId);
            return;
        }
        var job = db.Jobs.AsNoTracking().Single(j => j.Id == jobId);
        using var reporter = new DbTrainingReporter(dbs, job, WorkerId, options);
        try
        {
            ConfigureTorch();
            if (job.MethodType == "generate")
            {
                var run = PrepareGenerate(db, job, reporter);
                var result = GenerateRunner.Run(run, reporter, cancellationToken);
                Finish(db, job, result, reporter, () =>
                {
                    var file = files.AddProduced(run.OutputPath, $"{job.Id}-generations.jsonl", FileService.ResultsPurpose, JsonlRows.Generations, run.Prompts.Count);
                    return (null, file.Id, $"Job succeeded: {run.Prompts.Count * run.Config.N} completions in file {file.Id}",
                        new Dictionary<string, object> { ["result_file"] = file.Id });
                });
            }
            else if (job.MethodType == "evaluate")
            {
                var run = PrepareEvaluate(db, job, reporter);
                var (result, metrics) = EvaluateRunner.Run(run, reporter);
                Finish(db, job, result, reporter, () =>
                {
                    var file = files.AddProduced(run.OutputPath, $"{job.Id}-evaluation.jsonl", FileService.ResultsPurpose, "evaluation",
                        File.ReadLines(run.OutputPath).Count());
                    var summary = string.Join(", ", metrics.Select(kv => $"{kv.Key} {kv.Value:0.###}"));
                    return (null, file.Id, $"Evaluation finished: {summary}", metrics.ToDictionary(kv => kv.Key, kv => (object)kv.Value));
                });
            }
            else if (job.MethodType is "dpo" or "reward_model")
            {
                var run = PreparePreference(db, job, reporter);
                var result = PreferenceTrainer.Train(run, reporter, cancellationToken);
                Finish(db, job, result, reporter, () => (RegisterFineTunedModel(db, job, result), null, null, null));
            }
            else
            {
                var run = PrepareRun(db, job, reporter);
                var result = SftTrainer.Train(run, reporter, cancellationToken);
                Finish(db, job, result, reporter, () => (RegisterFineTunedModel(db, job, result), null, null, null));
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            log.LogError(e, "Job {JobId} failed", jobId);
            var message = e is InvalidDataException or InvalidOperationException or FileNotFoundException ? e.Message : $"{e.GetType().Name}: {e.Message}";
            int n = db.Jobs.Where(j => j.Id == jobId && j.LeaseOwner == WorkerId && j.Status == JobStatus.Running)
                .ExecuteUpdate(s => s
                    .SetProperty(j => j.Status, JobStatus.Failed)
                    .SetProperty(j => j.FinishedAt, Ids.Now())
                    .SetProperty(j => j.ErrorCode, "training_error")
                    .SetProperty(j => j.ErrorMessage, message)
                    .SetProperty(j => j.LeaseOwner, (string?)null));
            if (n > 0) reporter.Event("error", $"Job failed: {message}");
        }
    }

    void ConfigureTorch()
    {
        lock (TorchInit)
        {
            if (torchConfigured) return;
            if (options.TorchThreads > 0) TorchSharp.torch.set_num_threads(options.TorchThreads);
            torchConfigured = true;
        }
    }

    SftRun PrepareRun(AlignHubDb db, FineTuningJob job, DbTrainingReporter reporter)
    {
        var model = FindModel(db, job.Model);
        var config = SftConfig.FromJson(job.ConfigJson);
        var train = LoadFile(db, job.TrainingFile);
        var valid = job.ValidationFile is null ? null : LoadFile(db, job.ValidationFile);

        var resume = ResumePoint(db, job, reporter);

        return new SftRun(
            SourceOf(model),
            train, valid, config,
            options.Resolve(Path.Combine("checkpoints", job.Id)),
            resume);
    }

    /// <summary>
    /// The job's last complete checkpoint folder (null: start fresh). Steps after it are trained again, so what they
    /// wrote is dropped first and no step is recorded twice.
    /// </summary>
    string? ResumePoint(AlignHubDb db, FineTuningJob job, DbTrainingReporter reporter)
    {
        var ckpt = db.Checkpoints.AsNoTracking().Where(c => c.JobId == job.Id).OrderByDescending(c => c.Step).FirstOrDefault();
        string? resume = ckpt is not null && Directory.Exists(options.Resolve(ckpt.StoragePath)) ? options.Resolve(ckpt.StoragePath) : null;
        int resumeStep = resume is null ? 0 : ckpt!.Step;
        db.Metrics.Where(m => m.JobId == job.Id && m.Step > resumeStep).ExecuteDelete();
        db.Checkpoints.Where(c => c.JobId == job.Id && c.Step > resumeStep).ExecuteDelete();
        var attempt = job.Attempts;
        reporter.Event("info", attempt == 1 ? $"Job started on worker {WorkerId}" : $"Job restarted on worker {WorkerId} (attempt {attempt})",
            new Dictionary<string, object> { ["worker"] = WorkerId, ["attempt"] = attempt });
        return resume;
    }

    PreferenceRun PreparePreference(AlignHubDb db, FineTuningJob job, DbTrainingReporter reporter)
    {
        var model = FindModel(db, job.Model);
        var config = PreferenceConfig.FromJson(job.ConfigJson);
        (List<PreferencePair>? Pairs, List<UnpairedExample>? Unpaired) Load(string fileId)
        {
            var file = FindFile(db, fileId);
            var path = options.Resolve(file.StoragePath);
            return file.Format == JsonlRows.UnpairedPreference ? (null, JsonlRows.LoadUnpaired(path).ToList()) : (JsonlRows.LoadPreferences(path).ToList(), null);
        }
        var train = Load(job.TrainingFile);
        var valid = job.ValidationFile is null ? ((List<PreferencePair>?)null, (List<UnpairedExample>?)null) : Load(job.ValidationFile);
        var resume = ResumePoint(db, job, reporter);
        // Reference log-probs depend on the reference model (its weights, or its seed when initialised at random),
        // the data and the tokenisation: jobs that share all of them share the cache.
        var fingerprint = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Join("\n",
            model.Id, model.WeightsPath ?? $"seed:{config.Seed}", model.ConfigJson, model.Tokenizer, job.TrainingFile, job.ValidationFile ?? "",
            config.MaxLength?.ToString() ?? "", config.MaxPromptLength?.ToString() ?? "", config.BatchSize.ToString(), config.LossType == "kto" ? "kto" : "pairs"))))[..32].ToLowerInvariant();
        return new PreferenceRun(
            SourceOf(model),
            job.MethodType, train.Pairs ?? [], valid.Item1, config, options.Resolve(Path.Combine("checkpoints", job.Id)), resume,
            options.Resolve(Path.Combine("refcache", fingerprint + ".json")), train.Unpaired, valid.Item2);
    }

    EvaluateRun PrepareEvaluate(AlignHubDb db, FineTuningJob job, DbTrainingReporter reporter)
    {
        var config = EvaluateConfig.FromJson(job.ConfigJson);
        ModelSource Source(string id) => SourceOf(FindModel(db, id));
        var model = FindModel(db, job.Model);
        // The reference of a trained policy defaults to the model its training job started from.
        var referenceId = config.ReferenceModel ?? (model.ParentJobId is { } parent ? db.Jobs.AsNoTracking().Where(j => j.Id == parent).Select(j => j.Model).FirstOrDefault() : null);
        var file = FindFile(db, job.TrainingFile);
        var pairs = JsonlRows.LoadPreferences(options.Resolve(file.StoragePath)).ToList();
        db.Metrics.Where(m => m.JobId == job.Id).ExecuteDelete();
        reporter.Event("info", $"Evaluating {job.Model} on {pairs.Count} pairs" + (referenceId is null ? "" : $" against {referenceId}") +
            (config.RewardModel is null ? "" : $", judged by {config.RewardModel}"));
        var output = Path.Combine(options.FullDataDir, "jobs", job.Id, "evaluation.jsonl");
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        return new EvaluateRun(Source(job.Model), referenceId is null ? null : Source(referenceId),
            config.RewardModel is null ? null : Source(config.RewardModel), pairs, config, output);
    }

    GenerateRun PrepareGenerate(AlignHubDb db, FineTuningJob job, DbTrainingReporter reporter)
    {
        var model = FindModel(db, job.Model);
        var file = FindFile(db, job.TrainingFile);
        var prompts = JsonlRows.LoadPrompts(options.Resolve(file.StoragePath)).ToList();
        db.Metrics.Where(m => m.JobId == job.Id).ExecuteDelete(); // a re-run generates again from the first batch
        reporter.Event("info", job.Attempts == 1 ? $"Job started on worker {WorkerId}" : $"Job restarted on worker {WorkerId} (attempt {job.Attempts}); generating again from the start",
            new Dictionary<string, object> { ["worker"] = WorkerId, ["attempt"] = job.Attempts });
        var output = Path.Combine(options.FullDataDir, "jobs", job.Id, "generations.jsonl");
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        return new GenerateRun(SourceOf(model),
            model.Id, prompts, GenerateConfig.FromJson(job.ConfigJson), output);
    }

    static ModelRecord FindModel(AlignHubDb db, string id) =>
        ModelService.Find(db, id) ?? throw new InvalidDataException($"model \"{id}\" is no longer registered");

    /// <summary>Where a model's config, tokenizer and weights are on this worker.</summary>
    ModelSource SourceOf(ModelRecord m) => new(m.ConfigJson, m.Tokenizer, m.WeightsPath is null ? null : options.Resolve(m.WeightsPath));

    FileRecord FindFile(AlignHubDb db, string fileId) =>
        db.Files.AsNoTracking().SingleOrDefault(f => f.Id == fileId) ?? throw new InvalidDataException($"file \"{fileId}\" no longer exists");

    List<SupervisedExample> LoadFile(AlignHubDb db, string fileId) => JsonlRows.LoadSupervised(options.Resolve(FindFile(db, fileId).StoragePath)).ToList();

    /// <summary>Registers the final checkpoint as the fine-tuned model (once, even when the job runs again).</summary>
    string RegisterFineTunedModel(AlignHubDb db, FineTuningJob job, TrainingResult result)
    {
        var name = job.FineTunedModelName;
        var baseModel = FindModel(db, job.Model);
        if (!db.Models.Any(m => m.Id == name))
        {
            db.Models.Add(new ModelRecord
            {
                Id = name, CreatedAt = Ids.Now(), OwnedBy = "user", Architecture = baseModel.Architecture,
                ConfigJson = File.Exists(Path.Combine(result.LastCheckpoint!, Checkpoints.ModelConfig))
                    ? File.ReadAllText(Path.Combine(result.LastCheckpoint!, Checkpoints.ModelConfig)) : baseModel.ConfigJson,
                Tokenizer = baseModel.Tokenizer,
                WeightsPath = Path.GetRelativePath(options.FullDataDir, result.LastCheckpoint!),
                ParentJobId = job.Id, Parameters = baseModel.Parameters,
            });
            db.SaveChanges();
        }
        return name;
    }

    /// <param name="complete">On success: the fine-tuned model or result file, and the closing event (null: the default).</param>
    void Finish(AlignHubDb db, FineTuningJob job, TrainingResult result, DbTrainingReporter reporter,
        Func<(string? Model, string? ResultFile, string? Message, Dictionary<string, object>? Data)> complete)
    {
        switch (result.Outcome)
        {
            case TrainingOutcome.Completed:
            {
                var (name, resultFile, message, data) = complete();
                int n = db.Jobs.Where(j => j.Id == job.Id && j.LeaseOwner == WorkerId && j.Status == JobStatus.Running)
                    .ExecuteUpdate(s => s
                        .SetProperty(j => j.Status, JobStatus.Succeeded)
                        .SetProperty(j => j.FinishedAt, Ids.Now())
                        .SetProperty(j => j.FineTunedModel, name)
                        .SetProperty(j => j.ResultFile, resultFile)
                        .SetProperty(j => j.TrainedTokens, result.TrainedTokens)
                        .SetProperty(j => j.EstimatedFinish, (long?)null)
                        .SetProperty(j => j.LeaseOwner, (string?)null));
                if (n > 0)
                    reporter.Event("info", message ?? $"Job succeeded: fine-tuned model {name}",
                        data ?? new Dictionary<string, object> { ["fine_tuned_model"] = name! });
                break;
            }
            case TrainingOutcome.Cancelled:
                if (reporter.PauseRequested)
                {
                    // Let go of the job, so resume can hand it to any worker.
                    db.Jobs.Where(j => j.Id == job.Id && j.LeaseOwner == WorkerId && j.Status == JobStatus.Paused)
                        .ExecuteUpdate(s => s.SetProperty(j => j.LeaseOwner, (string?)null));
                    reporter.Event("info", $"Job paused at step {result.Step}" + (result.LastCheckpoint is null ? "" : "; it resumes from the checkpoint of that step"));
                }
                else
                    reporter.Event("info", reporter.LeaseLost ? $"Worker {WorkerId} lost the job's lease at step {result.Step} and stopped" : $"Training stopped at step {result.Step}: job cancelled");
                break;
            case TrainingOutcome.Interrupted:
            {
                int n = db.Jobs.Where(j => j.Id == job.Id && j.LeaseOwner == WorkerId && j.Status == JobStatus.Running)
                    .ExecuteUpdate(s => s.SetProperty(j => j.Status, JobStatus.Queued).SetProperty(j => j.LeaseOwner, (string?)null)
                        .SetProperty(j => j.EnqueuedAtMs, (long?)null));
                if (n > 0)
                {
                    reporter.Event("warn", result.LastCheckpoint is null
                        ? $"Worker shutting down at step {result.Step}; job re-queued"
                        : $"Worker shutting down: checkpoint saved at step {result.Step}; job re-queued");
                    dispatcher.Signal(); // this process's dispatcher, or any other's within seconds, or the next start's
                }
                break;
            }
        }
    }
}
