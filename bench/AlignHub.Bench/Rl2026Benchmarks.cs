using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Models;
using AlignHub.Training.Rewards;
using AlignHub.Training.Rl;
using AlignHub.Training.Sft;
using TorchSharp;

/// <summary>Issue 21's benchmarks: GSPO and DAPO's dynamic sampling against GRPO per completion sampled, on-policy distillation, the shared trainer's step cost.</summary>
static class Rl2026Benchmarks
{
    static string Temp() => Directory.CreateTempSubdirectory("alignhub-bench-").FullName;
    static readonly JsonElement Grader = JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader);

    static (ModelSource Tiny, ModelSource Start) Start()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var tiny = new ModelSource(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
        var sft = SftTrainer.Train(new SftRun(tiny, ArithmeticTask.Demonstrations(4000, 1), null,
            new SftConfig { NEpochs = 100, MaxSteps = 250, BatchSize = 32, LearningRate = 3e-3, SaveSteps = 100_000, Seed = 1 }, Temp(), null), new BenchReporter(), CancellationToken.None);
        return (tiny, tiny with { Folder = sft.LastCheckpoint });
    }

    /// <summary>Held-out exact match (eval/reward every <paramref name="evalSteps"/>) against completions sampled so far, for a run.</summary>
    static (List<(int Step, long Sampled, double Accuracy, double Seconds)> Curve, string? Folder) Curve(ModelSource start, OnlineRlConfig c, ModelSource? teacher = null)
    {
        var held = ArithmeticTask.Prompts(200, 99);
        var log = new BenchReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(start, ArithmeticTask.Prompts(2000, 5), held, c, Temp(), null, new GraderSource(c.ParsedGrader()!), Teacher: teacher),
            log, CancellationToken.None);
        long sampled = 0;
        var curve = new List<(int, long, double, double)>();
        for (int i = 0; i < log.Rows.Count; i++)
        {
            var (step, m) = log.Rows[i];
            if (m.TryGetValue("eval/reward", out var acc)) { curve.Add((step, sampled, acc, log.RowTimes[i])); continue; }
            sampled += m.TryGetValue("dynamic_sampling/sampled_completions", out var s) ? (long)s : c.BatchSize * c.NumGenerations;
        }
        return (curve, result.LastCheckpoint);
    }

    /// <summary>GRPO, GSPO and GRPO with dynamic sampling from the same start and seed: held-out exact match against completions sampled.</summary>
    public static void Variants(int steps)
    {
        var (_, start) = Start();
        var grpo = new GrpoConfig { NEpochs = 100, MaxSteps = steps, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4, LearningRate = 5e-4,
            SaveSteps = 100_000, EvalSteps = 25, Seed = 1, Grader = Grader };
        var runs = new (string Name, GrpoConfig Config)[]
        {
            ("grpo", grpo),
            ("gspo", grpo with { ImportanceSamplingLevel = "sequence" }),
            ("grpo+dynamic_sampling", grpo with { DynamicSampling = true, MaxNumGenBatches = 4 }),
        };
        Console.WriteLine("run\tstep\tcompletions_sampled\theld_out_exact_match\twall_s");
        foreach (var (name, c) in runs)
        {
            var (curve, _) = Curve(start, c);
            foreach (var (step, sampled, acc, s) in curve) Console.WriteLine($"{name}\t{step}\t{sampled}\t{acc:F3}\t{s:F1}");
        }
    }

    /// <summary>A GRPO teacher (300 steps from the SFT start), then on-policy distillation of the SFT start from it: held-out exact match every 25 steps.</summary>
    public static void Distill(int teacherSteps, int steps, double lr)
    {
        var (tiny, start) = Start();
        var teacherRun = new GrpoConfig { NEpochs = 100, MaxSteps = teacherSteps, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4, LearningRate = 5e-4,
            SaveSteps = 100_000, EvalSteps = teacherSteps, Seed = 1, Grader = Grader };
        var sw = Stopwatch.StartNew();
        var (tcurve, folder) = Curve(start, teacherRun);
        Console.WriteLine($"teacher: GRPO {teacherSteps} steps, held-out exact match {tcurve[^1].Accuracy:F3}, {sw.Elapsed.TotalSeconds:F1} s");
        var teacher = tiny with { Folder = folder };
        var c = new DistillConfig { NEpochs = 100, MaxSteps = steps, BatchSize = 32, NumGenerations = 4, MaxCompletionLength = 4, LearningRate = lr,
            SaveSteps = 100_000, EvalSteps = 25, Seed = 2, TeacherModel = "teacher", Grader = Grader };
        var (curve, _) = Curve(start, c, teacher);
        Console.WriteLine("step\tcompletions_sampled\tstudent_held_out_exact_match\twall_s");
        foreach (var (step, sampled, acc, s) in curve) Console.WriteLine($"{step}\t{sampled}\t{acc:F3}\t{s:F1}");
    }
}
