using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

/// <summary>
/// Label-submit latency with many concurrent annotators (issue 5), against a running AlignHub (on PostgreSQL for the
/// recorded numbers): 200 annotators label a campaign with k = 3. Each annotator loops: next, think, submit. The think
/// time (uniform between half and one and a half times the mean; 0 for a closed loop) stands for reading two responses
/// and pressing a key.
/// </summary>
static class AnnotationBenchmarks
{
    public static async Task Latency(string baseUrl, int thinkMeanMs, int seconds)
    {
        int annotators = int.TryParse(Environment.GetEnvironmentVariable("BENCH_ANNOTATORS"), out var n) ? n : 200;
        int items = 3000;
        using var http = BenchHttp.Client(baseUrl, annotators + 10);
        var lines = string.Join("\n", Enumerable.Range(0, items).Select(i => JsonSerializer.Serialize(new { prompt = $"p{i}", response_a = $"a{i}", response_b = $"b{i}" })));
        using var form = new MultipartFormDataContent { { new StringContent(lines), "file", "items.jsonl" }, { new StringContent("fine-tune"), "purpose" } };
        var file = JsonDocument.Parse(await (await http.PostAsync("/v1/files", form)).Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
        var campaignResponse = await http.PostAsJsonAsync("/v1/annotation/campaigns", new { name = "bench", file, annotators_per_item = 3 });
        var campaign = JsonDocument.Parse(await campaignResponse.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();

        // (seconds since start, latency ms)
        // Each annotator labels with their own annotator key (their identity).
        var keys = await Task.WhenAll(Enumerable.Range(0, annotators).Select(a => BenchHttp.CreateKey(http, $"annotator-{a:D3}", "annotator")));
        var submitAt = new ConcurrentBag<(double At, double Ms)>();
        var nextAt = new ConcurrentBag<(double At, double Ms)>();
        int errors = 0;
        var wall = Stopwatch.StartNew();
        var stopAt = TimeSpan.FromSeconds(seconds);
        await Task.WhenAll(Enumerable.Range(0, annotators).Select(a => Task.Run(async () =>
        {
            var key = keys[a];
            var rng = new Random(a);
            if (thinkMeanMs > 0) await Task.Delay(rng.Next(thinkMeanMs)); // staggered arrivals
            while (wall.Elapsed < stopAt)
            {
                var sw = Stopwatch.StartNew();
                using var nreq = new HttpRequestMessage(HttpMethod.Post, $"/v1/annotation/campaigns/{campaign}/next") { Content = JsonContent.Create(new { }) };
                nreq.Headers.Authorization = new("Bearer", key);
                using var nres = await http.SendAsync(nreq);
                var nextBody = await nres.Content.ReadAsStringAsync();
                nextAt.Add((wall.Elapsed.TotalSeconds, sw.Elapsed.TotalMilliseconds));
                if (nres.StatusCode == System.Net.HttpStatusCode.NoContent) break;
                if (!nres.IsSuccessStatusCode) { Interlocked.Increment(ref errors); continue; }
                var item = JsonDocument.Parse(nextBody).RootElement;
                if (thinkMeanMs > 0) await Task.Delay(thinkMeanMs / 2 + rng.Next(thinkMeanMs));
                sw.Restart();
                using var sreq = new HttpRequestMessage(HttpMethod.Post, $"/v1/annotation/campaigns/{campaign}/labels")
                {
                    Content = JsonContent.Create(new { assignment_id = item.GetProperty("assignment_id").GetInt64(), choice = rng.Next(2) == 0 ? "left" : "right" }),
                };
                sreq.Headers.Authorization = new("Bearer", key);
                using var sres = await http.SendAsync(sreq);
                await sres.Content.ReadAsStringAsync();
                submitAt.Add((wall.Elapsed.TotalSeconds, sw.Elapsed.TotalMilliseconds));
                if (!sres.IsSuccessStatusCode) Interlocked.Increment(ref errors);
            }
        })));
        var elapsed = wall.Elapsed.TotalSeconds;
        var stats = JsonDocument.Parse(await http.GetStringAsync($"/v1/annotation/campaigns/{campaign}/stats")).RootElement;
        static double P(IEnumerable<double> v, double q) => BenchHttp.Percentile(v, q);
        var think = thinkMeanMs > 0 ? $"{thinkMeanMs / 2}-{thinkMeanMs * 3 / 2} ms" : "none";
        Console.WriteLine($"{annotators} annotators, think time {think}, {items} items, k = 3");
        Console.WriteLine($"{submitAt.Count} labels in {elapsed:F1} s ({submitAt.Count / elapsed:F1} labels/s, {(submitAt.Count + nextAt.Count) / elapsed:F1} requests/s), errors {errors}, labels stored {stats.GetProperty("labels").GetInt32()}");
        Console.WriteLine("| annotators | think time | window | labels | labels/s | errors | submit p50 | submit p99 | next p50 | next p99 |");
        foreach (var (name, from) in new[] { ("all", 0.0), ("after 10 s", 10.0) })
        {
            var sub = submitAt.Where(x => x.At >= from).Select(x => x.Ms).ToList();
            var nxt = nextAt.Where(x => x.At >= from).Select(x => x.Ms).ToList();
            Console.WriteLine($"| {annotators} | {think} | {name} | {sub.Count:N0} | {sub.Count / (elapsed - from):F1} | {errors} | {P(sub, 0.5):F1} | {P(sub, 0.99):F1} | {P(nxt, 0.5):F1} | {P(nxt, 0.99):F1} |");
        }
        var sec = submitAt.Concat(nextAt).GroupBy(x => (int)x.At).OrderBy(g => g.Key).Select(g => $"{g.Key}s:{P(g.Select(x => x.Ms), 0.99):F0}");
        Console.WriteLine("p99 (ms) per second of the run, next and submit: " + string.Join(" ", sec));
    }
}
