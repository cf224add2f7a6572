using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Models;
using TorchSharp;

/// <summary>
/// Serving throughput through the real API (<c>serving</c>): an AlignHub process on this machine (embedded default, all
/// roles) serves a model of random weights; 1, 8 and 32 concurrent clients stream chat completions (SSE) of the same
/// prompts and seeds; a batch generate job of the same model on the same prompts is the reference. Reports completions
/// and tokens per second, the ratio to the batch job's tokens per second, and time to first token p50/p99.
/// </summary>
static class ServingBenchmarks
{
    const string Key = "ahk-bench-admin-0123456789";

    public static async Task Run(string[] models, int prompts, int maxTokens)
    {
        var root = RepoRoot();
        var dll = new[] { "Release", "Debug" }.Select(c => Path.Combine(root, "Api", "AlignHub.Api", "bin", c, "net10.0", "AlignHub.Api.dll")).First(File.Exists);
        var data = Directory.CreateTempSubdirectory("alignhub-serving-").FullName;
        int port = 20000 + Random.Shared.Next(20000);
        var psi = new ProcessStartInfo("dotnet", [dll]) { WorkingDirectory = Path.GetDirectoryName(dll)!, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
        psi.Environment["AlignHub__DataDir"] = data;
        psi.Environment["AlignHub__AdminKey"] = Key;
        psi.Environment["AlignHub__RateLimitPerMinute"] = "0";
        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        using var server = Process.Start(psi)!;
        server.OutputDataReceived += (_, _) => { };
        server.ErrorDataReceived += (_, _) => { };
        server.BeginOutputReadLine(); server.BeginErrorReadLine();
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(10) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        for (int i = 0; i < 240; i++) { try { if ((await http.GetAsync("/healthz")).IsSuccessStatusCode) break; } catch (HttpRequestException) { } await Task.Delay(250); }
        try
        {
            Console.WriteLine($"server: {dll}; prompts {prompts}, max_tokens {maxTokens}, temperature 1, seeds fixed");
            Console.WriteLine("model\tclients\tcompletions_s\ttokens_s\tvs_batch_job\tttft_p50_ms\tttft_p99_ms");
            foreach (var name in models) await Model(http, name, prompts, maxTokens);
        }
        finally { server.Kill(entireProcessTree: true); }
    }

    static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "AlignHub.sln"))) d = d.Parent;
        return d?.FullName ?? throw new DirectoryNotFoundException("AlignHub.sln");
    }

    static string Config(string name) => name switch
    {
        "tiny-128" => ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny-128"]),
        "d256" => JsonSerializer.Serialize(new { model_type = "llama", vocab_size = 259, hidden_size = 256, intermediate_size = 768, num_hidden_layers = 4,
            num_attention_heads = 8, num_key_value_heads = 4, max_position_embeddings = 512, tie_word_embeddings = true, bos_token_id = 256, eos_token_id = 257, pad_token_id = 258 }),
        _ => throw new ArgumentException($"unknown bench model {name} (tiny-128, d256)"),
    };

    static async Task Model(HttpClient http, string name, int prompts, int maxTokens)
    {
        // A model with stored (random) weights: only such models are served.
        var folder = Directory.CreateTempSubdirectory("alignhub-serving-model-").FullName;
        File.WriteAllText(Path.Combine(folder, "config.json"), Config(name));
        torch.manual_seed(1);
        using (var m = CausalLM.Create(Config(name))) HfWeights.Save(m, folder);
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gz))
            foreach (var f in Directory.GetFiles(folder)) tar.WriteEntry(f, $"m/{Path.GetFileName(f)}");
        var id = $"bench/{name}";
        using (var form = new MultipartFormDataContent { { new ByteArrayContent(ms.ToArray()), "file", "m.tar.gz" }, { new StringContent(id), "id" } })
            (await http.PostAsync("/v1/models", form)).EnsureSuccessStatusCode();

        var names = new[] { "Ada", "Alan", "Grace", "Linus", "Ken", "Barbara", "Edsger", "Donald" };
        var texts = Enumerable.Range(0, prompts).Select(i => $"Greet {names[i % names.Length]} number {i}.").ToList();

        // The reference: a generate job over the same prompts (chat rows), batches of 32; its own per-batch tokens/s.
        var rows = string.Join("\n", texts.Select(t => JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = t } } })));
        using (var form = new MultipartFormDataContent { { new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(rows)), "file", "p.jsonl" }, { new StringContent("fine-tune"), "purpose" } })
        {
            var file = JsonDocument.Parse(await (await http.PostAsync("/v1/files", form)).Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
            var job = JsonDocument.Parse(await (await http.PostAsJsonAsync("/v1/fine_tuning/jobs", new
            {
                model = id, training_file = file, seed = 1,
                method = new { type = "generate", generate = new { hyperparameters = new { n = 1, max_new_tokens = maxTokens, temperature = 1.0, batch_size = 32 } } },
            })).Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();
            string status;
            do { await Task.Delay(500); status = JsonDocument.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{job}")).RootElement.GetProperty("status").GetString()!; }
            while (status is "queued" or "running" or "validating_files");
            var tps = JsonDocument.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{job}/metrics?name=tokens_per_second&limit=1000")).RootElement.GetProperty("data")
                .EnumerateArray().Select(m => m.GetProperty("value").GetDouble()).ToList();
            // Batches of 32: the last one may be smaller; weight by the whole batches only when there are several.
            var full = tps.Count > 1 ? tps.Take(tps.Count - (prompts % 32 == 0 ? 0 : 1)).ToList() : tps;
            batchJob = full.Average();
            Console.WriteLine($"{name}\tbatch job ({status})\t\t{batchJob:F0}\t1.00\t\t");
        }

        await Chat(http, id, texts[0], 4, 0); // load the model and warm up
        foreach (int clients in new[] { 1, 8, 32 })
        {
            var next = 0;
            var ttfts = new List<double>();
            long tokens = 0;
            var sw = Stopwatch.StartNew();
            await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
            {
                while (true)
                {
                    int i = Interlocked.Increment(ref next) - 1;
                    if (i >= prompts) return;
                    var (ttft, n) = await Chat(http, id, texts[i], maxTokens, i);
                    lock (ttfts) { ttfts.Add(ttft); tokens += n; }
                }
            }));
            double secs = sw.Elapsed.TotalSeconds;
            ttfts.Sort();
            double P(double q) => ttfts[Math.Min(ttfts.Count - 1, (int)Math.Ceiling(q * ttfts.Count) - 1)] * 1000;
            Console.WriteLine($"{name}\t{clients}\t{prompts / secs:F2}\t{tokens / secs:F0}\t{tokens / secs / batchJob:F2}\t{P(0.5):F0}\t{P(0.99):F0}");
        }
    }

    static double batchJob;

    /// <summary>One streamed chat completion: seconds to the first content chunk, and the completion's tokens (from usage).</summary>
    static async Task<(double Ttft, int Tokens)> Chat(HttpClient http, string model, string prompt, int maxTokens, int seed)
    {
        var body = JsonContent.Create(new
        {
            model, messages = new[] { new { role = "user", content = prompt } }, max_tokens = maxTokens, temperature = 1.0, seed,
            stream = true, stream_options = new { include_usage = true },
        });
        var sw = Stopwatch.StartNew();
        using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = body };
        using var res = await http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead);
        res.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await res.Content.ReadAsStreamAsync());
        double ttft = -1;
        int tokens = 0;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ")) continue;
            var data = line[6..];
            if (data == "[DONE]") break;
            using var doc = JsonDocument.Parse(data);
            var root = doc.RootElement;
            if (ttft < 0 && root.GetProperty("choices").EnumerateArray().Any(c => c.GetProperty("delta").TryGetProperty("content", out var t) && t.GetString() is { Length: > 0 }))
                ttft = sw.Elapsed.TotalSeconds;
            if (root.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object) tokens = u.GetProperty("completion_tokens").GetInt32();
        }
        return (ttft < 0 ? sw.Elapsed.TotalSeconds : ttft, tokens);
    }
}

