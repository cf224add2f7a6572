using System.Net;
using System.Text.Json;
using Xunit;

namespace AlignHub.Tests;

/// <summary>The walking skeleton, end to end through a real AlignHub process: REST -> job row -> Hangfire -> TorchSharp -> dashboard.</summary>
public class EndToEndTests
{
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-e2e-").FullName;

    [Fact]
    public Task Sft_job_succeeds_end_to_end_on_the_embedded_default() => SftEndToEnd(postgres: null);

    [PostgresFact]
    public async Task Sft_job_succeeds_end_to_end_on_postgres() => await SftEndToEnd(await Postgres.CreateDatabaseAsync());

    static async Task SftEndToEnd(string? postgres)
    {
        await using var app = await AlignHubProcess.StartAsync(TempDir(), postgres: postgres);
        var (status, file) = await app.Upload(TestData.Jsonl(200, chat: true));
        Assert.True(status == HttpStatusCode.OK, file.ToString());
        Assert.StartsWith("file-", file.GetProperty("id").GetString());
        Assert.Equal("file", file.GetProperty("object").GetString());
        Assert.Equal(200, file.GetProperty("line_count").GetInt32());

        var jobId = await app.CreateSftJob(file.GetProperty("id").GetString()!, new { n_epochs = 3, batch_size = 8, learning_rate = 3e-3, save_steps = 25 });
        Assert.StartsWith("ftjob-", jobId);
        var job = await app.WaitForStatus(jobId, "succeeded", TimeSpan.FromMinutes(3));
        Assert.Equal("succeeded", job.GetProperty("status").GetString());
        Assert.Equal(75, job.GetProperty("steps_completed").GetInt32());
        var fineTuned = job.GetProperty("fine_tuned_model").GetString()!;
        Assert.StartsWith("ft:alignhub/tiny:", fineTuned);

        var metrics = await app.GetJson($"/v1/fine_tuning/jobs/{jobId}/metrics?name=loss");
        var losses = metrics.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("value").GetDouble()).ToList();
        Assert.Equal(75, losses.Count);
        Assert.True(losses.TakeLast(5).Average() < 0.7 * losses.Take(5).Average(), $"train_loss {losses.Take(5).Average()} -> {losses.TakeLast(5).Average()}");

        var checkpoints = await app.GetJson($"/v1/fine_tuning/jobs/{jobId}/checkpoints");
        var steps = checkpoints.GetProperty("data").EnumerateArray().Select(c => c.GetProperty("step_number").GetInt32()).ToList();
        Assert.Equal([75, 50, 25], steps);
        var first = checkpoints.GetProperty("data")[0];
        Assert.StartsWith("ftckpt-", first.GetProperty("id").GetString());
        Assert.Equal("fine_tuning.job.checkpoint", first.GetProperty("object").GetString());
        Assert.True(first.GetProperty("metrics").TryGetProperty("train_loss", out _));

        var events = await app.GetJson($"/v1/fine_tuning/jobs/{jobId}/events?limit=1000");
        var messages = events.GetProperty("data").EnumerateArray().Select(e => e.GetProperty("message").GetString()!).ToList();
        Assert.Contains(messages, m => m.StartsWith("Job started"));
        Assert.Contains(messages, m => m.StartsWith("Epoch 1 of 3"));
        Assert.Contains(messages, m => m.StartsWith("Checkpoint saved at step 25"));
        Assert.Contains(messages, m => m.StartsWith("Job succeeded"));

        var models = await app.GetJson("/v1/models");
        Assert.Contains(models.GetProperty("data").EnumerateArray(), m => m.GetProperty("id").GetString() == fineTuned);

        // The dashboard lists the job (server-side prerendered HTML of the jobs page and the job page).
        var jobsPage = await app.Http.GetStringAsync("/jobs");
        Assert.Contains(jobId, jobsPage);
        Assert.Contains("succeeded", jobsPage);
        var jobPage = await app.Http.GetStringAsync($"/jobs/{jobId}");
        Assert.Contains("loss-chart", jobPage);

