using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Xunit;
using Xunit.Abstractions;

namespace AlignHub.Tests;

/// <summary>
/// Fault drills on PostgreSQL with several worker processes (issue 16). CI runs the short versions; <c>bench/drill.sh</c>
/// runs the same code at full size through the environment (<c>ALIGNHUB_DRILL_JOBS</c>, <c>ALIGNHUB_DRILL_KILLS</c>,
/// <c>ALIGNHUB_DRILL_WORKERS</c>, <c>ALIGNHUB_DRILL_STARTS</c>) and appends each drill's figures to <c>ALIGNHUB_DRILL_OUT</c>.
/// </summary>
public class DrillTests(ITestOutputHelper output)
{
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-drill-").FullName;
    static int Env(string name, int fallback) => int.TryParse(Environment.GetEnvironmentVariable(name), out var v) && v > 0 ? v : fallback;

    void Report(string line) => DrillReport.Write(output, line);

    sealed record Spec(string Kind, int Steps, object Body);

    /// <summary>
    /// 1 api and W workers (lease 6 s), N mixed jobs (SFT, DPO, reward model, GRPO; device any or cpu), K workers
    /// SIGKILLed and one SIGTERMed while each holds a job mid-run (each restarted at once, as a supervisor would):
    /// every job ends succeeded; every step's loss is recorded exactly once (no duplicate metric row anywhere);
    /// every checkpoint in the database loads as a model; every interrupted job's final weights equal those of the
    /// same job run again without interruption (1e-6). Reports the time from each SIGKILL to the job training again.
    /// </summary>
    [PostgresFact]
    public async Task Workers_killed_and_stopped_under_mixed_jobs_lose_nothing()
    {
        int jobCount = Env("ALIGNHUB_DRILL_JOBS", 8), kills = Env("ALIGNHUB_DRILL_KILLS", 1), workerCount = Env("ALIGNHUB_DRILL_WORKERS", 3);
        var db = await Postgres.CreateDatabaseAsync();
        var data = TempDir();
        var wall = Stopwatch.StartNew();
        await using var api = await AlignHubProcess.StartAsync(data, roles: "api,web", postgres: db, leaseSeconds: 6);
        var workers = new List<AlignHubProcess>();
        try
        {
            foreach (var _ in Enumerable.Range(0, workerCount))
                workers.Add(await AlignHubProcess.StartAsync(data, roles: "worker", postgres: db, leaseSeconds: 6, waitReady: false));
            foreach (var w in workers) await w.WaitReadyAsync();

            var sftFile = await UploadId(api, TestData.Jsonl(64), "sft.jsonl");
            var pairs = string.Join("\n", AlignHub.Domain.PreferenceTask.Pairs(128, 1).Select(p => JsonSerializer.Serialize(new { prompt = p.Prompt, chosen = p.Chosen, rejected = p.Rejected })));
            var pairFile = await UploadId(api, pairs, "pairs.jsonl");
            var problemFile = await UploadId(api, AlignHub.Domain.ArithmeticTask.Jsonl(128, 1), "problems.jsonl");
            var grader = new { type = "text_similarity", name = "close", input = "{{sample.output_text}}", reference = "{{item.answer}}", evaluation_metric = "fuzzy_match" };

            Spec Make(int i)
            {
                string device = i % 3 == 2 ? "cpu" : "any";
                object Job(string type, string file, Dictionary<string, object> hp) => new Dictionary<string, object>
                {
                    ["model"] = "alignhub/tiny", ["training_file"] = file, ["seed"] = 100 + i, ["device"] = device,
                    ["method"] = new Dictionary<string, object> { ["type"] = type, [type] = new { hyperparameters = hp } },
                };
                return (i % 4) switch
                {
                    0 => new Spec("supervised", 160, Job("supervised", sftFile, new() { ["n_epochs"] = 100, ["max_steps"] = 160, ["batch_size"] = 4, ["save_steps"] = 40 })),
                    1 => new Spec("dpo", 100, Job("dpo", pairFile, new() { ["n_epochs"] = 100, ["max_steps"] = 100, ["batch_size"] = 8, ["learning_rate"] = 1e-3, ["save_steps"] = 25 })),
                    2 => new Spec("reward_model", 100, Job("reward_model", pairFile, new() { ["n_epochs"] = 100, ["max_steps"] = 100, ["batch_size"] = 8, ["save_steps"] = 25 })),
                    _ => new Spec("grpo", 60, Job("grpo", problemFile, new() { ["n_epochs"] = 100, ["max_steps"] = 60, ["batch_size"] = 4, ["num_generations"] = 4,
                        ["max_completion_length"] = 4, ["save_steps"] = 15, ["beta"] = 0.05, ["learning_rate"] = 1e-3, ["grader"] = grader })),
                };
            }

            var jobs = new Dictionary<string, Spec>();
            for (int i = 0; i < jobCount; i++)
            {
                var spec = Make(i);
                jobs[await Create(api, spec.Body)] = spec;
            }

            // The disruptions: K SIGKILLs, then one SIGTERM, each of the worker holding a job that is past its first
            // checkpoint and well before its end; the worker is started again at once.
            var disrupted = new List<(string Job, string Signal, double ResumeSeconds)>();
            for (int d = 0; d <= kills; d++)
            {
                bool term = d == kills;
                var (jobId, holder) = await PickVictim(db, workers, jobs, disrupted.Select(x => x.Job).ToHashSet(), TimeSpan.FromMinutes(6));
                var killedAt = Stopwatch.StartNew();
                if (term)
                {
                    var seconds = await holder.TerminateAsync(TimeSpan.FromSeconds(60));
                    Assert.True(seconds < 30, $"the SIGTERMed worker took {seconds:F1} s to stop");
                }
                else holder.Kill();
                _ = holder.RestartAsync();
                // Training again: the job's "Resumed from checkpoint" event, written when its new attempt has loaded the checkpoint.
                await WaitUntil(async () => (await Postgres.QueryAsync(db,
                    $"SELECT 1 FROM job_events WHERE \"JobId\" = '{jobId}' AND \"Message\" LIKE 'Resumed from checkpoint at step %'")).Count > 0, TimeSpan.FromMinutes(4),
                    async () => $"{(term ? "SIGTERM" : "SIGKILL")} of {holder.Pid} holding {jobs[jobId].Kind} job {jobId}; its row: " +
                        string.Join(", ", (await Postgres.QueryAsync(db, $"SELECT \"Status\", \"StepsCompleted\", \"LeaseOwner\", \"Attempts\" FROM fine_tuning_jobs WHERE \"Id\" = '{jobId}'")).Single()) +
                        "; its events: " + string.Join(" | ", (await Postgres.QueryAsync(db, $"SELECT \"Message\" FROM job_events WHERE \"JobId\" = '{jobId}' AND \"Type\" = 'message' ORDER BY \"Id\"")).Select(r => r[0])) +
                        "; workers: " + string.Join(", ", workers.Select(w => w.Pid)));
                disrupted.Add((jobId, term ? "SIGTERM" : "SIGKILL", killedAt.Elapsed.TotalSeconds));
            }

            foreach (var id in jobs.Keys)
                await api.WaitForStatus(id, "succeeded", TimeSpan.FromMinutes(10));
            var drillSeconds = wall.Elapsed.TotalSeconds;

            // Every step's metrics exactly once, in every job.
            Assert.Empty(await Postgres.QueryAsync(db, "SELECT \"JobId\", \"Name\", \"Step\" FROM job_metrics GROUP BY 1, 2, 3 HAVING count(*) > 1"));
            foreach (var (id, spec) in jobs)
            {
                var steps = (await Postgres.QueryAsync(db, $"SELECT \"Step\" FROM job_metrics WHERE \"JobId\" = '{id}' AND \"Name\" = 'loss' ORDER BY \"Step\""))
                    .Select(r => Convert.ToInt32(r[0])).ToList();
                Assert.True(Enumerable.Range(1, spec.Steps).SequenceEqual(steps), $"{spec.Kind} job {id}: loss steps {string.Join(",", steps)}");
            }

            // Every checkpoint the database lists loads as a model.
            var checkpoints = await Postgres.QueryAsync(db, "SELECT \"JobId\", \"Step\", \"StoragePath\" FROM job_checkpoints ORDER BY 1, 2");
            Assert.True(checkpoints.Count >= jobCount * 4, $"{checkpoints.Count} checkpoints");
            foreach (var c in checkpoints)
            {
                // As a job or the model server loads it: the folder's config.json and weights (a reward model with its score head).
                var folder = Path.Combine(data, (string)c[2]!);
                var source = new AlignHub.Training.Models.ModelSource(File.ReadAllText(Path.Combine(folder, "config.json")), "byte", folder);
                if (source.Architecture.IsRewardModel)
                {
                    using var rm = source.CreateRewardModel();
                    Assert.Contains(AlignHub.Training.Models.RewardModel.ScoreKey, AlignHub.Training.IO.SafeTensors.Read(Path.Combine(folder, "model.safetensors")).Keys);
                    Assert.True(rm.Extra.Values.All(t => !t.isnan().any().item<bool>()), $"checkpoint {c[2]}: score head holds NaN");
                }
                else
                {
                    using var model = source.CreateModel();
                    Assert.True(model.parameters().All(p => !p.isnan().any().item<bool>()), $"checkpoint {c[2]} holds NaN");
                }
            }

            // Interrupted jobs end where uninterrupted ones do.
            var reruns = new List<(string Killed, string Straight)>();
            foreach (var (id, _, _) in disrupted) reruns.Add((id, await Create(api, jobs[id].Body)));
            foreach (var (killed, straight) in reruns)
            {
                await api.WaitForStatus(straight, "succeeded", TimeSpan.FromMinutes(5));
                var step = $"step-{jobs[killed].Steps:D7}";
                var a = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(data, "checkpoints", killed, step, "model.safetensors"));
                var b = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(data, "checkpoints", straight, step, "model.safetensors"));
                Assert.Equal(a.Keys.Order(), b.Keys.Order());
                foreach (var (name, t) in a)
                {
                    var diff = (t - b[name]).abs().max().item<float>();
                    Assert.True(diff <= 1e-6f, $"{jobs[killed].Kind} job {killed}: {name} differs by {diff} from an uninterrupted run");
                }
            }

