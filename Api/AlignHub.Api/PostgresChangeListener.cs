using AlignHub.Domain;
using Npgsql;

namespace AlignHub.Api;

/// <summary>
/// Web processes on PostgreSQL: <c>LISTEN alignhub_changes</c> on a connection of its own and hand each notification
/// (sent by the triggers of the ChangeNotifications migration, whichever process wrote) to the
/// <see cref="ChangeFeed"/>. After a lost connection it reconnects and publishes <c>*</c>, so open pages re-read what
/// they may have missed.
/// </summary>
public sealed class PostgresChangeListener(string connectionString, ChangeFeed feed, ILogger<PostgresChangeListener> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var cs = new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false, KeepAlive = 15, MaxAutoPrepare = 0 }.ConnectionString;
        bool first = true;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var conn = new NpgsqlConnection(cs);
                await conn.OpenAsync(stoppingToken);
                conn.Notification += (_, e) => feed.Publish(ChangeFeed.Change.Parse(e.Payload));
                await using (var listen = new NpgsqlCommand($"LISTEN {ChangeFeed.Channel}", conn))
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                if (!first) { feed.Publish(new ChangeFeed.Change("*", null)); log.LogInformation("Change notifications resumed"); }
                first = false;
                while (true) await conn.WaitAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { return; }
            catch (Exception ex) when (ex is NpgsqlException or System.Net.Sockets.SocketException or IOException or InvalidOperationException or TimeoutException)
            {
                log.LogWarning("Change notifications interrupted ({Message}); retrying", ex.Message);
                first = false;
                try { await Task.Delay(TimeSpan.FromSeconds(2), stoppingToken); } catch (OperationCanceledException) { return; }
            }
        }
    }
}
