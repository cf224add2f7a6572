using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Model-core benchmarks (issue 3): KV-cache generation speed-up, and training FLOP/s against a large matmul.</summary>
static class ModelBenchmarks
{
    static string Config(string family, int d, int layers, int heads, int kvHeads, int ctx) => family == "gpt2"
        ? JsonSerializer.Serialize(new { model_type = "gpt2", vocab_size = 259, n_embd = d, n_layer = layers, n_head = heads, n_positions = ctx })
        : JsonSerializer.Serialize(new
        {
            model_type = "llama", vocab_size = 259, hidden_size = d, intermediate_size = 4 * d, num_hidden_layers = layers,
            num_attention_heads = heads, num_key_value_heads = kvHeads, max_position_embeddings = ctx, tie_word_embeddings = true,
        });

    /// <summary>A byte tokenizer whose eos never matches, so every run generates exactly max_new_tokens.</summary>
    sealed class NoEos : ITokenizer
    {
        readonly ByteTokenizer inner = new();
        public int VocabSize => inner.VocabSize;
        public int BosId => inner.BosId;
        public int EosId => -1;
        public int PadId => inner.PadId;
        public bool AddBos => true;
        public int[] Encode(string text) => inner.Encode(text);
        public string Decode(IEnumerable<int> ids) => inner.Decode(ids);
    }

    public static void KvCache()
    {
        torch.set_num_threads(int.TryParse(Environment.GetEnvironmentVariable("BENCH_THREADS"), out var th) ? th : Environment.ProcessorCount);
        const int newTokens = 256;
        Console.WriteLine($"threads: {torch.get_num_threads()}, new tokens: {newTokens}, greedy, prompt 16 tokens");
        Console.WriteLine("model\tbatch\tcache_tok_s\tno_cache_tok_s\tspeedup\tsame_tokens");
        foreach (var (name, family, d, layers, heads, kv) in new[] { ("gpt2 d256 L4", "gpt2", 256, 4, 4, 4), ("llama d256 L4 gqa 4/2", "llama", 256, 4, 4, 2) })
        foreach (var batch in new[] { 1, 8 })
        {
            torch.manual_seed(1);
            using var model = CausalLM.Create(Config(family, d, layers, heads, kv, 512));
            var tok = new NoEos();
            var prompts = Enumerable.Range(0, batch).Select(i => new[] { tok.BosId }.Concat(tok.Encode($"Prompt number {i:D2}...")).ToArray()).ToList();
            var o = new GenerationOptions { MaxNewTokens = newTokens, Temperature = 0 };
            TextGenerator.Generate(model, tok, prompts, o with { MaxNewTokens = 8 }); // warm up
            var sw = Stopwatch.StartNew();
            var cached = TextGenerator.Generate(model, tok, prompts, o);
            double tCache = sw.Elapsed.TotalSeconds;
            sw.Restart();
            var plain = TextGenerator.Generate(model, tok, prompts, o with { UseKvCache = false });
            double tPlain = sw.Elapsed.TotalSeconds;
            int produced = cached.Sum(c => c.Tokens.Length);
            bool same = cached.Zip(plain).All(p => p.First.Tokens.SequenceEqual(p.Second.Tokens));
            Console.WriteLine($"{name}\t{batch}\t{produced / tCache:F0}\t{plain.Sum(c => c.Tokens.Length) / tPlain:F0}\t{tPlain / tCache:F2}\t{same}");
        }
    }

