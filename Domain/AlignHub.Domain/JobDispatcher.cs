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
public sealed class JobDispatcher(IDbContextFactory<AlignHubDb> dbs, IBackgroundJobClient hangfire)
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
            var ids = await db.Jobs.AsNoTracking().Where(j => j.Status == JobStatus.Queued && j.EnqueuedAtMs == null)
                .OrderBy(j => j.CreatedAtMs).Select(j => j.Id).Take(500).ToListAsync(ct);
            if (ids.Count == 0) return count;
            // A few at a time: each Hangfire enqueue is a short synchronous transaction of its own.
            await Parallel.ForEachAsync(ids, new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = ct }, async (id, token) =>
            {
                hangfire.Enqueue<ITrainingJob>(ITrainingJob.Queue, j => j.Run(id, CancellationToken.None));
                await using var one = await dbs.CreateDbContextAsync(token);
                await one.Jobs.Where(j => j.Id == id).ExecuteUpdateAsync(s => s.SetProperty(j => j.EnqueuedAtMs, Ids.NowMs()), token);
                Interlocked.Increment(ref count);
            });
        }
    }
}
