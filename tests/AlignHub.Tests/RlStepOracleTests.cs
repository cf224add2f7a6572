using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Rl;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>
/// The whole optimizer step of each online method against an independent computation: for a fixed set of rollouts
/// (prompt ids, completion ids, finish reasons, rewards) on a tiny GPT-2, the shared trainer's loss and the gradient
/// of every parameter equal tests/oracles/rl_step.py (Debian's python3-torch, float64, no AlignHub code, written from
/// TRL's GRPOTrainer / RLOOTrainer and verl's core_algos) to 1e-5, with gradient_accumulation_steps 1 and 4. The two
/// accumulations give the same numbers except for bnpo, which TRL defines per micro-batch (the oracle computes it so).
/// </summary>
public class RlStepOracleTests
{
    static readonly string ConfigJson = JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["model_type"] = "gpt2", ["architectures"] = new[] { "GPT2LMHeadModel" }, ["n_embd"] = 32, ["n_layer"] = 2, ["n_head"] = 2,
        ["n_positions"] = 64, ["vocab_size"] = ModelPresets.ByteVocab, ["layer_norm_epsilon"] = 1e-5, ["bos_token_id"] = ModelPresets.ByteBos,
        ["eos_token_id"] = ModelPresets.ByteEos, ["pad_token_id"] = ModelPresets.BytePad, ["tie_word_embeddings"] = true,
    });
    static readonly ModelSource Source = new(ConfigJson, "byte", null);
    const int K = 4, Prompts = 4, MaxCompletion = 6;

    /// <summary>Four prompts, four completions each: ragged lengths, some ended by EOS, some cut at max_completion_length; rewards with one all-equal group.</summary>
    static (List<GenerationPrompt> Prompts, List<Rollout> Rollouts, double[] Rewards, double[] Greedy) Data()
    {
        var rng = new Random(11);
        var prompts = new List<GenerationPrompt>();
        var rollouts = new List<Rollout>();
        for (int p = 0; p < Prompts; p++)
        {
            var text = $"{rng.Next(50)}+{rng.Next(50)}=";
            prompts.Add(new GenerationPrompt(text, JsonSerializer.SerializeToElement(text), false));
            var ids = new[] { ModelPresets.ByteBos }.Concat(System.Text.Encoding.UTF8.GetBytes(text).Select(b => (int)b)).ToArray();
            for (int s = 0; s < K; s++)
            {
                bool truncated = rng.Next(3) == 0;
                int len = truncated ? MaxCompletion : 1 + rng.Next(MaxCompletion - 1);
                var tokens = Enumerable.Range(0, len).Select(_ => 48 + rng.Next(10)).ToArray();
                if (!truncated) tokens[^1] = ModelPresets.ByteEos;
                rollouts.Add(new Rollout(p, s, ids, new GeneratedSequence(tokens, "", new float[len], new float[len], truncated ? "length" : "stop")));
            }
        }
        var rewards = Enumerable.Range(0, Prompts * K).Select(i => i / K == 2 ? 0.5 : Math.Round(rng.NextDouble() * 2 - 0.5, 3)).ToArray();
        var greedy = Enumerable.Range(0, Prompts).Select(_ => Math.Round(rng.NextDouble(), 3)).ToArray();
        return (prompts, rollouts, rewards, greedy);
    }

    static CausalLM Model(int seed) { torch.manual_seed(seed); return Source.CreateModel(); }

    sealed record Case(string Name, string Method, OnlineRlConfig Config);

    static IEnumerable<Case> Cases()
    {
        var grader = JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader);
        var grpo = new GrpoConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.04, Temperature = 0.9, Grader = grader };
        foreach (var loss in new[] { "dapo", "grpo", "bnpo", "dr_grpo", "cispo" })
            foreach (var scale in new[] { "group", "batch", "none" })
                yield return new($"grpo {loss} {scale}", "grpo", grpo with { LossType = loss, ScaleRewards = scale, EpsilonHigh = loss == "cispo" ? 5.0 : null });
        yield return new("grpo masked truncations", "grpo", grpo with { MaskTruncatedCompletions = true });
        yield return new("gspo dapo", "grpo", grpo with { ImportanceSamplingLevel = "sequence" });
        yield return new("gspo grpo", "grpo", grpo with { ImportanceSamplingLevel = "sequence", LossType = "grpo", Beta = 0 });
        yield return new("reinforcement", "reinforcement", new ReinforcementConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.02, Grader = grader });
        yield return new("rloo", "rloo", new RlooConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.05, Temperature = 0.9, Grader = grader });
        yield return new("reinforce_pp", "reinforce_pp", new ReinforcePpConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.05, Grader = grader });
        yield return new("remax", "remax", new RemaxConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.05, Grader = grader });
        var ppo = new PpoConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.05, Gamma = 0.99, Lam = 0.9, VfCoef = 0.3, Grader = grader };
        yield return new("ppo", "ppo", ppo);
        yield return new("ppo grpo unwhitened", "ppo", ppo with { LossType = "grpo", WhitenAdvantages = false });
        yield return new("rebel", "rebel", new RebelConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Eta = 0.5, Temperature = 0.9, Grader = grader });
        yield return new("rto", "rto", new RtoConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.05, DpoBeta = 0.2, DpoModel = "d",
            Gamma = 0.99, Lam = 0.9, VfCoef = 0.3, Grader = grader });
        yield return new("sppo", "sppo", new SppoConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Eta = 2.0, Temperature = 0.9, Grader = grader });
        yield return new("dno", "dno", new DnoConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.3, Temperature = 0.9, Grader = grader });
        yield return new("dno with a win-rate gap", "dno", new DnoConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.3, MinWinRateGap = 0.8, Grader = grader });
        yield return new("online_ipo", "online_ipo", new OnlineIpoConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.5, Temperature = 0.9, Grader = grader });
        yield return new("p3o", "p3o", new P3oConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.05, Temperature = 0.9, Grader = grader });
        yield return new("p3o without KL", "p3o", new P3oConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Grader = grader });
        yield return new("distill", "distill", new DistillConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, TeacherModel = "t" });
        yield return new("distill with beta", "distill", new DistillConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, TeacherModel = "t", Beta = 0.1, Temperature = 0.8 });
    }

    sealed record Ours(double Loss, Dictionary<string, float[]> Grads);

    /// <summary>One step of the shared trainer on the fixed rollouts: the engine's accumulation, then the summed loss and every gradient (HF layout).</summary>
    static Ours Step(OnlineRlConfig c, int accumulation, string referencePath, float[][] valueHead, double rewardShift = 0)
    {
        var (prompts, rollouts, rewards, greedy) = Data();
        rewards = rewards.Select(r => r + rewardShift).ToArray();
        using var policy = Model(1);
        using var reference = Model(2);
        using var teacher = Model(3);
        var tok = Source.CreateTokenizer();
        var needs = RlStrategies.For(c).Needs;
        ScoredRollouts Sampler(IReadOnlyList<int> rows, int step) =>
            new(rows.SelectMany(p => rollouts.Where(r => r.PromptIndex == p)).ToList(), rows.SelectMany(p => rewards.Skip(p * K).Take(K)).ToArray(),
                rows.Select(p => greedy[p]).ToArray());
        using var m = new OnlineRlMethod(policy, needs.Reference ? reference : null, needs.Teacher ? teacher : null, tok, prompts, [],
            new PromptEncoder(tok, 32), null, c with { GradientAccumulationSteps = accumulation }, Sampler);
        if (m.ValueHead is not null)
            m.LoadState(new System.Text.Json.Nodes.JsonObject { ["value_head"] = JsonSerializer.SerializeToNode(valueHead) });
        m.SetTraining(true);
        m.BeginStep(0);
        var sums = new double[m.StatNames.Count];
        using (var scope = NewDisposeScope())
            Assert.True(TrainingEngine.AccumulateGradients(m, [0, 1, 2, 3], accumulation, (Prompts + accumulation - 1) / accumulation, sums));
        var grads = policy.named_parameters().ToDictionary(p => p.name,
            p => (policy.StoredTransposed(p.name) ? p.parameter.grad!.t() : p.parameter.grad!).contiguous().data<float>().ToArray());
        if (m.ValueHead is { } vh)
        {
            grads["value_head.weight"] = vh.weight!.grad!.data<float>().ToArray();
            grads["value_head.bias"] = vh.bias!.grad!.data<float>().ToArray();
        }
        return new Ours(m.Metrics(sums)["loss"], grads);
    }

    [Fact]
    public async Task Each_methods_step_equals_an_independent_computation_with_and_without_gradient_accumulation()
    {
        var dir = Directory.CreateTempSubdirectory("alignhub-rl-oracle-").FullName;
        string Save(int seed, string name) { using var model = Model(seed); var d = Path.Combine(dir, name); HfWeights.Save(model, d); return Path.Combine(d, HfWeights.SingleFile); }
        var (policyPath, referencePath, teacherPath) = (Save(1, "policy"), Save(2, "reference"), Save(3, "teacher"));
        var rng = new Random(5);
        float[][] valueHead = [Enumerable.Range(0, 32).Select(_ => (float)(rng.NextDouble() - 0.5) * 0.2f).ToArray(), [0.05f]];
        var (_, rollouts, rewards, greedy) = Data();

        var cases = Cases().ToList();
        var ours = new List<(Case Case, int Accumulation, Ours Result)>();
        foreach (var c in cases)
            foreach (var gas in new[] { 1, 4 })
                ours.Add((c, gas, Step(c.Config, gas, referencePath, valueHead)));

        var requests = ours.Select(o => new Dictionary<string, object?>
        {
            ["model"] = new { n_embd = 32, n_layer = 2, n_head = 2, eps = 1e-5 },
            ["policy"] = policyPath,
            ["reference"] = RlStrategies.For(o.Case.Config).Needs.Reference ? referencePath : null,
            ["teacher"] = teacherPath,
            ["value_head"] = new { weight = new[] { valueHead[0] }, bias = valueHead[1] },
            ["method"] = o.Case.Method,
            ["config"] = JsonSerializer.Deserialize<JsonElement>(o.Case.Config.ToJson()),
            ["pad_id"] = ModelPresets.BytePad, ["k"] = K, ["micro_batches"] = o.Accumulation,
            ["rollouts"] = rollouts.Select(r => new { prompt = r.PromptIds, completion = r.Completion.Tokens, finish = r.Completion.FinishReason }),
            ["rewards"] = rewards, ["greedy_rewards"] = greedy,
        }).ToList();
        var answers = JsonDocument.Parse(await Python("rl_step.py", JsonSerializer.Serialize(requests))).RootElement.EnumerateArray().ToList();

        var failures = new List<string>();
        for (int i = 0; i < ours.Count; i++)
        {
            var (c, gas, mine) = ours[i];
            double expected = answers[i].GetProperty("loss").GetDouble();
            if (Math.Abs(mine.Loss - expected) > 1e-5) failures.Add($"{c.Name}, accumulation {gas}: loss {mine.Loss} vs {expected}");
            double worst = 0; string at = "";
            foreach (var g in answers[i].GetProperty("grads").EnumerateObject())
            {
                var want = g.Value.EnumerateArray().Select(x => x.GetDouble()).ToArray();
                var got = mine.Grads[g.Name];
                Assert.Equal(want.Length, got.Length);
                for (int j = 0; j < want.Length; j++)
                    if (Math.Abs(want[j] - got[j]) > worst) (worst, at) = (Math.Abs(want[j] - got[j]), $"{g.Name}[{j}] {got[j]} vs {want[j]}");
            }
            if (worst > 1e-5) failures.Add($"{c.Name}, accumulation {gas}: gradient differs by {worst:G3} at {at}");
            Assert.True(mine.Grads.Values.Any(g => g.Any(x => x != 0)), $"{c.Name}: the gradient is all zero");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));

        // Whole-batch semantics: the two accumulations agree (bnpo is TRL's local variant and may not).
        foreach (var group in ours.GroupBy(o => o.Case.Name).Where(g => !g.Key.Contains("bnpo")))
        {
            var (a, b) = (group.First().Result, group.Last().Result);
            Assert.True(Math.Abs(a.Loss - b.Loss) < 1e-6, $"{group.Key}: loss {a.Loss} with 1 micro-batch, {b.Loss} with 4");
        }
    }

    /// <summary>REBEL and P3O train on reward differences: adding a constant to every reward leaves their loss and gradient unchanged (1e-6).</summary>
    [Fact]
    public void REBEL_and_P3O_ignore_a_constant_added_to_every_reward()
    {
        var grader = JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader);
        float[][] head = [new float[32], [0f]];
        foreach (OnlineRlConfig c in new OnlineRlConfig[]
        {
            new RebelConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Eta = 0.5, Grader = grader },
            new P3oConfig { NumGenerations = K, BatchSize = Prompts, MaxCompletionLength = MaxCompletion, Beta = 0.05, Grader = grader },
        })
        {
            var (a, b) = (Step(c, 1, "", head), Step(c, 1, "", head, rewardShift: 5));
            Assert.Equal(a.Loss, b.Loss, 1e-6);
            foreach (var (name, g) in a.Grads)
                Assert.True(g.Zip(b.Grads[name]).All(x => Math.Abs(x.First - x.Second) <= 1e-6), $"{c.GetType().Name}: {name}");
            Assert.Contains(a.Grads.Values, g => g.Any(x => x != 0));
        }
    }

    /// <summary>Runs a tests/oracles script with Debian's python3 (python3-torch), stdin to stdout.</summary>
    internal static async Task<string> Python(string script, string stdin)
    {
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var psi = new ProcessStartInfo(python, script) { WorkingDirectory = Oracles.Dir, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardInput.WriteAsync(stdin);
        p.StandardInput.Close();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"{script} failed (is Debian's python3-torch installed? .ci/run installs it):\n{await stderr}");
        return await stdout;
    }
}
