using System.Net;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Rewards;
using AlignHub.Training.Preference;
using AlignHub.Training.Rl;
using AlignHub.Training.Sft;
using AlignHub.Training.Tokenizers;
using Xunit;

namespace AlignHub.Tests;

/// <summary>GRPO on the built-in arithmetic task, its graders, exact resume, and the job through the API.</summary>
public class GrpoTests
{
    static readonly ModelSource Tiny = new(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-grpo-").FullName;
    static readonly JsonElement Exact = JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader);
    static GraderSource ExactSource() => new(Grader.Parse(Exact, "grader", (f, m) => throw new Exception(m))!);

    /// <summary>Greedy exact-match accuracy on held-out problems, computed here from the generator's text and the answers.</summary>
    static double Accuracy(ModelSource source, List<GenerationPrompt> held)
    {
        using var model = source.CreateModel();
        var tok = new ByteTokenizer();
        var outs = TextGenerator.Generate(model, tok, held.Select(h => new[] { tok.BosId }.Concat(tok.Encode(h.Text)).ToArray()).ToList(),
            new GenerationOptions { MaxNewTokens = 4, Temperature = 0 });
        return held.Zip(outs).Count(x => x.Second.Text == x.First.Row!.Value.GetProperty("answer").GetString()) / (double)held.Count;
    }

    /// <summary>The documented start, trained once for the class: 250 SFT steps, about a third of held-out problems right.</summary>
    static readonly Lazy<ModelSource> SftStart = new(() => Tiny with
    {
        Folder = SftTrainer.Train(new SftRun(Tiny, ArithmeticTask.Demonstrations(4000, 1), null,
            new SftConfig { NEpochs = 100, MaxSteps = 250, BatchSize = 32, LearningRate = 3e-3, SaveSteps = 100_000, Seed = 1 }, TempDir(), null),
            new RecordingReporter(), CancellationToken.None).LastCheckpoint,
    });

