using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Xunit;

namespace AlignHub.Tests;

/// <summary>Idempotency keys, upload limits, rate limits, the first-start admin key, and a fuzz of every POST endpoint.</summary>
public class HardeningTests
{
    [Fact]
    public async Task An_Idempotency_Key_replays_the_first_result_and_refuses_a_different_body()
    {
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-idem-").FullName, roles: "api");
        var file = (await app.Upload(TestData.Jsonl(8))).Body.GetProperty("id").GetString()!;
        object Body(int epochs) => new { model = "alignhub/tiny", training_file = file, method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = epochs } } } };
        async Task<HttpResponseMessage> Send(object body, string key)
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/fine_tuning/jobs") { Content = JsonContent.Create(body) };
            req.Headers.Add("Idempotency-Key", key);
            return await app.Http.SendAsync(req);
        }
        var first = await Send(Body(1), "create-job-1");
        var again = await Send(Body(1), "create-job-1");
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        var id = JsonDocument.Parse(await first.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
        Assert.Equal(id, JsonDocument.Parse(await again.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString());
        Assert.Equal("true", again.Headers.GetValues("Idempotent-Replayed").Single());
        var different = await Send(Body(2), "create-job-1");
        Assert.Equal((HttpStatusCode)422, different.StatusCode);
        Assert.Equal("invalid_request_error", JsonDocument.Parse(await different.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("type").GetString());
        // One job exists; another key makes another job; the same key from another API key is its own.
        Assert.Single((await app.GetJson("/v1/fine_tuning/jobs")).GetProperty("data").EnumerateArray());
        Assert.Equal(HttpStatusCode.OK, (await Send(Body(1), "create-job-2")).StatusCode);
        var other = await app.ClientAs("trainer", "other");
        using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/fine_tuning/jobs") { Content = JsonContent.Create(Body(2)) };
        req.Headers.Add("Idempotency-Key", "create-job-1");
        Assert.Equal(HttpStatusCode.OK, (await other.SendAsync(req)).StatusCode);
        Assert.Equal(3, (await app.GetJson("/v1/fine_tuning/jobs")).GetProperty("data").GetArrayLength());
        // Concurrent retries of one new key: one creates, the rest replay it or are told it is in progress.
        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Send(Body(3), "burst")));
        Assert.All(results, r => Assert.Contains((int)r.StatusCode, new[] { 200, 409 }));
        Assert.Equal(4, (await app.GetJson("/v1/fine_tuning/jobs")).GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task Uploads_over_the_limit_get_413_and_a_rate_limited_key_gets_429_with_Retry_After()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-limits-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data, roles: "api",
            env: new Dictionary<string, string> { ["AlignHub__MaxUploadBytes"] = "4096", ["AlignHub__RateLimitPerMinute"] = "20" });
        var (ok, _) = await app.Upload(TestData.Jsonl(4));
        Assert.Equal(HttpStatusCode.OK, ok);
        var big = TestData.Jsonl(400);
        Assert.True(big.Length > 4096);
        var (tooBig, body) = await app.Upload(big);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooBig);
        Assert.Contains("4096", body.GetProperty("error").GetProperty("message").GetString());
        // Far over the limit: refused while the body streams in, still as ProblemDetails.
        var (huge, hugeBody) = await app.Upload(new string('x', 3 << 20));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, huge);
        Assert.Equal("invalid_request_error", hugeBody.GetProperty("error").GetProperty("type").GetString());
        Assert.Single((await app.GetJson("/v1/files")).GetProperty("data").EnumerateArray());

        var viewer = await app.ClientAs("viewer", "busy");
        HttpResponseMessage? limited = null;
        for (int i = 0; i < 40 && limited is null; i++)
        {
            var r = await viewer.GetAsync("/v1/files");
            if (r.StatusCode == HttpStatusCode.TooManyRequests) limited = r;
        }
        Assert.NotNull(limited);
        Assert.True(int.Parse(limited!.Headers.GetValues("Retry-After").Single()) >= 1);
        Assert.Equal("rate_limit_error", JsonDocument.Parse(await limited.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("type").GetString());
        // Limits are per key: another key is not affected.
        Assert.Equal(HttpStatusCode.OK, (await (await app.ClientAs("viewer", "calm")).GetAsync("/v1/files")).StatusCode);
    }

    [Fact]
    public async Task The_OpenAPI_document_has_an_example_for_every_method_and_each_hyperparameters_default()
    {
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-openapi-").FullName, roles: "api");
        var doc = await app.GetJson("/openapi/v1.json");
        var create = doc.GetProperty("paths").EnumerateObject().Single(p => p.Name.TrimEnd('/') == "/v1/fine_tuning/jobs").Value.GetProperty("post");
        var examples = create.GetProperty("requestBody").GetProperty("content").GetProperty("application/json").GetProperty("examples");
        Assert.Equal(AlignHub.Domain.Methods.Names.Order(), examples.EnumerateObject().Select(e => e.Name).Order());
        foreach (var e in examples.EnumerateObject())
            Assert.Equal(e.Name, e.Value.GetProperty("value").GetProperty("method").GetProperty("type").GetString());
        var schemas = doc.GetProperty("components").GetProperty("schemas");
        // Every method's hyperparameters, as its config record defines them, each with its default.
        foreach (var method in AlignHub.Domain.Methods.All)
        {
            var properties = schemas.GetProperty(method.HyperparametersSchema).GetProperty("properties");
            Assert.Equal(method.Hyperparameters.Select(h => h.Name).Order(), properties.EnumerateObject().Select(p => p.Name).Order());
            Assert.All(properties.EnumerateObject(), p => Assert.StartsWith("Default: ", p.Value.GetProperty("description").GetString()));
            Assert.True(schemas.GetProperty("MethodRequest").GetProperty("properties").TryGetProperty(method.Name, out _), method.Name);
        }
        var beta = schemas.GetProperty("DpoHyperparameters").GetProperty("properties").GetProperty("beta");
        Assert.Equal("0.1", beta.GetProperty("description").GetString()![9..12]);
        Assert.Equal(0.1, beta.GetProperty("default").GetDouble());
        Assert.Equal("sigmoid", schemas.GetProperty("DpoHyperparameters").GetProperty("properties").GetProperty("loss_type").GetProperty("enum")[0].GetString());
        // Every operation names its role.
        foreach (var path in doc.GetProperty("paths").EnumerateObject())
            foreach (var op in path.Value.EnumerateObject())
                Assert.Contains("Role: ", op.Value.GetProperty("summary").GetString());
    }

    [Fact]
    public async Task The_first_start_without_keys_prints_an_admin_key_once()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-first-").FullName;
        var env = new Dictionary<string, string> { ["AlignHub__AdminKey"] = "" };
        await using var app = await AlignHubProcess.StartAsync(data, roles: "api", env: env);
        await Task.Delay(500);
        var key = app.Log().Split('\n').Select(l => l.Trim()).Single(l => l.StartsWith("ahk-"));
        using var c = new HttpClient { BaseAddress = app.Http.BaseAddress };
        c.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var keys = JsonDocument.Parse(await c.GetStringAsync("/v1/api_keys")).RootElement.GetProperty("data");
        Assert.Equal("admin", keys.EnumerateArray().Single().GetProperty("role").GetString());
        app.Kill();
        var before = app.Log().Split('\n').Count(l => l.Trim().StartsWith("ahk-"));
        await app.RestartAsync();
        await Task.Delay(500);
        Assert.Equal(before, app.Log().Split('\n').Count(l => l.Trim().StartsWith("ahk-"))); // not printed again
    }

    /// <summary>
    /// 1,000 random or malformed bodies to each POST endpoint: wrong types, huge numbers, NaN, deep nesting, invalid
    /// UTF-8, oversized strings, truncated JSON, random bytes. None may get a 5xx, and none may write anything.
    /// </summary>
    [Fact]
    public Task A_thousand_malformed_bodies_per_POST_endpoint_get_4xx_and_write_nothing() => FuzzEveryPost(null);

    [PostgresFact]
    public async Task A_thousand_malformed_bodies_per_POST_endpoint_get_4xx_and_write_nothing_on_PostgreSQL() =>
        await FuzzEveryPost(await Postgres.CreateDatabaseAsync());

    static async Task FuzzEveryPost(string? postgres)
    {
        var data = Directory.CreateTempSubdirectory("alignhub-fuzz-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data, roles: "api", postgres: postgres);
        var file = (await app.Upload(TestData.Jsonl(8))).Body.GetProperty("id").GetString()!;
        var items = string.Join("\n", Enumerable.Range(0, 4).Select(i => JsonSerializer.Serialize(new { prompt = $"p{i}", response_a = "a", response_b = "b" })));
        var itemsFile = (await app.Upload(items, "items.jsonl")).Body.GetProperty("id").GetString()!;
        var campaign = (await app.PostJson("/v1/annotation/campaigns", new { name = "fuzz", file = itemsFile })).Body.GetProperty("id").GetString()!;
        var job = await app.CreateSftJob(file, new { n_epochs = 1 });
        // No worker serves this api-only process: the job says so once, a few seconds after its hand-over. Wait for
        // that event so the snapshots below compare a settled state.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!(await app.Http.GetStringAsync($"/v1/fine_tuning/jobs/{job}/events?limit=100")).Contains("No online worker serves queue"))
        {
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(60), "no 'no worker' event within 60 s");
            await Task.Delay(250);
        }

        async Task<string> Snapshot()
        {
            var parts = new List<string>();
            foreach (var path in new[] { "/v1/files", "/v1/fine_tuning/jobs?limit=100", "/v1/models", "/v1/annotation/campaigns", "/v1/api_keys", $"/v1/annotation/campaigns/{campaign}/stats", $"/v1/fine_tuning/jobs/{job}/events?limit=1000" })
                parts.Add(await app.Http.GetStringAsync(path));
            parts.Add(string.Join(",", Directory.GetFiles(data, "*", SearchOption.AllDirectories).Where(f => !f.EndsWith(".log") && !f.Contains("alignhub.db")).Order()));
            if (postgres is not null)
                foreach (var table in new[] { "files", "models", "fine_tuning_jobs", "job_events", "job_metrics", "job_checkpoints", "annotation_campaigns", "annotation_items", "annotation_assignments", "api_keys" })
                    parts.Add(table + ":" + (await Postgres.QueryAsync(postgres, $"SELECT COUNT(*) FROM {table}"))[0][0]);
            return string.Join("\n", parts);
        }
        var before = await Snapshot();

        // Endpoints whose body is JSON, with the fields that make a body valid (every fuzzed body lacks or breaks one).
        var jsonEndpoints = new (string Path, string[] Required)[]
        {
            ("/v1/fine_tuning/jobs", ["model", "training_file"]),
            ("/v1/models", ["id"]),
            ("/v1/annotation/campaigns", ["name", "file"]),
            ($"/v1/annotation/campaigns/{campaign}/labels", ["assignment_id", "choice"]),
            ($"/v1/annotation/campaigns/{campaign}/invites", ["annotator"]),
            ($"/v1/annotation/campaigns/{campaign}/export", []),
            ("/v1/api_keys", ["name", "role"]),
            ("/v1/fine_tuning/alpha/graders/validate", ["grader"]),
            ("/v1/fine_tuning/alpha/graders/run", ["grader", "model_sample"]),
        };
        var rng = new Random(20261124);
        var failures = new List<string>();
        int sent = 0;
        var codes = new SortedDictionary<int, int>();
        async Task Check(HttpRequestMessage req, string what)
        {
            using var r = await app.Http.SendAsync(req);
            sent++;
            var code = (int)r.StatusCode;
            var text = await r.Content.ReadAsStringAsync();
            lock (codes) codes[code] = codes.GetValueOrDefault(code) + 1;
            // A 4xx from validation, not from the door: the admin key may do all of these.
            if (code is < 400 or >= 500 or 401 or 403) failures.Add($"{what}: {code} {text[..Math.Min(300, text.Length)]}");
            else if (text.Contains("   at ") || text.Contains("Exception")) failures.Add($"{what}: internals in the body: {text[..Math.Min(300, text.Length)]}");
        }
        foreach (var (path, required) in jsonEndpoints)
            for (int i = 0; i < 1000; i++)
            {
                var bytes = Fuzz.Body(rng, required);
                var req = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(bytes) };
                req.Content.Headers.ContentType = new MediaTypeHeaderValue(rng.Next(10) == 0 ? "text/plain" : "application/json");
                var shown = Encoding.UTF8.GetString(bytes);
                await Check(req, $"POST {path} #{i} {shown[..Math.Min(120, shown.Length)]}");
            }
        // Uploads: random bytes, invalid UTF-8, rows of the wrong kind, a missing or wrong purpose, a JSON body.
        foreach (var path in new[] { "/v1/files", "/v1/models" })
            for (int i = 0; i < 1000; i++)
            {
                var form = new MultipartFormDataContent();
                var content = Fuzz.FileContent(rng);
                if (rng.Next(8) != 0) form.Add(new ByteArrayContent(content), path == "/v1/files" ? "file" : "file", rng.Next(4) == 0 ? "../../etc/passwd" : "f.jsonl");
                if (rng.Next(3) != 0) form.Add(new StringContent(rng.Next(2) == 0 ? "fine-tune" : Fuzz.Text(rng)), "purpose");
                if (path == "/v1/models" && rng.Next(2) == 0) form.Add(new StringContent(Fuzz.Text(rng)), "id");
                HttpContent body = rng.Next(10) == 0 ? new ByteArrayContent(Fuzz.Body(rng, ["file"])) : form;
                await Check(new HttpRequestMessage(HttpMethod.Post, path) { Content = body }, $"POST {path} upload #{i}");
            }
        // Body-less actions on ids that do not exist.
        foreach (var action in new[] { "/v1/fine_tuning/jobs/{0}/cancel", "/v1/fine_tuning/jobs/{0}/pause", "/v1/fine_tuning/jobs/{0}/resume", "/v1/annotation/campaigns/{0}/next", "/v1/annotation/campaigns/{0}/undo" })
            for (int i = 0; i < 200; i++)
            {
                var id = Uri.EscapeDataString(Fuzz.Text(rng, 1 + rng.Next(300)));
                if (id.Length == 0) id = "x";
                await Check(new HttpRequestMessage(HttpMethod.Post, string.Format(action, id)) { Content = new ByteArrayContent(Fuzz.Body(rng, [])) }, $"POST {action} id {id[..Math.Min(60, id.Length)]}");
            }
        Assert.True(failures.Count == 0, $"{failures.Count} of {sent}:\n" + string.Join("\n", failures.Take(30)));
        Assert.Equal(11 * 1000 + 5 * 200, sent);
        Assert.True(codes.GetValueOrDefault(400) > 5000, string.Join(", ", codes.Select(c => $"{c.Key}: {c.Value}")));
        Assert.Equal(before, await Snapshot());
    }
}

