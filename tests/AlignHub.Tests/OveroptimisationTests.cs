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
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>
/// The overoptimisation diagnostics: the built-in review task's hidden reward as a gold grader, gold beside proxy in
/// online runs (and the warning when they part), DPO's likelihood displacement rule, and next-token top-k health.
/// </summary>
public class OveroptimisationTests
{
    static readonly ModelSource Tiny = new(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-overopt-").FullName;
    static Grader Parse(object g) => Grader.Parse(JsonSerializer.SerializeToElement(g), "g", (f, m) => throw new Exception($"{f}: {m}"))!;

    [Fact]
    public void The_true_reward_grader_equals_the_hidden_reward_of_the_review_task()
    {
        var gold = Parse(PreferenceTask.TrueRewardGrader);
        var rng = new Random(4);
        var responses = Enumerable.Range(0, 400).Select(_ => PreferenceTask.Response(rng))
            .Concat(["", "great", "kind kind kind", "awful great", " sad  lovely", "greatest awfully", "very great.", "dull broken rude", "the so a"]);
        foreach (var r in responses)
            Assert.True(gold.Grade(null, r) == PreferenceTask.TrueReward(r) || r.Contains('.'), $"\"{r}\": grader {gold.Grade(null, r)}, hidden reward {PreferenceTask.TrueReward(r)}");
        Assert.Equal(3, gold.Grade(null, "kind kind kind"));
        Assert.Equal(0, gold.Grade(null, "greatest awfully")); // whole words only
    }

    /// <summary>Top-10 mass and entropy of a 12-token distribution, worked with doubles from the definition.</summary>
    [Fact]
    public void Top_k_mass_and_entropy_match_a_hand_worked_distribution()
    {
        double[] w = [5, 1, 3, 0.5, 2, 2, 0.25, 4, 1, 0.1, 0.05, 6];
        var p = w.Select(x => x / w.Sum()).ToArray();
        var top = p.OrderDescending().Take(10).ToArray();
        double mass = top.Sum(), entropy = -top.Select(x => x / mass).Sum(q => q * Math.Log(q));
        using var logps = tensor(p.Select(x => (float)Math.Log(x)).ToArray()).view(1, 12);
        var (m, h) = NextTokenDiagnostics.TopK(logps, 10);
        Assert.Equal(mass, m.item<float>(), 5);
        Assert.Equal(entropy, h.item<float>(), 5);
        var (m2, _) = NextTokenDiagnostics.TopK(logps, 50); // k above the vocabulary: all of it
        Assert.Equal(1.0, m2.item<float>(), 5);
    }

    [Fact]
    public void The_gold_proxy_rule_warns_once_when_gold_falls_while_the_proxy_rises()
    {
        var monitor = new GoldProxyMonitor { Drop = 0.1 };
        var messages = new List<(int Step, string Text)>();
        for (int s = 1; s <= 60; s++)
        {
            double proxy = s * 0.05, gold = s <= 25 ? s * 0.02 : 0.5 - (s - 25) * 0.03; // gold peaks at step 25
            if (monitor.Add(s, proxy, gold) is { } m) messages.Add((s, m));
        }
        Assert.NotEmpty(messages);
        Assert.InRange(messages[0].Step, 26, 40);
        Assert.Contains("Overoptimisation", messages[0].Text);
        // Both falling is not overoptimisation: the proxy must rise past its value at the gold's best.
        var both = new GoldProxyMonitor { Drop = 0.1 };
        Assert.All(Enumerable.Range(1, 60), s => Assert.Null(both.Add(s, 3 - s * 0.05, 1 - s * 0.02)));
    }

    [Fact]
    public void The_likelihood_rule_warns_when_chosen_and_rejected_both_fall()
    {
        var monitor = new LikelihoodMonitor { Drop = 1.0 };
        Assert.All(Enumerable.Range(1, 30), s => Assert.Null(monitor.Add(s, 0.2, -0.1 * s))); // only the rejected falls: DPO as intended
        var falling = new LikelihoodMonitor { Drop = 1.0 };
        var first = Enumerable.Range(1, 40).Select(s => (s, m: falling.Add(s, -0.1 * s, -0.2 * s))).First(x => x.m is not null);
        Assert.Equal(15, first.s); // the 10-step mean of -0.1 s first passes -1 at s = 15 (mean of 6..15 = -1.05)
        Assert.Contains("Likelihood displacement", first.m);
    }

    /// <summary>
    /// GRPO on the review task whose proxy rewards a negative word ("awful"): the proxy rises, the gold (the hidden
    /// reward as a grader) falls, each step's gold/reward is that grader's mean over exactly the step's completions, and the
    /// overoptimisation warning is raised once.
    /// </summary>
    [Fact]
    public void Online_runs_log_gold_beside_the_proxy_and_warn_when_they_part()
    {
        var sft = SftTrainer.Train(new SftRun(Tiny, PreferenceTask.Demonstrations(1024, 1), null,
            new SftConfig { NEpochs = 5, BatchSize = 16, LearningRate = 3e-3, SaveSteps = 1000, Seed = 1 }, TempDir(), null), new RecordingReporter(), CancellationToken.None);
        var start = Tiny with { Folder = sft.LastCheckpoint };
        var rng = new Random(3);
        var prompts = Enumerable.Range(0, 256).Select(_ => PreferenceTask.Prompt(rng)).Select(p => new GenerationPrompt(p, JsonSerializer.SerializeToElement(p), false)).ToList();
        var proxy = new { type = "regex_match", name = "says_awful", input = "{{sample.output_text}}", pattern = "awful" };
        var c = new GrpoConfig { NEpochs = 100, MaxSteps = 40, BatchSize = 8, NumGenerations = 4, MaxCompletionLength = 24, LearningRate = 1e-3, Beta = 0.02,
            SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, LogCompletionsSteps = 1, NumCompletionsToLog = 32,
            Grader = JsonSerializer.SerializeToElement(proxy), GoldGrader = JsonSerializer.SerializeToElement(PreferenceTask.TrueRewardGrader) };
        var rep = new RecordingReporter();
        OnlineRlTrainer.Train(new OnlineRlRun(start, prompts, null, c, TempDir(), null, new GraderSource(Parse(proxy)), Gold: new GraderSource(Parse(PreferenceTask.TrueRewardGrader))),
            rep, CancellationToken.None);
        foreach (var (step, m) in rep.Metrics)
        {
            var samples = rep.SampleLog.Where(x => x.Step == step).Select(x => x.Sample.Completion).ToList();
            Assert.Equal(32, samples.Count);
            var gradedHere = samples.Average(x => Parse(PreferenceTask.TrueRewardGrader).Grade(null, x));
            Assert.True(Math.Abs(gradedHere - m["gold/reward"]) < 1e-6, $"step {step}: {gradedHere} vs {m["gold/reward"]}; hidden {samples.Average(PreferenceTask.TrueReward)}; " + string.Join(" | ", samples.Take(8)));
            Assert.InRange(m["diagnostics/top10_mass"], 0.1, 1.0 + 1e-6);
            Assert.InRange(m["diagnostics/top10_entropy"], 0, Math.Log(10) + 1e-6);
        }
        double Mean(Func<Dictionary<string, double>, double> f, bool last) => (last ? rep.Metrics.TakeLast(10) : rep.Metrics.Take(10)).Average(x => f(x.Metrics));
        Assert.True(Mean(m => m["reward"], true) > Mean(m => m["reward"], false), "the proxy rises");
        Assert.True(Mean(m => m["gold/reward"], true) < Mean(m => m["gold/reward"], false) - 0.1, "the gold falls");
        Assert.Single(rep.Events, e => e.StartsWith("Overoptimisation"));
    }

    /// <summary>DPO logs each side's log-prob change from the reference and the held-out top-10 health at evaluation.</summary>
    [Fact]
    public void DPO_logs_likelihood_changes_and_held_out_top_k_health()
    {
        var sft = SftTrainer.Train(new SftRun(Tiny, PreferenceTask.Demonstrations(512, 1), null,
            new SftConfig { NEpochs = 3, BatchSize = 16, LearningRate = 3e-3, SaveSteps = 1000, Seed = 1 }, TempDir(), null), new RecordingReporter(), CancellationToken.None);
        var start = Tiny with { Folder = sft.LastCheckpoint };
        var c = new DpoConfig { NEpochs = 1, BatchSize = 8, LearningRate = 5e-3, Beta = 0.1, EvalSteps = 10, SaveSteps = 1000, Seed = 1 };
        var rep = new RecordingReporter();
        DpoTrainer.Train(new DpoRun(start, PreferenceTask.Pairs(160, 1), PreferenceTask.Pairs(32, 2), c, TempDir(), null, Path.Combine(TempDir(), "ref.json")), rep, CancellationToken.None);
        var train = rep.Metrics.Where(m => m.Metrics.ContainsKey("loss") && !m.Metrics.ContainsKey("eval/loss")).ToList();
        // Each side's change from the reference is its implicit reward over beta (TRL's rewards/chosen = beta (log pi - log ref)).
        Assert.All(train, m => Assert.Equal(m.Metrics["rewards/chosen"] / 0.1, m.Metrics["logps/chosen_change"], 3));
        Assert.All(train, m => Assert.Equal(m.Metrics["rewards/rejected"] / 0.1, m.Metrics["logps/rejected_change"], 3));
        var eval = rep.Metrics.Where(m => m.Metrics.ContainsKey("eval/diagnostics/top10_mass")).ToList();
        Assert.NotEmpty(eval);
        Assert.All(eval, m => Assert.InRange(m.Metrics["eval/diagnostics/top10_mass"], 0.1, 1.0 + 1e-6));
        Assert.All(eval, m => Assert.InRange(m.Metrics["eval/diagnostics/top10_entropy"], 0, Math.Log(10) + 1e-6));
    }
}
