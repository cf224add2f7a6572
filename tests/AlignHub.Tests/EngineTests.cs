using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Engine;
using AlignHub.Training.Models;
using AlignHub.Training.Sft;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>The training engine under SFT: gradient accumulation, schedules, evaluation and save cadence, parameter groups, the NaN guard.</summary>
public class EngineTests
{
    static readonly ModelSource Tiny = new(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-engine-").FullName;

    /// <summary>Rows of different lengths, so micro-batches hold different numbers of trainable tokens.</summary>
    static List<SupervisedExample> Examples(int n) => PreferenceTask.Demonstrations(n, 3).ToList();

    static Dictionary<string, Tensor> Weights(string checkpoint) => AlignHub.Training.IO.SafeTensors.Read(Path.Combine(checkpoint, "model.safetensors"));

    [Fact]
    public void Gradient_accumulation_equals_the_full_batch_because_micro_batches_count_by_their_tokens()
    {
        var c = new SftConfig { NEpochs = 1, BatchSize = 8, MaxSteps = 6, LearningRate = 3e-3, SaveSteps = 6, Seed = 11 };
        var whole = SftTrainer.Train(new SftRun(Tiny, Examples(64), null, c, TempDir(), null), new RecordingReporter(), CancellationToken.None);
        var rep = new RecordingReporter();
        var split = SftTrainer.Train(new SftRun(Tiny, Examples(64), null, c with { GradientAccumulationSteps = 4 }, TempDir(), null), rep, CancellationToken.None);
        var (a, b) = (Weights(whole.LastCheckpoint!), Weights(split.LastCheckpoint!));
        foreach (var (name, t) in a)
        {
            var diff = (t - b[name]).abs().max().item<float>();
            Assert.True(diff < 2e-5f, $"{name} differs by {diff}");
        }
        Assert.Equal(6, rep.Metrics.Count(m => m.Metrics.ContainsKey("loss")));
    }

    [Theory]
    [InlineData("linear", new[] { 0.5, 1, 1, 5 / 6.0, 4 / 6.0, 3 / 6.0, 2 / 6.0, 1 / 6.0 })]
    [InlineData("constant", new[] { 0.5, 1, 1, 1, 1, 1, 1, 1 })]
    public void Sft_follows_the_chosen_schedule_after_warmup(string schedule, double[] multiples)
    {
        // 8 steps, warmup 0.25 * 8 = 2 steps; values worked out by hand from the schedule's definition.
        var c = new SftConfig { NEpochs = 1, BatchSize = 4, MaxSteps = 8, LearningRate = 1e-3, WarmupRatio = 0.25, LrSchedulerType = schedule, SaveSteps = 100, Seed = 2 };
        var rep = new RecordingReporter();
        SftTrainer.Train(new SftRun(Tiny, Examples(64), null, c, TempDir(), null), rep, CancellationToken.None);
        var lrs = rep.Metrics.Where(m => m.Metrics.ContainsKey("learning_rate")).Select(m => m.Metrics["learning_rate"]).ToArray();
        Assert.Equal(multiples.Length, lrs.Length);
        for (int i = 0; i < lrs.Length; i++) Assert.Equal(1e-3 * multiples[i], lrs[i], 12);
    }

    [Fact]
    public void Sft_evaluates_every_eval_steps_and_saves_every_save_steps()
    {
        var c = new SftConfig { NEpochs = 1, BatchSize = 8, MaxSteps = 8, EvalSteps = 3, SaveSteps = 5, Seed = 4 };
        var rep = new RecordingReporter();
        SftTrainer.Train(new SftRun(Tiny, Examples(64), Examples(12), c, TempDir(), null), rep, CancellationToken.None);
        Assert.Equal([3, 6, 8], rep.Metrics.Where(m => m.Metrics.ContainsKey("eval/loss")).Select(m => m.Step));
        Assert.All(rep.Metrics.Where(m => m.Metrics.ContainsKey("eval/loss")), m => Assert.InRange(m.Metrics["eval/mean_token_accuracy"], 0, 1));
        Assert.Equal([5, 8], rep.Saved.Select(s => s.Step));
    }

    [Fact]
    public void Weight_decay_shrinks_matrices_and_embeddings_but_never_biases_or_norms()
    {
        // One AdamW step from the same start with and without decay: decoupled decay is p <- p - lr * wd * p0 on
        // decayed tensors and nothing on the others (AdamW's update itself is identical in both runs).
        var c = new SftConfig { NEpochs = 1, BatchSize = 8, MaxSteps = 1, LearningRate = 1e-2, WarmupRatio = 0, SaveSteps = 1, Seed = 6 };
        var plain = Weights(SftTrainer.Train(new SftRun(Tiny, Examples(16), null, c, TempDir(), null), new RecordingReporter(), CancellationToken.None).LastCheckpoint!);
        var decayed = Weights(SftTrainer.Train(new SftRun(Tiny, Examples(16), null, c with { WeightDecay = 0.5 }, TempDir(), null), new RecordingReporter(), CancellationToken.None).LastCheckpoint!);
        torch.manual_seed(6);
        using var start = Tiny.CreateModel();
        var p0 = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(SaveStart(start), "model.safetensors"));
        int matrices = 0, vectors = 0;
        foreach (var (name, t0) in p0)
        {
            var expected = t0.dim() >= 2 ? plain[name] - 1e-2 * 0.5 * t0 : plain[name];
            var diff = (decayed[name] - expected).abs().max().item<float>();
            Assert.True(diff < 1e-6f, $"{name} ({(t0.dim() >= 2 ? "decayed" : "not decayed")}) off by {diff}");
            if (t0.dim() >= 2) matrices++; else vectors++;
        }
        Assert.True(matrices > 0 && vectors > 0);
        Assert.All(start.parameters(), p => Assert.Equal(p.dim() >= 2, Optimization.Decays(p)));
    }

