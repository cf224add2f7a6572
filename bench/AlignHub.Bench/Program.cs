using System.Diagnostics;
using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Sft;

// dotnet run -c Release -- memory [steps] | kvcache | flops | preference | dpo-step | peak-rss sft|dpo | grpo-arithmetic [steps] | rl-compare [steps] | ppo-sweep VARIANT... | frontier | rl-variants [steps] | distill [teacher-steps] [steps] [lr] | rl-step-cost [steps] | annotation-latency BASE_URL [think-ms] [seconds] | job-creation BASE_URL [total] [clients] [interval-ms]
var command = args.Length > 0 ? args[0] : "memory";
switch (command)
{
    case "kvcache": ModelBenchmarks.KvCache(); return;
    case "flops": ModelBenchmarks.TrainingFlops(); return;
    case "preference": PreferenceBenchmarks.Task(); return;
    case "dpo-step": PreferenceBenchmarks.StepTime(); return;
    case "peak-rss": PreferenceBenchmarks.PeakRss(args[1]); return;
    case "grpo-arithmetic": RlBenchmarks.ArithmeticGrpo(args.Length > 1 ? int.Parse(args[1]) : 300); return;
    case "rl-compare": RlBenchmarks.Compare(args.Length > 1 ? int.Parse(args[1]) : 300); return;
    // ppo-sweep name:steps:epochs:minibatches:value_lr|-[:lr] ...
    case "ppo-sweep": RlBenchmarks.PpoSweep(args[1..]); return;
    case "frontier": RlBenchmarks.Frontier(); return;
    case "rl-variants": Rl2026Benchmarks.Variants(args.Length > 1 ? int.Parse(args[1]) : 300); return;
    case "distill": Rl2026Benchmarks.Distill(args.Length > 1 ? int.Parse(args[1]) : 300, args.Length > 2 ? int.Parse(args[2]) : 200,
        args.Length > 3 ? double.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 1e-3); return;
    case "rebel": Rl2026Benchmarks.Rebel(int.Parse(args[1]), int.Parse(args[2]), double.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture),
        double.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture)); return;
    case "rto": Rl2026Benchmarks.Rto(int.Parse(args[1]), int.Parse(args[2]), double.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture), args.Length > 4 && args[4] == "grader",
        args.Length > 5 ? double.Parse(args[5], System.Globalization.CultureInfo.InvariantCulture) : 1e-3, args.Length > 6 ? double.Parse(args[6], System.Globalization.CultureInfo.InvariantCulture) : 0.1); return;
    // cyclic method=dno|sppo|online_ipo steps=200 lr=1e-4 eta=1 beta=0.1 mixture=0 iterations=1 sft=400 pairs=480 corrupt=0.25 grpo=1 rounds=1 onpolicy=0
    //   (rounds: self-play iterations, each with a preference model retrained on the pairs so far plus onpolicy prompts of the policy's own samples labelled by the hidden rule)
    case "cyclic": Rl2026Benchmarks.Cyclic(args[1..]); return;
    // overoptimisation [svg path] [grpo steps]: proxy and gold reward against KL for GRPO on a reward model and DPO (issue 23)
    case "overoptimisation": OveroptimisationBenchmark.Run(args.Length > 1 ? args[1] : "overoptimisation.svg", args.Length > 2 ? int.Parse(args[2]) : 200); return;
    case "rl-step-cost": RlStepCost.Run(args.Length > 1 ? int.Parse(args[1]) : 60); return;
    // oracle-export DIR [tokenizer folders, comma-separated]: cases for bench/device/oracle_check.py (transformers + PEFT)
    // smollm2-flops [batch] [seq]: SFT FLOP/s at SmolLM2-135M's shape vs a large matmul
    case "smollm2-flops": RealShapeBenchmarks.Flops(args.Length > 1 ? int.Parse(args[1]) : 4, args.Length > 2 ? int.Parse(args[2]) : 256); return;
    // smollm2-dpo full|lora [batch pairs] [steps]: DPO step time and peak RSS at SmolLM2-135M's shape (one variant per process)
    case "smollm2-dpo": RealShapeBenchmarks.Dpo(args[1], args.Length > 2 ? int.Parse(args[2]) : 4, args.Length > 3 ? int.Parse(args[3]) : 13); return;
    case "loss-profile": LossPathProfile.Run(); return;
    // smollm2-profile [batch] [seq] [thread]: an SFT step's phases at the 135M shape (on a thread of its own with "thread", as workers run)
    case "smollm2-profile":
    {
        void Profile() => RealShapeProfile.Run(args.Length > 1 ? int.Parse(args[1]) : 4, args.Length > 2 ? int.Parse(args[2]) : 256);
        if (args.Length > 3 && args[3] == "thread") { var t = new Thread(Profile); t.Start(); t.Join(); } else Profile();
        return;
    }
    // smollm2-device DEVICE [batch pairs]: DPO at the 135M shape on a device: full, LoRA, LoRA over a bfloat16 base
    case "smollm2-device": RealShapeOnDevice.Run(args[1], args.Length > 2 ? int.Parse(args[2]) : 16); return;
    // serving [models: tiny-128,d256] [prompts] [max_tokens]: chat completions streamed by 1, 8, 32 clients vs a generate job
    case "serving": await ServingBenchmarks.Run(args.Length > 1 ? args[1].Split(',') : ["tiny-128", "d256"], args.Length > 2 ? int.Parse(args[2]) : 128, args.Length > 3 ? int.Parse(args[3]) : 64); return;
    case "serving-engine": EngineBenchmark.Run(); return;
    // device-smoke [cuda|cuda:N|auto]: SFT, LoRA DPO and generation on the CPU and the device, compared, and throughput
    case "device-smoke": DeviceSmoke.Run(args.Length > 1 ? args[1] : "cuda"); return;
    case "oracle-export": OracleExport.Run(args[1], args.Length > 2 ? args[2] : null); return;
    // annotation-latency BASE_URL [think-ms mean, 0 = closed loop] [seconds]
    case "annotation-latency": await AnnotationBenchmarks.Latency(args[1], args.Length > 2 ? int.Parse(args[2]) : 2000, args.Length > 3 ? int.Parse(args[3]) : 60); return;
    // job-creation BASE_URL [total] [clients] [interval-ms] [interval-ms per client, 0 = closed loop]
    case "job-creation": await ApiBenchmarks.JobCreation(args[1], args.Length > 2 ? int.Parse(args[2]) : 10_000, args.Length > 3 ? int.Parse(args[3]) : 100, args.Length > 4 ? int.Parse(args[4]) : 0); return;
    case "memory": break;
    default: Console.Error.WriteLine("usage: memory [steps] | kvcache | flops | preference | dpo-step | peak-rss sft|dpo | annotation-latency BASE_URL [think-ms] [seconds] | job-creation BASE_URL [total] [clients] [interval-ms]"); Environment.Exit(2); break;
}

