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
        Assert.True(events.Count(m => m.StartsWith("Resumed from checkpoint at step ")) == 1, string.Join("\n", events.Where(m => !m.StartsWith("Step "))));
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

    /// <summary>
    /// Online RL survives SIGKILL exactly: sampling seeds, the rollout block (PPO's four updates per batch), the value
    /// head and the optimizer are in the checkpoint, so the resumed job ends with the uninterrupted job's weights.
    /// </summary>
    [Theory]
    [InlineData("grpo")]
    [InlineData("ppo")]
    public async Task An_online_RL_job_killed_mid_run_ends_with_the_weights_of_an_uninterrupted_run(string method)
    {
        var data = TempDir();
        await using var app = await AlignHubProcess.StartAsync(data);
        var file = (await app.Upload(AlignHub.Domain.ArithmeticTask.Jsonl(256, 1), "problems.jsonl")).Body.GetProperty("id").GetString()!;
        // A graded reward (similarity to the answer), so even a random start learns something.
        var grader = new { type = "text_similarity", name = "close", input = "{{sample.output_text}}", reference = "{{item.answer}}", evaluation_metric = "fuzzy_match" };
        async Task<string> Create()
        {
            var hyperparameters = new Dictionary<string, object>
            {
                ["n_epochs"] = 100, ["max_steps"] = 400, ["batch_size"] = 8, ["num_generations"] = 4, ["max_completion_length"] = 4,
                ["save_steps"] = 10, ["beta"] = 0.05, ["learning_rate"] = 1e-3, ["grader"] = grader,
            };
            if (method == "ppo") hyperparameters["num_ppo_epochs"] = 4; // checkpoints at 10, 30, ... fall inside a block of 4 updates
            var (status, body) = await app.PostJson("/v1/fine_tuning/jobs", new Dictionary<string, object>
            {
                ["model"] = "alignhub/tiny", ["training_file"] = file, ["seed"] = 7,
                ["method"] = new Dictionary<string, object> { ["type"] = method, [method] = new { hyperparameters } },
            });
            Assert.True(status == System.Net.HttpStatusCode.OK, body.ToString());
            return body.GetProperty("id").GetString()!;
        }
        var killed = await Create();
        await app.WaitForJob(killed, j => j.GetProperty("steps_completed").GetInt32() >= 35, TimeSpan.FromMinutes(2));
        app.Kill();
        await app.RestartAsync();
        await app.WaitForStatus(killed, "succeeded", TimeSpan.FromMinutes(3));
        Assert.Contains((await Messages(app, killed)), m => m.StartsWith("Resumed from checkpoint at step "));
        var keys = await MetricKeys(app, killed);
        Assert.Equal(keys.Count, keys.Distinct().Count());
        Assert.Equal(Enumerable.Range(1, 400), keys.Where(k => k.Name == "loss").Select(k => k.Step));

        var straight = await Create();
        await app.WaitForStatus(straight, "succeeded", TimeSpan.FromMinutes(3));
        var a = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(data, "checkpoints", killed, "step-0000400", "model.safetensors"));
        var b = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(data, "checkpoints", straight, "step-0000400", "model.safetensors"));
        foreach (var (name, t) in a)
        {
            var diff = (t - b[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6f, $"{method}: {name} differs by {diff}");
        }
    }

    static async Task<List<string>> Messages(AlignHubProcess app, string jobId) =>
        (await app.GetJson($"/v1/fine_tuning/jobs/{jobId}/events?limit=1000")).GetProperty("data").EnumerateArray()
            .Select(e => e.GetProperty("message").GetString()!).ToList();

    /// <summary>
    /// The control channel end to end: a reward-model job paused through the API mid-run stops at its next step
    /// with a checkpoint of that step and lets go of the job; resumed, it ends with the weights of an uninterrupted
    /// job (1e-6) and every step's metrics once.
    /// </summary>
    [Fact]
    public async Task A_reward_model_job_paused_and_resumed_through_the_API_ends_with_the_weights_of_an_uninterrupted_run()
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
                method = new { type = "reward_model", reward_model = new { hyperparameters = new { n_epochs = 100, max_steps = 160, batch_size = 16, gradient_accumulation_steps = 2, learning_rate = 1e-3, save_steps = 1000 } } },
            });
            Assert.True(status == System.Net.HttpStatusCode.OK, body.ToString());
            return body.GetProperty("id").GetString()!;
        }
        var paused = await Create();
        await app.WaitForJob(paused, j => j.GetProperty("steps_completed").GetInt32() >= 30, TimeSpan.FromMinutes(2));
        var (ps, pj) = await app.PostJson($"/v1/fine_tuning/jobs/{paused}/pause", new { });
        Assert.Equal(System.Net.HttpStatusCode.OK, ps);
        Assert.Equal("paused", pj.GetProperty("status").GetString());
        var stoppedAt = 0;
        for (var until = DateTime.UtcNow.AddSeconds(60); stoppedAt == 0 && DateTime.UtcNow < until; await Task.Delay(200))
            if ((await Messages(app, paused)).FirstOrDefault(m => m.StartsWith("Job paused at step ")) is { } m)
                stoppedAt = int.Parse(m["Job paused at step ".Length..].Split(';')[0]);
        Assert.InRange(stoppedAt, 30, 159);
        var ckpts = (await app.GetJson($"/v1/fine_tuning/jobs/{paused}/checkpoints")).GetProperty("data").EnumerateArray().Select(c => c.GetProperty("step_number").GetInt32()).ToList();
        Assert.Equal([stoppedAt], ckpts); // save_steps is 1000: the pause wrote the only checkpoint, at the step it stopped
        await Task.Delay(1000);
        Assert.Equal(stoppedAt, (await app.GetJson($"/v1/fine_tuning/jobs/{paused}")).GetProperty("steps_completed").GetInt32());

        var (rs, _) = await app.PostJson($"/v1/fine_tuning/jobs/{paused}/resume", new { });
        Assert.Equal(System.Net.HttpStatusCode.OK, rs);
        await app.WaitForStatus(paused, "succeeded", TimeSpan.FromMinutes(3));
        Assert.Contains($"Resumed from checkpoint at step {stoppedAt}", await Messages(app, paused));
        var keys = await MetricKeys(app, paused);
        Assert.Equal(keys.Count, keys.Distinct().Count());
        Assert.Equal(Enumerable.Range(1, 160), keys.Where(k => k.Name == "loss").Select(k => k.Step));

        var straight = await Create();
        await app.WaitForStatus(straight, "succeeded", TimeSpan.FromMinutes(3));
        var a = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(data, "checkpoints", paused, "step-0000160", "model.safetensors"));
        var b = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(data, "checkpoints", straight, "step-0000160", "model.safetensors"));
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        Assert.Contains("score.weight", a.Keys);
        foreach (var (name, t) in a)
        {
            var diff = (t - b[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6f, $"{name} differs by {diff}");
        }
    }

    /// <summary>A resume that arrives before the worker reached its next step withdraws the pause (or re-queues the job): either way it ends with every step once.</summary>
    [Fact]
    public async Task Pause_then_an_immediate_resume_loses_and_repeats_no_step()
    {
        await using var app = await AlignHubProcess.StartAsync(TempDir());
        var file = (await app.Upload(TestData.Jsonl(64))).Body.GetProperty("id").GetString()!;
        var jobId = await app.CreateSftJob(file, new { max_steps = 120, n_epochs = 100, save_steps = 1000 });
        await app.WaitForJob(jobId, j => j.GetProperty("steps_completed").GetInt32() >= 10, TimeSpan.FromMinutes(2));
        Assert.Equal("paused", (await app.PostJson($"/v1/fine_tuning/jobs/{jobId}/pause", new { })).Body.GetProperty("status").GetString());
        var (rs, rj) = await app.PostJson($"/v1/fine_tuning/jobs/{jobId}/resume", new { });
        Assert.Equal(System.Net.HttpStatusCode.OK, rs);
        Assert.Contains(rj.GetProperty("status").GetString(), new[] { "queued", "running" });
        await app.WaitForStatus(jobId, "succeeded", TimeSpan.FromMinutes(2));
        AssertEveryStepOnce(await MetricKeys(app, jobId), 120);
        var messages = await Messages(app, jobId);
        Assert.Contains(messages, m => m.StartsWith("Job resumed by request"));
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

    /// <summary>
    /// SIGTERM to the worker that trains (PostgreSQL, one api and two workers): it writes a checkpoint of the step it
    /// reached, gives the job back and exits within seconds; the other worker resumes it from that very step, every step's
    /// metrics are recorded once, and the weights equal those of the same job run without the interruption (1e-6).
    /// </summary>
    [PostgresFact]
    public async Task Postgres_worker_stopped_with_SIGTERM_hands_its_job_over_from_the_step_it_reached()
    {
        var db = await Postgres.CreateDatabaseAsync();
        var data = TempDir();
        await using var api = await AlignHubProcess.StartAsync(data, roles: "api,web", postgres: db, leaseSeconds: 6);
        await using var w1 = await AlignHubProcess.StartAsync(data, roles: "worker", postgres: db, leaseSeconds: 6);
        await using var w2 = await AlignHubProcess.StartAsync(data, roles: "worker", postgres: db, leaseSeconds: 6);
        var file = (await api.Upload(TestData.Jsonl(64))).Body.GetProperty("id").GetString()!;
        const int total = 1500;
        async Task<string> Create() => await api.CreateSftJob(file, new { max_steps = total, n_epochs = 100, batch_size = 4, save_steps = 500 }, seed: 11);
        var jobId = await Create();
        await api.WaitForJob(jobId, j => j.GetProperty("steps_completed").GetInt32() >= 100, TimeSpan.FromMinutes(2));
        // Whichever worker holds the job (its lease names the process) gets the SIGTERM.
        var owner = (string)(await Postgres.QueryAsync(db, $"SELECT \"LeaseOwner\" FROM fine_tuning_jobs WHERE \"Id\" = '{jobId}'")).Single()[0]!;
        var holder = owner.Split(':')[1] == w1.Pid.ToString() ? w1 : w2;
        var seconds = await holder.TerminateAsync(TimeSpan.FromSeconds(60));
        Assert.True(seconds < 30, $"the worker took {seconds:F1} s to stop");

        var job = await api.WaitForStatus(jobId, "succeeded", TimeSpan.FromMinutes(3));
        // From the database: the job's metrics events (one a step) fill more than a page of the API.
        var events = (await Postgres.QueryAsync(db, $"SELECT \"Message\" FROM job_events WHERE \"JobId\" = '{jobId}' AND \"Type\" = 'message' ORDER BY \"Id\""))
            .Select(r => (string)r[0]!).ToList();
        var resumed = events.Single(m => m.StartsWith("Resumed from checkpoint at step "));
        int step = int.Parse(resumed["Resumed from checkpoint at step ".Length..]);
        Assert.True(step >= 100 && step % 500 != 0, $"resumed at step {step}: the interrupted step's own checkpoint, not the last scheduled one");
        // Every metric row of every step once (read from the database: more rows than one page of the API).
        var keys = (await Postgres.QueryAsync(db, $"SELECT \"Step\", \"Name\" FROM job_metrics WHERE \"JobId\" = '{jobId}' ORDER BY \"Step\", \"Name\""))
            .Select(r => (Convert.ToInt32(r[0]), (string)r[1]!)).ToList();
        AssertEveryStepOnce(keys, total);

        var straight = await Create();
        await api.WaitForStatus(straight, "succeeded", TimeSpan.FromMinutes(3));
        var a = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(data, "checkpoints", jobId, $"step-{total:D7}", "model.safetensors"));
        var b = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(data, "checkpoints", straight, $"step-{total:D7}", "model.safetensors"));
        foreach (var (name, t) in a)
        {
            var diff = (t - b[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6f, $"{name} differs by {diff}");
        }
        Assert.Equal("succeeded", job.GetProperty("status").GetString());
    }
}