    static string SaveStart(CausalLM model)
    {
        var dir = TempDir();
        HfWeights.Save(model, dir);
        return dir;
    }

    /// <summary>A method whose loss turns NaN at a given step: the engine must refuse that update.</summary>
    sealed class NanAt(CausalLM model, int badStep) : ITrainingMethod
    {
        int calls;
        public CausalLM Model => model;
        public IReadOnlyList<Parameter> Parameters { get; } = model.parameters().ToList();
        public int TrainRows => 16;
        public int ValidRows => 0;
        public IReadOnlyList<string> StatNames => ["loss", "rows"];
        public void SetTraining(bool on) { if (on) model.train(); else model.eval(); }
        public double Weight(IReadOnlyList<int> rows, bool valid) => rows.Count;
        public long Tokens(IReadOnlyList<int> rows) => rows.Count * 4;
        public (Tensor Loss, Tensor Stats) Forward(IReadOnlyList<int> rows, bool valid)
        {
            calls++;
            using var ids = tensor(rows.SelectMany(r => new long[] { 256, 65 + r % 20, 66, 257 }).ToArray(), [rows.Count, 4], device: model.Device);
            var loss = model.forward(ids).pow(2).mean() * (calls == badStep ? double.NaN : 1.0);
            return (loss, stack([loss.detach() * rows.Count, ones_like(loss).sum() * rows.Count]));
        }
        public Dictionary<string, double> Metrics(double[] s) => new() { ["loss"] = s[0] / s[1] };
        public string StartMessage(int totalSteps) => "nan test";
    }

    [Fact]
    public void A_non_finite_loss_stops_the_run_before_the_update_and_the_last_checkpoint_stays_good()
    {
        torch.manual_seed(1);
        using var model = Tiny.CreateModel();
        var root = TempDir();
        var c = new SftConfig { NEpochs = 10, BatchSize = 4, SaveSteps = 2, Seed = 1 };
        var rep = new RecordingReporter();
        var e = Assert.Throws<InvalidOperationException>(() => TrainingEngine.Run(new NanAt(model, 3), new EngineRun(Tiny, c, root, null), rep, CancellationToken.None));
        Assert.Contains("loss became NaN at step 3", e.Message);
        Assert.Equal([2], rep.Saved.Select(s => s.Step));
        // The weights in memory are still those of step 2: the NaN step changed nothing.
        var saved = Weights(rep.Saved[0].Dir);
        foreach (var (name, p) in model.named_parameters())
        {
            var stored = model.StoredTransposed(name) ? saved[name].t() : saved[name];
            Assert.Equal(0f, (p.detach() - stored).abs().max().item<float>());
        }
        Assert.All(model.parameters(), p => Assert.False(p.detach().isnan().any().item<bool>()));
    }

    [Fact]
    public void A_checkpoint_from_before_the_parameter_groups_resumes_with_a_warning_and_fresh_moments()
    {
        var c = new SftConfig { NEpochs = 1, BatchSize = 8, MaxSteps = 4, SaveSteps = 2, Seed = 8 };
        var root = TempDir();
        var first = new RecordingReporter { CancelAtStep = 2 };
        SftTrainer.Train(new SftRun(Tiny, Examples(32), null, c, root, null), first, CancellationToken.None);
        var ckpt = first.Saved.Single().Dir;
        // What an older build wrote: AdamW over one group of every parameter.
        using (var old = HfWeights.LoadModel(ckpt))
        using (var adam = optim.AdamW(old.parameters(), lr: 1e-3)) adam.save_state_dict(Path.Combine(ckpt, Checkpoints.Optimizer));
        var rep = new RecordingReporter();
        var result = SftTrainer.Train(new SftRun(Tiny, Examples(32), null, c, root, ckpt), rep, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        Assert.Equal(4, result.Step);
        Assert.Contains(rep.Events, e => e.Contains("fresh AdamW moments"));
    }
}
