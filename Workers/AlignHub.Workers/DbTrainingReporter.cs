using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Workers;

/// <summary>
/// Writes a trainer's progress, metrics, events and checkpoints to the database, and holds the job's lease: a timer
/// renews the heartbeat while the job runs. <see cref="Poll"/> reads the job's state (<see cref="JobLifecycle"/>:
/// cancelling and pausing are requests waiting for this worker) and the lease once per step, so a cancel or pause is
/// honoured within one step and a worker that lost the job stops. Metrics are stored under their own names; OpenAI's aliases
/// (<see cref="MetricNames.OpenAiAliases"/>) are added to metrics events and checkpoints, which OpenAI's SDK reads.
/// While the database is unreachable every write waits for it (the trainer stops at that step) and goes on when it is
/// back, so no metric row is lost; a write that reached the database before the connection broke is not repeated (the
/// unique index on (job, name, step) tells), so none is duplicated. After a long outage the lease may have gone to
/// another worker: the next <see cref="Poll"/> says so and this one stops.
/// </summary>
public sealed class DbTrainingReporter : ITrainingReporter, IDisposable
{
    readonly IDbContextFactory<AlignHubDb> dbs;
    readonly AlignHubDb db;
    readonly FineTuningJob job;
    readonly string workerId;
    readonly AlignHubOptions options;
    readonly Timer heartbeat;
    readonly CancellationTokenSource stopping = new();
    public bool LeaseLost { get; private set; }

    /// <summary>
    /// Fires when the job is cancelled (or taken from this worker), seen by the heartbeat: what slow calls inside a
    /// step (a grader's judge, a score_model request) take, so a cancel need not wait for them to answer.
    /// </summary>
    public CancellationToken Stopping => stopping.Token;

    public DbTrainingReporter(IDbContextFactory<AlignHubDb> dbs, FineTuningJob job, string workerId, AlignHubOptions options)
    {
        this.dbs = dbs;
        this.job = job;
        this.workerId = workerId;
        this.options = options;
        db = dbs.CreateDbContext();
        var every = TimeSpan.FromSeconds(Math.Max(1, options.LeaseSeconds / 4.0));
        heartbeat = new Timer(_ => Beat(), null, every, every);
    }

    void Beat()
    {
        try
        {
            using var hb = dbs.CreateDbContext();
            var now = Ids.NowMs();
            int n = hb.Jobs.Where(j => j.Id == job.Id && j.LeaseOwner == workerId)
                .ExecuteUpdate(s => s.SetProperty(j => j.HeartbeatAtMs, now));
            if (n == 0) LeaseLost = true;
            if (n == 0 || hb.Jobs.AsNoTracking().Where(j => j.Id == job.Id).Select(j => j.Status).FirstOrDefault() == JobLifecycle.Cancelling)
                stopping.Cancel();
        }
        catch { /* a missed beat is retried on the next tick */ }
    }