    /// <summary>
    /// Training FLOP/s of the decoder as a fraction of a 2048^3 matmul's FLOP/s in the same process. Training FLOPs per
    /// token: 6 N (N = parameters in matmuls: the blocks and the LM head, not the embedding lookups) plus attention
    /// 6 * 2 * L * T * d (scores and weighted values, forward and backward; causal masking not discounted), the
    /// count of Kaplan et al. (2020) and PaLM (Chowdhery et al., 2022, appendix B).
    /// </summary>
    public static void TrainingFlops()
    {
        torch.set_num_threads(int.TryParse(Environment.GetEnvironmentVariable("BENCH_THREADS"), out var th) ? th : Environment.ProcessorCount);
        Console.WriteLine($"threads: {torch.get_num_threads()}");
        // Reference: large square matmul.
        const int n = 2048;
        double matmul;
        using (var a = randn(n, n))
        using (var b = randn(n, n))
        {
            for (int i = 0; i < 2; i++) { using var w = a.matmul(b); }
            var sw = Stopwatch.StartNew();
            const int reps = 10;
            for (int i = 0; i < reps; i++) { using var c = a.matmul(b); }
            matmul = 2.0 * n * n * n * reps / sw.Elapsed.TotalSeconds;
        }
        Console.WriteLine($"matmul {n}x{n}x{n}: {matmul / 1e9:F1} GFLOP/s");
        Console.WriteLine("model\tbatch\tseq\tparams_matmul\tstep_ms\ttokens_s\tGFLOP_s\tfraction_of_matmul");
        foreach (var (name, family, kv) in new[] { ("gpt2 d256 L4", "gpt2", 4), ("llama d256 L4 gqa 4/2", "llama", 2) })
        {
            const int d = 256, layers = 4, batch = 8, seq = 256;
            torch.manual_seed(1);
            using var model = CausalLM.Create(Config(family, d, layers, 4, kv, 512));
            model.train();
            using var opt = optim.AdamW(model.parameters(), lr: 1e-4);
            long matmulParams = model.named_parameters().Where(p => p.parameter.dim() == 2 && !p.name.Contains("wpe") && !p.name.Contains("wte") && !p.name.Contains("embed_tokens"))
                .Sum(p => p.parameter.numel()) + 259L * d; // + the tied LM head
            double flopsPerToken = 6.0 * matmulParams + 12.0 * layers * seq * d;
            double Step()
            {
                var sw = Stopwatch.StartNew();
                using var scope = NewDisposeScope();
                var ids = randint(0, 256, [batch, seq]);
                var logits = model.forward(ids);
                var loss = nn.functional.cross_entropy(logits.view(-1, 259), ids.view(-1));
                opt.zero_grad();
                loss.backward();
                opt.step();
                return sw.Elapsed.TotalSeconds;
            }
            for (int i = 0; i < 3; i++) Step();
            const int steps = 10;
            double total = 0;
            for (int i = 0; i < steps; i++) total += Step();
            double perStep = total / steps;
            double flops = flopsPerToken * batch * seq / perStep;
            Console.WriteLine($"{name}\t{batch}\t{seq}\t{matmulParams}\t{perStep * 1000:F0}\t{batch * seq / perStep:F0}\t{flops / 1e9:F1}\t{flops / matmul:F2}");
            // The same step through the training engine (SftTrainer: collation, masked loss, clipping, schedule, metrics read back).
            double engine = EngineStepSeconds(Config(family, d, layers, 4, kv, 512), batch, seq);
            double engineFlops = flopsPerToken * batch * seq / engine;
            Console.WriteLine($"{name} (engine)\t{batch}\t{seq}\t{matmulParams}\t{engine * 1000:F0}\t{batch * seq / engine:F0}\t{engineFlops / 1e9:F1}\t{engineFlops / matmul:F2}\tengine/raw {engine / perStep:F3}");
        }
    }

    /// <summary>Mean seconds per SFT step through the engine on rows of exactly <paramref name="seq"/> tokens (bos + 1 prompt byte + completion + eos), steps 4 to 13.</summary>
    static double EngineStepSeconds(string config, int batch, int seq)
    {
        var rng = new Random(1);
        var rows = Enumerable.Range(0, batch * 13).Select(_ => ChatTemplate.FromPromptCompletion("x",
            new string(Enumerable.Range(0, seq - 3).Select(_ => (char)('a' + rng.Next(26))).ToArray()))).ToList();
        var timer = new BenchReporter();
        var root = Directory.CreateTempSubdirectory("alignhub-bench-").FullName;
        AlignHub.Training.Sft.SftTrainer.Train(new AlignHub.Training.Sft.SftRun(new ModelSource(config, "byte", null), rows, null,
            new SftConfig { NEpochs = 1, BatchSize = batch, MaxSteps = 13, LearningRate = 1e-4, WarmupRatio = 0, SaveSteps = 10_000, EvalSteps = 10_000, Seed = 1 },
            root, null), timer, CancellationToken.None);
        Directory.Delete(root, true);
        return timer.PerStep();
    }
}
