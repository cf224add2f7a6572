using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Engine;
using AlignHub.Training.Methods;
using AlignHub.Training.Models;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace AlignHub.Workers;

/// <summary>
/// Runs one job on the Hangfire worker thread (synchronously: TorchSharp dispose scopes are per thread), whatever
/// its method: it claims the job, hands it to the method's runner (<see cref="MethodRunners"/>), and acts on the
/// outcome the runner returns, through <see cref="JobLifecycle"/>'s transitions. Safe to run again: the claim is a
/// conditional update (queued, or running with an expired lease), so a job runs in one place at a time, and a
/// resumable method resumes from its last checkpoint.
/// </summary>
public sealed class TrainingJob(IDbContextFactory<AlignHubDb> dbs, AlignHubOptions options, JobDispatcher dispatcher, FileService files, ILogger<TrainingJob> log,
    IServiceProvider services) : ITrainingJob
{
    public static readonly string WorkerId = $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid().ToString("N")[..8]}";
    static readonly object TorchInit = new();
    static bool torchConfigured;

    public void Run(string jobId, CancellationToken cancellationToken)
    {
        using var db = dbs.CreateDbContext();
        var now = Ids.NowMs();
        if (!JobLifecycle.Claim(db, jobId, WorkerId, now, now - options.LeaseSeconds * 1000L))
        {
            log.LogInformation("Job {JobId} is not claimable (finished, cancelled, paused or running elsewhere); nothing to do", jobId);
            return;
        }
        var job = db.Jobs.AsNoTracking().Single(j => j.Id == jobId);
        using var reporter = new DbTrainingReporter(dbs, job, WorkerId, options);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, reporter.Stopping);
        try
        {
            var method = Methods.Get(job.MethodType);
            var runner = MethodRunners.For(method.ConfigType);
            ConfigureTorch();
            var device = Devices.Resolve(options.Worker.Device);
            var judges = new Domain.Inference.JudgeClient((Domain.Inference.IInferenceService?)services.GetService(typeof(Domain.Inference.IInferenceService)),
                id => { using var d = dbs.CreateDbContext(); return ModelService.Find(d, id); });
            Judge? findJudge(string id) { using var d = dbs.CreateDbContext(); return d.Judges.AsNoTracking().FirstOrDefault(j => j.Id == id); }
            var ctx = new MethodContext
            {
                Job = JobSpec.Of(job),
                Config = method.ParseConfig(job.ConfigJson),
                Device = device,
                FindModel = id => ModelService.Find(db, id) ?? throw new InvalidDataException($"model \"{id}\" is no longer registered"),
                Source = m => ModelSources.Of(db, options, m),
                FindFile = id => db.Files.AsNoTracking().SingleOrDefault(f => f.Id == id) ?? throw new InvalidDataException($"file \"{id}\" no longer exists"),
                StartingModelOf = id => db.Jobs.AsNoTracking().Where(j => j.Id == id).Select(j => j.Model).FirstOrDefault(),
                CheckpointsOf = id => db.Checkpoints.AsNoTracking().Where(x => x.JobId == id).OrderBy(x => x.Step).Select(x => new { x.Step, x.ModelName })
                    .AsEnumerable().Select(x => (x.Step, x.ModelName)).ToList(),
                CheckpointStepOf = name => db.Checkpoints.AsNoTracking().Where(x => x.ModelName == name).Select(x => (int?)x.Step).FirstOrDefault(),
                Resolve = options.Resolve,
                CheckpointRoot = options.Resolve(Path.Combine("checkpoints", job.Id)),
                ResumeFrom = Prepare(db, job, runner.Resumable, reporter, device),
                OutputFolder = options.Resolve(Path.Combine("jobs", job.Id)),
                // Judges and score_model graders ask their models through this process's model server or a judge's endpoint.
                Judges = judges,
                Stopping = stop.Token,
                FindJudge = findJudge,
                GraderAsk = judges.GraderAsk(findJudge, stop.Token),
            };
            var outcome = runner.Run(ctx, reporter, cancellationToken);
            Finish(db, job, method, outcome, reporter);
        }
        catch (Exception e) when (IsCancellation(e) && reporter.Stopping.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            // A slow call inside a step (a judge) was abandoned because the job was cancelled or taken from this worker.
            if (JobLifecycle.Observe(db, jobId, WorkerId, JobLifecycle.Observation.StoppedForCancel) is not null)
                reporter.Event("info", "Training stopped inside a step: job cancelled while a grader or judge was waiting for its model");
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            log.LogError(e, "Job {JobId} failed", jobId);
            var message = e is InvalidDataException or InvalidOperationException or FileNotFoundException ? e.Message : $"{e.GetType().Name}: {e.Message}";
            var moved = JobLifecycle.Observe(db, jobId, WorkerId, JobLifecycle.Observation.Failed, s => s
                .SetProperty(j => j.ErrorCode, "training_error")
                .SetProperty(j => j.ErrorMessage, message));
            if (moved is var (from, _))
                reporter.Event("error", $"Job failed: {message}" + (from == JobLifecycle.Cancelling ? " (it failed before the cancel request was read)" : ""));
        }
    }

    /// <summary>A cancellation, or several at once (graders of a batch ask in parallel, and PLINQ gathers their exceptions).</summary>
    static bool IsCancellation(Exception e) =>
        e is OperationCanceledException || e is AggregateException a && a.Flatten().InnerExceptions.All(x => x is OperationCanceledException);

    void ConfigureTorch()
    {
        lock (TorchInit)
        {
            if (torchConfigured) return;
            if (options.TorchThreads > 0) TorchSharp.torch.set_num_threads(options.TorchThreads);
            torchConfigured = true;
        }
    }

    /// <summary>
    /// The job's last complete checkpoint folder for a resumable method (null: start fresh). Steps after it are run
    /// again, so what they wrote is dropped first and no step is recorded twice; a method that is not resumable
    /// starts over, so all its metrics go.
    /// </summary>
    string? Prepare(AlignHubDb db, FineTuningJob job, bool resumable, DbTrainingReporter reporter, TorchSharp.torch.Device device)
    {
        string? resume = null;
        int resumeStep = 0;
        if (resumable)
        {
            var ckpt = db.Checkpoints.AsNoTracking().Where(c => c.JobId == job.Id).OrderByDescending(c => c.Step).FirstOrDefault();
            if (ckpt is not null && Directory.Exists(options.Resolve(ckpt.StoragePath))) (resume, resumeStep) = (options.Resolve(ckpt.StoragePath), ckpt.Step);
        }
        db.Metrics.Where(m => m.JobId == job.Id && m.Step > resumeStep).ExecuteDelete();
        db.Checkpoints.Where(c => c.JobId == job.Id && c.Step > resumeStep).ExecuteDelete();
        db.Samples.Where(x => x.JobId == job.Id && x.Step > resumeStep).ExecuteDelete();
        var attempt = job.Attempts;
        var restart = resumable ? "" : "; running again from the start";
        reporter.Event("info", attempt == 1 ? $"Job started on worker {WorkerId} ({device})" : $"Job restarted on worker {WorkerId} ({device}, attempt {attempt}){restart}",
            new Dictionary<string, object> { ["worker"] = WorkerId, ["attempt"] = attempt, ["device"] = device.ToString() });
        return resume;
    }

    /// <summary>Registers the final checkpoint as the fine-tuned model (once, even when the job runs again).</summary>
    string RegisterFineTunedModel(AlignHubDb db, FineTuningJob job, string folder)
    {
        var name = job.FineTunedModelName;
        var baseModel = ModelService.Find(db, job.Model) ?? throw new InvalidDataException($"model \"{job.Model}\" is no longer registered");
        if (!db.Models.Any(m => m.Id == name))
        {
            db.Models.Add(new ModelRecord
            {
                Id = name, CreatedAt = Ids.Now(), OwnedBy = "user", Architecture = baseModel.Architecture,
                ConfigJson = File.Exists(Path.Combine(folder, Checkpoints.ModelConfig)) ? File.ReadAllText(Path.Combine(folder, Checkpoints.ModelConfig)) : baseModel.ConfigJson,
                Tokenizer = baseModel.Tokenizer,
                WeightsPath = Path.GetRelativePath(options.FullDataDir, folder),
                ParentJobId = job.Id, Parameters = baseModel.Parameters,
            });
            db.SaveChanges();
        }
        return name;
    }

    /// <summary>
    /// Acts on the outcome the run returned: the observation's transition from the state the job is in now (a request
    /// may have moved it meanwhile), written only while this worker still holds the job, which it then lets go of.
    /// </summary>
    void Finish(AlignHubDb db, FineTuningJob job, JobMethod method, MethodOutcome outcome, DbTrainingReporter reporter)
    {
        var result = outcome.Result;
        (string From, string To)? Observe(JobLifecycle.Observation o, Action<Microsoft.EntityFrameworkCore.Query.UpdateSettersBuilder<FineTuningJob>>? extra = null) =>
            JobLifecycle.Observe(db, job.Id, WorkerId, o, extra);
        switch (result.Outcome)
        {
            case TrainingOutcome.Completed:
            {
                string? model = method.ProducesModel ? RegisterFineTunedModel(db, job, outcome.ModelFolder!) : null;
                string? resultFile = outcome.File is { } f ? files.AddProduced(f.Path, f.Filename, FileService.ResultsPurpose, f.Format, f.Rows).Id : null;
                if (Observe(JobLifecycle.Observation.Completed, s => s
                        .SetProperty(j => j.FineTunedModel, model)
                        .SetProperty(j => j.ResultFile, resultFile)
                        .SetProperty(j => j.TrainedTokens, result.TrainedTokens)) is var (from, _))
                {
                    var data = new Dictionary<string, object>(outcome.Data ?? new Dictionary<string, object>());
                    if (model is not null) data["fine_tuned_model"] = model;
                    if (resultFile is not null) data["result_file"] = resultFile;
                    var note = from == JobLifecycle.Cancelling ? " (its last step was done before the cancel request was read)" : "";
                    reporter.Event("info", (outcome.Message ?? $"Job succeeded: fine-tuned model {model}").Replace("{result_file}", resultFile) + note, data);
                }
                break;
            }
            case TrainingOutcome.Cancelled:
                if (Observe(JobLifecycle.Observation.StoppedForCancel) is not null)
                    reporter.Event("info", $"Training stopped at step {result.Step}: job cancelled");
                break;
            case TrainingOutcome.Paused:
                switch (Observe(JobLifecycle.Observation.StoppedForPause))
                {
                    case (_, JobStatus.Paused):
                        reporter.Event("info", $"Job paused at step {result.Step}" + (result.LastCheckpoint is null ? "" : "; it resumes from the checkpoint of that step"));
                        break;
                    case (_, JobStatus.Queued):
                        dispatcher.Signal();
                        reporter.Event("info", $"Pause withdrawn after the worker stopped at step {result.Step}; job re-queued to resume from its checkpoint");
                        break;
                    case (_, JobStatus.Cancelled):
                        reporter.Event("info", $"Training stopped at step {result.Step}: job cancelled");
                        break;
                }
                break;
            case TrainingOutcome.Interrupted:
                switch (Observe(JobLifecycle.Observation.ShutDown))
                {
                    case (_, JobStatus.Queued):
                        dispatcher.Signal(); // this process's dispatcher, or any other's within seconds, or the next start's
                        reporter.Event("warn", result.LastCheckpoint is null
                            ? $"Worker shutting down at step {result.Step}; job re-queued"
                            : $"Worker shutting down: checkpoint saved at step {result.Step}; job re-queued");
                        break;
                    case (_, var to):
                        reporter.Event("info", $"Worker shutting down at step {result.Step}; job {to}, as it had been asked");
                        break;
                }
                break;
            case TrainingOutcome.LeaseLost:
                reporter.Event("warn", $"Worker {WorkerId} lost the job's lease at step {result.Step} and stopped");
                break; // the job is someone else's now
        }
    }
}
