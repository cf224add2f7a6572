using Npgsql;
using Xunit;

namespace AlignHub.Tests;

/// <summary>
/// The PostgreSQL server the tests use: <c>ALIGNHUB_TEST_POSTGRES</c> (a connection string; tests/run.sh and .ci/run
/// start a throwaway cluster and set it). Each test gets a database of its own.
/// </summary>
public static class Postgres
{
    public static string? Server => Environment.GetEnvironmentVariable("ALIGNHUB_TEST_POSTGRES") is { Length: > 0 } s ? s : null;

    public static async Task<string> CreateDatabaseAsync()
    {
        var name = "alignhub_test_" + Guid.NewGuid().ToString("N")[..12];
        await using (var conn = new NpgsqlConnection(Server))
        {
            await conn.OpenAsync();
            await using var cmd = new NpgsqlCommand($"CREATE DATABASE {name}", conn);
            await cmd.ExecuteNonQueryAsync();
        }
        return new NpgsqlConnectionStringBuilder(Server) { Database = name }.ConnectionString;
    }

    public static async Task<List<object?[]>> QueryAsync(string connectionString, string sql)
    {
        await using var conn = new NpgsqlConnection(connectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        await using var r = await cmd.ExecuteReaderAsync();
        var rows = new List<object?[]>();
        while (await r.ReadAsync())
        {
            var row = new object?[r.FieldCount];
            for (int i = 0; i < r.FieldCount; i++) row[i] = r.IsDBNull(i) ? null : r.GetValue(i);
            rows.Add(row);
        }
        return rows;
    }
}

/// <summary>A test that needs the PostgreSQL server; skipped, saying why, where none is configured.</summary>
public sealed class PostgresFactAttribute : FactAttribute
{
    public PostgresFactAttribute()
    {
        if (Postgres.Server is null) Skip = "ALIGNHUB_TEST_POSTGRES is not set: run tests/run.sh, which starts a throwaway PostgreSQL";
    }
}

