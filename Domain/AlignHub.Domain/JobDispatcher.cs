using Hangfire;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>
/// Hands queued jobs to Hangfire (an outbox): a request only writes the job row and calls <see cref="Signal"/>; the
/// dispatcher loop (<c>JobDispatchService</c> in every process) enqueues each queued job whose
/// <see cref="FineTuningJob.EnqueuedAtMs"/> is null, then stamps it. A crash between the two, or two processes
/// dispatching the same row, enqueues an id twice, which is harmless: a worker claims a job with a conditional update,
/// so the second run finds nothing to do. A job row can never be left without its queue entry.
/// </summary>
public sealed class JobDispatcher(IDbContextFactory<AlignHubDb> dbs, IBackgroundJobClient hangfire, AlignHubOptions options)
{
    readonly SemaphoreSlim signal = new(0, 1);

    /// <summary>New work: wake the loop now (it also looks every few seconds, for rows other processes wrote).</summary>
    public void Signal()
    {
        if (signal.CurrentCount == 0) try { signal.Release(); } catch (SemaphoreFullException) { }
    }

    public async Task WaitAsync(TimeSpan timeout, CancellationToken ct) => await signal.WaitAsync(timeout, ct);

    /// <summary>Enqueues every undispatched queued job, oldest first; returns how many.</summary>
    public async Task<int> DispatchPendingAsync(CancellationToken ct)
    {
        int count = 0;
        while (true)
        {
            await using var db = await dbs.CreateDbContextAsync(ct);
            var jobs = await db.Jobs.AsNoTracking().Where(j => j.Status == JobStatus.Queued && j.EnqueuedAtMs == null)
                .OrderBy(j => j.CreatedAtMs).Select(j => new { j.Id, j.Device }).Take(500).ToListAsync(ct);
            if (jobs.Count == 0) return count;
            // A few at a time: each Hangfire enqueue is a short synchronous transaction of its own.
            await Parallel.ForEachAsync(jobs, new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = ct }, async (job, token) =>
            {
                var id = job.Id;
                hangfire.Enqueue<ITrainingJob>(JobResources.QueueFor(job.Device), j => j.Run(id, CancellationToken.None));
                await using var one = await dbs.CreateDbContextAsync(token);
                await one.Jobs.Where(j => j.Id == id).ExecuteUpdateAsync(s => s.SetProperty(j => j.EnqueuedAtMs, Ids.NowMs())
                    .SetProperty(j => j.NoWorkerNoticeAtMs, (long?)null), token);
                Interlocked.Increment(ref count);
            });
        }
    }

    /// <summary>
    /// Says so in its events when a job handed to Hangfire at least <paramref name="grace"/> ago still waits and no
    /// live worker serves its queue (once per hand-over), naming the workers there are; returns how many were told.
    /// </summary>
    public async Task<int> NoticeUnservedAsync(TimeSpan grace, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var before = Ids.NowMs() - (long)grace.TotalMilliseconds;
        var waiting = await db.Jobs.AsNoTracking()
            .Where(j => j.Status == JobStatus.Queued && j.EnqueuedAtMs != null && j.EnqueuedAtMs < before && j.NoWorkerNoticeAtMs == null)
            .Select(j => new { j.Id, j.Device }).Take(200).ToListAsync(ct);
        if (waiting.Count == 0) return 0;
        var alive = await WorkerPresence.AliveAsync(db, options.LeaseSeconds * 1000L, ct);
        int told = 0;
        foreach (var job in waiting)
        {
            var queue = JobResources.QueueFor(job.Device);
            if (alive.Any(w => WorkerPresence.Serves(w, queue))) continue;
            var now = Ids.NowMs();
            int n = await db.Jobs.Where(j => j.Id == job.Id && j.NoWorkerNoticeAtMs == null).ExecuteUpdateAsync(s => s.SetProperty(j => j.NoWorkerNoticeAtMs, now), ct);
            if (n == 0) continue; // another process said it
            var workers = alive.Count == 0 ? "no worker is online"
                : $"online: {string.Join("; ", alive.Select(w => $"{w.Id} ({w.Device}) serves {w.Queues}"))}";
            db.Events.Add(new JobEvent
            {
                JobId = job.Id, CreatedAt = now / 1000, Level = "warn", Type = "message",
                Message = $"No online worker serves queue {queue} ({(job.Device == JobResources.Any ? "any device" : job.Device + " jobs")}); " +
                    $"the job waits until one starts ({workers}). Start a worker with AlignHub__Worker__Queues including {queue}" +
                    (job.Device == JobResources.Gpu ? " on a machine with a GPU (AlignHub__Worker__Device=cuda)" : ""),
                DataJson = System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object> { ["queue"] = queue, ["online_workers"] = alive.Count }),
            });
            await db.SaveChangesAsync(ct);
            told++;
        }
        return told;
    }
}