/// <summary>Malformed request bodies, reproducible from a seed.</summary>
static class Fuzz
{
    static readonly string[] Odd = ["", " ", "\0", "\u202e", "😀", "null", "NaN", "Infinity", "-0", "1e999", "<script>", "'; DROP TABLE files; --", "../", "%00"];

    public static string Text(Random r, int? length = null)
    {
        if (length is null && r.Next(4) == 0) return Odd[r.Next(Odd.Length)];
        int n = length ?? r.Next(0, 40);
        var sb = new StringBuilder();
        for (int i = 0; i < n; i++) sb.Append((char)r.Next(r.Next(4) == 0 ? 0xD7FF : 128));
        return sb.ToString();
    }

    static object? Value(Random r, int depth)
    {
        switch (r.Next(depth > 3 ? 8 : 11))
        {
            case 0: return null;
            case 1: return r.Next(2) == 0;
            case 2: return r.Next(int.MinValue, int.MaxValue);
            case 3: return r.NextDouble() * Math.Pow(10, r.Next(-300, 300)) * (r.Next(2) == 0 ? -1 : 1);
            case 4: return long.MaxValue;
            case 5: return Text(r);
            case 6: return new string('x', r.Next(2) == 0 ? 100_000 : 5_000);
            case 7: return -1;
            default:
                if (r.Next(2) == 0) return Enumerable.Range(0, r.Next(4)).Select(_ => Value(r, depth + 1)).ToList();
                return Enumerable.Range(0, r.Next(5)).ToDictionary(i => Text(r) + i, _ => Value(r, depth + 1));
        }
    }

