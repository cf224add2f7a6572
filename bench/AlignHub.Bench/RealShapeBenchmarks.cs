using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Speed at a real model's shape: a randomly initialised SmolLM2-135M-shaped Llama (hidden 576, 30 layers, 9 heads, 3 kv
/// heads, intermediate 1536, vocab 49152, tied). <c>smollm2-flops</c>: SFT training FLOP/s through the engine as a fraction
/// of a large matmul's in the same process. <c>smollm2-dpo full|lora</c>: DPO step time and the process's peak RSS, one
/// variant per process (peak RSS is a process's high-water mark), both loading the same stored base.
/// </summary>
static class RealShapeBenchmarks
{
    public static string Config(int maxPos = 2048) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["architectures"] = new[] { "LlamaForCausalLM" }, ["model_type"] = "llama", ["vocab_size"] = 49152, ["hidden_size"] = 576,
        ["intermediate_size"] = 1536, ["num_hidden_layers"] = 30, ["num_attention_heads"] = 9, ["num_key_value_heads"] = 3,
        ["max_position_embeddings"] = maxPos, ["tie_word_embeddings"] = true, ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 100000.0,
    });

    /// <summary>The base, stored once per process in a temporary folder (LoRA needs stored weights; the full run loads the same).</summary>
    public static ModelSource StoredBase()
    {
        var dir = Directory.CreateTempSubdirectory("alignhub-135m-").FullName;
        var config = Config();
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        torch.manual_seed(1);
        using (var m = CausalLM.Create(config)) HfWeights.Save(m, dir);
        return new ModelSource(config, "byte", dir, Name: "smollm2-135m-shape");
    }

    static double MatmulFlops()
    {
        const int n = 2048;
        using var a = randn(n, n);
        using var b = randn(n, n);
        for (int i = 0; i < 3; i++) { using var w = a.matmul(b); }
        var sw = Stopwatch.StartNew();
        const int reps = 10;
        for (int i = 0; i < reps; i++) { using var c = a.matmul(b); }
        return 2.0 * n * n * n * reps / sw.Elapsed.TotalSeconds;
    }

    public static void Flops(int batch, int seq)
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var arch = ModelArchitecture.Parse(Config());
        long d = arch.HiddenSize, L = arch.NumLayers;
        // Parameters in matmuls: every block's projections and the (tied) LM head; the embedding lookup is no matmul.
        long matmulParams = arch.Parameters() - arch.VocabSize * d - L * 2 * d - d + arch.VocabSize * d;
        double flopsPerToken = 6.0 * matmulParams + 12.0 * L * seq * d;
        double before = MatmulFlops();
        var rng = new Random(1);
        var rows = Enumerable.Range(0, batch * 13).Select(_ => ChatTemplate.FromPromptCompletion("x",
            new string(Enumerable.Range(0, seq - 3).Select(_ => (char)('a' + rng.Next(26))).ToArray()))).ToList();
        var timer = new BenchReporter();
        torch.manual_seed(1);
        AlignHub.Training.Sft.SftTrainer.Train(new AlignHub.Training.Sft.SftRun(new ModelSource(Config(), "byte", null), rows, null,
            new SftConfig { NEpochs = 1, BatchSize = batch, MaxSteps = 13, LearningRate = 1e-4, WarmupRatio = 0, SaveSteps = 10_000, EvalSteps = 10_000, Seed = 1 },
            Directory.CreateTempSubdirectory("alignhub-bench-").FullName, null), timer, CancellationToken.None);
        double after = MatmulFlops();
        double step = timer.PerStep();
        double flops = flopsPerToken * batch * seq / step;
        double matmul = Math.Max(before, after);
        Console.WriteLine($"threads {torch.get_num_threads()}; matmul 2048^3: {before / 1e9:F1} GFLOP/s before, {after / 1e9:F1} after (the larger is the reference)");
        Console.WriteLine("model\tparams\tparams_in_matmuls\tbatch\tseq\tstep_s\ttokens_s\tGFLOP_s\tfraction_of_matmul");
        Console.WriteLine($"smollm2-135m shape (SFT, engine)\t{arch.Parameters()}\t{matmulParams}\t{batch}\t{seq}\t{step:F2}\t{batch * seq / step:F0}\t{flops / 1e9:F1}\t{flops / matmul:F2}");
    }

    public static void Dpo(string variant, int batch, int steps)
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var source = StoredBase();
        var pairs = PreferenceTask.Pairs(batch * steps, 1);
        bool lora = variant == "lora";
        var c = new DpoConfig
        {
            NEpochs = 1, BatchSize = batch, MaxSteps = steps, LearningRate = 1e-4, SaveSteps = 10_000, EvalSteps = 10_000, Seed = 1,
            UsePeft = lora, LoraR = 16, LoraAlpha = 32, LoraDropout = 0, LoraTargetModules = lora ? ["all-linear"] : null,
        };
        var timer = new BenchReporter();
        var root = Directory.CreateTempSubdirectory("alignhub-bench-").FullName;
        var sw = Stopwatch.StartNew();
        DpoTrainer.Train(new DpoRun(source, pairs, null, c, root, null, Path.Combine(root, "ref.json")), timer, CancellationToken.None);
        var hwm = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:")).Split(':')[1].Trim();
        double perStep = steps >= 13 ? timer.PerStep() : (timer.RowTimes[^1] - timer.RowTimes[2]) / (timer.RowTimes.Count - 3);
        long tokens = (long)pairs.Sum(p => p.Prompt.Length + p.Chosen.Length + p.Rejected.Length) / steps;
        Console.WriteLine($"variant\tbatch_pairs\tsteps\tstep_s\tpeak_rss\ttrainable_params\twall_s");
        long trainable = lora ? 30L * 16 * (2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536)) : ModelArchitecture.Parse(Config()).Parameters();
        Console.WriteLine($"{variant}\t{batch}\t{steps}\t{perStep:F2}\t{hwm}\t{trainable}\t{sw.Elapsed.TotalSeconds:F0}");
    }
}