    [Fact]
    public void GRPO_raises_held_out_exact_match_accuracy_from_an_SFT_start()
    {
        var start = SftStart.Value;
        var held = ArithmeticTask.Prompts(200, 99);
        double before = Accuracy(start, held);
        Assert.InRange(before, 0.15, 0.6);

        var c = new GrpoConfig { NEpochs = 100, MaxSteps = 150, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4, LearningRate = 5e-4,
            SaveSteps = 100_000, EvalSteps = 150, Seed = 1, Grader = Exact };
        var rep = new RecordingReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(start, ArithmeticTask.Prompts(2000, 5), held, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        double after = Accuracy(Tiny with { Folder = result.LastCheckpoint }, held);
        Assert.True(after >= before + 0.1, $"held-out exact match {before:F3} -> {after:F3}");
        // eval/reward is the same greedy exact match, computed by the trainer.
        Assert.Equal(after, rep.Metrics.Last(m => m.Metrics.ContainsKey("eval/reward")).Metrics["eval/reward"], 6);
        var first = rep.Metrics[0].Metrics;
        foreach (var name in new[] { "loss", "reward", "reward_std", "frac_reward_zero_std", "entropy", "clip_ratio/region_mean",
            "completions/mean_length", "completions/clipped_ratio", "rewards/exact_match/mean", "timing/generate", "grad_norm" })
            Assert.Contains(name, first.Keys);
        Assert.DoesNotContain("kl", first.Keys); // beta 0: no reference model
    }

    /// <summary>RLOO (KL folded into the reward) and REINFORCE++ (token-level KL, batch-normalised returns) from the same start and seed.</summary>
    [Theory]
    [InlineData("rloo")]
    [InlineData("reinforce_pp")]
    public void Critic_free_estimators_raise_held_out_exact_match_from_the_same_start(string method)
    {
        var held = ArithmeticTask.Prompts(200, 99);
        double before = Accuracy(SftStart.Value, held);
        OnlineRlConfig c = method == "rloo"
            ? new RlooConfig { NEpochs = 100, MaxSteps = 150, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4, SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, Grader = Exact }
            : new ReinforcePpConfig { NEpochs = 100, MaxSteps = 150, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4, SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, Grader = Exact };
        var rep = new RecordingReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(2000, 5), null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        double after = Accuracy(Tiny with { Folder = result.LastCheckpoint }, held);
        Assert.True(after >= before + 0.08, $"{method}: held-out exact match {before:F3} -> {after:F3}");
        Assert.Contains("kl", rep.Metrics[^1].Metrics.Keys); // both default to beta > 0, so the reference is loaded
    }

    /// <summary>Best-of-N keeps the best sample of eight when it is right and fine-tunes on it; online DPO ranks two samples per prompt.</summary>
    [Theory]
    [InlineData("best_of_n", 0.10)]
    [InlineData("online_dpo", 0.05)]
    public void Rejection_sampling_and_online_DPO_raise_held_out_exact_match(string method, double gain)
    {
        var held = ArithmeticTask.Prompts(200, 99);
        double before = Accuracy(SftStart.Value, held);
        OnlineRlConfig c = method == "best_of_n"
            ? new BestOfNConfig { NEpochs = 100, MaxSteps = 150, BatchSize = 32, NumGenerations = 8, KeepTop = 1, MinReward = 1, MaxCompletionLength = 4, SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, Grader = Exact }
            : new OnlineDpoConfig { NEpochs = 100, MaxSteps = 300, BatchSize = 64, LearningRate = 1e-3, MaxCompletionLength = 4, SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, Grader = Exact };
        var rep = new RecordingReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(4000, 5), null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        double after = Accuracy(Tiny with { Folder = result.LastCheckpoint }, held);
        Assert.True(after >= before + gain, $"{method}: held-out exact match {before:F3} -> {after:F3}");
        Assert.All(rep.Metrics, m => Assert.True(double.IsFinite(m.Metrics["loss"])));
    }

    /// <summary>REBEL (pairs of eight samples per prompt, eta 0.5) from the SFT start; BENCHMARKS.md has the 300-step run (+26.5 points).</summary>
    [Fact]
    public void REBEL_raises_held_out_exact_match_from_the_SFT_start()
    {
        var held = ArithmeticTask.Prompts(200, 99);
        double before = Accuracy(SftStart.Value, held);
        var c = new RebelConfig { NEpochs = 100, MaxSteps = 200, BatchSize = 32, NumGenerations = 8, Eta = 0.5, MaxCompletionLength = 4,
            SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, Grader = Exact };
        var rep = new RecordingReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(2000, 5), null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        double after = Accuracy(Tiny with { Folder = result.LastCheckpoint }, held);
        Assert.True(after >= before + 0.08, $"rebel: held-out exact match {before:F3} -> {after:F3}");
        Assert.All(rep.Metrics, m => Assert.True(m.Metrics["rebel/reward_gap"] >= 0 && double.IsFinite(m.Metrics["loss"])));
        Assert.DoesNotContain("kl", rep.Metrics[0].Metrics.Keys); // no reference
    }

    [Fact]
    public void ReMax_compares_each_sample_with_the_greedy_completion_and_trains()
    {
        var c = new RemaxConfig { NEpochs = 100, MaxSteps = 20, BatchSize = 16, NumGenerations = 4, MaxCompletionLength = 4, SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, Grader = Exact };
        var rep = new RecordingReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(500, 5), null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        Assert.Equal(20, rep.Metrics.Count(m => m.Metrics.ContainsKey("reward")));
        Assert.All(rep.Metrics, m => Assert.True(double.IsFinite(m.Metrics["loss"])));
    }

    [Fact]
    public void PPO_with_a_value_head_and_GAE_raises_held_out_exact_match()
    {
        var held = ArithmeticTask.Prompts(200, 99);
        double before = Accuracy(SftStart.Value, held);
        var c = new PpoConfig { NEpochs = 100, MaxSteps = 300, BatchSize = 32, NumGenerations = 4, NumPpoEpochs = 4, MaxCompletionLength = 4,
            SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, Grader = Exact };
        var rep = new RecordingReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(2000, 5), null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        double after = Accuracy(Tiny with { Folder = result.LastCheckpoint }, held);
        Assert.True(after >= before + 0.08, $"ppo: held-out exact match {before:F3} -> {after:F3}");
        var steps = rep.Metrics.Select(m => m.Metrics).ToList();
        foreach (var name in new[] { "value_loss", "policy_loss", "explained_variance", "kl" }) Assert.Contains(name, steps[^1].Keys);
        // pi_old is the sampling policy for the 4 updates of a batch: the ratio leaves 1 after the first and clipping acts.
        Assert.Equal(0, steps[0]["clip_ratio/region_mean"]);
        Assert.Contains(steps, m => m["clip_ratio/region_mean"] > 0);
        Assert.All(steps, m => Assert.True(double.IsFinite(m["value_loss"]) && m["explained_variance"] <= 1));
        // Sampling happens once a batch: the other three steps report no generation time.
        Assert.Equal(75, steps.Count(m => m["timing/generate"] > 0));
    }

    /// <summary>
    /// PPO's adaptive KL controller (Ziegler et al., 2019) steers beta once per batch of rollouts: with the KL far below
    /// kl_target (exactly 0 for the first batch, where policy and reference are the same weights) the error clips at -0.2,
    /// so beta after j batches of 16 completions is 0.05 (1 - 0.2 x 16 / 100)^j; each update reports the beta it used.
    /// Minibatches: 2 epochs x 2 minibatches is 4 updates per batch, sampling once per 4 steps. The value head's own
    /// learning rate: at 1e-8 it stays near zero where the default rate moves it.
    /// </summary>
    [Fact]
    public void PPO_adapts_beta_toward_kl_target_trains_on_minibatches_and_gives_the_value_head_its_own_rate()
    {
        var prompts = ArithmeticTask.Prompts(64, 7);
        var c = new PpoConfig { NEpochs = 100, MaxSteps = 12, BatchSize = 8, NumGenerations = 2, NumPpoEpochs = 2, NumMiniBatches = 2, Beta = 0.05,
            KlTarget = 100, KlHorizon = 100, MaxCompletionLength = 4, SaveSteps = 12, EvalSteps = 100, Seed = 5, Grader = Exact };
        var rep = new RecordingReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        Assert.Equal(12, rep.Metrics.Count);
        foreach (var (step, m) in rep.Metrics)
        {
            int batch = (step - 1) / 4;
            Assert.Equal(0.05 * Math.Pow(1 - 0.2 * 16 / 100.0, batch), m["beta"], 12);
            Assert.Equal((step - 1) % 4 == 0, m["timing/generate"] > 0);
        }
        Assert.Equal(0.05 * Math.Pow(0.968, 3), Checkpoints.LoadState(result.LastCheckpoint!).Method!["beta"]!.GetValue<double>(), 12);

        double ValueHeadSize(double? rate)
        {
            var run = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, c with { KlTarget = null, ValueLearningRate = rate }, TempDir(), null, ExactSource()),
                new RecordingReporter(), CancellationToken.None);
            var head = Checkpoints.LoadState(run.LastCheckpoint!).Method!["value_head"]!.Deserialize<float[][]>()!;
            return head.SelectMany(x => x).Max(x => Math.Abs((double)x));
        }
        double frozen = ValueHeadSize(1e-8), moving = ValueHeadSize(null);
        Assert.True(frozen < 1e-5, $"value head at 1e-8: {frozen}");
        Assert.True(moving > 1e-3, $"value head at the policy's rate: {moving}");
    }

    /// <summary>
    /// The KL-reward frontier over a GRPO run's checkpoints: the reference is the point at KL 0, each checkpoint a point
    /// with a bootstrap interval around its mean reward; the run moves away from its start (KL intervals above 0) and gains reward.
    /// </summary>
    [Fact]
    public void The_frontier_reports_mean_reward_and_KL_to_the_reference_for_each_checkpoint()
    {
        var c = new GrpoConfig { NEpochs = 100, MaxSteps = 80, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4,
            SaveSteps = 40, EvalSteps = 100_000, Seed = 1, Grader = Exact };
        var rep = new RecordingReporter();
        OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(2000, 5), null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        Assert.Equal([40, 80], rep.Saved.Select(x => x.Step));
        var points = rep.Saved.Select(x => new AlignHub.Training.Evaluation.FrontierPoint($"ckpt-{x.Step}", x.Step, Tiny with { Folder = x.Dir })).ToList();
        var output = Path.Combine(TempDir(), "frontier.jsonl");
        var fc = new FrontierConfig { Run = "run", NumSamples = 8, MaxNewTokens = 4, Seed = 3, Grader = Exact };
        // 40 held-out prompts x 8 samples per point.
        var frep = new RecordingReporter();
        var (result, rows) = AlignHub.Training.Evaluation.FrontierRunner.Evaluate(new(SftStart.Value, "start", points, ArithmeticTask.Prompts(40, 99), fc, ExactSource(), output), frep, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        Assert.Equal(["start", "ckpt-40", "ckpt-80"], rows.Select(r => (string)r["model"]));
        Assert.Equal(3, File.ReadLines(output).Count());
        Assert.Equal(0.0, (double)rows[0]["kl"]);
        Assert.All(rows, r => Assert.InRange((double)r["reward"], (double)r["reward_ci_low"], (double)r["reward_ci_high"]));
        Assert.All(rows.Skip(1), r => Assert.True((double)r["kl"] > 0 && (double)r["kl_per_token"] > 0, $"{r["model"]}: kl {r["kl"]}"));
        Assert.All(rows.Skip(1), r => Assert.True((double)r["kl_ci_low"] > 0, $"{r["model"]} moved from its start: kl interval [{r["kl_ci_low"]}, {r["kl_ci_high"]}]"));
        Assert.True((double)rows[2]["reward"] > (double)rows[0]["reward"], $"reward {rows[0]["reward"]} -> {rows[2]["reward"]}");
        // One metrics row per point, progress 1..3 of 3, with the checkpoint's own step beside.
        Assert.Equal([1, 2, 3], frep.Metrics.Select(m => m.Step));
        Assert.Equal([0.0, 40, 80], frep.Metrics.Select(m => m.Metrics["checkpoint_step"]));
    }

    /// <summary>
    /// The frontier's KL estimate against the exact KL: with one new token, KL(pi || ref) at a prompt is
    /// sum_v pi(v) (log pi(v) - log ref(v)) over the whole vocabulary, computed here from the two models' logits; the
    /// sampled estimate (256 samples of each of 24 prompts) lands within four standard errors of it.
    /// </summary>
    [Fact]
    public void The_frontier_KL_estimate_matches_the_exact_KL_of_one_token_distributions()
    {
        var rep = new RecordingReporter();
        var c = new GrpoConfig { NEpochs = 100, MaxSteps = 20, BatchSize = 16, NumGenerations = 8, MaxCompletionLength = 4, LearningRate = 3e-3,
            SaveSteps = 20, EvalSteps = 100_000, Seed = 1, Grader = Exact };
        OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(320, 5), null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        var moved = Tiny with { Folder = rep.Saved[^1].Dir };
        var prompts = ArithmeticTask.Prompts(24, 42);
        var fc = new FrontierConfig { Models = ["moved"], NumSamples = 256, MaxNewTokens = 1, BatchSize = 512, Seed = 3, Grader = Exact };
        var (_, rows) = AlignHub.Training.Evaluation.FrontierRunner.Evaluate(new(SftStart.Value, "start", [new("moved", null, moved)], prompts, fc, ExactSource(),
            Path.Combine(TempDir(), "f.jsonl")), new RecordingReporter(), CancellationToken.None);
        double estimate = (double)rows[1]["kl"];

        var tok = new ByteTokenizer();
        using var p = moved.CreateModel();
        using var q = SftStart.Value.CreateModel();
        p.eval(); q.eval();
        double exact = 0;
        using (TorchSharp.torch.no_grad())
            foreach (var prompt in prompts)
            {
                using var x = TorchSharp.torch.tensor(new long[] { tok.BosId }.Concat(tok.Encode(prompt.Text).Select(t => (long)t)).ToArray()).unsqueeze(0);
                using var lp = p.forward(x)[0, -1].log_softmax(-1);
                using var lq = q.forward(x)[0, -1].log_softmax(-1);
                exact += (lp.exp() * (lp - lq)).sum().item<float>();
            }
        exact /= prompts.Count;
        // The interval of the estimate: its bootstrap 95% interval is about four standard errors wide.
        double stderr = ((double)rows[1]["kl_ci_high"] - (double)rows[1]["kl_ci_low"]) / 3.92;
        Assert.True(exact > 1e-3, $"the policy moved: exact KL {exact}");
        Assert.True(Math.Abs(estimate - exact) < 4 * stderr + 1e-4, $"estimate {estimate:F5} vs exact {exact:F5} (standard error {stderr:F5})");
    }

    [Fact]
    public async Task A_frontier_job_evaluates_every_checkpoint_of_a_run_through_the_API()
    {
        await using var app = await AlignHubProcess.StartAsync(TempDir());
        var (_, upload) = await app.Upload(ArithmeticTask.Jsonl(32, 1), "problems.jsonl");
        var file = upload.GetProperty("id").GetString()!;
        var (_, heldUpload) = await app.Upload(ArithmeticTask.Jsonl(8, 99), "held.jsonl");
        var held = heldUpload.GetProperty("id").GetString()!;
        var (rs, run) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = file, seed = 2,
            // A similarity reward varies even for the untrained model, so the policy moves, and kl_warning is set absurdly low.
            method = new { type = "grpo", grpo = new { hyperparameters = new { max_steps = 4, save_steps = 2, batch_size = 4, num_generations = 4, max_completion_length = 4,
                beta = 0.05, kl_warning = 1e-9, learning_rate = 1e-2,
                grader = new { type = "text_similarity", name = "similar", input = "{{sample.output_text}}", reference = "{{item.answer}}", evaluation_metric = "fuzzy_match" } } } },
        });
        Assert.True(rs == HttpStatusCode.OK, run.ToString());
        var runId = run.GetProperty("id").GetString()!;

        object Frontier(object hyperparameters) => new { model = "alignhub/tiny", training_file = held, method = new { type = "frontier", frontier = new { hyperparameters } } };
        var (s1, e1) = await app.PostJson("/v1/fine_tuning/jobs", Frontier(new { run = "ftjob-nope", grader = ArithmeticTask.ExactMatchGrader }));
        Assert.Equal(HttpStatusCode.BadRequest, s1);
        Assert.Contains("does not exist", e1.GetProperty("errors").GetProperty("method.frontier.hyperparameters.run")[0].GetString());
        var (s2, e2) = await app.PostJson("/v1/fine_tuning/jobs", Frontier(new { grader = ArithmeticTask.ExactMatchGrader }));
        Assert.Equal(HttpStatusCode.BadRequest, s2);
        Assert.True(e2.GetProperty("errors").TryGetProperty("method.frontier.hyperparameters.run", out _), e2.ToString());
        var (s3, e3) = await app.PostJson("/v1/fine_tuning/jobs", Frontier(new { run = runId, models = new[] { "ft:missing" }, grader = ArithmeticTask.ExactMatchGrader }));
        Assert.Equal(HttpStatusCode.BadRequest, s3);
        Assert.True(e3.GetProperty("errors").TryGetProperty("method.frontier.hyperparameters.models[0]", out _), e3.ToString());

        var ftm = (await app.WaitForStatus(runId, "succeeded", TimeSpan.FromMinutes(2))).GetProperty("fine_tuned_model").GetString()!;
        // The run's early warning is an event and a badge on its job page.
        var events = (await app.GetJson($"/v1/fine_tuning/jobs/{runId}/events")).GetProperty("data").EnumerateArray().Select(e => e.GetProperty("message").GetString()!).ToList();
        Assert.Contains(events, e => e.StartsWith("KL to the reference"));
        var page = await app.Http.GetStringAsync($"/jobs/{runId}");
        Assert.Contains("id=\"warning-kl\"", page);
        Assert.DoesNotContain("id=\"warning-entropy\"", page);
        var (fs, frontier) = await app.PostJson("/v1/fine_tuning/jobs", Frontier(new { run = runId, num_samples = 2, max_new_tokens = 4, grader = ArithmeticTask.ExactMatchGrader }));
        Assert.True(fs == HttpStatusCode.OK, frontier.ToString());
        var done = await app.WaitForStatus(frontier.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(2));
        Assert.Null(done.GetProperty("fine_tuned_model").GetString());
        var rows = (await app.Http.GetStringAsync($"/v1/files/{done.GetProperty("result_files")[0].GetString()}/content"))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Equal(["alignhub/tiny", $"{ftm}:ckpt-step-2", $"{ftm}:ckpt-step-4"],
            rows.Select(r => r.GetProperty("model").GetString()));
        Assert.Equal([0, 2, 4], rows.Select(r => r.GetProperty("step").GetInt32()));
        Assert.Equal(0, rows[0].GetProperty("kl").GetDouble());
        Assert.All(rows, r => Assert.Equal(16, r.GetProperty("samples").GetInt32()));
        var metrics = (await app.GetJson($"/v1/fine_tuning/jobs/{done.GetProperty("id").GetString()}/metrics")).GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(3, metrics.Count(m => m.GetProperty("name").GetString() == "kl"));
    }

    /// <summary>
    /// The loop on the built-in preference task: an SFT start, a reward model trained on its pairs, then GRPO with that
    /// reward model as the reward source raises the hidden true reward of greedy completions, with KL recorded.
    /// </summary>
    [Fact]
    public void GRPO_driven_by_a_reward_model_raises_the_hidden_true_reward_of_the_preference_task()
    {
        var sft = SftTrainer.Train(new SftRun(Tiny, PreferenceTask.Demonstrations(1024, 1), null,
            new SftConfig { NEpochs = 5, BatchSize = 16, LearningRate = 3e-3, SaveSteps = 1000, Seed = 1 }, TempDir(), null), new RecordingReporter(), CancellationToken.None);
        var start = Tiny with { Folder = sft.LastCheckpoint };
        var rm = RewardModelTrainer.Train(new RewardModelRun(start, PreferenceTask.Pairs(512, 1), null,
            new RewardModelConfig { NEpochs = 4, BatchSize = 16, LearningRate = 1e-3, SaveSteps = 1000, EvalSteps = 1000, Seed = 1 }, TempDir(), null),
            new RecordingReporter(), CancellationToken.None);
        using var judge = RewardEnsembleSource.Load(Tiny with { Folder = rm.LastCheckpoint }, 0, 64, null);
        var rng = new Random(3);
        var prompts = Enumerable.Range(0, 512).Select(_ => PreferenceTask.Prompt(rng)).Select(p => new GenerationPrompt(p, JsonSerializer.SerializeToElement(p), false)).ToList();
        var c = new GrpoConfig { NEpochs = 100, MaxSteps = 60, BatchSize = 16, NumGenerations = 8, MaxCompletionLength = 24, Beta = 0.05,
            SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, RewardModel = "rm" };
        var rep = new RecordingReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(start, prompts, null, c, TempDir(), null, judge), rep, CancellationToken.None);
        double before = PreferenceTrainingTests.GreedyTrueReward(start), after = PreferenceTrainingTests.GreedyTrueReward(Tiny with { Folder = result.LastCheckpoint });
        Assert.True(after > before + 0.5, $"true reward of greedy samples {before:F2} -> {after:F2}");
        Assert.True(rep.Metrics[^1].Metrics["reward"] > rep.Metrics[0].Metrics["reward"], "the reward model's reward rises");
        Assert.True(rep.Metrics[^1].Metrics["kl"] > 0);
    }

    /// <summary>A checkpoint inside a block of updates keeps the block (and PPO's value head): resuming there ends with the same weights.</summary>
    [Theory]
    [InlineData("grpo")]
    [InlineData("ppo")]
    [InlineData("ppo_minibatches")]
    public void A_run_stopped_inside_a_block_of_updates_resumes_exactly(string method)
    {
        OnlineRlConfig c = method switch
        {
            "grpo" => new GrpoConfig { NEpochs = 100, MaxSteps = 9, BatchSize = 8, NumGenerations = 4, NumIterations = 3, MaxCompletionLength = 4, SaveSteps = 4, EvalSteps = 100, Beta = 0.05, Seed = 5, Grader = Exact },
            "ppo" => new PpoConfig { NEpochs = 100, MaxSteps = 9, BatchSize = 8, NumGenerations = 2, NumPpoEpochs = 3, MaxCompletionLength = 4, SaveSteps = 4, EvalSteps = 100, Seed = 5, Grader = Exact },
            // Minibatches (2 per epoch, blocks of 6 steps), the adaptive KL controller and the value head's own learning rate.
            _ => new PpoConfig { NEpochs = 100, MaxSteps = 9, BatchSize = 8, NumGenerations = 2, NumPpoEpochs = 3, NumMiniBatches = 2, KlTarget = 0.01, KlHorizon = 50,
                ValueLearningRate = 1e-2, MaxCompletionLength = 4, SaveSteps = 4, EvalSteps = 100, Seed = 5, Grader = Exact },
        };
        var prompts = ArithmeticTask.Prompts(64, 7);
        var a = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, c, TempDir(), null, ExactSource()), new RecordingReporter(), CancellationToken.None);
        var root = TempDir();
        var first = new RecordingReporter { CancelAtStep = 5 };
        OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, c, root, null, ExactSource()), first, CancellationToken.None);
        Assert.Equal(4, first.Saved[^1].Step); // inside the block of steps 4..6
        var b = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, c, root, first.Saved[^1].Dir, ExactSource()), new RecordingReporter(), CancellationToken.None);
        var wa = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(a.LastCheckpoint!, "model.safetensors"));
        var wb = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(b.LastCheckpoint!, "model.safetensors"));
        foreach (var (name, t) in wa)
        {
            var diff = (t - wb[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6f, $"{method}: {name} differs by {diff}");
        }
    }

    [Fact]
    public void A_GRPO_run_stopped_and_resumed_samples_the_same_completions_and_ends_with_the_same_weights()
    {
        var c = new GrpoConfig { NEpochs = 100, MaxSteps = 12, BatchSize = 8, GradientAccumulationSteps = 2, NumGenerations = 4, MaxCompletionLength = 4,
            SaveSteps = 5, EvalSteps = 100, Beta = 0.05, Seed = 3, Grader = Exact };
        var prompts = ArithmeticTask.Prompts(64, 7);
        var full = new RecordingReporter();
        var a = OnlineRlTrainer.Train(new OnlineRlRun(Tiny, prompts, null, c, TempDir(), null, ExactSource()), full, CancellationToken.None);

        var root = TempDir();
        var first = new RecordingReporter { CancelAtStep = 7 };
        var stopped = OnlineRlTrainer.Train(new OnlineRlRun(Tiny, prompts, null, c, root, null, ExactSource()), first, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Cancelled, stopped.Outcome);
        var resumed = new RecordingReporter();
        var b = OnlineRlTrainer.Train(new OnlineRlRun(Tiny, prompts, null, c, root, first.Saved[^1].Dir, ExactSource()), resumed, CancellationToken.None);
        Assert.Equal(12, b.Step);
        // Steps 6..12 saw the same rollouts (same rewards and lengths) as the uninterrupted run.
        foreach (var (step, m) in resumed.Metrics)
        {
            var same = full.Metrics.Single(x => x.Step == step).Metrics;
            Assert.Equal(same["reward"], m["reward"], 9);
            Assert.Equal(same["completions/mean_length"], m["completions/mean_length"], 9);
        }
        var wa = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(a.LastCheckpoint!, "model.safetensors"));
        var wb = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(b.LastCheckpoint!, "model.safetensors"));
        foreach (var (name, t) in wa)
        {
            var diff = (t - wb[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6f, $"{name} differs by {diff}");
        }
        Assert.Contains("kl", full.Metrics[^1].Metrics.Keys);
    }

    /// <summary>
    /// Every prompt trained: with num_ppo_epochs 4 and n_epochs 1, each batch of 8 prompts trains 4 steps, so 40 prompts
    /// make 20 steps and the samples table holds every prompt exactly num_generations times (sampled once, at its
    /// block's first step). With gradient accumulation the same run ends with the same weights (whole-batch semantics),
    /// and stopped inside a block and resumed, it ends with the uninterrupted run's weights.
    /// </summary>
    [Fact]
    public void PPO_with_four_epochs_samples_every_prompt_once_per_epoch_and_resumes_exactly()
    {
        var prompts = ArithmeticTask.Prompts(80, 17).DistinctBy(p => p.Text).Take(40).ToList();
        var c = new PpoConfig { NEpochs = 1, BatchSize = 8, NumGenerations = 2, NumPpoEpochs = 4, MaxCompletionLength = 4, SaveSteps = 3, EvalSteps = 100,
            LogCompletionsSteps = 1, NumCompletionsToLog = 4096, Seed = 4, Grader = Exact };
        Assert.Equal(20, c.TotalSteps(prompts.Count));
        var rep = new RecordingReporter();
        var a = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        Assert.Equal(20, a.Step);
        Assert.Equal(Enumerable.Range(1, 20), rep.Metrics.Select(m => m.Step));
        var counts = rep.SampleLog.GroupBy(x => x.Sample.Prompt).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(prompts.Select(p => p.Text).Order(), counts.Keys.Order());
        Assert.All(counts.Values, n => Assert.Equal(2, n));
        Assert.Equal([1, 5, 9, 13, 17], rep.SampleLog.Select(x => x.Step).Distinct());
        Assert.Contains("Epoch 1 of 1 completed", rep.Events);

        static void SameWeights(string x, string y, double tol)
        {
            var wa = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(x, "model.safetensors"));
            var wb = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(y, "model.safetensors"));
            foreach (var (name, t) in wa)
            {
                var diff = (t - wb[name]).abs().max().item<float>();
                Assert.True(diff <= tol, $"{name} differs by {diff}");
            }
        }
        // Four micro-batches: the same rollouts and losses step by step (float rounding apart, which AdamW amplifies a little over 20 steps).
        var split = new RecordingReporter();
        var accumulated = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, c with { GradientAccumulationSteps = 4 }, TempDir(), null, ExactSource()),
            split, CancellationToken.None);
        foreach (var ((_, x), (_, y)) in rep.Metrics.Zip(split.Metrics))
        {
            Assert.Equal(x["reward"], y["reward"], 12);
            Assert.Equal(x["loss"], y["loss"], 1e-5);
            Assert.Equal(x["value_loss"], y["value_loss"], 1e-5);
        }
        SameWeights(a.LastCheckpoint!, accumulated.LastCheckpoint!, 1e-3);

        var root = TempDir();
        var first = new RecordingReporter { CancelAtStep = 7 };
        OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, c, root, null, ExactSource()), first, CancellationToken.None);
        Assert.Equal(6, first.Saved[^1].Step); // inside the block of steps 5..8
        var b = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, c, root, first.Saved[^1].Dir, ExactSource()), new RecordingReporter(), CancellationToken.None);
        Assert.Equal(20, b.Step);
        SameWeights(a.LastCheckpoint!, b.LastCheckpoint!, 1e-6);
    }

    /// <summary>
    /// DAPO's dynamic sampling: from the SFT start many groups of 4 are all wrong (equal rewards); each step refills its
    /// batch from other prompts, so no trained batch holds a zero-variance group, and extra rounds are counted.
    /// </summary>
    [Fact]
    public void Dynamic_sampling_trains_only_groups_with_a_reward_signal()
    {
        var c = new GrpoConfig { NEpochs = 100, MaxSteps = 8, BatchSize = 8, NumGenerations = 4, MaxCompletionLength = 4, SaveSteps = 100, EvalSteps = 100,
            DynamicSampling = true, MaxNumGenBatches = 6, Seed = 3, Grader = Exact };
        var rep = new RecordingReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(400, 5), null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        Assert.All(rep.Metrics, m =>
        {
            Assert.Equal(0, m.Metrics["frac_reward_zero_std"]);
            Assert.Equal(8, m.Metrics["dynamic_sampling/kept_groups"]);
            Assert.True(m.Metrics["dynamic_sampling/sampled_completions"] >= 32);
        });
        Assert.Contains(rep.Metrics, m => m.Metrics["dynamic_sampling/extra_rounds"] > 0);
        var plain = new RecordingReporter();
        OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(400, 5), null, c with { DynamicSampling = false }, TempDir(), null, ExactSource()),
            plain, CancellationToken.None);
        Assert.Contains(plain.Metrics, m => m.Metrics["frac_reward_zero_std"] > 0); // the same start without it trains on such groups
    }

    /// <summary>
    /// The bound: with a grader that never matches, every group is zero-variance; each step stops after
    /// max_num_gen_batches rounds, takes no update (the weights stay the start's) and says so in an event.
    /// </summary>
    [Fact]
    public void Dynamic_sampling_skips_a_step_with_no_signal_after_its_bounded_rounds()
    {
        var never = JsonSerializer.SerializeToElement(new { type = "string_check", name = "never", input = "{{sample.output_text}}", reference = "no such answer", operation = "eq" });
        var c = new GrpoConfig { NEpochs = 100, MaxSteps = 3, BatchSize = 4, NumGenerations = 4, MaxCompletionLength = 4, SaveSteps = 100, EvalSteps = 100,
            DynamicSampling = true, MaxNumGenBatches = 3, Seed = 3, Grader = never };
        var rep = new RecordingReporter();
        var source = new GraderSource(Grader.Parse(never, "grader", (f, m) => throw new Exception(m))!);
        var result = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(200, 5), null, c, TempDir(), null, source), rep, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        Assert.All(rep.Metrics, m =>
        {
            Assert.Equal(1, m.Metrics["dynamic_sampling/skipped"]);
            Assert.Equal(2, m.Metrics["dynamic_sampling/extra_rounds"]);
            Assert.Equal(48, m.Metrics["dynamic_sampling/sampled_completions"]); // 3 rounds of 4 prompts x 4
            Assert.Equal(0, m.Metrics["grad_norm"]);
        });
        Assert.Equal(3, rep.Events.Count(e => e.Contains("skipped: dynamic sampling found no group")));
        var start = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(SftStart.Value.Folder!, "model.safetensors"));
        var end = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(result.LastCheckpoint!, "model.safetensors"));
        foreach (var (name, t) in start) Assert.Equal(0, (t - end[name]).abs().max().item<float>());
    }

    /// <summary>DAPO's overlong shaping lowers the trained reward of completions that run into the buffer; the grader's own reward is logged apart.</summary>
    [Fact]
    public void Overlong_shaping_penalises_completions_in_the_buffer()
    {
        var c = new GrpoConfig { NEpochs = 100, MaxSteps = 3, BatchSize = 8, NumGenerations = 4, MaxCompletionLength = 6, SaveSteps = 100, EvalSteps = 100,
            OverlongBufferLen = 4, OverlongPenaltyFactor = 1, Seed = 3, Grader = Exact };
        var rep = new RecordingReporter();
        OnlineRlTrainer.Train(new OnlineRlRun(Tiny, ArithmeticTask.Prompts(100, 5), null, c, TempDir(), null, ExactSource()), rep, CancellationToken.None);
        // A random-init model rarely stops early: most completions reach 6 tokens, the full penalty of -1.
        Assert.All(rep.Metrics, m =>
        {
            Assert.InRange(m.Metrics["rewards/overlong_penalty/mean"], -1, -0.5);
            Assert.Equal(m.Metrics["rewards/exact_match/mean"] + m.Metrics["rewards/overlong_penalty/mean"], m.Metrics["reward"], 9);
        });
    }

    /// <summary>A teacher is another GRPO-trained policy of the same start, trained once for the class.</summary>
    static readonly Lazy<ModelSource> GrpoTeacher = new(() =>
    {
        var c = new GrpoConfig { NEpochs = 100, MaxSteps = 200, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4, LearningRate = 5e-4,
            SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, Grader = Exact };
        var result = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(2000, 5), null, c, TempDir(), null, ExactSource()),
            new RecordingReporter(), CancellationToken.None);
        return Tiny with { Folder = result.LastCheckpoint };
    });

    /// <summary>
    /// On-policy distillation: the SFT start samples, the GRPO-trained teacher scores each token, the reward is minus
    /// the per-token reverse KL; the student's held-out exact match rises toward the teacher's and its reverse KL falls.
    /// No grader is needed; one given only adds eval/reward.
    /// </summary>
    [Fact]
    public void On_policy_distillation_moves_the_student_toward_its_teacher()
    {
        var held = ArithmeticTask.Prompts(200, 99);
        double before = Accuracy(SftStart.Value, held), teacher = Accuracy(GrpoTeacher.Value, held);
        Assert.True(teacher >= before + 0.1, $"teacher {teacher:F3} vs start {before:F3}");
        var c = new DistillConfig { NEpochs = 100, MaxSteps = 60, BatchSize = 32, NumGenerations = 4, MaxCompletionLength = 4, LearningRate = 1e-3,
            SaveSteps = 100_000, EvalSteps = 100_000, Seed = 2, TeacherModel = "teacher" };
        var rep = new RecordingReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(2000, 6), null, c, TempDir(), null, null, Teacher: GrpoTeacher.Value),
            rep, CancellationToken.None);
        double after = Accuracy(Tiny with { Folder = result.LastCheckpoint }, held);
        Assert.True(after >= before + 0.05, $"student {before:F3} -> {after:F3}, teacher {teacher:F3}");
        double Kl(IEnumerable<(int Step, Dictionary<string, double> Metrics)> rows) => rows.Average(r => r.Metrics["reverse_kl"]);
        Assert.True(Kl(rep.Metrics.TakeLast(10)) < 0.5 * Kl(rep.Metrics.Take(10)), "the reverse KL to the teacher falls");
        Assert.DoesNotContain("reward", rep.Metrics[0].Metrics.Keys); // no reward source

        // A teacher that reads text as other ids is refused before anything trains.
        var other = new ModelSource(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]).Replace("\"vocab_size\":259", "\"vocab_size\":300"), "byte", null);
        var e = Assert.Throws<InvalidDataException>(() => OnlineRlTrainer.Train(
            new OnlineRlRun(SftStart.Value, ArithmeticTask.Prompts(20, 6), null, c, TempDir(), null, null, Teacher: other), new RecordingReporter(), CancellationToken.None));
        Assert.Contains("tokenizer differs", e.Message);
    }

    [Fact]
    public void Early_warnings_fire_once_each_for_KL_entropy_collapse_and_sampler_mismatch()
    {
        var prompts = ArithmeticTask.Prompts(64, 7);
        GrpoConfig Config(double kl, double entropy, double mismatch, double lr = 5e-4) => new()
        {
            NEpochs = 100, MaxSteps = 8, BatchSize = 8, NumGenerations = 4, MaxCompletionLength = 4, Beta = 0.05, LearningRate = lr, SaveSteps = 100, Seed = 2,
            Grader = Exact, KlWarning = kl, EntropyCollapse = entropy, LogprobMismatchTolerance = mismatch,
        };
        var quiet = new RecordingReporter();
        // From the SFT start, so rewards vary and the policy moves away from its reference.
        OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, Config(0.5, 0.2, 1e-3), TempDir(), null, ExactSource()), quiet, CancellationToken.None);
        Assert.DoesNotContain(quiet.Events, e => e.StartsWith("KL to") || e.StartsWith("Entropy collapsed") || e.StartsWith("The trainer's log-probs"));
        Assert.All(quiet.Metrics.Where(m => m.Metrics.ContainsKey("sampling/logprob_diff")), m => Assert.InRange(m.Metrics["sampling/logprob_diff"], 0, 1e-5));

        var loud = new RecordingReporter();
        OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, Config(1e-9, 1.0, 0), TempDir(), null, ExactSource()), loud, CancellationToken.None);
        Assert.Single(loud.Events, e => e.StartsWith("KL to the reference"));
        // A learning rate ten times too high trips the default KL bound by itself.
        var hot = new RecordingReporter();
        OnlineRlTrainer.Train(new OnlineRlRun(SftStart.Value, prompts, null, Config(0.5, 0.2, 1e-3, lr: 5e-3), TempDir(), null, ExactSource()), hot, CancellationToken.None);
        Assert.Contains(hot.Events, e => e.StartsWith("KL to the reference"));
        Assert.Single(loud.Events, e => e.StartsWith("KL to the reference"));
        Assert.Single(loud.Events, e => e.StartsWith("Entropy collapsed"));
        Assert.Single(loud.Events, e => e.StartsWith("The trainer's log-probs"));
    }

    [Fact]
    public void String_check_graders_compare_rendered_templates_and_name_bad_fields()
    {
        var row = JsonSerializer.SerializeToElement(new { answer = "42", meta = new { tag = "Yes" } });
        Grader G(string op, string reference = "{{item.answer}}") =>
            Grader.Parse(JsonSerializer.SerializeToElement(new { type = "string_check", input = "{{sample.output_text}}", reference, operation = op }), "g", (f, m) => throw new Exception(f + ": " + m))!;
        Assert.Equal(1, G("eq").Grade(row, "42"));
        Assert.Equal(0, G("eq").Grade(row, "42 "));
        Assert.Equal(1, G("ne").Grade(row, "41"));
        Assert.Equal(1, G("like").Grade(row, "the answer is 42."));
        Assert.Equal(0, G("like", "{{item.meta.tag}}").Grade(row, "yes please"));
        Assert.Equal(1, G("ilike", "{{item.meta.tag}}").Grade(row, "yes please"));
        Assert.Equal(0, G("eq", "{{item.missing}}").Grade(row, "x"));
        Assert.Equal(1, G("eq", "{{item.missing}}").Grade(row, ""));

        var errors = new Dictionary<string, string>();
        Grader.Parse(JsonSerializer.SerializeToElement(new { type = "string_check", input = 5, operation = "regex" }), "g", (f, m) => errors[f] = m);
        Assert.Equal(["g.input", "g.operation", "g.reference"], errors.Keys.Order());
        errors.Clear();
        Grader.Parse(JsonSerializer.SerializeToElement(new { type = "python" }), "g", (f, m) => errors[f] = m);
        Assert.Contains("supported: string_check", errors["g.type"]);
    }

    [Fact]
    public async Task A_GRPO_job_runs_through_the_API_and_a_bad_grader_is_a_400_naming_its_field()
    {
        await using var app = await AlignHubProcess.StartAsync(TempDir());
        var (us, upload) = await app.Upload(ArithmeticTask.Jsonl(64, 1), "problems.jsonl");
        Assert.Equal(HttpStatusCode.OK, us);
        var file = upload.GetProperty("id").GetString()!;
        var (bs, bad) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = file,
            method = new { type = "grpo", grpo = new { hyperparameters = new { grader = new { type = "string_check", input = "{{sample.output_text}}", reference = "{{item.answer}}", operation = "almost" } } } },
        });
        Assert.Equal(HttpStatusCode.BadRequest, bs);
        Assert.True(bad.GetProperty("errors").TryGetProperty("method.grpo.hyperparameters.grader.operation", out _), bad.ToString());
        var (ms, missing) = await app.PostJson("/v1/fine_tuning/jobs", new { model = "alignhub/tiny", training_file = file, method = new { type = "grpo" } });
        Assert.Equal(HttpStatusCode.BadRequest, ms);
        Assert.True(missing.GetProperty("errors").TryGetProperty("method.grpo.hyperparameters.grader", out _));

        var (cs, job) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = file, seed = 2,
            method = new { type = "grpo", grpo = new { hyperparameters = new { max_steps = 4, batch_size = 4, num_generations = 4, max_completion_length = 4, log_completions_steps = 2, num_completions_to_log = 5, grader = ArithmeticTask.ExactMatchGrader } } },
        });
        Assert.True(cs == HttpStatusCode.OK, job.ToString());
        var id = job.GetProperty("id").GetString()!;
        Assert.Equal("string_check", job.GetProperty("method").GetProperty("grpo").GetProperty("hyperparameters").GetProperty("grader").GetProperty("type").GetString());
        var done = await app.WaitForStatus(id, "succeeded", TimeSpan.FromMinutes(2));
        Assert.StartsWith("ft:alignhub/tiny:", done.GetProperty("fine_tuned_model").GetString());
        var names = (await app.GetJson($"/v1/fine_tuning/jobs/{id}/metrics")).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("name").GetString()).ToHashSet();
        foreach (var n in new[] { "reward", "reward_std", "entropy", "completions/mean_length", "loss" }) Assert.Contains(n, names);
        Assert.Contains("reward-chart", await app.Http.GetStringAsync($"/jobs/{id}"));
        // The samples table: steps 2 and 4, five completions each, with rewards and advantages; paged.
        var all = (await app.GetJson($"/v1/fine_tuning/jobs/{id}/samples")).GetProperty("data").EnumerateArray().ToList();
        Assert.Equal([2, 2, 2, 2, 2, 4, 4, 4, 4, 4], all.Select(x => x.GetProperty("step").GetInt32()));
        Assert.All(all, x =>
        {
            Assert.EndsWith("=", x.GetProperty("prompt").GetString());
            Assert.Equal(x.GetProperty("reward").GetDouble(), x.GetProperty("rewards").GetProperty("exact_match").GetDouble());
            Assert.True(double.IsFinite(x.GetProperty("advantage").GetDouble()));
        });
        var page = await app.GetJson($"/v1/fine_tuning/jobs/{id}/samples?step=4&limit=3");
        Assert.Equal(3, page.GetProperty("data").GetArrayLength());
        Assert.True(page.GetProperty("has_more").GetBoolean());
        var rest = await app.GetJson($"/v1/fine_tuning/jobs/{id}/samples?step=4&after={page.GetProperty("last_id").GetString()}");
        Assert.Equal(2, rest.GetProperty("data").GetArrayLength());

        // OpenAI's reinforcement method: the grader beside the hyperparameters, errors named where it was given, GRPO underneath.
        var (rb, rbad) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = file,
            method = new { type = "reinforcement", reinforcement = new { grader = new { type = "string_check", input = "{{sample.output_text}}", reference = "{{item.answer}}", operation = "roughly" } } },
        });
        Assert.Equal(HttpStatusCode.BadRequest, rb);
        Assert.True(rbad.GetProperty("errors").TryGetProperty("method.reinforcement.grader.operation", out _), rbad.ToString());
        var (rs, rft) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = file, seed = 4,
            method = new
            {
                type = "reinforcement",
                reinforcement = new { grader = ArithmeticTask.ExactMatchGrader, hyperparameters = new { n_epochs = 1, batch_size = 32, compute_multiplier = 0.5, reasoning_effort = "high", eval_interval = "auto", max_completion_length = 4 } },
            },
        });
        Assert.True(rs == HttpStatusCode.OK, rft.ToString());
        var settings = rft.GetProperty("method").GetProperty("reinforcement");
        Assert.Equal("string_check", settings.GetProperty("grader").GetProperty("type").GetString());
        Assert.False(settings.GetProperty("hyperparameters").TryGetProperty("grader", out _));
        Assert.Equal(4, settings.GetProperty("hyperparameters").GetProperty("num_generations").GetInt32()); // 8 * 0.5
        var rid = rft.GetProperty("id").GetString()!;
        await app.WaitForStatus(rid, "succeeded", TimeSpan.FromMinutes(2));
        Assert.Equal(2, (await app.GetJson($"/v1/fine_tuning/jobs/{rid}")).GetProperty("steps_completed").GetInt32()); // 64 rows / 32

        // Checks of the 2026 options at creation, each naming its field.
        async Task Refused(string type, object hyperparameters, string field)
        {
            var (status, body) = await app.PostJson("/v1/fine_tuning/jobs", new Dictionary<string, object>
            {
                ["model"] = "alignhub/tiny", ["training_file"] = file,
                ["method"] = new Dictionary<string, object> { ["type"] = type, [type] = new { hyperparameters } },
            });
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.True(body.GetProperty("errors").TryGetProperty($"method.{type}.hyperparameters.{field}", out _), body.ToString());
        }
        await Refused("grpo", new { loss_type = "cispo", grader = ArithmeticTask.ExactMatchGrader }, "epsilon_high");
        await Refused("rloo", new { loss_type = "grpo", grader = ArithmeticTask.ExactMatchGrader }, "loss_type");
        await Refused("grpo", new { importance_sampling_level = "word", grader = ArithmeticTask.ExactMatchGrader }, "importance_sampling_level");
        await Refused("ppo", new { dynamic_sampling = true, grader = ArithmeticTask.ExactMatchGrader }, "dynamic_sampling");
        await Refused("distill", new { max_steps = 2 }, "teacher_model");
        await Refused("distill", new { teacher_model = "ft:nobody" }, "teacher_model");

        // Distillation through the API: the GRPO job's model teaches the start; no grader needed.
        var teacher = done.GetProperty("fine_tuned_model").GetString()!;
        var (ds, distill) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = file, seed = 2,
            method = new { type = "distill", distill = new { hyperparameters = new { teacher_model = teacher, max_steps = 3, batch_size = 4, num_generations = 2, max_completion_length = 4 } } },
        });
        Assert.True(ds == HttpStatusCode.OK, distill.ToString());
        var did = distill.GetProperty("id").GetString()!;
        await app.WaitForStatus(did, "succeeded", TimeSpan.FromMinutes(2));
        var distillMetrics = (await app.GetJson($"/v1/fine_tuning/jobs/{did}/metrics")).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("name").GetString()).ToHashSet();
        Assert.Contains("reverse_kl", distillMetrics);
        Assert.DoesNotContain("reward", distillMetrics);
    }
}
