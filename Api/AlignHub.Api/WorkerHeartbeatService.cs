using AlignHub.Domain;
using AlignHub.Workers;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api;

/// <summary>
/// A worker process's row in <c>workers</c> (<see cref="WorkerRecord"/>): written at start, its heartbeat and current
/// job every few seconds (a sixth of the lease), and its stop on a clean shutdown; rows silent for a day are removed.
/// A database outage only delays the beats.
/// </summary>
public sealed class WorkerHeartbeatService(IDbContextFactory<AlignHubDb> dbs, WorkerIdentity me, AlignHubOptions options, ILogger<WorkerHeartbeatService> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        log.LogInformation("Worker {Id} on {Device} serves queues {Queues} ({Slots} slot(s))", me.Id, me.Device, string.Join(",", me.Queues), me.Slots);
        var every = TimeSpan.FromSeconds(Math.Clamp(options.LeaseSeconds / 6.0, 1, 10));
        int beats = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var db = await dbs.CreateDbContextAsync(stoppingToken);
                await WorkerPresence.UpsertAsync(db, me.ToRecord(), stoppingToken);
                if (beats++ % 360 == 0) await WorkerPresence.PruneAsync(db, TimeSpan.FromDays(1), stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { break; }
            catch (Exception e)
            {
                log.LogWarning("Worker heartbeat not written ({Error}); retrying", e.Message);
            }
            try { await Task.Delay(every, stoppingToken); } catch (OperationCanceledException) { break; }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        try
        {
            await using var db = await dbs.CreateDbContextAsync(cancellationToken);
            await WorkerPresence.MarkStoppedAsync(db, me.Id, cancellationToken);
        }
        catch (Exception e) { log.LogWarning("Worker stop not recorded ({Error})", e.Message); }
    }
}