static class RealShapeProfile
{
    /// <summary>Where an SFT step's time goes at the 135M shape: forward, loss, backward, optimizer (raw loop, no engine).</summary>
    public static void Run(int batch, int seq)
    {
        torch.set_num_threads(Environment.ProcessorCount);
        torch.manual_seed(1);
        using var model = CausalLM.Create(RealShapeBenchmarks.Config());
        model.train();
        using var opt = optim.AdamW(model.parameters(), lr: 1e-4);
        var t = new double[5];
        for (int step = 0; step < 5; step++)
        {
            using var scope = NewDisposeScope();
            var ids = randint(0, 256, [batch, seq]);
            var sw = Stopwatch.StartNew();
            var h = model.Hidden(ids, null, null);
            double hidden = sw.Elapsed.TotalSeconds;
            var logits = model.LmHead(h);
            double head = sw.Elapsed.TotalSeconds;
            var (loss, _, _) = AlignHub.Training.Losses.SupervisedLoss.MaskedNll(logits, ids, ones([batch, seq], dtype: ScalarType.Bool));
            double lossT = sw.Elapsed.TotalSeconds;
            opt.zero_grad();
            loss.backward();
            double back = sw.Elapsed.TotalSeconds;
            opt.step();
            double all = sw.Elapsed.TotalSeconds;
            if (step >= 2) { t[0] += hidden; t[1] += head - hidden; t[2] += lossT - head; t[3] += back - lossT; t[4] += all - back; }
        }
        Console.WriteLine($"per step (mean of 3): blocks forward {t[0] / 3:F2} s, lm head {t[1] / 3:F2} s, loss {t[2] / 3:F2} s, backward {t[3] / 3:F2} s, AdamW {t[4] / 3:F2} s");
    }
}

static class LossPathProfile
{
    public static void Run()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        using var logits = randn(4, 256, 49152);
        using var ids = randint(0, 49152, [4, 256]);
        double Time(string name, Func<Tensor> f)
        {
            for (int i = 0; i < 2; i++) { using var s = NewDisposeScope(); f(); }
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < 3; i++) { using var s = NewDisposeScope(); f(); }
            Console.WriteLine($"{name}: {sw.Elapsed.TotalSeconds / 3 * 1000:F0} ms");
            return sw.Elapsed.TotalSeconds;
        }
        Time("slice+log_softmax", () => logits[.., ..^1, ..].log_softmax(-1));
        Time("log_softmax contiguous", () => logits.log_softmax(-1));
        Time("slice contiguous copy", () => logits[.., ..^1, ..].contiguous());
        Time("argmax sliced", () => logits[.., ..^1, ..].argmax(-1));
        Time("cross_entropy contiguous", () => nn.functional.cross_entropy(logits.view(-1, 49152), ids.view(-1), reduction: nn.Reduction.None));
        Time("exp", () => logits.exp());
        Time("add", () => logits + 1);
        using var g = logits.clone().requires_grad_(true);
        Time("log_softmax fwd+bwd (gather)", () => { var l = g.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).sum(); l.backward(); return l; });
        Time("cross_entropy fwd+bwd", () => { var l = nn.functional.cross_entropy(g.view(-1, 49152), ids.view(-1)); l.backward(); return l; });
    }
}

static class RealShapeOnDevice
{
    /// <summary>
    /// DPO at the 135M shape on a device: full fine-tuning (float32), LoRA over a float32 base, LoRA over a bfloat16 base
    /// (torch_dtype), 13 steps of <paramref name="batch"/> pairs each, steps 4 to 13 timed, with each run's first and last loss.
    /// </summary>
    public static void Run(string deviceSpec, int batch)
    {
        var device = AlignHub.Training.Engine.Devices.Resolve(deviceSpec);
        var source = RealShapeBenchmarks.StoredBase();
        var pairs = PreferenceTask.Pairs(batch * 13, 1);
        Console.WriteLine($"device {device}; variant\tbatch_pairs\tstep_s\tfirst_loss\tlast_loss");
        foreach (var (name, peft, dtype) in new[] { ("full float32", false, "float32"), ("lora float32 base", true, "float32"), ("lora bfloat16 base", true, "bfloat16") })
        {
            var c = new DpoConfig
            {
                NEpochs = 1, BatchSize = batch, MaxSteps = 13, LearningRate = 1e-4, SaveSteps = 10_000, EvalSteps = 10_000, Seed = 1,
                UsePeft = peft, LoraR = 16, LoraAlpha = 32, LoraDropout = 0, LoraTargetModules = peft ? ["all-linear"] : null, TorchDtype = dtype,
            };
            var timer = new BenchReporter();
            var root = Directory.CreateTempSubdirectory("alignhub-bench-").FullName;
            DpoTrainer.Train(new DpoRun(source, pairs, null, c, root, null, Path.Combine(root, "ref.json"), Device: device), timer, CancellationToken.None);
            var losses = timer.Rows.Where(r => r.Metrics.ContainsKey("loss")).Select(r => r.Metrics["loss"]).ToList();
            Console.WriteLine($"{name}\t{batch}\t{timer.PerStep():F3}\t{losses[0]:F4}\t{losses[^1]:F4}");
        }
    }
}
