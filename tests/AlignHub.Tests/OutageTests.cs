using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Xunit;

namespace AlignHub.Tests;

/// <summary>
/// A PostgreSQL cluster of a test's own (initdb, pg_ctl from <c>ALIGNHUB_TEST_PGBIN</c>, as the postgres user when root),
/// so a fault drill can stop and start it without touching the suite's shared server.
/// </summary>
public sealed class OwnPostgres : IAsyncDisposable
{
    readonly string bin, dir, extra;
    public int Port { get; }
    /// <summary>The server's log (with <c>log_statement=all</c> among the options: every statement and its parameters).</summary>
    public string LogPath => Path.Combine(dir, "server.log");
    public string ConnectionString { get; }

    OwnPostgres(string bin, string dir, int port, string user, string extra)
    {
        (this.bin, this.dir, Port, this.extra) = (bin, dir, port, extra);
        ConnectionString = $"Host=127.0.0.1;Port={port};Username={user};Database=postgres;Timeout=5;Command Timeout=30";
    }

    public static string? Bin => Environment.GetEnvironmentVariable("ALIGNHUB_TEST_PGBIN") is { Length: > 0 } b && File.Exists(Path.Combine(b, "initdb")) ? b : null;
    static bool Root => Environment.UserName == "root";

    static async Task Run(string file, params string[] args)
    {
        var psi = Root ? new ProcessStartInfo("runuser", ["-u", "postgres", "--", file, .. args]) : new ProcessStartInfo(file, args);
        psi.WorkingDirectory = "/";
        psi.RedirectStandardOutput = psi.RedirectStandardError = true;
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var errors = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{Path.GetFileName(file)} failed: {await output}{await errors}");
    }

    /// <param name="extraOptions">More server options, for example <c>-c log_statement=all</c>.</param>
    public static async Task<OwnPostgres> StartAsync(string extraOptions = "")
    {
        var dir = Directory.CreateTempSubdirectory("alignhub-own-pg-").FullName;
        if (Root) { Process.Start("chmod", ["755", dir])!.WaitForExit(); Process.Start("chown", ["-R", "postgres:postgres", dir])!.WaitForExit(); }
        int port = 30000 + Random.Shared.Next(20000);
        var user = Root ? "postgres" : Environment.UserName;
        var pg = new OwnPostgres(Bin!, dir, port, user, extraOptions);
        await Run(Path.Combine(pg.bin, "initdb"), "-D", Path.Combine(dir, "data"), "-A", "trust", "-U", user, "-E", "UTF8", "--locale=C.UTF-8");
        await pg.StartServerAsync();
        return pg;
    }

    public Task StartServerAsync() => Run(Path.Combine(bin, "pg_ctl"), "-D", Path.Combine(dir, "data"), "-l", Path.Combine(dir, "server.log"), "-w",
        "-o", $"-c listen_addresses=127.0.0.1 -p {Port} -k {dir} -c fsync=off -c max_connections=200 {extra}", "start");

    public Task StopServerAsync() => Run(Path.Combine(bin, "pg_ctl"), "-D", Path.Combine(dir, "data"), "-m", "fast", "-w", "stop");

