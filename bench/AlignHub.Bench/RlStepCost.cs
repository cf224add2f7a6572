using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Models;
using AlignHub.Training.Rewards;
using AlignHub.Training.Rl;
using AlignHub.Training.Sft;
using TorchSharp;

/// <summary>
/// The online trainer's step cost, written against the API this build shares with the trainer before issue 21, so
/// bench/rl/step-cost.sh builds it in both and times them on the same batches.
/// </summary>
static class RlStepCost
{
    static string Temp() => Directory.CreateTempSubdirectory("alignhub-bench-").FullName;

    /// <summary>
    /// Wall time per optimizer step of GRPO (beta 0.05), RLOO, PPO (4 epochs) and GRPO with 4 micro-batches on the same
    /// start, prompts and seed, 60 steps each after 5 to warm up; the file builds against this build's trainer and
    /// against an older one's (bench/rl/step-cost.sh), so the two are timed on the same batches.
    /// </summary>
    public static void Run(int steps)
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var grader = JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader);
        var tiny = new ModelSource(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
        var sft = SftTrainer.Train(new SftRun(tiny, ArithmeticTask.Demonstrations(4000, 1), null,
            new SftConfig { NEpochs = 100, MaxSteps = 250, BatchSize = 32, LearningRate = 3e-3, SaveSteps = 100_000, Seed = 1 }, Temp(), null), new BenchReporter(), CancellationToken.None);
        var start = tiny with { Folder = sft.LastCheckpoint };
        var runs = new (string Name, OnlineRlConfig Config)[]
        {
            ("grpo", new GrpoConfig { NumGenerations = 8, Beta = 0.05 }),
            ("rloo", new RlooConfig { NumGenerations = 8 }),
            ("ppo", new PpoConfig { NumGenerations = 8, NumPpoEpochs = 4 }),
        };
        foreach (var (name, template) in runs)
        {
            var c = template with { NEpochs = 100, MaxSteps = steps + 5, BatchSize = 32, MaxCompletionLength = 4, SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, Grader = grader };
            var log = new BenchReporter();
            OnlineRlTrainer.Train(new OnlineRlRun(start, ArithmeticTask.Prompts(2000, 5), null, c, Temp(), null, new GraderSource(c.ParsedGrader()!)), log, CancellationToken.None);
            double span = log.RowTimes[^1] - log.RowTimes[4];
            double gen = log.Rows.Skip(5).Sum(r => r.Metrics["timing/generate"]);
            Console.WriteLine($"{name}\t{span / steps * 1000:F1} ms/step\tsampling {gen / steps * 1000:F1} ms/step");
        }
    }
}
