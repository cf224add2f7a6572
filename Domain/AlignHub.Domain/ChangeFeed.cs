using System.Data.Common;
using System.Runtime.CompilerServices;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace AlignHub.Domain;

/// <summary>
/// Tells open dashboard pages that rows they show changed, so they re-read on a change instead of polling.
/// Sources: on PostgreSQL, triggers on the watched tables (migration <c>ChangeNotifications</c>) send <c>NOTIFY alignhub_changes 'table:job'</c> from whichever
/// process wrote (a worker elsewhere included) and a listener in every web process publishes them here; in the
/// embedded default (one process) <see cref="ChangeInterceptor"/> publishes each committed write. A change arrives
/// within milliseconds of its commit.
/// </summary>
public sealed class ChangeFeed
{
    /// <summary>The PostgreSQL channel the triggers notify.</summary>
    public const string Channel = "alignhub_changes";

    /// <summary>Tables whose changes pages follow.</summary>
    public static readonly string[] Tables =
        ["fine_tuning_jobs", "job_events", "job_metrics", "job_checkpoints", "job_samples", "workers", "files", "models"];

    /// <summary>
    /// A change: the table, and the job it belongs to where the source knows it (PostgreSQL's triggers do; the embedded
    /// default's interceptor does not, and says <c>null</c>). <see cref="Table"/> <c>*</c>: anything may have changed
    /// (the listener reconnected), re-read everything.
    /// </summary>
    public readonly record struct Change(string Table, string? JobId)
    {
        /// <summary>Whether this change may concern <paramref name="jobId"/>.</summary>
        public bool Concerns(string jobId) => JobId is null || JobId == jobId;
        public bool IsJobData => Table == "*" || Table.StartsWith("job_", StringComparison.Ordinal) || Table == "fine_tuning_jobs";

        /// <summary>Parses a NOTIFY payload, <c>table:id</c>.</summary>
        public static Change Parse(string payload)
        {
            int colon = payload.IndexOf(':');
            return colon < 0 ? new Change(payload, null) : new Change(payload[..colon], payload[(colon + 1)..] is { Length: > 0 } id ? id : null);
        }
    }

    readonly Lock gate = new();
    Action<Change>[] subscribers = [];

    /// <summary>Calls <paramref name="handler"/> for every change until the returned handle is disposed. Handlers must be quick.</summary>
    public IDisposable Subscribe(Action<Change> handler)
    {
        lock (gate) subscribers = [.. subscribers, handler];
        return new Subscription(this, handler);
    }

    public void Publish(Change change)
    {
        foreach (var s in Volatile.Read(ref subscribers))
            try { s(change); } catch (Exception) { /* a page's handler never breaks the writer */ }
    }

    sealed class Subscription(ChangeFeed feed, Action<Change> handler) : IDisposable
    {
        public void Dispose()
        {
            lock (feed.gate) feed.subscribers = [.. feed.subscribers.Where(s => s != handler)];
        }
    }
}

/// <summary>
/// The embedded default's change source: sees every write EF Core sends (SaveChanges and ExecuteUpdate/Delete alike),
/// and publishes the watched tables it touched once the write is committed (at once outside a transaction, at the
/// commit inside one; a rollback publishes nothing).
/// </summary>
public sealed class ChangeInterceptor(ChangeFeed feed) : DbCommandInterceptor, IDbTransactionInterceptor
{
    readonly ConditionalWeakTable<DbTransaction, HashSet<string>> pending = [];

    static IEnumerable<string> Written(string sql)
    {
        // EF Core's statements name tables in double quotes: INSERT INTO "t", UPDATE "t", DELETE FROM "t".
        if (!(sql.Contains("INSERT", StringComparison.Ordinal) || sql.Contains("UPDATE", StringComparison.Ordinal) || sql.Contains("DELETE", StringComparison.Ordinal)))
            yield break;
        foreach (var t in ChangeFeed.Tables)
            if (sql.Contains($"INSERT INTO \"{t}\"", StringComparison.Ordinal) || sql.Contains($"UPDATE \"{t}\"", StringComparison.Ordinal)
                || sql.Contains($"DELETE FROM \"{t}\"", StringComparison.Ordinal))
                yield return t;
    }

    void Saw(DbCommand command)
    {
        var tables = Written(command.CommandText).ToList();
        if (tables.Count == 0) return;
        if (command.Transaction is { } tx)
        {
            var set = pending.GetOrCreateValue(tx);
            lock (set) set.UnionWith(tables);
        }
        else foreach (var t in tables) feed.Publish(new ChangeFeed.Change(t, null));
    }

    void Committed(DbTransaction tx)
    {
        if (!pending.TryGetValue(tx, out var set)) return;
        pending.Remove(tx);
        string[] tables;
        lock (set) tables = [.. set];
        foreach (var t in tables) feed.Publish(new ChangeFeed.Change(t, null));
    }

    public override int NonQueryExecuted(DbCommand command, CommandExecutedEventData eventData, int result)
    { Saw(command); return result; }

    public override ValueTask<int> NonQueryExecutedAsync(DbCommand command, CommandExecutedEventData eventData, int result, CancellationToken ct = default)
    { Saw(command); return ValueTask.FromResult(result); }

    public override DbDataReader ReaderExecuted(DbCommand command, CommandExecutedEventData eventData, DbDataReader result)
    { Saw(command); return result; }

    public override ValueTask<DbDataReader> ReaderExecutedAsync(DbCommand command, CommandExecutedEventData eventData, DbDataReader result, CancellationToken ct = default)
    { Saw(command); return ValueTask.FromResult(result); }

    public override object? ScalarExecuted(DbCommand command, CommandExecutedEventData eventData, object? result)
    { Saw(command); return result; }

    public override ValueTask<object?> ScalarExecutedAsync(DbCommand command, CommandExecutedEventData eventData, object? result, CancellationToken ct = default)
    { Saw(command); return ValueTask.FromResult(result); }

    public void TransactionCommitted(DbTransaction transaction, TransactionEndEventData eventData) => Committed(transaction);

    public Task TransactionCommittedAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken ct = default)
    { Committed(transaction); return Task.CompletedTask; }

    public void TransactionRolledBack(DbTransaction transaction, TransactionEndEventData eventData) => pending.Remove(transaction);

    public Task TransactionRolledBackAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken ct = default)
    { pending.Remove(transaction); return Task.CompletedTask; }
}
