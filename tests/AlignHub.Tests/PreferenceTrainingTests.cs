using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Models;
using AlignHub.Training.Generation;
using AlignHub.Training.Preference;
using AlignHub.Training.Sft;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using Xunit;

namespace AlignHub.Tests;

/// <summary>DPO and reward models on the built-in task with a hidden true preference, through the real trainer.</summary>
public class PreferenceTrainingTests
{
    static readonly ModelSource Tiny = new(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-pref-").FullName;

    static DpoRun Dpo(DpoConfig c, string? root = null, string? resume = null, string? cache = null) => new(
        Tiny, PreferenceTask.Pairs(384, seed: 1), PreferenceTask.Pairs(128, seed: 2), c, root ?? TempDir(), resume,
        cache ?? Path.Combine(TempDir(), "ref.json"));

    static RewardModelRun Rm(RewardModelConfig c, string? root = null, string? resume = null) => new(
        Tiny, PreferenceTask.Pairs(384, seed: 1), PreferenceTask.Pairs(128, seed: 2), c, root ?? TempDir(), resume);

    [Fact]
    public void A_reward_model_recovers_the_hidden_preference()
    {
        var c = new RewardModelConfig { NEpochs = 4, BatchSize = 16, LearningRate = 2e-3, EvalSteps = 1000, SaveSteps = 1000, Seed = 3 };
        var rep = new RecordingReporter();
        var result = RewardModelTrainer.Train(Rm(c), rep, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        var eval = rep.Metrics.Last(m => m.Metrics.ContainsKey("eval/accuracy")).Metrics;
        Assert.True(eval["eval/accuracy"] >= 0.9, $"held-out accuracy {eval["eval/accuracy"]:F3}");
        Assert.Contains("margin", rep.Metrics[0].Metrics.Keys);
        // The checkpoint is an HF sequence-classification folder with the scalar head.
        var dir = rep.Saved[^1].Dir;
        Assert.Contains("ForSequenceClassification", File.ReadAllText(Path.Combine(dir, "config.json")));
        Assert.Contains(RewardModel.ScoreKey, AlignHub.Training.IO.SafeTensors.Read(Path.Combine(dir, "model.safetensors")).Keys);
    }

    [Fact]
    public void DPO_raises_held_out_implicit_reward_accuracy_and_reuses_cached_reference_log_probs()
    {
        var c = new DpoConfig { NEpochs = 4, BatchSize = 16, LearningRate = 2e-3, Beta = 0.1, EvalSteps = 1000, SaveSteps = 1000, Seed = 3 };
        var cache = Path.Combine(TempDir(), "ref.json");
        var rep = new RecordingReporter();
        DpoTrainer.Train(Dpo(c, cache: cache), rep, CancellationToken.None);
        var first = rep.Metrics[0].Metrics;
        foreach (var name in new[] { "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "grad_norm", "learning_rate" })
            Assert.Contains(name, first.Keys);
        Assert.Equal(Math.Log(2), first["loss"], 3); // policy = reference at the first step
        var eval = rep.Metrics.Last(m => m.Metrics.ContainsKey("eval/rewards/accuracies")).Metrics;
        Assert.True(eval["eval/rewards/accuracies"] >= 0.9, $"held-out implicit-reward accuracy {eval["eval/rewards/accuracies"]:F3}");
        Assert.Contains(rep.Events, e => e.StartsWith("Reference log-probs computed"));

        var again = new RecordingReporter();
        DpoTrainer.Train(Dpo(c with { MaxSteps = 1 }, cache: cache), again, CancellationToken.None);
        Assert.Contains(again.Events, e => e.StartsWith("Reference log-probs reused"));
    }

    [Fact]
    public void A_DPO_job_stopped_and_resumed_ends_with_the_weights_of_an_uninterrupted_run()
    {
        var c = new DpoConfig { NEpochs = 1, BatchSize = 16, GradientAccumulationSteps = 2, LearningRate = 2e-3, SaveSteps = 5, EvalSteps = 1000, Seed = 4 };
        var cache = Path.Combine(TempDir(), "ref.json");
        var full = new RecordingReporter();
        var a = DpoTrainer.Train(Dpo(c, cache: cache), full, CancellationToken.None);

        var rootB = TempDir();
        var first = new RecordingReporter { CancelAtStep = 7 };
        var stopped = DpoTrainer.Train(Dpo(c, root: rootB, cache: cache), first, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Cancelled, stopped.Outcome);
        Assert.Equal(5, first.Saved[^1].Step);
        var b = DpoTrainer.Train(Dpo(c, root: rootB, resume: first.Saved[^1].Dir, cache: cache), new RecordingReporter(), CancellationToken.None);
        Assert.Equal(a.Step, b.Step);

        using var ma = HfWeights.LoadModel(a.LastCheckpoint!);
        using var mb = HfWeights.LoadModel(b.LastCheckpoint!);
        var pa = ma.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in mb.named_parameters())
        {
            var diff = (p - pa[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6f, $"{name} differs by {diff}");
        }
    }

    /// <summary>A reward model paused mid-run (a checkpoint at the step it stopped) and resumed ends with the weights of an uninterrupted run.</summary>
    [Fact]
    public void A_reward_model_paused_and_resumed_ends_with_the_weights_of_an_uninterrupted_run()
    {
        var c = new RewardModelConfig { NEpochs = 1, BatchSize = 16, GradientAccumulationSteps = 2, LearningRate = 2e-3, SaveSteps = 10, EvalSteps = 1000, Seed = 5 };
        var a = RewardModelTrainer.Train(Rm(c), new RecordingReporter(), CancellationToken.None);

        var rootB = TempDir();
        var first = new RecordingReporter { PauseAtStep = 7 };
        var paused = RewardModelTrainer.Train(Rm(c, root: rootB), first, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Paused, paused.Outcome);
        Assert.Equal(7, paused.Step);
        Assert.Equal(7, first.Saved[^1].Step); // the pause wrote the step it stopped at
        Assert.Equal(paused.LastCheckpoint, first.Saved[^1].Dir);
        var resumed = new RecordingReporter();
        var b = RewardModelTrainer.Train(Rm(c, root: rootB, resume: paused.LastCheckpoint), resumed, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, b.Outcome);
        Assert.Equal(a.Step, b.Step);
        Assert.Equal(8, resumed.Metrics.First().Step);

        var wa = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(a.LastCheckpoint!, "model.safetensors"));
        var wb = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(b.LastCheckpoint!, "model.safetensors"));
        Assert.Equal(wa.Keys.Order(), wb.Keys.Order());
        Assert.Contains(RewardModel.ScoreKey, wa.Keys);
        foreach (var (name, t) in wa)
        {
            var diff = (t - wb[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6f, $"{name} differs by {diff}");
        }
    }

    [Fact]
    public void A_reward_model_ensemble_trains_members_with_different_seeds_and_reports_its_spread()
    {
        var c = new RewardModelConfig { EnsembleSize = 3, NEpochs = 2, BatchSize = 16, LearningRate = 2e-3, EvalSteps = 1000, SaveSteps = 1000, Seed = 3 };
        var rep = new RecordingReporter();
        var root = TempDir();
        var result = RewardModelTrainer.Train(Rm(c, root: root), rep, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        Assert.Equal(3 * 48, result.Step); // 384 pairs / 16 x 2 epochs per member
        Assert.True(RewardEnsemble.IsEnsemble(result.LastCheckpoint));
        var members = RewardEnsemble.MemberFolders(result.LastCheckpoint!);
        Assert.Equal(3, members.Count);
        Assert.Equal([48, 96, 144], rep.Saved.Select(s => s.Step).ToArray()); // steps numbered across the ensemble
        var last = rep.Metrics[^1].Metrics;
        Assert.True(last["eval/ensemble/accuracy"] >= 0.85, $"ensemble accuracy {last["eval/ensemble/accuracy"]:F3}");
        Assert.True(last["eval/ensemble/reward_std"] > 0);
        // Members differ (seeds 3, 4, 5); the ensemble folder itself loads as member 0.
        var w = members.Select(m => AlignHub.Training.IO.SafeTensors.Read(Path.Combine(m, "model.safetensors"))[RewardModel.ScoreKey].data<float>().ToArray()).ToList();
        Assert.NotEqual(w[0], w[1]);
        Assert.Equal(w[0], AlignHub.Training.IO.SafeTensors.Read(Path.Combine(result.LastCheckpoint!, "model.safetensors"))[RewardModel.ScoreKey].data<float>().ToArray());
    }

    [Fact]
    public void KTO_learns_from_unpaired_labels()
    {
        // Unpaired rows: each pair's chosen as desirable, its rejected as undesirable, shuffled apart.
        var shuffle = new Random(5);
        var rows = PreferenceTask.Pairs(384, 1).SelectMany(p => new[] { new UnpairedExample(p.Prompt, p.Chosen, true), new UnpairedExample(p.Prompt, p.Rejected, false) })
            .OrderBy(_ => shuffle.Next()).ToList();
        var c = new DpoConfig { LossType = "kto", NEpochs = 2, BatchSize = 16, LearningRate = 1e-3, Beta = 0.1, EvalSteps = 1000, SaveSteps = 1000, Seed = 3 };
        var rep = new RecordingReporter();
        var run = new DpoRun(Tiny, [], null, c, TempDir(), null, Path.Combine(TempDir(), "ref.json"), rows, null);
        var result = DpoTrainer.Train(run, rep, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        foreach (var name in new[] { "loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "kl" }) Assert.Contains(name, rep.Metrics[0].Metrics.Keys);
        Assert.True(rep.Metrics[^1].Metrics["rewards/margins"] > rep.Metrics[0].Metrics["rewards/margins"] + 0.1,
            $"margin {rep.Metrics[0].Metrics["rewards/margins"]:F3} -> {rep.Metrics[^1].Metrics["rewards/margins"]:F3}");

        // Held-out paired accuracy of the KTO policy's implicit reward, against the starting model.
        var tok = new ByteTokenizer();
        var held = PreferenceTask.Pairs(128, 2).Select(p => PairData.Tokenize(p, new AlignHub.Training.Data.PromptEncoder(tok, 128), 256)).ToList();
        torch.manual_seed(3);
        using var start = Tiny.CreateModel();
        using var trained = HfWeights.LoadModel(result.LastCheckpoint!);
        var r = ReferenceCache.Compute(start, held, tok.PadId, 256, 16);
        var p = ReferenceCache.Compute(trained, held, tok.PadId, 256, 16);
        double acc = Enumerable.Range(0, held.Count).Count(i => (p.Chosen[i] - r.Chosen[i]) > (p.Rejected[i] - r.Rejected[i])) / (double)held.Count;
        Assert.True(acc >= 0.85, $"held-out implicit-reward accuracy {acc:F3}");
    }

    /// <summary>Mean true reward of greedy completions for held-out prompts.</summary>
    public static double GreedyTrueReward(ModelSource source, int prompts = 48)
    {
        using var model = source.CreateModel();
        var tok = new ByteTokenizer();
        var rng = new Random(99);
        var ids = Enumerable.Range(0, prompts).Select(_ => new[] { tok.BosId }.Concat(tok.Encode(PreferenceTask.Prompt(rng))).ToArray()).ToList();
        var outs = TextGenerator.Generate(model, tok, ids, new GenerationOptions { MaxNewTokens = 32, Temperature = 0 });
        return outs.Average(o => PreferenceTask.TrueReward(o.Text));
    }

    [Fact]
    public void DPO_from_an_SFT_start_raises_the_true_reward_of_greedy_samples()
    {
        var config = ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]);
        var sft = SftTrainer.Train(new SftRun(Tiny, PreferenceTask.Demonstrations(1024, 1), null,
            new SftConfig { NEpochs = 5, BatchSize = 16, LearningRate = 3e-3, SaveSteps = 1000, Seed = 1 }, TempDir(), null), new RecordingReporter(), CancellationToken.None);
        var start = new ModelSource(config, "byte", sft.LastCheckpoint);
        var c = new DpoConfig { NEpochs = 3, BatchSize = 16, LearningRate = 5e-4, Beta = 0.1, EvalSteps = 1000, SaveSteps = 1000, Seed = 1 };
        var rep = new RecordingReporter();
        var dpo = DpoTrainer.Train(new DpoRun(start, PreferenceTask.Pairs(512, 1), PreferenceTask.Pairs(128, 2), c, TempDir(), null,
            Path.Combine(TempDir(), "ref.json")), rep, CancellationToken.None);
        double before = GreedyTrueReward(start), after = GreedyTrueReward(new ModelSource(config, "byte", dpo.LastCheckpoint));
        var acc = rep.Metrics.Last(m => m.Metrics.ContainsKey("eval/rewards/accuracies")).Metrics["eval/rewards/accuracies"];
        Assert.True(acc >= 0.9, $"held-out implicit-reward accuracy {acc:F3}");
        Assert.True(after > before + 1, $"true reward of greedy samples: {before:F2} before DPO, {after:F2} after");
    }
}
