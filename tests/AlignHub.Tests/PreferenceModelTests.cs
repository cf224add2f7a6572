using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Rewards;
using AlignHub.Training.Rl;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>The general preference model: its score against an independent computation, antisymmetry, group win rates, and a cycle learned from the intransitive task.</summary>
public class PreferenceModelTests
{
    static readonly ModelSource Tiny = new(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-pm-").FullName;

    [Fact]
    public async Task The_skew_symmetric_score_its_loss_and_gradients_equal_an_independent_computation()
    {
        var rng = new Random(3);
        float[][] Rows(int n) => Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, 6).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray()).ToArray();
        var (c, r) = (Rows(5), Rows(5));
        using var vc = tensor(c.SelectMany(x => x).ToArray(), [5, 6]).requires_grad_();
        using var vr = tensor(r.SelectMany(x => x).ToArray(), [5, 6]).requires_grad_();
        using var score = GeneralPreference.Score(vc, vr);
        using var loss = GeneralPreference.Loss(vc, vr).mean();
        loss.backward();
        var answer = JsonDocument.Parse(await RlStepOracleTests.Python("gpm.py", JsonSerializer.Serialize(new { chosen = c, rejected = r }))).RootElement;
        static double[] Flat(JsonElement e) => e.EnumerateArray().SelectMany(x => x.ValueKind == JsonValueKind.Array ? x.EnumerateArray().Select(y => y.GetDouble()) : [x.GetDouble()]).ToArray();
        void Near(double[] want, float[] got) { Assert.Equal(want.Length, got.Length); for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(want[i] - got[i]) < 1e-5, $"[{i}] {got[i]} vs {want[i]}"); }
        Near(Flat(answer.GetProperty("score")), score.data<float>().ToArray());
        Assert.Equal(answer.GetProperty("loss").GetDouble(), loss.item<float>(), 1e-5);
        Near(Flat(answer.GetProperty("grad_chosen")), vc.grad!.data<float>().ToArray());
        Near(Flat(answer.GetProperty("grad_rejected")), vr.grad!.data<float>().ToArray());
        using var m = GeneralPreference.Matrix(vc.detach());
        Near(Flat(answer.GetProperty("matrix")), m.data<float>().ToArray());
        // Antisymmetry by construction: s(a, b) = -s(b, a), so P(a > b) + P(b > a) = 1 and P(a > a) = 1/2.
        using var back = GeneralPreference.Score(vr.detach(), vc.detach());
        Near(score.data<float>().Select(x => -(double)x).ToArray(), back.data<float>().ToArray());
        var p = m.data<float>().ToArray();
        for (int i = 0; i < 5; i++) for (int j = 0; j < 5; j++) Assert.Equal(1.0, p[i * 5 + j] + p[j * 5 + i], 5);
    }

    /// <summary>
    /// Win rates within a group, worked by hand: an exact-match grader through Bradley-Terry scores ("7", "3", "7")
    /// against the answer 7 as (1, 0, 1); each right answer wins (sigmoid(1) + 1/2) / 2 = 0.61553 against the other two,
    /// the wrong one sigmoid(-1) = 0.26894 against both. SPPO's targets are eta (P - 1/2); DNO pairs the best with the worst.
    /// </summary>
    [Fact]
    public void Group_win_rates_and_SPPO_targets_on_a_hand_worked_group()
    {
        var exact = new GraderSource(Grader.Parse(JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader), "g", (_, m) => throw new Exception(m))!);
        using var rates = new GroupWinRateSource(new BradleyTerryPreference(exact), 3);
        var row = JsonSerializer.SerializeToElement(new { answer = "7" });
        var r = rates.Score([new RewardInput("3+4=", "7", row), new RewardInput("3+4=", "3", row), new RewardInput("3+4=", "7", row)]);
        double right = (1 / (1 + Math.Exp(-1)) + 0.5) / 2, wrong = 1 / (1 + Math.Exp(1));
        Assert.Equal(right, r[0], 12);
        Assert.Equal(wrong, r[1], 12);
        Assert.Equal(right, r[2], 12);
        Assert.Equal(0.61553, right, 5);
        var sppo = new AlignHub.Training.Rl.Sppo(new SppoConfig { Eta = 2 });
        using var targets = sppo.Targets(new AlignHub.Training.Rl.RolloutTensors
        {
            Rewards = tensor(r.Select(x => (float)x).ToArray()), RewardValues = r, Mask = ones(3, 1), K = 3, Beta = 0,
        }).Advantages;
        Assert.Equal(r.Select(x => 2 * (x - 0.5)), targets.data<float>().Select(x => (double)x), new ToleranceComparer(1e-6));
        // DNO: the best (the first right answer, on a tie) against the worst; with a gap filter above 0.61553 - 0.26894 no pair.
        var view = new AlignHub.Training.Rl.RolloutTensors { Rewards = tensor(r.Select(x => (float)x).ToArray()), RewardValues = r, Mask = ones(3, 1), K = 3, Beta = 0 };
        var dno = new AlignHub.Training.Rl.Dno(new DnoConfig { NumGenerations = 3 }).Targets(view);
        Assert.Equal([1f, -1f, 0f], dno.Advantages.data<float>().ToArray());
        Assert.Equal([1f, 1f, 0f], dno.Weights!.data<float>().ToArray());
        var filtered = new AlignHub.Training.Rl.Dno(new DnoConfig { NumGenerations = 3, MinWinRateGap = 0.35 }).Targets(view);
        Assert.All(filtered.Advantages.data<float>().ToArray(), x => Assert.Equal(0f, x));
        Assert.Equal(0.34659, right - wrong, 5);
        Assert.Throws<InvalidDataException>(() => rates.Score([new RewardInput("p", "x", row)])); // not a whole group
    }

    sealed class ToleranceComparer(double tol) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tol;
        public int GetHashCode(double x) => 0;
    }

    /// <summary>
    /// On the intransitive task (formal beats warm beats playful beats formal), a general preference model learns all
    /// three relations and orders held-out triples in a cycle, where a Bradley-Terry reward model trained on the same
    /// pairs cannot agree with more than two of them.
    /// </summary>
    [Fact]
    public void A_preference_model_learns_the_cycle_a_reward_model_cannot()
    {
        var train = CyclicPreferenceTask.Pairs(480, 1);
        var held = CyclicPreferenceTask.Pairs(240, 2);
        var pmRep = new RecordingReporter();
        var pm = PreferenceModelTrainer.Train(new PreferenceModelRun(Tiny, train, held,
            new PreferenceModelConfig { NEpochs = 30, BatchSize = 16, LearningRate = 1e-3, PreferenceDim = 8, WarmupRatio = 0.05, EvalSteps = 1000, SaveSteps = 1000, Seed = 1 }, TempDir(), null),
            pmRep, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, pm.Outcome);
        var last = pmRep.Metrics.Last(m => m.Metrics.ContainsKey("eval/accuracy")).Metrics;
        Assert.InRange(pmRep.Metrics.Last(m => m.Metrics.ContainsKey("eval/cyclic_triples")).Metrics["eval/cyclic_triples"], 0, 1);
        var rmRep = new RecordingReporter();
        RewardModelTrainer.Train(new RewardModelRun(Tiny, train, held,
            new RewardModelConfig { NEpochs = 6, BatchSize = 16, LearningRate = 2e-3, EvalSteps = 1000, SaveSteps = 1000, Seed = 1 }, TempDir(), null), rmRep, CancellationToken.None);
        var rm = rmRep.Metrics.Last(m => m.Metrics.ContainsKey("eval/accuracy")).Metrics["eval/accuracy"];
        Assert.True(last["eval/accuracy"] >= 0.95, $"preference model held-out accuracy {last["eval/accuracy"]:F3} (reward model {rm:F3}), train accuracy {pmRep.Metrics[^1].Metrics.GetValueOrDefault("accuracy"):F3}");
        Assert.True(rm <= 0.8, $"a reward model cannot order a cycle (at best 2/3 of the style pairs and every corrupted one, 0.75): {rm:F3}");
        Assert.True(last["eval/accuracy"] >= rm + 0.15, $"preference model {last["eval/accuracy"]:F3} vs reward model {rm:F3}");
        // The folder reloads as a preference model (marker, num_labels) and answers in both orders consistently.
        var source = Tiny with { Folder = pm.LastCheckpoint, ConfigJson = File.ReadAllText(Path.Combine(pm.LastCheckpoint!, "config.json")) };
        Assert.True(source.Architecture.IsPreferenceModel);
        Assert.Equal(8, source.Architecture.NumLabels);
        using var oracle = PreferenceModelSource.Load(source, null);
        var p = oracle.Matrix("Greet Ada.", ["Good day, Ada.", "Hi Ada!", "Yo Ada~"]);
        Assert.True(p[0, 1] > 0.5 && p[1, 2] > 0.5 && p[2, 0] > 0.5, $"{p[0, 1]:F2} {p[1, 2]:F2} {p[2, 0]:F2}");
        // Triples of the three styles (held-out names) are ordered in a cycle; triples with a corrupted reply are not.
        var styles = held.Where(x => CyclicPreferenceTask.StyleOf(x.Prompt, x.Rejected) is not null).ToList();
        var (cyclic, triples) = PreferenceModelTrainer.CyclicShare(oracle, styles);
        Assert.True(triples >= 10 && cyclic >= 0.9, $"{triples} style triples, {cyclic:F3} ordered in a cycle");
        Assert.True(oracle.Matrix("Greet Ada.", ["Hi Ada!", "Hi Bo!"])[0, 1] > 0.5, "a reply to the wrong name loses");
        Assert.Equal(1, p[0, 1] + p[1, 0], 6);
    }
    /// <summary>
    /// Online IPO with Nash-MD's mixture (mixture_coef 0.5): with the same seed as plain online IPO, the first step's
    /// completions are identical (the policy still equals the reference, so the mixture is the policy), and after one
    /// update the first completion of every pair is still the policy's own while the second ones come from the mixture.
    /// LoRA with the mixture is refused at validation, naming the field.
    /// </summary>
    [Fact]
    public void Online_IPO_draws_the_second_of_each_pair_from_the_geometric_mixture()
    {
        var rng = new Random(3);
        var prompts = Enumerable.Range(0, 64).Select(_ => PreferenceTask.Prompt(rng)).Select(p => new GenerationPrompt(p, JsonSerializer.SerializeToElement(p), false)).ToList();
        // A reward that varies on a random model's bytes, so the first update moves the policy away from the reference.
        var graderJson = JsonSerializer.SerializeToElement(new { type = "regex_match", name = "a_to_m", input = "{{sample.output_text}}", pattern = "[a-m]" });
        var grader = Grader.Parse(graderJson, "g", (f, m) => throw new Exception($"{f}: {m}"))!;
        List<(int Step, SampleRecord Sample)> Run(double coef)
        {
            var c = new OnlineIpoConfig { NEpochs = 10, MaxSteps = 2, BatchSize = 8, NumGenerations = 2, MaxCompletionLength = 12, LearningRate = 1e-2, Beta = 0.1,
                SaveSteps = 100_000, EvalSteps = 100_000, Seed = 4, LogCompletionsSteps = 1, NumCompletionsToLog = 16, MixtureCoef = coef,
                Grader = graderJson };
            var rep = new RecordingReporter();
            var run = OnlineRlTrainer.Train(new OnlineRlRun(Tiny, prompts, null, c, TempDir(), null, new GroupWinRateSource(new BradleyTerryPreference(new GraderSource(grader)), 2)),
                rep, CancellationToken.None);
            Assert.Equal(TrainingOutcome.Completed, run.Outcome);
            Assert.All(rep.Metrics, m => Assert.True(double.IsFinite(m.Metrics["loss"])));
            return rep.SampleLog;
        }
        var (plain, nashMd) = (Run(0), Run(0.5));
        string[] At(List<(int Step, SampleRecord Sample)> log, int step, int parity) =>
            log.Where(x => x.Step == step).Select(x => x.Sample.Completion).Where((_, i) => i % 2 == parity).ToArray();
        Assert.Equal(16, plain.Count(x => x.Step == 2));
        Assert.Equal(At(plain, 1, 0).Concat(At(plain, 1, 1)), At(nashMd, 1, 0).Concat(At(nashMd, 1, 1)));
        Assert.Equal(At(plain, 2, 0), At(nashMd, 2, 0));
        Assert.NotEqual(At(plain, 2, 1), At(nashMd, 2, 1));

        var errors = new List<string>();
        new OnlineIpoConfig { MixtureCoef = 0.5, UsePeft = true, PreferenceModel = "pm" }.Validate("", (f, _) => errors.Add(f));
        Assert.Contains("mixture_coef", errors);
    }
}
