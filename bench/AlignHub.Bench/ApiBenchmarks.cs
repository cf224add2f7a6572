using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

/// <summary>An HttpClient for a running AlignHub with the admin key from ALIGNHUB_KEY.</summary>
static class BenchHttp
{
    public static HttpClient Client(string baseUrl, int connections)
    {
        var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = connections }) { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromMinutes(2) };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Environment.GetEnvironmentVariable("ALIGNHUB_KEY") ?? throw new InvalidOperationException("set ALIGNHUB_KEY to an admin key"));
        return http;
    }

    public static async Task<string> CreateKey(HttpClient admin, string name, string role)
    {
        var r = await admin.PostAsJsonAsync("/v1/api_keys", new { name, role });
        r.EnsureSuccessStatusCode();
        return JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("key").GetString()!;
    }

    public static double Percentile(IEnumerable<double> v, double q) { var s = v.Order().ToArray(); return s.Length == 0 ? double.NaN : s[(int)Math.Min(s.Length - 1, Math.Floor(q * s.Length))]; }
}

/// <summary>
/// Job creation under load (issue 6): <c>clients</c> concurrent clients, each with its own trainer key, create
/// <c>total</c> fine-tuning jobs between them (closed loop: each sends its next request when the last one answered),
/// then every accepted job id is read back.
/// </summary>
static class ApiBenchmarks
{
    public static async Task JobCreation(string baseUrl, int total, int clients, int intervalMs)
    {
        using var admin = BenchHttp.Client(baseUrl, clients + 10);
        var lines = string.Join("\n", Enumerable.Range(0, 16).Select(i => JsonSerializer.Serialize(new { prompt = $"Say {i}: ", completion = $"{i}" })));
        using var form = new MultipartFormDataContent { { new StringContent(lines), "file", "train.jsonl" }, { new StringContent("fine-tune"), "purpose" } };
        var file = JsonDocument.Parse(await (await admin.PostAsync("/v1/files", form)).Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
        var keys = await Task.WhenAll(Enumerable.Range(0, clients).Select(c => BenchHttp.CreateKey(admin, $"client-{c:D3}", "trainer")));

        var latencies = new ConcurrentBag<(double At, double Ms)>();
        var accepted = new ConcurrentBag<string>();
        var failures = new ConcurrentDictionary<int, int>();
        int next = 0;
        var wall = Stopwatch.StartNew();
        await Task.WhenAll(keys.Select((key, c) => Task.Run(async () =>
        {
            var rng = new Random(c);
            if (intervalMs > 0) await Task.Delay(rng.Next(intervalMs)); // staggered starts
            while (Interlocked.Increment(ref next) <= total)
            {
                if (intervalMs > 0) await Task.Delay(intervalMs / 2 + rng.Next(intervalMs)); // paced: one request per interval on average
                using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/fine_tuning/jobs")
                {
                    Content = JsonContent.Create(new { model = "alignhub/tiny", training_file = file, seed = 1, method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 1 } } } }),
                };
                req.Headers.Authorization = new("Bearer", key);
                var sw = Stopwatch.StartNew();
                using var res = await admin.SendAsync(req);
                var body = await res.Content.ReadAsStringAsync();
                latencies.Add((wall.Elapsed.TotalSeconds, sw.Elapsed.TotalMilliseconds));
                if (res.IsSuccessStatusCode) accepted.Add(JsonDocument.Parse(body).RootElement.GetProperty("id").GetString()!);
                else failures.AddOrUpdate((int)res.StatusCode, 1, (_, n) => n + 1);
            }
        })));
        var elapsed = wall.Elapsed.TotalSeconds;
        // Every accepted job exists: page through the list (100 per page) and compare ids.
        var listed = new HashSet<string>();
        string? after = null;
        while (true)
        {
            var page = JsonDocument.Parse(await admin.GetStringAsync($"/v1/fine_tuning/jobs?limit=100{(after is null ? "" : "&after=" + after)}")).RootElement;
            foreach (var j in page.GetProperty("data").EnumerateArray()) listed.Add(j.GetProperty("id").GetString()!);
            if (!page.GetProperty("has_more").GetBoolean()) break;
            after = page.GetProperty("last_id").GetString();
        }
        int missing = accepted.Count(id => !listed.Contains(id));
        var all = latencies.Select(x => x.Ms).ToList();
        var warm = latencies.Where(x => x.At >= 5).Select(x => x.Ms).ToList();
        Console.WriteLine($"{total} job creations from {clients} clients in {elapsed:F1} s ({total / elapsed:F0}/s); accepted {accepted.Count}, refused {string.Join(", ", failures.Select(f => $"{f.Key}: {f.Value}"))}; accepted but missing afterwards: {missing}");
        var pacing = intervalMs > 0 ? $"one per {intervalMs / 2}-{intervalMs * 3 / 2} ms" : "closed loop";
        Console.WriteLine("| requests | clients | pacing per client | wall (s) | jobs/s | accepted | missing afterwards | window | p50 (ms) | p99 (ms) |");
        Console.WriteLine($"| {total:N0} | {clients} | {pacing} | {elapsed:F1} | {total / elapsed:F0} | {accepted.Count:N0} | {missing} | all | {BenchHttp.Percentile(all, 0.5):F1} | {BenchHttp.Percentile(all, 0.99):F1} |");
        Console.WriteLine($"| {total:N0} | {clients} | {pacing} | {elapsed:F1} | {total / elapsed:F0} | {accepted.Count:N0} | {missing} | after 5 s | {BenchHttp.Percentile(warm, 0.5):F1} | {BenchHttp.Percentile(warm, 0.99):F1} |");
    }
}