    public async ValueTask DisposeAsync()
    {
        try { await StopServerAsync(); } catch (InvalidOperationException) { }
        try { Directory.Delete(dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

public sealed class OwnPostgresFactAttribute : FactAttribute
{
    public OwnPostgresFactAttribute()
    {
        if (OwnPostgres.Bin is null) Skip = "ALIGNHUB_TEST_PGBIN is not set: run tests/run.sh, which finds PostgreSQL's initdb and pg_ctl";
    }
}

/// <summary>Fault drills: the database goes away under load and comes back.</summary>
/// <summary>Figures of a drill: to the test output and, for <c>bench/drill.sh</c>, appended to <c>ALIGNHUB_DRILL_OUT</c>.</summary>
static class DrillReport
{
    public static void Write(Xunit.Abstractions.ITestOutputHelper output, string line)
    {
        output.WriteLine(line);
        if (Environment.GetEnvironmentVariable("ALIGNHUB_DRILL_OUT") is { Length: > 0 } path)
            File.AppendAllText(path, line + Environment.NewLine);
    }
}

public class OutageTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>
    /// PostgreSQL stopped for a few seconds under 20 concurrent API clients while a worker trains: clients get 503 with
    /// Retry-After during the outage and never a 500; every upload answered 2xx is in the database afterwards; the job
    /// waits out the outage and finishes with each step's metrics exactly once.
    /// </summary>
    [OwnPostgresFact]
    public async Task A_database_restart_gives_503s_not_500s_and_loses_nothing()
    {
        await using var pg = await OwnPostgres.StartAsync();
        var data = Directory.CreateTempSubdirectory("alignhub-outage-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data, postgres: pg.ConnectionString);
        var (s0, file) = await app.Upload(TestData.Jsonl(64), "train.jsonl");
        Assert.True(s0 == HttpStatusCode.OK, file.ToString());
        var job = await app.CreateSftJob(file.GetProperty("id").GetString()!, new { n_epochs = 100, batch_size = 8, max_steps = 300, save_steps = 25 });
        await app.WaitForJob(job, j => j.GetProperty("steps_completed").GetInt32() >= 5, TimeSpan.FromMinutes(2));

        var statuses = new System.Collections.Concurrent.ConcurrentBag<(int Status, bool RetryAfter, string What, double At)>();
        var clock = Stopwatch.StartNew();
        var uploaded = new System.Collections.Concurrent.ConcurrentBag<string>();
        using var stop = new CancellationTokenSource();
        var clients = Enumerable.Range(0, 20).Select(async c =>
        {
            using var http = new HttpClient { BaseAddress = app.Http.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
            http.DefaultRequestHeaders.Authorization = app.Http.DefaultRequestHeaders.Authorization;
            int n = 0;
            while (!stop.IsCancellationRequested)
            {
                HttpResponseMessage r;
                string what;
                try
                {
                    if (n++ % 3 == 0)
                    {
                        what = "upload";
                        using var form = new MultipartFormDataContent { { new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(TestData.Jsonl(2, c * 1000 + n))), "file", $"c{c}-{n}.jsonl" }, { new StringContent("fine-tune"), "purpose" } };
                        r = await http.PostAsync("/v1/files", form);
                        if (r.IsSuccessStatusCode) uploaded.Add(JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!);
                    }
                    else { what = n % 3 == 1 ? "jobs" : "job"; r = await http.GetAsync(n % 3 == 1 ? "/v1/fine_tuning/jobs?limit=5" : $"/v1/fine_tuning/jobs/{job}"); }
                }
                catch (HttpRequestException) { statuses.Add((0, false, "connection", clock.Elapsed.TotalSeconds)); continue; }
                statuses.Add(((int)r.StatusCode, r.Headers.RetryAfter is not null, what, clock.Elapsed.TotalSeconds));
                r.Dispose();
                await Task.Delay(20);
            }
        }).ToList();

        await Task.Delay(2000);
        await pg.StopServerAsync();
        var stoppedAt = clock.Elapsed.TotalSeconds;
        await Task.Delay(4000);
        var during = statuses.Count;
        await pg.StartServerAsync();
        var startedAt = clock.Elapsed.TotalSeconds;
        await Task.Delay(4000);
        stop.Cancel();
        await Task.WhenAll(clients);

        var all = statuses.ToList();
        Assert.DoesNotContain(all, s => s.Status >= 500 && s.Status != 503);
        Assert.DoesNotContain(all, s => s.Status == 0);
        Assert.Contains(all, s => s.Status == 503);
        Assert.All(all.Where(s => s.Status == 503), s => Assert.True(s.RetryAfter, $"a 503 on {s.What} without Retry-After"));
        Assert.Contains(all, s => s.Status == 200);
        foreach (var id in uploaded) Assert.Equal(HttpStatusCode.OK, (await app.Http.GetAsync($"/v1/files/{id}")).StatusCode);

        // The job waited out the outage and went on: every step's loss exactly once.
        var done = await app.WaitForStatus(job, "succeeded", TimeSpan.FromMinutes(5));
        var steps = (await Postgres.QueryAsync(new Npgsql.NpgsqlConnectionStringBuilder(pg.ConnectionString) { Database = "postgres" }.ConnectionString,
            $"SELECT \"Step\", COUNT(*) FROM job_metrics WHERE \"JobId\" = '{job}' AND \"Name\" = 'loss' GROUP BY \"Step\" ORDER BY \"Step\""))
            .Select(r => (Step: Convert.ToInt32(r[0]), Count: Convert.ToInt32(r[1]))).ToList();
        Assert.Equal(Enumerable.Range(1, 300), steps.Select(s => s.Step));
        Assert.All(steps, s => Assert.Equal(1, s.Count));
        Assert.True(during > 0);
        var firstOk = all.Where(s => s.At > startedAt && s.Status is >= 200 and < 300).Select(s => s.At).DefaultIfEmpty(double.NaN).Min();
        DrillReport.Write(output, $"database restart: 20 clients, {all.Count} requests, PostgreSQL down {startedAt - stoppedAt:F1} s; " +
            string.Join(", ", all.GroupBy(s => s.Status).OrderBy(g => g.Key).Select(g => $"{g.Count()} x {g.Key}")) +
            $"; every 503 with Retry-After; no 500, no refused connection; first 2xx {firstOk - startedAt:F2} s after the server was up; " +
            $"{uploaded.Count} uploads accepted, all in the database; the training job finished with each of its 300 steps' loss recorded once");
    }
}

/// <summary>A test that mounts a filesystem (a tmpfs quota): only as root, where mount works.</summary>
public sealed class MountFactAttribute : FactAttribute
{
    public MountFactAttribute()
    {
        if (Environment.UserName != "root" || !File.Exists("/bin/mount")) Skip = "mounting a small tmpfs needs root";
    }
}

public class DiskFullTests(Xunit.Abstractions.ITestOutputHelper output)
{
    static async Task Sh(string file, params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        var err = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)}: {await err}");
    }

    /// <summary>
    /// Checkpoints on a 2.5 MB tmpfs: the first fits, the next does not. The job fails saying which checkpoint could not be
    /// written and which one is intact; that one loads (weights and optimizer state), and no partial folder is left.
    /// </summary>
    [MountFact]
    public async Task A_full_disk_fails_the_job_clearly_and_keeps_the_previous_checkpoint()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-diskfull-").FullName;
        var quota = Path.Combine(data, "checkpoints");
        Directory.CreateDirectory(quota);
        await Sh("mount", "-t", "tmpfs", "-o", "size=2560k", "tmpfs", quota);
        try
        {
            await using var app = await AlignHubProcess.StartAsync(data);
            var (s, file) = await app.Upload(TestData.Jsonl(64), "train.jsonl");
            Assert.True(s == HttpStatusCode.OK, file.ToString());
            var job = await app.CreateSftJob(file.GetProperty("id").GetString()!, new { n_epochs = 10, batch_size = 8, max_steps = 40, save_steps = 3 });
            var failed = await app.WaitForStatus(job, "failed", TimeSpan.FromMinutes(3));
            var message = failed.GetProperty("error").GetProperty("message").GetString()!;
            Assert.Contains("could not be written", message);
            Assert.Contains("No space left on device", message);
            Assert.Contains("the checkpoint of step 3 is intact", message);
            var checkpoints = (await app.GetJson($"/v1/fine_tuning/jobs/{job}/checkpoints")).GetProperty("data").EnumerateArray().ToList();
            Assert.Single(checkpoints);
            var dir = Directory.GetDirectories(Path.Combine(quota, job));
            Assert.Equal(["step-0000003"], dir.Select(Path.GetFileName));
            using var model = AlignHub.Training.Models.HfWeights.LoadModel(dir[0]);
            Assert.True(new FileInfo(Path.Combine(dir[0], "optimizer.bin")).Length > 0);
            Assert.Contains(JsonDocument.Parse(await app.Http.GetStringAsync($"/v1/fine_tuning/jobs/{job}/events?limit=100")).RootElement.GetProperty("data").EnumerateArray(),
                e => e.GetProperty("level").GetString() == "error" && e.GetProperty("message").GetString()!.Contains("could not be written"));
            DrillReport.Write(output, $"disk full: checkpoints on a 2.5 MB tmpfs, job failed with \"{message}\"; step-0000003 loaded (weights and optimizer state), no partial folder left");
        }
        finally { await Sh("umount", "-l", quota); }
    }
}