static class EngineBenchmark
{
    /// <summary>The engine alone (no HTTP): 128 requests of 64 tokens through one engine (32 rows) vs TextGenerator in batches of 32.</summary>
    public static void Run()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var config = ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny-128"]);
        torch.manual_seed(1);
        using var model = CausalLM.Create(config);
        var tok = new AlignHub.Training.Tokenizers.ByteTokenizer();
        var enc = new AlignHub.Training.Data.PromptEncoder(tok, 100);
        var prompts = Enumerable.Range(0, 128).Select(i => enc.Encode($"<|user|>\nGreet Ada number {i}.<|end|>\n<|assistant|>\n")).ToList();
        var o = new AlignHub.Training.Generation.GenerationOptions { MaxNewTokens = 64, Temperature = 1 };
        AlignHub.Training.Generation.TextGenerator.Generate(model, tok, prompts.Take(32).ToList(), o);
        var sw = Stopwatch.StartNew();
        long genTokens = 0;
        for (int b = 0; b < 4; b++)
            genTokens += AlignHub.Training.Generation.TextGenerator.Generate(model, tok, prompts.Skip(32 * b).Take(32).ToList(), o, Enumerable.Range(0, 32).Select(i => (long)(b * 32 + i)).ToList()).Sum(g => g.Tokens.Length);
        double gen = genTokens / sw.Elapsed.TotalSeconds;
        var record = new ModelRecord { Id = "m", OwnedBy = "u", Architecture = "gpt2", ConfigJson = config, Tokenizer = "byte", WeightsPath = "x" };
        using var engine = new AlignHub.Training.Generation.InferenceEngine(model, tok, 32, 512);
        var jobs = prompts.Select((p, i) =>
        {
            var job = new AlignHub.Training.Generation.ServingJob(new AlignHub.Domain.Inference.InferenceRequest { Model = record, MaxTokens = 64, Temperature = 1 }, p.Length, [], CancellationToken.None);
            return (job, row: new AlignHub.Training.Generation.ServingRow { Job = job, Choice = 0, Prompt = p, Seed = i });
        }).ToList();
        sw.Restart();
        engine.Enqueue(jobs.Select(j => j.row));
        int steps = 0;
        while (engine.HasWork) { engine.Step(); steps++; }
        long tokens = 0;
        foreach (var (job, _) in jobs) while (job.Events.TryRead(out var e)) if (e is AlignHub.Domain.Inference.UsageReport u) tokens += u.CompletionTokens;
        double eng = tokens / sw.Elapsed.TotalSeconds;
        Console.WriteLine($"TextGenerator (4 batches of 32): {gen:F0} tokens/s; InferenceEngine (32 rows, 128 requests, {steps} steps): {eng:F0} tokens/s; ratio {eng / gen:F2}");
    }
}
