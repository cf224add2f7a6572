using AlignHub.Domain;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Xunit;

namespace AlignHub.Tests;

/// <summary>
/// Every endpoint, asked with no key, a wrong key and each role's key, answers as documented: 401 without a valid
/// key, 403 for a role that may not, 2xx for one that may. The list is checked against the OpenAPI document, so an
/// endpoint added without a row here fails this test.
/// </summary>
public class AuthorizationTests
{
    const string Read = "admin,trainer,viewer", Train = "admin,trainer", Label = "admin,trainer,annotator", Admin = "admin", Any = "admin,trainer,annotator,viewer";

    /// <summary>One endpoint: who may call it, and a call that succeeds for them (it makes what it needs as the admin).</summary>
    sealed record Row(string Method, string Route, string Allowed, Func<HttpClient, Task<HttpResponseMessage>> Call);

    [Fact]
    public async Task Every_endpoint_answers_401_403_or_2xx_for_no_key_a_wrong_key_and_each_role()
    {
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-auth-").FullName);
        var admin = app.Http;
        // Fixtures, made as the admin: files, a finished tiny job with a checkpoint, a campaign.
        var sftFile = (await app.Upload(TestData.Jsonl(16))).Body.GetProperty("id").GetString()!;
        var done = await app.CreateSftJob(sftFile, new { n_epochs = 1, batch_size = 8 });
        await app.WaitForStatus(done, "succeeded", TimeSpan.FromMinutes(2));
        var ckpt = (await app.GetJson($"/v1/fine_tuning/jobs/{done}/checkpoints")).GetProperty("data")[0].GetProperty("id").GetString()!;
        var items = string.Join("\n", Enumerable.Range(0, 40).Select(i => JsonSerializer.Serialize(new { prompt = $"p{i}", response_a = $"a{i}", response_b = $"b{i}" })));
        var itemsFile = (await app.Upload(items, "items.jsonl")).Body.GetProperty("id").GetString()!;
        async Task<string> NewCampaign() => (await app.PostJson("/v1/annotation/campaigns", new { name = "auth", file = itemsFile, annotators_per_item = 3 })).Body.GetProperty("id").GetString()!;
        var campaign = await NewCampaign();
        // Labels exist, so export has pairs.
        var first = (await app.PostJson($"/v1/annotation/campaigns/{campaign}/next", new { })).Body;
        await app.PostJson($"/v1/annotation/campaigns/{campaign}/labels", new { assignment_id = first.GetProperty("assignment_id").GetInt64(), choice = "left" });
        // Long jobs stay queued or running behind the worker's one slot, so cancel and pause always apply.
        async Task<string> NewJob() => await app.CreateSftJob(sftFile, new { n_epochs = 100, batch_size = 1 });
        async Task<string> NewPausedJob() { var id = await NewJob(); Assert.Equal(HttpStatusCode.OK, (await admin.PostAsync($"/v1/fine_tuning/jobs/{id}/pause", null)).StatusCode); return id; }
        int n = 0;
        async Task<string> NewModel()
        {
            var id = $"me/m{Interlocked.Increment(ref n)}";
            var (s, b) = await app.PostJson("/v1/models", new { id, config = TinyConfig });
            Assert.True(s == HttpStatusCode.OK, b.ToString());
            return id;
        }
        async Task<string> NewJudge() => (await app.PostJson("/v1/judges", new { name = "judge", model = "me/served" })).Body.GetProperty("id").GetString()!;
        async Task<string> NewKey() => (await app.PostJson("/v1/api_keys", new { name = "temp", role = "viewer" })).Body.GetProperty("id").GetString()!;
        static JsonContent J(object o) => JsonContent.Create(o);
        // A model with weights to serve completions from.
        var served = Directory.CreateTempSubdirectory("alignhub-served-").FullName;
        File.WriteAllText(Path.Combine(served, "config.json"), TinyConfigs.Gpt2());
        using (var m = TinyConfigs.Create(TinyConfigs.Gpt2(), 4)) AlignHub.Training.Models.HfWeights.Save(m, served);
        var (uploaded, uploadBody) = await ModelsApiTests.UploadModel(app, ModelsApiTests.TarGz(served, "served"), "me/served");
        Assert.True(uploaded == HttpStatusCode.OK, uploadBody.ToString());

        var rows = new List<Row>
        {
            new("GET", "/v1/files", Read, c => c.GetAsync("/v1/files")),
            new("POST", "/v1/files", Train, c => c.PostAsync("/v1/files", new MultipartFormDataContent
                { { new StringContent(TestData.Jsonl(4)), "file", "t.jsonl" }, { new StringContent("fine-tune"), "purpose" } })),
            new("GET", "/v1/files/{id}", Read, c => c.GetAsync($"/v1/files/{sftFile}")),
            new("GET", "/v1/files/{id}/content", Read, c => c.GetAsync($"/v1/files/{sftFile}/content")),
            new("POST", "/v1/fine_tuning/jobs", Train, c => c.PostAsync("/v1/fine_tuning/jobs", J(new { model = "alignhub/tiny", training_file = sftFile, method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 100, batch_size = 1 } } } }))),
            new("GET", "/v1/fine_tuning/jobs", Read, c => c.GetAsync("/v1/fine_tuning/jobs")),
            new("GET", "/v1/fine_tuning/jobs/{id}", Read, c => c.GetAsync($"/v1/fine_tuning/jobs/{done}")),
            new("POST", "/v1/fine_tuning/jobs/{id}/cancel", Train, async c => await c.PostAsync($"/v1/fine_tuning/jobs/{await NewJob()}/cancel", null)),
            new("POST", "/v1/fine_tuning/jobs/{id}/pause", Train, async c => await c.PostAsync($"/v1/fine_tuning/jobs/{await NewJob()}/pause", null)),
            new("POST", "/v1/fine_tuning/jobs/{id}/resume", Train, async c => await c.PostAsync($"/v1/fine_tuning/jobs/{await NewPausedJob()}/resume", null)),
            new("GET", "/v1/fine_tuning/jobs/{id}/events", Read, c => c.GetAsync($"/v1/fine_tuning/jobs/{done}/events")),
            new("GET", "/v1/fine_tuning/jobs/{id}/checkpoints", Read, c => c.GetAsync($"/v1/fine_tuning/jobs/{done}/checkpoints")),
            new("GET", "/v1/fine_tuning/jobs/{id}/checkpoints/{checkpointId}/content", Read, c => c.GetAsync($"/v1/fine_tuning/jobs/{done}/checkpoints/{ckpt}/content")),
            new("GET", "/v1/fine_tuning/jobs/{id}/metrics", Read, c => c.GetAsync($"/v1/fine_tuning/jobs/{done}/metrics")),
            new("GET", "/v1/fine_tuning/jobs/{id}/samples", Read, c => c.GetAsync($"/v1/fine_tuning/jobs/{done}/samples")),
            new("POST", "/v1/fine_tuning/alpha/graders/validate", Train, c => c.PostAsync("/v1/fine_tuning/alpha/graders/validate", J(new { grader = ArithmeticTask.ExactMatchGrader }))),
            new("POST", "/v1/fine_tuning/alpha/graders/run", Train, c => c.PostAsync("/v1/fine_tuning/alpha/graders/run", J(new { grader = ArithmeticTask.ExactMatchGrader, model_sample = "3", item = new { answer = "3" } }))),
            new("POST", "/v1/chat/completions", Read, c => c.PostAsync("/v1/chat/completions", J(new { model = "me/served", messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 3 }))),
            new("POST", "/v1/completions", Read, c => c.PostAsync("/v1/completions", J(new { model = "me/served", prompt = "hi", max_tokens = 3 }))),
            new("POST", "/v1/models", Train, c => c.PostAsync("/v1/models", J(new { id = $"me/p{Interlocked.Increment(ref n)}", config = TinyConfig }))),
            new("GET", "/v1/models", Read, c => c.GetAsync("/v1/models")),
            new("GET", "/v1/models/{id}", Read, c => c.GetAsync("/v1/models/alignhub/tiny")),
            new("DELETE", "/v1/models/{id}", Train, async c => await c.DeleteAsync($"/v1/models/{await NewModel()}")),
            new("POST", "/v1/annotation/campaigns", Train, c => c.PostAsync("/v1/annotation/campaigns", J(new { name = "x", file = itemsFile }))),
            new("GET", "/v1/annotation/campaigns", Read, c => c.GetAsync("/v1/annotation/campaigns")),
            new("GET", "/v1/annotation/campaigns/{id}", Any, c => c.GetAsync($"/v1/annotation/campaigns/{campaign}")),
            new("POST", "/v1/annotation/campaigns/{id}/next", Label, c => c.PostAsync($"/v1/annotation/campaigns/{campaign}/next", J(new { }))),
            new("POST", "/v1/annotation/campaigns/{id}/labels", Label, async c =>
            {
                var next = await c.PostAsync($"/v1/annotation/campaigns/{campaign}/next", J(new { }));
                long aid = next.IsSuccessStatusCode ? JsonDocument.Parse(await next.Content.ReadAsStringAsync()).RootElement.GetProperty("assignment_id").GetInt64() : 1;
                return await c.PostAsync($"/v1/annotation/campaigns/{campaign}/labels", J(new { assignment_id = aid, choice = "right" }));
            }),
            new("POST", "/v1/annotation/campaigns/{id}/undo", Label, async c =>
            {
                var fresh = await NewCampaign();
                var next = await c.PostAsync($"/v1/annotation/campaigns/{fresh}/next", J(new { }));
                if (next.IsSuccessStatusCode)
                {
                    var aid = JsonDocument.Parse(await next.Content.ReadAsStringAsync()).RootElement.GetProperty("assignment_id").GetInt64();
                    Assert.True((await c.PostAsync($"/v1/annotation/campaigns/{fresh}/labels", J(new { assignment_id = aid, choice = "left" }))).IsSuccessStatusCode);
                }
                return await c.PostAsync($"/v1/annotation/campaigns/{fresh}/undo", J(new { }));
            }),
            new("GET", "/v1/annotation/campaigns/{id}/stats", Read, c => c.GetAsync($"/v1/annotation/campaigns/{campaign}/stats")),
            new("POST", "/v1/annotation/campaigns/{id}/invites", Train, c => c.PostAsync($"/v1/annotation/campaigns/{campaign}/invites", J(new { annotator = "guest" }))),
            new("POST", "/v1/judges", Train, c => c.PostAsync("/v1/judges", J(new { name = "j", model = "me/served" }))),
            new("GET", "/v1/judges", Read, c => c.GetAsync("/v1/judges")),
            new("GET", "/v1/judges/{id}", Read, async c => await c.GetAsync($"/v1/judges/{await NewJudge()}")),
            new("DELETE", "/v1/judges/{id}", Train, async c => await c.DeleteAsync($"/v1/judges/{await NewJudge()}")),
            new("POST", "/v1/annotation/campaigns/{id}/judge", Train, async c => await c.PostAsync($"/v1/annotation/campaigns/{campaign}/judge", J(new { judge = await NewJudge() }))),
            new("GET", "/v1/annotation/campaigns/{id}/judgements", Read, c => c.GetAsync($"/v1/annotation/campaigns/{campaign}/judgements")),
            new("POST", "/v1/annotation/campaigns/{id}/items", Train, c => c.PostAsync($"/v1/annotation/campaigns/{campaign}/items", J(new { prompt = "p", response_a = "a", response_b = "b" }))),
            new("POST", "/v1/annotation/campaigns/{id}/export", Train, c => c.PostAsync($"/v1/annotation/campaigns/{campaign}/export", J(new { }))),
            new("POST", "/v1/api_keys", Admin, c => c.PostAsync("/v1/api_keys", J(new { name = "k", role = "viewer" }))),
            new("GET", "/v1/api_keys", Admin, c => c.GetAsync("/v1/api_keys")),
            new("DELETE", "/v1/api_keys/{id}", Admin, async c => await c.DeleteAsync($"/v1/api_keys/{await NewKey()}")),
            new("GET", "/v1/workers", Read, c => c.GetAsync("/v1/workers")),
            new("GET", "/v1/workers/{id}", Read, async c => await c.GetAsync($"/v1/workers/{(await app.GetJson("/v1/workers")).GetProperty("data")[0].GetProperty("id").GetString()}")),
            new("GET", "/openapi/v1.json", Any, c => c.GetAsync("/openapi/v1.json")),
        };

        // Every endpoint of the OpenAPI document has a row.
        var doc = await app.GetJson("/openapi/v1.json");
        var documented = doc.GetProperty("paths").EnumerateObject()
            .SelectMany(p => p.Value.EnumerateObject().Select(m => $"{m.Name.ToUpperInvariant()} {p.Name.TrimEnd('/')}")).ToHashSet();
        var covered = rows.Select(r => $"{r.Method} {r.Route.Replace("{**id}", "{id}")}").ToHashSet();
        Assert.Empty(documented.Select(d => d.Replace("{**id}", "{id}")).Except(covered));

        var clients = new Dictionary<string, HttpClient>
        {
            ["none"] = new() { BaseAddress = admin.BaseAddress },
            ["wrong"] = new() { BaseAddress = admin.BaseAddress, DefaultRequestHeaders = { Authorization = new AuthenticationHeaderValue("Bearer", "ahk-wrong") } },
            ["admin"] = admin,
        };
        foreach (var role in new[] { "trainer", "annotator", "viewer" }) clients[role] = await app.ClientAs(role, $"the-{role}");
        var failures = new List<string>();
        foreach (var row in rows)
            foreach (var (who, client) in clients)
            {
                var expected = who is "none" or "wrong" ? "401" : row.Allowed.Split(',').Contains(who) ? "2xx" : "403";
                using var r = await row.Call(client);
                var got = (int)r.StatusCode is >= 200 and < 300 ? "2xx" : ((int)r.StatusCode).ToString();
                if (got != expected) failures.Add($"{row.Method} {row.Route} as {who}: {(int)r.StatusCode}, expected {expected}: {await r.Content.ReadAsStringAsync()}");
                else if (expected is "401" or "403")
                {
                    // Errors are ProblemDetails with OpenAI's error object, and no internals.
                    var body = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
                    Assert.Equal(expected == "401" ? "authentication_error" : "permission_error", body.GetProperty("error").GetProperty("type").GetString());
                    Assert.True(body.TryGetProperty("request_id", out _));
                }
            }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        // Health checks stay anonymous.
        Assert.Equal(HttpStatusCode.OK, (await clients["none"].GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await clients["none"].GetAsync("/readyz")).StatusCode);
    }

    static readonly object TinyConfig = new { model_type = "llama", vocab_size = 259, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1, num_attention_heads = 4, num_key_value_heads = 1, max_position_embeddings = 64 };

    [Fact]
    public async Task Revoked_keys_stop_working_and_keys_are_stored_hashed()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-keys-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data);
        var (s, created) = await app.PostJson("/v1/api_keys", new { name = "ci", role = "trainer" });
        Assert.Equal(HttpStatusCode.OK, s);
        var secret = created.GetProperty("key").GetString()!;
        Assert.StartsWith("ahk-", secret);
        using var c = new HttpClient { BaseAddress = app.Http.BaseAddress };
        c.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        Assert.Equal(HttpStatusCode.OK, (await c.GetAsync("/v1/files")).StatusCode);
        // Listed without the secret.
        var list = await app.GetJson("/v1/api_keys");
        var row = list.GetProperty("data").EnumerateArray().Single(k => k.GetProperty("id").GetString() == created.GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.Null, row.GetProperty("key").ValueKind);
        // The database holds only a hash.
        var db = await File.ReadAllBytesAsync(Path.Combine(data, "alignhub.db"));
        Assert.Equal(-1, System.Text.Encoding.UTF8.GetString(db).IndexOf(secret, StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.OK, (await app.Http.DeleteAsync($"/v1/api_keys/{created.GetProperty("id").GetString()}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await c.GetAsync("/v1/files")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await app.PostJson("/v1/api_keys", new { name = "x", role = "root" })).Status);
    }
}