            var attempts = (await Postgres.QueryAsync(db, "SELECT sum(\"Attempts\") FROM fine_tuning_jobs")).Single()[0];
            Report($"drill: 1 api + {workerCount} workers, {jobCount} jobs ({string.Join(", ", jobs.Values.GroupBy(s => s.Kind).Select(g => $"{g.Count()} {g.Key}"))}), " +
                $"{kills} SIGKILL + 1 SIGTERM: all succeeded in {drillSeconds:F0} s; {checkpoints.Count} checkpoints loaded; every step once; " +
                $"{disrupted.Count} interrupted jobs equal uninterrupted runs (1e-6); {Convert.ToInt64(attempts) - jobCount - reruns.Count} extra attempts");
            foreach (var (id, signal, seconds) in disrupted)
                Report($"drill: {signal} of the worker holding {jobs[id].Kind} job {id}: training again after {seconds:F1} s (lease 6 s)");
        }
        finally
        {
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    /// <summary>
    /// Hangfire on PostgreSQL hands out jobs as fast as workers free up: 1 api and 4 workers (4 slots each), N short
    /// jobs (two SFT steps): each starts exactly once and succeeds; reports jobs started and finished per second.
    /// </summary>
    [PostgresFact]
    public async Task Four_workers_start_each_of_many_short_jobs_once()
    {
        int count = Env("ALIGNHUB_DRILL_STARTS", 24);
        var db = await Postgres.CreateDatabaseAsync();
        var data = TempDir();
        await using var api = await AlignHubProcess.StartAsync(data, roles: "api", postgres: db);
        var workers = new List<AlignHubProcess>();
        try
        {
            var slots = new Dictionary<string, string> { ["AlignHub__WorkerCount"] = "4" };
            foreach (var _ in Enumerable.Range(0, 4))
                workers.Add(await AlignHubProcess.StartAsync(data, roles: "worker", postgres: db, waitReady: false, env: slots));
            foreach (var w in workers) await w.WaitReadyAsync();
            // Every worker reported itself before the jobs arrive.
            await WaitUntil(async () => (await api.GetJson("/v1/workers")).GetProperty("data").EnumerateArray().Count(w => w.GetProperty("status").GetString() == "online") == 4,
                TimeSpan.FromSeconds(60));

            var file = await UploadId(api, TestData.Jsonl(8), "tiny.jsonl");
            var sw = Stopwatch.StartNew();
            var ids = new List<string>();
            for (int i = 0; i < count; i++) ids.Add(await api.CreateSftJob(file, new { max_steps = 2, batch_size = 4, save_steps = 2 }, seed: i));
            var created = sw.Elapsed.TotalSeconds;
            foreach (var id in ids) await api.WaitForStatus(id, "succeeded", TimeSpan.FromMinutes(10));
            var rows = await Postgres.QueryAsync(db, "SELECT \"Attempts\", \"EnqueuedAtMs\", \"StartedAt\", \"FinishedAt\", \"CreatedAtMs\" FROM fine_tuning_jobs");
            Assert.Equal(count, rows.Count);
            Assert.All(rows, r => Assert.Equal(1, Convert.ToInt32(r[0])));
            var owners = await Postgres.QueryAsync(db, "SELECT DISTINCT (\"DataJson\"::json->>'worker') FROM job_events WHERE \"Message\" LIKE 'Job started on worker %'");
            Assert.Equal(4, owners.Count);
            // Start times come from the "Job started" events (milliseconds); the span from the first creation to the last start.
            var starts = (await Postgres.QueryAsync(db, "SELECT min(\"CreatedAt\"), max(\"CreatedAt\") FROM job_events WHERE \"Message\" LIKE 'Job started on worker %'")).Single();
            var firstCreated = rows.Min(r => Convert.ToInt64(r[4])) / 1000.0;
            double startSpan = Math.Max(1, Convert.ToInt64(starts[1]) - firstCreated), finishSpan = Math.Max(1, rows.Max(r => Convert.ToInt64(r[3])) - firstCreated);
            Report($"dispatch: 1 api + 4 workers x 4 slots on PostgreSQL, {count} two-step SFT jobs created in {created:F1} s: " +
                $"{count / startSpan:F1} jobs started/s (last start {startSpan:F0} s after the first creation), {count / finishSpan:F1} jobs finished/s; each started once");
        }
        finally
        {
            foreach (var w in workers) await w.DisposeAsync();
        }
    }

    /// <summary>
    /// Queues by device: a gpu job waits on training_gpu and says so in its events while no worker serves that queue;
    /// a worker started with <c>AlignHub__Worker__Queues=training_gpu</c> runs it, and a cpu job goes to the cpu worker.
    /// <c>GET /v1/workers</c> shows both with their queues, device and version, and the stopped one as stopped.
    /// </summary>
    [PostgresFact]
    public async Task Jobs_go_to_the_workers_that_serve_their_device_queue()
    {
        var db = await Postgres.CreateDatabaseAsync();
        var data = TempDir();
        await using var api = await AlignHubProcess.StartAsync(data, roles: "api,web", postgres: db, leaseSeconds: 6);
        await using var cpu = await AlignHubProcess.StartAsync(data, roles: "worker", postgres: db, leaseSeconds: 6);
        var file = await UploadId(api, TestData.Jsonl(16), "sft.jsonl");
        async Task<JsonElement> CreateOn(string device)
        {
            var (status, body) = await api.PostJson("/v1/fine_tuning/jobs", new
            {
                model = "alignhub/tiny", training_file = file, device,
                method = new { type = "supervised", supervised = new { hyperparameters = new { max_steps = 4, batch_size = 4 } } },
            });
            Assert.True(status == HttpStatusCode.OK, body.ToString());
            return body;
        }
        var gpuJob = await CreateOn("gpu");
        Assert.Equal("gpu", gpuJob.GetProperty("device").GetString());
        Assert.True(gpuJob.GetProperty("estimated_memory_bytes").GetInt64() > 0);
        var gpuId = gpuJob.GetProperty("id").GetString()!;
        await WaitUntil(async () => (await Messages(api, gpuId)).Any(m => m.StartsWith("No online worker serves queue training_gpu")), TimeSpan.FromSeconds(40));
        Assert.Equal("queued", (await api.GetJson($"/v1/fine_tuning/jobs/{gpuId}")).GetProperty("status").GetString());

        var cpuId = (await CreateOn("cpu")).GetProperty("id").GetString()!;
        await api.WaitForStatus(cpuId, "succeeded", TimeSpan.FromMinutes(2));
        Assert.Equal("queued", (await api.GetJson($"/v1/fine_tuning/jobs/{gpuId}")).GetProperty("status").GetString());

        await using var gpu = await AlignHubProcess.StartAsync(data, roles: "worker", postgres: db, leaseSeconds: 6,
            env: new Dictionary<string, string> { ["AlignHub__Worker__Queues"] = "training_gpu" });
        await api.WaitForStatus(gpuId, "succeeded", TimeSpan.FromMinutes(2));
        string Owner(List<string> messages) => messages.Single(m => m.StartsWith("Job started on worker ")).Split(' ')[4];
        Assert.Equal(gpu.Pid.ToString(), Owner(await Messages(api, gpuId)).Split(':')[1]);
        Assert.Equal(cpu.Pid.ToString(), Owner(await Messages(api, cpuId)).Split(':')[1]);

        var list = (await api.GetJson("/v1/workers")).GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(2, list.Count);
        var g = list.Single(w => w.GetProperty("pid").GetInt32() == gpu.Pid);
        Assert.Equal(["training_gpu", "default"], g.GetProperty("queues").EnumerateArray().Select(q => q.GetString()));
        var c = list.Single(w => w.GetProperty("pid").GetInt32() == cpu.Pid);
        Assert.Equal(["training_cpu", "training", "default"], c.GetProperty("queues").EnumerateArray().Select(q => q.GetString()));
        Assert.All(list, w => Assert.Equal("online", w.GetProperty("status").GetString()));
        Assert.Equal("cpu", c.GetProperty("device").GetString());
        Assert.False(string.IsNullOrEmpty(c.GetProperty("version").GetString()));

        await gpu.TerminateAsync(TimeSpan.FromSeconds(60));
        var stopped = await api.GetJson($"/v1/workers/{Uri.EscapeDataString(g.GetProperty("id").GetString()!)}");
        Assert.Equal("stopped", stopped.GetProperty("status").GetString());
        var (bad, problem) = await api.PostJson("/v1/fine_tuning/jobs", new { model = "alignhub/tiny", training_file = file, device = "tpu" });
        Assert.Equal(HttpStatusCode.BadRequest, bad);
        Assert.Contains("device", problem.GetProperty("errors").EnumerateObject().Select(p => p.Name));
    }

    static async Task<(string Job, AlignHubProcess Holder)> PickVictim(string db, List<AlignHubProcess> workers, Dictionary<string, Spec> jobs, HashSet<string> done, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until)
        {
            var running = await Postgres.QueryAsync(db, "SELECT \"Id\", \"LeaseOwner\", \"StepsCompleted\" FROM fine_tuning_jobs WHERE \"Status\" = 'running' AND \"LeaseOwner\" IS NOT NULL");
            foreach (var r in running)
            {
                var id = (string)r[0]!;
                if (done.Contains(id) || !jobs.TryGetValue(id, out var spec)) continue;
                int step = Convert.ToInt32(r[2]);
                // Past its first checkpoint, at least 15 steps before its end.
                if (step < spec.Steps / 4 + 3 || step > spec.Steps - 15) continue;
                var pid = ((string)r[1]!).Split(':')[1];
                if (workers.FirstOrDefault(w => w.Pid.ToString() == pid) is { } holder) return (id, holder);
            }
            await Task.Delay(200);
        }
        throw new Xunit.Sdk.XunitException("no running job reached the middle of its run in time");
    }

    static async Task WaitUntil(Func<Task<bool>> done, TimeSpan timeout, Func<Task<string>>? explain = null)
    {
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until)
        {
            if (await done()) return;
            await Task.Delay(200);
        }
        throw new Xunit.Sdk.XunitException("timed out" + (explain is null ? "" : ": " + await explain()));
    }

    static async Task<string> UploadId(AlignHubProcess api, string content, string name)
    {
        var (status, body) = await api.Upload(content, name);
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        return body.GetProperty("id").GetString()!;
    }

    static async Task<string> Create(AlignHubProcess api, object body)
    {
        var (status, job) = await api.PostJson("/v1/fine_tuning/jobs", body);
        Assert.True(status == HttpStatusCode.OK, job.ToString());
        return job.GetProperty("id").GetString()!;
    }

    static async Task<List<string>> Messages(AlignHubProcess api, string jobId) =>
        (await api.GetJson($"/v1/fine_tuning/jobs/{jobId}/events?limit=1000")).GetProperty("data").EnumerateArray()
            .Select(e => e.GetProperty("message").GetString()!).ToList();
}
