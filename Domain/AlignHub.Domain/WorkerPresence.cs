using System.Reflection;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>Workers as rows (<see cref="WorkerRecord"/>): who is alive, what they serve, and what they run.</summary>
public static class WorkerPresence
{
    public const string Online = "online", Lost = "lost", Stopped = "stopped";

    /// <summary>AlignHub's version, as every worker reports it.</summary>
    public static readonly string Version = typeof(WorkerPresence).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion?.Split('+')[0]
        ?? typeof(WorkerPresence).Assembly.GetName().Version?.ToString() ?? "0";

    public static string Status(WorkerRecord w, long leaseMs, long nowMs) =>
        w.StoppedAtMs is not null ? Stopped : w.HeartbeatAtMs >= nowMs - leaseMs ? Online : Lost;

    public static bool Serves(WorkerRecord w, string queue) =>
        w.Queues.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Contains(queue);


    /// <summary>Workers whose heartbeat is within the lease and that have not stopped.</summary>
    public static Task<List<WorkerRecord>> AliveAsync(AlignHubDb db, long leaseMs, CancellationToken ct)
    {
        var since = Ids.NowMs() - leaseMs;
        return db.Workers.AsNoTracking().Where(w => w.StoppedAtMs == null && w.HeartbeatAtMs >= since).ToListAsync(ct);
    }

    /// <summary>Writes this worker's row (again, after a restart of the database or a lost row).</summary>
    public static async Task UpsertAsync(AlignHubDb db, WorkerRecord me, CancellationToken ct)
    {
        var now = Ids.NowMs();
        var current = await db.Jobs.AsNoTracking().Where(j => j.LeaseOwner == me.Id && (j.Status == JobStatus.Running || j.Status == JobLifecycle.Pausing || j.Status == JobLifecycle.Cancelling))
            .Select(j => j.Id).FirstOrDefaultAsync(ct);
        int n = await db.Workers.Where(w => w.Id == me.Id)
            .ExecuteUpdateAsync(s => s.SetProperty(w => w.HeartbeatAtMs, now).SetProperty(w => w.CurrentJobId, current)
                .SetProperty(w => w.StoppedAtMs, (long?)null), ct);
        if (n > 0) return;
        me.HeartbeatAtMs = now;
        me.CurrentJobId = current;
        db.Workers.Add(me);
        try { await db.SaveChangesAsync(ct); }
        catch (DbUpdateException) { db.ChangeTracker.Clear(); } // written meanwhile; the next beat updates it
        finally { db.Entry(me).State = EntityState.Detached; }
    }

    /// <summary>Marks this worker stopped (a clean shutdown).</summary>
    public static Task MarkStoppedAsync(AlignHubDb db, string id, CancellationToken ct) =>
        db.Workers.Where(w => w.Id == id).ExecuteUpdateAsync(s => s.SetProperty(w => w.StoppedAtMs, Ids.NowMs()).SetProperty(w => w.CurrentJobId, (string?)null), ct);

    /// <summary>Forgets workers that stopped or were lost more than <paramref name="olderThan"/> ago.</summary>
    public static Task<int> PruneAsync(AlignHubDb db, TimeSpan olderThan, CancellationToken ct)
    {
        var before = Ids.NowMs() - (long)olderThan.TotalMilliseconds;
        return db.Workers.Where(w => w.HeartbeatAtMs < before).ExecuteDeleteAsync(ct);
    }
}

/// <summary>Reads workers' rows for the API and the dashboard (the same queries for both).</summary>
public sealed class WorkerQueries(IDbContextFactory<AlignHubDb> dbs)
{
    /// <summary>Worker rows, online first, then lost, then stopped.</summary>
    public async Task<List<WorkerRecord>> ListAsync(long leaseMs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var rows = await db.Workers.AsNoTracking().OrderByDescending(w => w.HeartbeatAtMs).Take(1000).ToListAsync(ct);
        long now = Ids.NowMs();
        return rows.OrderBy(w => WorkerPresence.Status(w, leaseMs, now) switch { WorkerPresence.Online => 0, WorkerPresence.Lost => 1, _ => 2 }).ThenBy(w => w.Id).ToList();
    }

    public async Task<WorkerRecord?> GetAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Workers.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, ct);
    }
}