    public void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null)
    {
        db.Events.Add(new JobEvent
        {
            JobId = job.Id, CreatedAt = Ids.Now(), Level = level, Type = "message", Message = DbText.Clean(message),
            DataJson = data is null ? null : JsonSerializer.Serialize(data),
        });
        Save();
    }

    public void Step(TrainingProgress p, IReadOnlyDictionary<string, double>? metrics)
    {
        var now = Ids.Now();
        if (metrics is not null)
        {
            foreach (var (name, value) in metrics)
                db.Metrics.Add(new JobMetric { JobId = job.Id, Step = p.Step, Name = name, Value = value, CreatedAt = now });
            db.Events.Add(new JobEvent
            {
                JobId = job.Id, CreatedAt = now, Level = "info", Type = "metrics",
                Message = $"Step {p.Step}/{p.TotalSteps}: " + string.Join(", ", metrics.Select(m => $"{m.Key}={m.Value:G4}")),
                DataJson = JsonSerializer.Serialize(new Dictionary<string, double>(MetricNames.WithOpenAiAliases(metrics)) { ["step"] = p.Step, ["total_steps"] = p.TotalSteps }),
            });
            Save();
        }
        long? eta = p.SecondsRemaining is double s ? now + (long)Math.Ceiling(s) : null;
        int n = Durably(() => db.Jobs.Where(j => j.Id == job.Id && j.LeaseOwner == workerId
                && (j.Status == JobStatus.Running || j.Status == JobLifecycle.Pausing || j.Status == JobLifecycle.Cancelling)).ExecuteUpdate(u => u
            .SetProperty(j => j.StepsCompleted, p.Step)
            .SetProperty(j => j.TotalSteps, p.TotalSteps)
            .SetProperty(j => j.EpochsCompleted, p.EpochsCompleted)
            .SetProperty(j => j.TrainedTokens, p.TrainedTokens)
            .SetProperty(j => j.EstimatedFinish, eta)
            .SetProperty(j => j.HeartbeatAtMs, Ids.NowMs())));
        if (n == 0) LeaseLost = true;
    }

    public void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics)
    {
        var relative = Path.GetRelativePath(options.FullDataDir, directory);
        if (Durably(() => db.Checkpoints.Any(c => c.JobId == job.Id && c.Step == step))) return;
        db.Checkpoints.Add(new JobCheckpoint
        {
            Id = Ids.New("ftckpt-"), JobId = job.Id, Step = step, CreatedAt = Ids.Now(), StoragePath = relative,
            MetricsJson = JsonSerializer.Serialize(MetricNames.WithOpenAiAliases(metrics)),
            ModelName = $"{job.FineTunedModelName}:ckpt-step-{step}",
        });
        db.Events.Add(new JobEvent
        {
            JobId = job.Id, CreatedAt = Ids.Now(), Level = "info", Type = "message",
            Message = $"Checkpoint saved at step {step}", DataJson = JsonSerializer.Serialize(new { step }),
        });
        Save();
    }

    public void Samples(int step, IReadOnlyList<SampleRecord> samples)
    {
        var now = Ids.Now();
        for (int i = 0; i < samples.Count; i++)
        {
            var x = samples[i];
            db.Samples.Add(new JobSample
            {
                JobId = job.Id, Step = step, Index = i, Prompt = DbText.Clean(x.Prompt), Completion = DbText.Clean(x.Completion), Reward = x.Reward,
                RewardsJson = JsonSerializer.Serialize(x.Rewards), Advantage = x.Advantage, FinishReason = x.FinishReason, CreatedAt = now,
            });
        }
        Save();
    }

    public ControlSignal Poll()
    {
        if (LeaseLost) return ControlSignal.LeaseLost;
        var row = Durably(() => db.Jobs.AsNoTracking().Where(j => j.Id == job.Id).Select(j => new { j.Status, j.LeaseOwner }).Single());
        if (row.LeaseOwner != workerId || !JobLifecycle.IsActive(row.Status)) { LeaseLost = true; return ControlSignal.LeaseLost; }
        return row.Status switch
        {
            JobLifecycle.Cancelling => ControlSignal.Cancel,
            JobLifecycle.Pausing => ControlSignal.Pause,
            _ => ControlSignal.Continue,
        };
    }

    void Save() => Durably(() =>
    {
        try { db.SaveChanges(); }
        catch (DbUpdateException e) when (retrying && DatabaseErrors.IsUniqueViolation(e)) { /* the attempt before the outage had committed */ }
        db.ChangeTracker.Clear();
        return 0;
    });

    bool retrying;
    /// <summary>The longest a write waits for the database before the job fails.</summary>
    static readonly TimeSpan MaxOutage = TimeSpan.FromMinutes(15);

    /// <summary>Runs a database write, and while the database is unreachable waits (1 s, doubling to 15 s) and tries again.</summary>
    T Durably<T>(Func<T> write)
    {
        var started = DateTime.UtcNow;
        var delay = TimeSpan.FromSeconds(1);
        while (true)
        {
            try
            {
                var result = write();
                if (retrying)
                {
                    retrying = false;
                    var waited = (DateTime.UtcNow - started).TotalSeconds;
                    db.Events.Add(new JobEvent
                    {
                        JobId = job.Id, CreatedAt = Ids.Now(), Level = "warn", Type = "message",
                        Message = $"The database was unreachable; training waited {waited:F0} s and went on", DataJson = JsonSerializer.Serialize(new { waited_seconds = waited }),
                    });
                    try { db.SaveChanges(); } catch (Exception e) when (DatabaseErrors.IsOutage(e)) { } // the note is not worth another wait
                    db.ChangeTracker.Clear();
                }
                return result;
            }
            catch (Exception e) when (DatabaseErrors.IsOutage(e) && DateTime.UtcNow - started < MaxOutage)
            {
                retrying = true;
                Thread.Sleep(delay);
                delay = TimeSpan.FromSeconds(Math.Min(15, delay.TotalSeconds * 2));
            }
        }
    }

    public void Dispose()
    {
        heartbeat.Dispose();
        stopping.Dispose();
        db.Dispose();
    }
}