// Memory across 1,000 SFT steps on alignhub/tiny: the resident set must stay flat once warm
// (one dispose scope per step; a leaked tensor per step would show as steady growth).
var steps = args.Length > 1 && int.TryParse(args[1], out var s) ? s : 1000;
var rng = new Random(1);
var names = new[] { "Ada", "Alan", "Grace", "Linus", "Ken", "Barbara" };
var examples = Enumerable.Range(0, 256).Select(i => ChatTemplate.FromPromptCompletion(
    $"Greet {names[rng.Next(names.Length)]}.\n", $"Hello, {names[rng.Next(names.Length)]}!")).ToList();
var config = new SftConfig { NEpochs = 1000, MaxSteps = steps, BatchSize = 8, LearningRate = 3e-3, SaveSteps = steps, LoggingSteps = 100, Seed = 1 };
var root = Directory.CreateTempSubdirectory("alignhub-bench-").FullName;
var reporter = new MemoryReporter();
var sw = Stopwatch.StartNew();
var result = SftTrainer.Train(new SftRun(new AlignHub.Training.Models.ModelSource(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null), examples, null, config, root, null),
    reporter, CancellationToken.None);
sw.Stop();
Console.WriteLine($"steps: {result.Step}, wall: {sw.Elapsed.TotalSeconds:F1} s, tokens: {result.TrainedTokens}, tokens/s: {result.TrainedTokens / sw.Elapsed.TotalSeconds:F0}");
Console.WriteLine("step\trss_mib\tloss");
foreach (var (step, rss, loss) in reporter.Rows) Console.WriteLine($"{step}\t{rss:F1}\t{loss:F4}");
var warm = reporter.Rows.First(r => r.Step >= Math.Min(200, steps)).Rss;
var last = reporter.Rows[^1].Rss;
Console.WriteLine($"rss growth from step {reporter.Rows.First(r => r.Step >= Math.Min(200, steps)).Step} to {reporter.Rows[^1].Step}: {last - warm:F1} MiB (ratio {last / warm:F3})");
Directory.Delete(root, true);

sealed class MemoryReporter : ITrainingReporter
{
    public readonly List<(int Step, double Rss, double Loss)> Rows = [];
    public void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null) { }
    public void Step(TrainingProgress p, IReadOnlyDictionary<string, double>? metrics)
    {
        if (metrics is null || !metrics.TryGetValue("loss", out var loss)) return;
        using var proc = Process.GetCurrentProcess();
        Rows.Add((p.Step, proc.WorkingSet64 / 1048576.0, loss));
    }
    public void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics) { }
    public ControlSignal Poll() => ControlSignal.Continue;
}
