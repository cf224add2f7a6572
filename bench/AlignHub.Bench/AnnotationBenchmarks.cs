using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

/// <summary>
/// Label-submit latency with many concurrent annotators (issue 5), against a running AlignHub (on PostgreSQL for the
/// recorded numbers): 200 annotators label a 1,000-item campaign with k = 3 until nothing is left.
/// </summary>
static class AnnotationBenchmarks
{
    public static async Task Latency(string baseUrl, int annotators = 200, int items = 1000)
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = annotators + 10 }) { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromMinutes(2) };
        var lines = string.Join("\n", Enumerable.Range(0, items).Select(i => JsonSerializer.Serialize(new { prompt = $"p{i}", response_a = $"a{i}", response_b = $"b{i}" })));
        using var form = new MultipartFormDataContent { { new StringContent(lines), "file", "items.jsonl" }, { new StringContent("fine-tune"), "purpose" } };
        var file = JsonDocument.Parse(await (await http.PostAsync("/v1/files", form)).Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
        var campaignResponse = await http.PostAsJsonAsync("/v1/annotation/campaigns", new { name = "bench", file, annotators_per_item = 3 });
        var campaign = JsonDocument.Parse(await campaignResponse.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();

        var submit = new ConcurrentBag<double>();
        var next = new ConcurrentBag<double>();
        int errors = 0;
        var wall = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, annotators).Select(a => Task.Run(async () =>
        {
            var who = $"annotator-{a:D3}";
            var rng = new Random(a);
            while (true)
            {
                var sw = Stopwatch.StartNew();
                using var nreq = new HttpRequestMessage(HttpMethod.Post, $"/v1/annotation/campaigns/{campaign}/next") { Content = JsonContent.Create(new { }) };
                nreq.Headers.Add("X-AlignHub-Annotator", who);
                using var nres = await http.SendAsync(nreq);
                next.Add(sw.Elapsed.TotalMilliseconds);
                if (nres.StatusCode == System.Net.HttpStatusCode.NoContent) break;
                if (!nres.IsSuccessStatusCode) { Interlocked.Increment(ref errors); continue; }
                var item = JsonDocument.Parse(await nres.Content.ReadAsStringAsync()).RootElement;
                sw.Restart();
                using var sreq = new HttpRequestMessage(HttpMethod.Post, $"/v1/annotation/campaigns/{campaign}/labels")
                {
                    Content = JsonContent.Create(new { assignment_id = item.GetProperty("assignment_id").GetInt64(), choice = rng.Next(2) == 0 ? "left" : "right" }),
                };
                sreq.Headers.Add("X-AlignHub-Annotator", who);
                using var sres = await http.SendAsync(sreq);
                submit.Add(sw.Elapsed.TotalMilliseconds);
                if (!sres.IsSuccessStatusCode) Interlocked.Increment(ref errors);
            }
        })));
        var stats = JsonDocument.Parse(await http.GetStringAsync($"/v1/annotation/campaigns/{campaign}/stats")).RootElement;
        static double P(IEnumerable<double> v, double q) { var s = v.Order().ToArray(); return s[(int)Math.Min(s.Length - 1, Math.Floor(q * s.Length))]; }
        Console.WriteLine($"{annotators} annotators, {items} items, k = 3: {submit.Count} labels in {wall.Elapsed.TotalSeconds:F1} s, errors {errors}, complete items {stats.GetProperty("complete_items").GetInt32()}");
        Console.WriteLine($"submit latency ms: p50 {P(submit, 0.5):F1}, p99 {P(submit, 0.99):F1}; next latency ms: p50 {P(next, 0.5):F1}, p99 {P(next, 0.99):F1}");
    }
}