        // A fine-tuned model trains further: its weights load as the starting point.
        var next = await app.CreateSftJob(file.GetProperty("id").GetString()!, new { max_steps = 5 }, model: fineTuned);
        var nextJob = await app.WaitForStatus(next, "succeeded", TimeSpan.FromMinutes(1));
        Assert.Equal("succeeded", nextJob.GetProperty("status").GetString());
        var nextLoss = (await app.GetJson($"/v1/fine_tuning/jobs/{next}/metrics?name=loss")).GetProperty("data")[0].GetProperty("value").GetDouble();
        Assert.True(nextLoss < losses.Take(5).Average(), $"continued training starts at {nextLoss}, fresh at {losses[0]}");
    }

    [Fact]
    public async Task Bad_requests_get_problem_details_and_write_nothing()
    {
        await using var app = await AlignHubProcess.StartAsync(TempDir());
        var good = await app.Upload(TestData.Jsonl(20));
        var fileId = good.Body.GetProperty("id").GetString()!;

        var bad = TestData.Jsonl(2) + "{\"prompt\": \"x\", \"completion\": \"y\"\n" + TestData.Jsonl(2);
        var (status, problem) = await app.Upload(bad);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("line 3", problem.GetProperty("detail").GetString());
        Assert.Equal("file", problem.GetProperty("error").GetProperty("param").GetString());

        // A file holds one kind of row: training rows, or prompts for generation.
        (status, problem) = await app.Upload(TestData.Jsonl(1).TrimEnd() + "\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("line 2", problem.GetProperty("detail").GetString());
        Assert.Contains("one kind of row", problem.GetProperty("detail").GetString());

        (status, _) = await app.Upload(TestData.Jsonl(2), purpose: "batch");
        Assert.Equal(HttpStatusCode.BadRequest, status);

        var files = await app.GetJson("/v1/files");
        Assert.Single(files.GetProperty("data").EnumerateArray());
        Assert.Single(Directory.GetFiles(Path.Combine(Path.GetDirectoryName(app.LogPath)!, "files")));

        var (s1, p1) = await app.PostJson("/v1/fine_tuning/jobs", new { model = "alignhub/tiny", training_file = fileId, method = new { type = "telepathy" } });
        Assert.Equal(HttpStatusCode.BadRequest, s1);
        Assert.Equal("method.type", p1.GetProperty("error").GetProperty("param").GetString());
        Assert.True(p1.GetProperty("errors").TryGetProperty("method.type", out _));

        var (s2, p2) = await app.PostJson("/v1/fine_tuning/jobs", new { model = "no/such-model", training_file = "file-missing", method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 0 } } } });
        Assert.Equal(HttpStatusCode.BadRequest, s2);
        var errors = p2.GetProperty("errors");
        Assert.True(errors.TryGetProperty("model", out _));
        Assert.True(errors.TryGetProperty("training_file", out _));
        Assert.True(errors.TryGetProperty("method.supervised.hyperparameters.n_epochs", out _));

        var wrongType = new StringContent("{\"model\": \"alignhub/tiny\", \"seed\": \"seven\"}", System.Text.Encoding.UTF8, "application/json");
        var r3 = await app.Http.PostAsync("/v1/fine_tuning/jobs", wrongType);
        Assert.Equal(HttpStatusCode.BadRequest, r3.StatusCode);
        Assert.Contains("seed", await r3.Content.ReadAsStringAsync());
        Assert.Equal("application/problem+json", r3.Content.Headers.ContentType?.MediaType);

        // Prompts (no assistant turn) upload for generation, but do not train a supervised job.
        var (ps, prompts) = await app.Upload("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n");
        Assert.Equal(HttpStatusCode.OK, ps);
        Assert.Equal("prompts", prompts.GetProperty("format").GetString());
        var (s5, p5) = await app.PostJson("/v1/fine_tuning/jobs", new { model = "alignhub/tiny", training_file = prompts.GetProperty("id").GetString() });
        Assert.Equal(HttpStatusCode.BadRequest, s5);
        Assert.Equal("training_file", p5.GetProperty("error").GetProperty("param").GetString());
        Assert.Contains("assistant", p5.GetProperty("error").GetProperty("message").GetString());
        var (s6, p6) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = prompts.GetProperty("id").GetString(),
            method = new { type = "generate", generate = new { hyperparameters = new { n = 0, temperature = -1, stop = new[] { "a", "b", "c", "d", "e" } } } },
        });
        Assert.Equal(HttpStatusCode.BadRequest, s6);
        foreach (var field in new[] { "n", "temperature", "stop" })
            Assert.True(p6.GetProperty("errors").TryGetProperty("method.generate.hyperparameters." + field, out _), field);

        var jobs = await app.GetJson("/v1/fine_tuning/jobs");
        Assert.Empty(jobs.GetProperty("data").EnumerateArray());

        var missing = await app.Http.GetAsync("/v1/fine_tuning/jobs/ftjob-nope");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("application/problem+json", missing.Content.Headers.ContentType?.MediaType);

        // Cancelling a finished job is an illegal transition: 409, and the job stays succeeded.
        var jobId = await app.CreateSftJob(fileId, new { max_steps = 3 });
        await app.WaitForStatus(jobId, "succeeded", TimeSpan.FromMinutes(1));
        var (s4, p4) = await app.PostJson($"/v1/fine_tuning/jobs/{jobId}/cancel", new { });
        Assert.Equal(HttpStatusCode.Conflict, s4);
        Assert.Equal("conflict_error", p4.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("succeeded", (await app.GetJson($"/v1/fine_tuning/jobs/{jobId}")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task A_job_that_throws_is_marked_failed_with_a_readable_error_and_not_retried()
    {
        await using var app = await AlignHubProcess.StartAsync(TempDir());
        var file = (await app.Upload(TestData.Jsonl(16))).Body.GetProperty("id").GetString()!;
        // Valid at the API, impossible in the trainer: truncated to 2 tokens, no completion token is left.
        var jobId = await app.CreateSftJob(file, new { max_seq_length = 2 });
        var job = await app.WaitForStatus(jobId, "failed", TimeSpan.FromMinutes(1));
        Assert.Equal("failed", job.GetProperty("status").GetString());
        var error = job.GetProperty("error");
        Assert.Equal("training_error", error.GetProperty("code").GetString());
        Assert.Contains("no training example keeps a trainable token", error.GetProperty("message").GetString());
        Assert.True(job.GetProperty("finished_at").GetInt64() > 0);
        await Task.Delay(3000); // Hangfire's automatic retry would have started it again by now
        var events = (await app.GetJson($"/v1/fine_tuning/jobs/{jobId}/events?limit=100")).GetProperty("data").EnumerateArray()
            .Select(e => (Level: e.GetProperty("level").GetString(), Message: e.GetProperty("message").GetString()!)).ToList();
        Assert.Single(events, e => e.Message.StartsWith("Job started"));
        Assert.Contains(events, e => e.Level == "error" && e.Message.StartsWith("Job failed:"));
        Assert.Equal("failed", (await app.GetJson($"/v1/fine_tuning/jobs/{jobId}")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Cancelling_a_running_job_stops_it_within_a_step()
    {
        await using var app = await AlignHubProcess.StartAsync(TempDir());
        var file = (await app.Upload(TestData.Jsonl(64))).Body.GetProperty("id").GetString()!;
        var jobId = await app.CreateSftJob(file, new { n_epochs = 100, save_steps = 1000 });
        await app.WaitForJob(jobId, j => j.GetProperty("steps_completed").GetInt32() >= 5, TimeSpan.FromMinutes(1));
        var (status, body) = await app.PostJson($"/v1/fine_tuning/jobs/{jobId}/cancel", new { });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("cancelled", body.GetProperty("status").GetString());
        await Task.Delay(1500);
        var a = (await app.GetJson($"/v1/fine_tuning/jobs/{jobId}")).GetProperty("steps_completed").GetInt32();
        await Task.Delay(1500);
        var b = (await app.GetJson($"/v1/fine_tuning/jobs/{jobId}")).GetProperty("steps_completed").GetInt32();
        Assert.Equal(a, b);
        Assert.True(a < 800, $"ran {a} steps");
        var events = await app.GetJson($"/v1/fine_tuning/jobs/{jobId}/events?limit=50");
        Assert.Contains(events.GetProperty("data").EnumerateArray(), e => e.GetProperty("message").GetString()!.Contains("job cancelled"));
    }

    [Fact]
    public async Task Jobs_list_paginates_newest_first()
    {
        await using var app = await AlignHubProcess.StartAsync(TempDir(), roles: "api,web");
        var file = (await app.Upload(TestData.Jsonl(8))).Body.GetProperty("id").GetString()!;
        var ids = new List<string>();
        for (int i = 0; i < 5; i++) ids.Add(await app.CreateSftJob(file, new { max_steps = 1 }));
        var page1 = await app.GetJson("/v1/fine_tuning/jobs?limit=2");
        Assert.True(page1.GetProperty("has_more").GetBoolean());
        var got = page1.GetProperty("data").EnumerateArray().Select(j => j.GetProperty("id").GetString()!).ToList();
        while (true)
        {
            var page = await app.GetJson($"/v1/fine_tuning/jobs?limit=2&after={got[^1]}");
            got.AddRange(page.GetProperty("data").EnumerateArray().Select(j => j.GetProperty("id").GetString()!));
            if (!page.GetProperty("has_more").GetBoolean()) break;
        }
        ids.Reverse();
        Assert.Equal(ids, got);
        // No worker role in this process: the jobs wait in the queue.
        Assert.All(got, id => Assert.Equal("queued", app.GetJson($"/v1/fine_tuning/jobs/{id}").Result.GetProperty("status").GetString()));
    }
}
