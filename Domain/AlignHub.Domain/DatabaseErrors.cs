using System.Data.Common;
using System.Net.Sockets;

namespace AlignHub.Domain;

/// <summary>What a database exception means, for either provider, read through ADO.NET's own properties.</summary>
public static class DatabaseErrors
{
    /// <summary>
    /// The database cannot be reached (a connection-level failure somewhere in the chain): a transient provider error
    /// (Npgsql's connection refused, broken connections), PostgreSQL's connection classes (08xxx) and shutdown codes
    /// (57P01-57P03), sockets, timeouts, or EF's retry wrapper around one of those.
    /// </summary>
    public static bool IsOutage(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is DbException { IsTransient: true } or SocketException or TimeoutException) return true;
            if (e is DbException { SqlState: { } s } && (s.StartsWith("08", StringComparison.Ordinal) || s is "57P01" or "57P02" or "57P03")) return true;
            if (e is InvalidOperationException io && io.Message.Contains("transient failure", StringComparison.OrdinalIgnoreCase)) return true;
        }
        return false;
    }

    /// <summary>A unique index refused the write (PostgreSQL 23505, SQLite's UNIQUE constraint).</summary>
    public static bool IsUniqueViolation(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is DbException { SqlState: "23505" } || e.Message.Contains("UNIQUE constraint failed", StringComparison.Ordinal)) return true;
        return false;
    }
}

/// <summary>Text bound for a database column.</summary>
public static class DbText
{
    /// <summary>
    /// PostgreSQL's text cannot hold U+0000 (SQLite's can), and a byte-level model samples it like any other byte: it is
    /// stored as U+FFFD, the replacement character, in model-written text (samples, events, labeling items).
    /// </summary>
    public static string Clean(string s) => s.Contains('\0') ? s.Replace('\0', '\uFFFD') : s;
}
