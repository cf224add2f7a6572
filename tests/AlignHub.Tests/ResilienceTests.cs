using System.Text.Json;
using Xunit;

namespace AlignHub.Tests;

/// <summary>Jobs survive dead processes and run exactly once when several workers share the queue.</summary>
public class ResilienceTests
{
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-res-").FullName;

    static async Task<List<(int Step, string Name)>> MetricKeys(AlignHubProcess app, string jobId)
    {
        var m = await app.GetJson($"/v1/fine_tuning/jobs/{jobId}/metrics");
        return m.GetProperty("data").EnumerateArray().Select(x => (x.GetProperty("step").GetInt32(), x.GetProperty("name").GetString()!)).ToList();
    }

    static void AssertEveryStepOnce(List<(int Step, string Name)> keys, int totalSteps)
    {
        Assert.Equal(keys.Count, keys.Distinct().Count());
        var lossSteps = keys.Where(k => k.Name == "loss").Select(k => k.Step).ToList();
        Assert.Equal(Enumerable.Range(1, totalSteps), lossSteps);
    }

    [Fact]
    public async Task Embedded_process_killed_mid_training_resumes_from_its_checkpoint_after_restart()
    {
        await using var app = await AlignHubProcess.StartAsync(TempDir());
        var file = (await app.Upload(TestData.Jsonl(64))).Body.GetProperty("id").GetString()!;
        var jobId = await app.CreateSftJob(file, new { max_steps = 240, n_epochs = 100, save_steps = 20 });
        await app.WaitForJob(jobId, j => j.GetProperty("steps_completed").GetInt32() >= 50, TimeSpan.FromMinutes(2));
        app.Kill();

        await app.RestartAsync();
        var job = await app.WaitForStatus(jobId, "succeeded", TimeSpan.FromMinutes(3));
        Assert.Equal("succeeded", job.GetProperty("status").GetString());
        AssertEveryStepOnce(await MetricKeys(app, jobId), 240);

        var events = (await app.GetJson($"/v1/fine_tuning/jobs/{jobId}/events?limit=1000")).GetProperty("data").EnumerateArray()
            .Select(e => e.GetProperty("message").GetString()!).ToList();
        var resumed = events.Single(m => m.StartsWith("Resumed from checkpoint at step "));
        var step = int.Parse(resumed["Resumed from checkpoint at step ".Length..]);
        Assert.True(step >= 40 && step % 20 == 0, resumed);
        Assert.Contains(events, m => m.Contains("attempt 2"));
    }

