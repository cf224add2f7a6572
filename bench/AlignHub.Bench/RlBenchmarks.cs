using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Rewards;
using AlignHub.Training.Rl;
using AlignHub.Training.Sft;
using AlignHub.Training.Tokenizers;
using TorchSharp;

/// <summary>Online RL benchmarks (issue 12): GRPO on the built-in arithmetic task from the documented SFT start.</summary>
static class RlBenchmarks
{
    static string Temp() => Directory.CreateTempSubdirectory("alignhub-bench-").FullName;

    /// <summary>All threads, the tiny preset, and the documented SFT start of the arithmetic task (250 steps, 0.340 held-out exact match).</summary>
    static (ModelSource Tiny, ModelSource Start) ArithmeticStart()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var tiny = new ModelSource(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
        var sft = SftTrainer.Train(new SftRun(tiny, ArithmeticTask.Demonstrations(4000, 1), null,
            new SftConfig { NEpochs = 100, MaxSteps = 250, BatchSize = 32, LearningRate = 3e-3, SaveSteps = 100_000, Seed = 1 }, Temp(), null), new BenchReporter(), CancellationToken.None);
        return (tiny, tiny with { Folder = sft.LastCheckpoint });
    }

    /// <summary>SFT start (250 steps), then GRPO; held-out greedy exact match (eval/reward) every 50 steps, reward, wall time.</summary>
    public static void ArithmeticGrpo(int steps)
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var tiny = new ModelSource(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
        var sw = Stopwatch.StartNew();
        var sft = SftTrainer.Train(new SftRun(tiny, ArithmeticTask.Demonstrations(4000, 1), null,
            new SftConfig { NEpochs = 100, MaxSteps = 250, BatchSize = 32, LearningRate = 3e-3, SaveSteps = 100_000, Seed = 1 }, Temp(), null), new BenchReporter(), CancellationToken.None);
        Console.WriteLine($"sft start: 250 steps in {sw.Elapsed.TotalSeconds:F1} s");
        var held = ArithmeticTask.Prompts(200, 99);
        var grader = JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader);
        var c = new GrpoConfig { NEpochs = 100, MaxSteps = steps, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4, LearningRate = 5e-4,
            SaveSteps = 100_000, EvalSteps = 50, Seed = 1, Grader = grader };
        // Step 0: the start's held-out accuracy, measured with the same evaluation (one step at learning rate ~0 is not needed: eval only).
        using (var start = (tiny with { Folder = sft.LastCheckpoint }).CreateModel())
        {
            var tok = new ByteTokenizer();
            var outs = TextGenerator.Generate(start, tok, held.Select(h => new[] { tok.BosId }.Concat(tok.Encode(h.Text)).ToArray()).ToList(), new GenerationOptions { MaxNewTokens = 4, Temperature = 0 });
            Console.WriteLine($"step 0: held-out exact match {held.Zip(outs).Count(x => x.Second.Text == x.First.Row!.Value.GetProperty("answer").GetString()) / 200.0:F3}");
        }
        var log = new BenchReporter();
        sw.Restart();
        OnlineRlTrainer.Train(new OnlineRlRun(tiny with { Folder = sft.LastCheckpoint }, ArithmeticTask.Prompts(2000, 5), held, c, Temp(), null,
            new GraderSource(c.ParsedGrader()!)), log, CancellationToken.None);
        double wall = sw.Elapsed.TotalSeconds;
        Console.WriteLine("step\theld_out_exact_match\treward (train, last 10 steps)\tentropy\ttiming_generate_s");
        foreach (var (step, m) in log.Rows.Where(r => r.Metrics.ContainsKey("eval/reward")))
        {
            var recent = log.Rows.Where(r => r.Metrics.ContainsKey("reward") && !r.Metrics.ContainsKey("eval/reward") && r.Step > step - 10 && r.Step <= step).ToList();
            Console.WriteLine($"{step}\t{m["eval/reward"]:F3}\t{recent.Average(r => r.Metrics["reward"]):F3}\t{recent.Average(r => r.Metrics["entropy"]):F3}\t{recent.Average(r => r.Metrics["timing/generate"]):F3}");
        }
        Console.WriteLine($"grpo: {steps} steps in {wall:F1} s ({wall / steps * 1000:F0} ms/step)");
    }

    /// <summary>
    /// GRPO, RLOO and PPO from the same SFT start and seed, 300 optimizer steps of 32 prompts each: held-out exact match
    /// and KL every 50 steps, wall time, time per optimizer step and per batch of rollouts; then rollout sampling
    /// throughput against a generate job's on the same model, prompts and batch.
    /// </summary>
    public static void Compare(int steps)
    {
        var (_, start) = ArithmeticStart();
        var held = ArithmeticTask.Prompts(200, 99);
        var grader = JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader);
        var runs = new (string Name, OnlineRlConfig Config)[]
        {
            ("grpo", new GrpoConfig { NumGenerations = 8, Beta = 0.05 }),
            ("rloo", new RlooConfig { NumGenerations = 8 }),
            ("ppo", new PpoConfig { NumGenerations = 8, NumPpoEpochs = 4 }),
        };
        Console.WriteLine("method\trollout_batches\toptimizer_steps\theld_out_exact_match\tkl\twall_s");
        var summary = new List<string>();
        foreach (var (name, template) in runs)
        {
            // The same batches of rollouts for each: PPO trains num_ppo_epochs steps on each batch, so it runs that many times the steps.
            var c = template with { NEpochs = 100, MaxSteps = steps * template.UpdatesPerBatch, BatchSize = 32, MaxCompletionLength = 4, SaveSteps = 100_000,
                EvalSteps = 50 * template.UpdatesPerBatch, Seed = 1, Grader = grader };
            var log = new BenchReporter();
            var sw = Stopwatch.StartNew();
            OnlineRlTrainer.Train(new OnlineRlRun(start, ArithmeticTask.Prompts(2000, 5), held, c, Temp(), null, new GraderSource(c.ParsedGrader()!)), log, CancellationToken.None);
            double wall = sw.Elapsed.TotalSeconds;
            foreach (var (step, m) in log.Rows.Where(r => r.Metrics.ContainsKey("eval/reward")))
            {
                var kl = log.Rows.Where(r => r.Metrics.ContainsKey("kl") && r.Step > step - 10 * c.UpdatesPerBatch && r.Step <= step).Average(r => r.Metrics["kl"]);
                double at = log.RowTimes[log.Rows.FindIndex(r => r.Step == step && r.Metrics.ContainsKey("eval/reward"))];
                Console.WriteLine($"{name}\t{step / c.UpdatesPerBatch}\t{step}\t{m["eval/reward"]:F3}\t{kl:F4}\t{at:F1}");
            }
            double gen = log.Rows.Where(r => r.Metrics.ContainsKey("timing/generate")).Sum(r => r.Metrics["timing/generate"]);
            int batches = steps;
            summary.Add($"{name}: {wall:F1} s, {wall / c.MaxSteps * 1000:F0} ms per optimizer step, {wall / batches * 1000:F0} ms per batch of 256 rollouts ({c.UpdatesPerBatch} update(s)), sampling {gen:F1} s");
        }
        foreach (var line in summary) Console.WriteLine(line);

        // Rollout sampling against the generate job's generation, same model, 32 prompts x 8 samples, 20 batches each, interleaved.
        using var model = start.CreateModel();
        var tok = new ByteTokenizer();
        var prompts = ArithmeticTask.Prompts(32 * 20, 11);
        var encoded = prompts.Select(p => new[] { tok.BosId }.Concat(tok.Encode(p.Text)).ToArray()).ToList();
        var o = new GenerationOptions { MaxNewTokens = 4, Temperature = 1 };
        double tRollout = 0, tGenerate = 0; long nRollout = 0, nGenerate = 0;
        var genConfig = new GenerateConfig { N = 8, MaxNewTokens = 4, BatchSize = 256, Seed = 1 };
        for (int i = 0; i < 20; i++)
        {
            var slice = encoded.Skip(i * 32).Take(32).ToList();
            var sw = Stopwatch.StartNew();
            var rs = Rollouts.Sample(model, tok, slice, Enumerable.Range(i * 32, 32).ToList(), 8, o, 1, i, 256);
            tRollout += sw.Elapsed.TotalSeconds; nRollout += rs.Sum(r => r.Completion.Tokens.Length);
            var tmp = Path.Combine(Temp(), "g.jsonl");
            var log = new BenchReporter();
            sw.Restart();
            GenerateRunner.Generate(new GenerateRun(start, "start", prompts.Skip(i * 32).Take(32).ToList(), genConfig, tmp), log, CancellationToken.None);
            tGenerate += sw.Elapsed.TotalSeconds;
            nGenerate += File.ReadLines(tmp).Sum(l => JsonDocument.Parse(l).RootElement.GetProperty("completions").EnumerateArray().Sum(x => x.GetProperty("tokens").GetInt32()));
        }
        Console.WriteLine($"sampling: rollouts {nRollout / tRollout:F0} tokens/s, generate job {nGenerate / tGenerate:F0} tokens/s (model load and file writing included), ratio {nRollout / tRollout / (nGenerate / tGenerate):F2}");
    }

    /// <summary>
    /// PPO variants from the same SFT start and seed as <see cref="Compare"/>: held-out exact match at the end and the
    /// best along the way (every 50 steps), KL, wall time, and batches of rollouts seen. "name:steps:epochs:minibatches:vlr:lr".
    /// </summary>
    public static void PpoSweep(string[] variants)
    {
        var (_, start) = ArithmeticStart();
        var held = ArithmeticTask.Prompts(200, 99);
        var grader = JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader);
        Console.WriteLine("variant	steps	batches	final	best	kl_last10	wall_s	trajectory");
        foreach (var v in variants)
        {
            var f = v.Split(':');
            int steps = int.Parse(f[1]), epochs = int.Parse(f[2]), mini = int.Parse(f[3]);
            double? vlr = f[4] == "-" ? null : double.Parse(f[4], System.Globalization.CultureInfo.InvariantCulture);
            double lr = f.Length > 5 ? double.Parse(f[5], System.Globalization.CultureInfo.InvariantCulture) : 5e-4;
            var c = new PpoConfig { NumGenerations = 8, NumPpoEpochs = epochs, NumMiniBatches = mini, ValueLearningRate = vlr, LearningRate = lr,
                NEpochs = 100, MaxSteps = steps, BatchSize = 32, MaxCompletionLength = 4, SaveSteps = 100_000, EvalSteps = 50, Seed = 1, Grader = grader };
            var log = new BenchReporter();
            var sw = Stopwatch.StartNew();
            OnlineRlTrainer.Train(new OnlineRlRun(start, ArithmeticTask.Prompts(2000, 5), held, c, Temp(), null, new GraderSource(c.ParsedGrader()!)), log, CancellationToken.None);
            var evals = log.Rows.Where(r => r.Metrics.ContainsKey("eval/reward")).Select(r => (r.Step, Acc: r.Metrics["eval/reward"])).ToList();
            var kl = log.Rows.Where(r => r.Metrics.ContainsKey("kl") && r.Step > steps - 10).Average(r => r.Metrics["kl"]);
            Console.WriteLine($"{f[0]}	{steps}	{steps / c.UpdatesPerBatch}	{evals[^1].Acc:F3}	{evals.Max(e => e.Acc):F3}	{kl:F3}	{sw.Elapsed.TotalSeconds:F1}	" +
                string.Join(" ", evals.Select(e => $"{e.Step}:{e.Acc:F3}")));
        }
    }

    /// <summary>
    /// The KL-reward frontier of two GRPO runs from the same start (beta 0 and beta 0.05, 300 steps, a checkpoint every 50):
    /// each checkpoint's mean sampled reward (temperature 1) and KL per completion on 200 held-out prompts, 8 samples each.
    /// </summary>
    public static void Frontier()
    {
        var (tiny, start) = ArithmeticStart();
        var grader = JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader);
        var held = ArithmeticTask.Prompts(200, 99);
        Console.WriteLine("run\tstep\treward\treward_ci\tkl_nats_per_completion\tkl_ci\tkl_per_token\tseconds");
        foreach (var beta in new[] { 0.0, 0.05 })
        {
            var c = new GrpoConfig { NEpochs = 100, MaxSteps = 300, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4, Beta = beta,
                SaveSteps = 50, EvalSteps = 100_000, Seed = 1, Grader = grader };
            var saved = new List<(int Step, string Dir)>();
            OnlineRlTrainer.Train(new OnlineRlRun(start, ArithmeticTask.Prompts(2000, 5), null, c, Temp(), null, new GraderSource(c.ParsedGrader()!)),
                new SavingReporter(saved), CancellationToken.None);
            var fc = new FrontierConfig { Run = "bench", NumSamples = 8, MaxNewTokens = 4, Seed = 3, Grader = grader };
            var sw = Stopwatch.StartNew();
            var (_, rows) = AlignHub.Training.Evaluation.FrontierRunner.Evaluate(new(start, "start", saved.Select(x => new AlignHub.Training.Evaluation.FrontierPoint($"step-{x.Step}", x.Step, tiny with { Folder = x.Dir })).ToList(),
                held, fc, new GraderSource(fc.ParsedGrader()!), Path.Combine(Temp(), "frontier.jsonl")), new BenchReporter(), CancellationToken.None);
            foreach (var r in rows)
                Console.WriteLine($"beta={beta}\t{r["step"]}\t{(double)r["reward"]:F3}\t[{(double)r["reward_ci_low"]:F3}, {(double)r["reward_ci_high"]:F3}]\t{(double)r["kl"]:F3}\t[{(double)r["kl_ci_low"]:F3}, {(double)r["kl_ci_high"]:F3}]\t{(double)r["kl_per_token"]:F4}");
            Console.WriteLine($"beta={beta}: frontier of {rows.Count} points in {sw.Elapsed.TotalSeconds:F1} s");
        }
    }

    /// <summary>Keeps where each checkpoint went.</summary>
    sealed class SavingReporter(List<(int Step, string Dir)> saved) : ITrainingReporter
    {
        public void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null) { }
        public void Step(TrainingProgress p, IReadOnlyDictionary<string, double>? m) { }
        public void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics) => saved.Add((step, directory));
        public ControlSignal Poll() => ControlSignal.Continue;
    }
}
