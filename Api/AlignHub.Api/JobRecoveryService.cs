using AlignHub.Domain;

namespace AlignHub.Api;

/// <summary>
/// The jobs table is the source of truth. Embedded default (one process, in-memory queue): at start-up every job
/// left queued or running is put back on the queue. In every mode, running jobs whose worker stopped renewing its
/// lease are re-queued; they resume from their last checkpoint.
/// </summary>
public sealed class JobRecoveryService(JobService jobs, AlignHubOptions options, StorageMode mode, ILogger<JobRecoveryService> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var lease = TimeSpan.FromSeconds(options.LeaseSeconds);
        if (!mode.Postgres)
        {
            var n = await jobs.RequeueOrphansAsync(all: true, lease, stoppingToken);
            if (n > 0) log.LogWarning("Re-queued {Count} job(s) left queued or running by a previous process", n);
        }
        var every = TimeSpan.FromSeconds(Math.Max(1, options.LeaseSeconds / 3.0));
        using var timer = new PeriodicTimer(every);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                var n = await jobs.RequeueOrphansAsync(all: false, lease, stoppingToken);
                if (n > 0) log.LogWarning("Re-queued {Count} job(s) whose worker lease expired", n);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                log.LogWarning(e, "Lease sweep failed; retrying");
            }
        }
    }
}
