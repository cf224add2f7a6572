using System.Globalization;
using System.Text;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Evaluation;
using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Rewards;
using AlignHub.Training.Rl;
using AlignHub.Training.Sft;
using TorchSharp;

/// <summary>
/// Proxy and gold reward against KL on the built-in review task (issue 23): an SFT start, a reward model (the proxy)
/// trained on 512 pairs, then GRPO on the reward model (beta 0) and DPO on the same pairs, each checkpointed; the
/// frontier evaluation scores the start and every checkpoint on 64 held-out prompts (4 samples each) with the proxy and
/// with the hidden reward as the gold grader (<see cref="PreferenceTask.TrueRewardGrader"/>). Prints the table and
/// writes the plot to the given SVG path.
/// </summary>
static class OveroptimisationBenchmark
{
    static string Temp() => Directory.CreateTempSubdirectory("alignhub-bench-").FullName;

    sealed class Saving(List<(int Step, string Dir)> saved) : ITrainingReporter
    {
        public void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null) { if (level == "warn") Console.WriteLine("event: " + message); }
        public void Step(TrainingProgress p, IReadOnlyDictionary<string, double>? m) { }
        public void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics) => saved.Add((step, directory));
        public ControlSignal Poll() => ControlSignal.Continue;
    }

    public static void Run(string svgPath, int grpoSteps)
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var tiny = new ModelSource(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
        var sft = SftTrainer.Train(new SftRun(tiny, PreferenceTask.Demonstrations(1024, 1), null,
            new SftConfig { NEpochs = 5, BatchSize = 16, LearningRate = 3e-3, SaveSteps = 100_000, Seed = 1 }, Temp(), null), new BenchReporter(), CancellationToken.None);
        var start = tiny with { Folder = sft.LastCheckpoint };
        var pairs = PreferenceTask.Pairs(512, 1);
        var rm = RewardModelTrainer.Train(new RewardModelRun(start, pairs, null,
            new RewardModelConfig { NEpochs = 4, BatchSize = 16, LearningRate = 1e-3, SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1 }, Temp(), null),
            new BenchReporter(), CancellationToken.None);
        IRewardSource Proxy() => RewardEnsembleSource.Load(tiny with { Folder = rm.LastCheckpoint }, 0, 64, null);
        var goldJson = JsonSerializer.SerializeToElement(PreferenceTask.TrueRewardGrader);
        IRewardSource Gold() => new GraderSource(Grader.Parse(goldJson, "gold", (_, m) => throw new Exception(m))!);
        GenerationPrompt P(string p) => new(p, JsonSerializer.SerializeToElement(p), false);
        var rng = new Random(3);
        var prompts = Enumerable.Range(0, 512).Select(_ => P(PreferenceTask.Prompt(rng))).ToList();
        var heldRng = new Random(9);
        var held = Enumerable.Range(0, 64).Select(_ => P(PreferenceTask.Prompt(heldRng))).ToList();

        var grpoSaved = new List<(int Step, string Dir)>();
        var grpo = new GrpoConfig { NEpochs = 100, MaxSteps = grpoSteps, BatchSize = 16, NumGenerations = 8, MaxCompletionLength = 24, LearningRate = 5e-4,
            SaveSteps = Math.Max(1, grpoSteps / 8), EvalSteps = 100_000, Seed = 1, RewardModel = "rm", GoldGrader = goldJson };
        using (var proxy = Proxy()) using (var gold = Gold())
            OnlineRlTrainer.Train(new OnlineRlRun(start, prompts, null, grpo, Temp(), null, proxy, Gold: gold), new Saving(grpoSaved), CancellationToken.None);
        var dpoSaved = new List<(int Step, string Dir)>();
        var dpo = new DpoConfig { NEpochs = 8, BatchSize = 16, LearningRate = 5e-4, Beta = 0.1, SaveSteps = 32, EvalSteps = 100_000, Seed = 1 };
        DpoTrainer.Train(new DpoRun(start, pairs, null, dpo, Temp(), null, Path.Combine(Temp(), "ref.json")), new Saving(dpoSaved), CancellationToken.None);

        var series = new List<(string Run, List<Dictionary<string, object>> Rows)>();
        foreach (var (name, saved) in new[] { ("GRPO on the reward model", grpoSaved), ("DPO on the pairs", dpoSaved) })
        {
            var fc = new FrontierConfig { Run = "bench", NumSamples = 4, MaxNewTokens = 24, Seed = 3, RewardModel = "rm", GoldGrader = goldJson };
            using var proxy = Proxy();
            using var gold = Gold();
            var (_, rows) = FrontierRunner.Evaluate(new(start, "start", saved.Select(x => new FrontierPoint($"step-{x.Step}", x.Step, tiny with { Folder = x.Dir })).ToList(),
                held, fc, proxy, Path.Combine(Temp(), "frontier.jsonl"), null, gold), new BenchReporter(), CancellationToken.None);
            series.Add((name, rows));
        }
        Console.WriteLine("run\tstep\tkl_nats\tproxy_reward\tproxy_ci\tgold_reward\tgold_ci");
        foreach (var (run, rows) in series)
            foreach (var r in rows)
                Console.WriteLine($"{run}\t{r["step"]}\t{(double)r["kl"]:F2}\t{(double)r["reward"]:F3}\t[{(double)r["reward_ci_low"]:F3}, {(double)r["reward_ci_high"]:F3}]\t" +
                    $"{(double)r["gold_reward"]:F3}\t[{(double)r["gold_reward_ci_low"]:F3}, {(double)r["gold_reward_ci_high"]:F3}]");
        File.WriteAllText(svgPath, Svg(series));
        Console.WriteLine("wrote " + svgPath);
    }

    /// <summary>Two panels, proxy and gold reward against KL (nats per completion), one line per run, its points marked.</summary>
    static string Svg(List<(string Run, List<Dictionary<string, object>> Rows)> series)
    {
        var inv = CultureInfo.InvariantCulture;
        string[] colors = ["#1f77b4", "#d62728"];
        const int W = 420, H = 300, L = 60, T = 40, PW = 330, PH = 200;
        var sb = new StringBuilder($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{2 * W}\" height=\"{H + 30}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        sb.Append($"<rect width=\"{2 * W}\" height=\"{H + 30}\" fill=\"white\"/>\n");
        double maxKl = Math.Max(1e-6, series.SelectMany(s => s.Rows).Max(r => (double)r["kl"]));
        foreach (var (panel, key, title) in new[] { (0, "reward", "Proxy reward (the reward model)"), (1, "gold_reward", "Gold reward (the hidden true reward)") })
        {
            int ox = panel * W;
            var ys = series.SelectMany(s => s.Rows).Select(r => (double)r[key]).ToList();
            double lo = ys.Min(), hi = ys.Max(), pad = Math.Max(1e-6, (hi - lo) * 0.08);
            (lo, hi) = (lo - pad, hi + pad);
            double X(double kl) => ox + L + kl / maxKl * PW;
            double Y(double v) => T + PH - (v - lo) / (hi - lo) * PH;
            sb.Append($"<text x=\"{ox + L}\" y=\"22\" font-size=\"14\">{title}</text>\n");
            sb.Append($"<rect x=\"{ox + L}\" y=\"{T}\" width=\"{PW}\" height=\"{PH}\" fill=\"none\" stroke=\"#999\"/>\n");
            for (int i = 0; i <= 4; i++)
            {
                double v = lo + (hi - lo) * i / 4, k = maxKl * i / 4;
                sb.Append(string.Format(inv, "<text x=\"{0}\" y=\"{1:F1}\" text-anchor=\"end\">{2:F2}</text>\n", ox + L - 4, Y(v) + 4, v));
                sb.Append(string.Format(inv, "<text x=\"{0:F1}\" y=\"{1}\" text-anchor=\"middle\">{2:F1}</text>\n", X(k), T + PH + 16, k));
            }
            sb.Append($"<text x=\"{ox + L + PW / 2}\" y=\"{T + PH + 34}\" text-anchor=\"middle\">KL to the start (nats per completion)</text>\n");
            for (int s = 0; s < series.Count; s++)
            {
                var pts = series[s].Rows.Select(r => string.Format(inv, "{0:F1},{1:F1}", X((double)r["kl"]), Y((double)r[key])));
                sb.Append($"<polyline fill=\"none\" stroke=\"{colors[s]}\" stroke-width=\"2\" points=\"{string.Join(' ', pts)}\"/>\n");
                foreach (var r in series[s].Rows)
                    sb.Append(string.Format(inv, "<circle cx=\"{0:F1}\" cy=\"{1:F1}\" r=\"3\" fill=\"{2}\"/>\n", X((double)r["kl"]), Y((double)r[key]), colors[s]));
            }
        }
        for (int s = 0; s < series.Count; s++)
            sb.Append($"<text x=\"{L + s * 260}\" y=\"{H + 22}\" fill=\"{colors[s]}\">— {series[s].Run}</text>\n");
        return sb.Append("</svg>\n").ToString();
    }
}
