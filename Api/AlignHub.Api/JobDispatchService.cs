using AlignHub.Domain;

namespace AlignHub.Api;

/// <summary>
/// Runs <see cref="JobDispatcher"/>: at once when this process created a job, and every 2 s for the others'; every 5 s
/// it also tells jobs that no live worker serves their queue.
/// </summary>
public sealed class JobDispatchService(JobDispatcher dispatcher, ILogger<JobDispatchService> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        long lastNotice = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await dispatcher.DispatchPendingAsync(stoppingToken);
                if (Environment.TickCount64 - lastNotice > 5000)
                {
                    lastNotice = Environment.TickCount64;
                    await dispatcher.NoticeUnservedAsync(TimeSpan.FromSeconds(5), stoppingToken);
                }
                await dispatcher.WaitAsync(TimeSpan.FromSeconds(2), stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { return; }
            catch (Exception e)
            {
                log.LogWarning(e, "Dispatching queued jobs failed; retrying");
                await Task.Delay(TimeSpan.FromSeconds(2), stoppingToken);
            }
        }
    }
}