    /// <summary>A body that is not a valid request: broken JSON, a non-object, or an object with a required field missing or of a wrong type.</summary>
    public static byte[] Body(Random r, string[] required)
    {
        switch (r.Next(10))
        {
            case 0: return Encoding.UTF8.GetBytes(new string('[', 5000) + new string(']', 5000)); // deep nesting
            case 1: return [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc3, 0x28, 0x22, 0x7d]; // {"a":"<invalid UTF-8>"}
            case 2: return Encoding.UTF8.GetBytes("{\"x\": NaN, \"y\": 1e99999, \"z\": " + new string('9', 400) + "}");
            case 3: { var b = new byte[r.Next(0, 200)]; r.NextBytes(b); return b; }
            case 4: { var s = JsonSerializer.Serialize(Value(r, 0)); return Encoding.UTF8.GetBytes(s[..r.Next(s.Length + 1)] + (r.Next(2) == 0 ? "" : ",")); }
            case 5: return JsonSerializer.SerializeToUtf8Bytes(new List<object?> { Value(r, 1), Value(r, 1) });
            case 6: return JsonSerializer.SerializeToUtf8Bytes(Value(r, 1) is var v && v is Dictionary<string, object?> ? "not an object" : v);
        }
        if (required.Length == 0) return Encoding.UTF8.GetBytes("\"" + Text(r) + "\"");
        // An object naming the fields, with at least one required field missing or of a wrong type.
        var o = new Dictionary<string, object?>();
        var broken = required[r.Next(required.Length)];
        foreach (var f in required.Concat(["method", "config", "path", "hyperparameters", "annotators_per_item", "include_ties", "rationale", "duration_ms"]))
        {
            if (f == broken) { if (r.Next(3) != 0) o[f] = WrongType(r); continue; }
            if (r.Next(3) != 0) o[f] = Value(r, 1);
        }
        return JsonSerializer.SerializeToUtf8Bytes(o);
    }

    /// <summary>A value that is no required field's type: required fields are non-empty strings (ids, names) or, for assignment_id, a positive id.</summary>
    static object? WrongType(Random r) => r.Next(6) switch
    {
        0 => null,
        1 => r.Next(2) == 0,
        2 => new[] { 1, 2 },
        3 => new Dictionary<string, int> { ["nested"] = 1 },
        4 => 1e308,
        _ => "",
    };

    public static byte[] FileContent(Random r) => r.Next(5) switch
    {
        0 => [0xff, 0xfe, 0x00, 0x7b, 0xc3, 0x28],
        1 => Encoding.UTF8.GetBytes("{\"prompt\": 1, \"completion\": [2]}\n{\"messages\": \"no\"}"),
        2 => Encoding.UTF8.GetBytes(string.Join("\n", Enumerable.Range(0, 3).Select(_ => Text(r)))),
        3 => Encoding.UTF8.GetBytes(new string('[', 3000)),
        _ => RandomBytes(r),
    };

    static byte[] RandomBytes(Random r) { var b = new byte[r.Next(0, 4000)]; r.NextBytes(b); return b; }
}