    /// <summary>A DPO job whose process is killed resumes from its checkpoint and ends with the weights of an uninterrupted job.</summary>
    [Fact]
    public async Task A_DPO_job_killed_mid_run_ends_with_the_weights_of_an_uninterrupted_run()
    {
        var data = TempDir();
        await using var app = await AlignHubProcess.StartAsync(data);
        var pairs = string.Join("\n", AlignHub.Domain.PreferenceTask.Pairs(256, 1).Select(p => JsonSerializer.Serialize(new { prompt = p.Prompt, chosen = p.Chosen, rejected = p.Rejected })));
        var file = (await app.Upload(pairs, "pairs.jsonl")).Body.GetProperty("id").GetString()!;
        async Task<string> Create()
        {
            var (status, body) = await app.PostJson("/v1/fine_tuning/jobs", new
            {
                model = "alignhub/tiny", training_file = file, seed = 7,
                method = new { type = "dpo", dpo = new { hyperparameters = new { n_epochs = 100, max_steps = 300, batch_size = 16, learning_rate = 1e-3, save_steps = 20 } } },
            });
            Assert.True(status == System.Net.HttpStatusCode.OK, body.ToString());
            return body.GetProperty("id").GetString()!;
        }
        var killed = await Create();
        await app.WaitForJob(killed, j => j.GetProperty("steps_completed").GetInt32() >= 50, TimeSpan.FromMinutes(2));
        app.Kill();
        await app.RestartAsync();
        await app.WaitForStatus(killed, "succeeded", TimeSpan.FromMinutes(3));
        var events = (await app.GetJson($"/v1/fine_tuning/jobs/{killed}/events?limit=1000")).GetProperty("data").EnumerateArray()
            .Select(e => e.GetProperty("message").GetString()!).ToList();
        Assert.Contains(events, m => m.StartsWith("Resumed from checkpoint at step "));
        var keys = await MetricKeys(app, killed);
        Assert.Equal(keys.Count, keys.Distinct().Count());
        Assert.Equal(Enumerable.Range(1, 300), keys.Where(k => k.Name == "loss").Select(k => k.Step));

        var straight = await Create();
        await app.WaitForStatus(straight, "succeeded", TimeSpan.FromMinutes(3));
        var a = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(data, "checkpoints", killed, "step-0000300", "model.safetensors"));
        var b = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(data, "checkpoints", straight, "step-0000300", "model.safetensors"));
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, t) in a)
        {
            var diff = (t - b[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6f, $"{name} differs by {diff}");
        }
    }

    [PostgresFact]
    public async Task Postgres_one_api_and_two_workers_run_each_job_exactly_once()
    {
        var db = await Postgres.CreateDatabaseAsync();
        var data = TempDir();
        await using var api = await AlignHubProcess.StartAsync(data, roles: "api,web", postgres: db);
        await using var w1 = await AlignHubProcess.StartAsync(data, roles: "worker", postgres: db);
        await using var w2 = await AlignHubProcess.StartAsync(data, roles: "worker", postgres: db);

        var file = (await api.Upload(TestData.Jsonl(48))).Body.GetProperty("id").GetString()!;
        var ids = new List<string>();
        for (int i = 0; i < 6; i++) ids.Add(await api.CreateSftJob(file, new { max_steps = 40, save_steps = 20 }, seed: i));
        foreach (var id in ids)
            Assert.Equal("succeeded", (await api.WaitForStatus(id, "succeeded", TimeSpan.FromMinutes(3))).GetProperty("status").GetString());

        var rows = await Postgres.QueryAsync(db, "SELECT \"Id\", \"Attempts\", \"Status\" FROM fine_tuning_jobs ORDER BY \"Id\"");
        Assert.Equal(6, rows.Count);
        Assert.All(rows, r => Assert.Equal(1, Convert.ToInt32(r[1])));
        var starts = await Postgres.QueryAsync(db,
            "SELECT \"JobId\", \"DataJson\" FROM job_events WHERE \"Message\" LIKE 'Job started on worker %' OR \"Message\" LIKE 'Job restarted%'");
        Assert.Equal(6, starts.Count);
        Assert.Equal(ids.Order(), starts.Select(s => (string)s[0]!).Order());
        var workers = starts.Select(s => JsonDocument.Parse((string)s[1]!).RootElement.GetProperty("worker").GetString()).Distinct().Count();
        Assert.Equal(2, workers);
        var dupes = await Postgres.QueryAsync(db, "SELECT \"JobId\", \"Name\", \"Step\", count(*) FROM job_metrics GROUP BY 1, 2, 3 HAVING count(*) > 1");
        Assert.Empty(dupes);
    }

    [PostgresFact]
    public async Task Postgres_worker_killed_mid_training_another_worker_finishes_the_job()
    {
        var db = await Postgres.CreateDatabaseAsync();
        var data = TempDir();
        await using var api = await AlignHubProcess.StartAsync(data, roles: "api,web", postgres: db, leaseSeconds: 6);
        await using var w1 = await AlignHubProcess.StartAsync(data, roles: "worker", postgres: db, leaseSeconds: 6);

        var file = (await api.Upload(TestData.Jsonl(64))).Body.GetProperty("id").GetString()!;
        var jobId = await api.CreateSftJob(file, new { max_steps = 200, n_epochs = 100, save_steps = 20 });
        await api.WaitForJob(jobId, j => j.GetProperty("steps_completed").GetInt32() >= 50, TimeSpan.FromMinutes(2));
        w1.Kill();

        await using var w2 = await AlignHubProcess.StartAsync(data, roles: "worker", postgres: db, leaseSeconds: 6);
        var job = await api.WaitForStatus(jobId, "succeeded", TimeSpan.FromMinutes(3));
        Assert.Equal("succeeded", job.GetProperty("status").GetString());
        AssertEveryStepOnce(await MetricKeys(api, jobId), 200);
        var attempts = await Postgres.QueryAsync(db, $"SELECT \"Attempts\" FROM fine_tuning_jobs WHERE \"Id\" = '{jobId}'");
        Assert.Equal(2, Convert.ToInt32(attempts.Single()[0]));
    }
}
