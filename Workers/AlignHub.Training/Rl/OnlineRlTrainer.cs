using System.Text.Json;
using System.Diagnostics;
using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Generation;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Rewards;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>What an online RL run needs: the starting model, prompt rows (with the fields graders read), the config and the reward source.</summary>
public sealed record OnlineRlRun(
    ModelSource Model,
    IReadOnlyList<GenerationPrompt> Train,
    IReadOnlyList<GenerationPrompt>? Validation,
    OnlineRlConfig Config,
    string CheckpointRoot,
    string? ResumeFrom,
    IRewardSource Reward,
    Device? Device = null);

/// <summary>
/// The critic-free online RL methods on the <see cref="TrainingEngine"/>; a step's rows are prompts. For each
/// micro-batch of prompts: sample <c>num_generations</c> completions each (<see cref="Rollouts.Sample"/>, seeded by
/// (seed, step, prompt, sample), so a resumed run samples what the uninterrupted one did), score them with the reward
/// source, compute the method's advantages, and take the clipped policy loss (<see cref="PolicyLosses.Clipped"/>) on
/// the policy's log-probs at the sampling temperature, one update per batch (pi_old is the policy itself: the ratio
/// is 1 with gradient A * grad log pi). Advantages: GRPO <see cref="Advantages.Group"/> (+ beta k3 in the loss);
/// RLOO <see cref="Advantages.LeaveOneOut"/> of r - beta * sum k1; REINFORCE++ <see cref="Advantages.ReinforcePlusPlus"/>;
/// ReMax <see cref="Advantages.ReMax"/> against the greedy completion's reward (+ beta k3 in the loss). Evaluation:
/// the mean reward of greedy completions of the validation prompts (<c>eval/reward</c>).
/// </summary>
public static class OnlineRlTrainer
{
    public static TrainingResult Train(OnlineRlRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        var tok = run.Model.CreateTokenizer();
        int maxPos = run.Model.Architecture.MaxPositions;
        if (c.MaxCompletionLength >= maxPos) throw new InvalidDataException($"max_completion_length must be below the model's context length {maxPos}");
        var encoder = new PromptEncoder(tok, Math.Clamp(c.MaxPromptLength ?? maxPos - c.MaxCompletionLength, 1, maxPos - 1));
        var device = run.Device ?? CPU;
        torch.manual_seed(c.Seed);
        var lora = LoraSettings.From(c, run.Model.Architecture);
        var policy = run.Model.CreateModel(device, lora, c.Seed, Dtypes.Resolve(c.TorchDtype, device, run.Model, frozen: lora is not null));
        CausalLM? reference = null;
        try
        {
            // With LoRA the reference is the policy's base, its adapters switched off: no second copy of the weights.
            if (c.Beta > 0 && lora is null)
            {
                torch.manual_seed(c.Seed); // the policy's own start, for random-init models too
                reference = run.Model.CreateModel(device);
                reference.eval();
            }
            using var method = new OnlineRlMethod(policy, reference, tok, run.Train, run.Validation ?? [], encoder, run.Reward, c);
            return TrainingEngine.Run(method, new EngineRun(run.Model, c, run.CheckpointRoot, run.ResumeFrom), reporter, ct);
        }
        finally { reference?.Dispose(); }
    }
}

/// <summary>
/// A batch of rollouts and what was computed from it at its first update: the block that trains the next
/// <see cref="OnlineRlConfig.UpdatesPerBatch"/> steps. Per-token values are flattened in the layout of
/// <see cref="Rollouts.ToBatch"/> ([N, Width]); everything is host data, so a checkpoint inside a block keeps it.
/// </summary>
sealed class RolloutBlock
{
    public required List<Rollout> Rollouts { get; init; }
    public required double[] Rewards { get; init; }
    public double[]? GreedyRewards { get; init; }
    /// <summary>The sampling step's host statistics (rows, rewards, groups, lengths, timings).</summary>
    public required double[] Host { get; init; }
    public int FirstStep { get; init; }
    public long Width { get; set; }
    public float[]? OldLogps { get; set; }
    public float[]? RefLogps { get; set; }
    public float[]? Advantages { get; set; }
    /// <summary>One advantage per completion (group methods, best-of-N, online DPO) rather than per token.</summary>
    public bool AdvantagesPerSequence { get; set; }
    public float[]? OldValues { get; set; }
    public float[]? Returns { get; set; }
    /// <summary>The KL coefficient this block trains with (the adaptive controller moves it between blocks).</summary>
    public double Beta { get; set; }
}

sealed class OnlineRlMethod : ITrainingMethod, IDisposable
{
    readonly CausalLM policy;
    readonly CausalLM? reference;
    readonly Linear? valueHead; // PPO: values from the policy's last hidden states
    readonly ITokenizer tok;
    readonly IReadOnlyList<GenerationPrompt> train, valid;
    readonly List<int[]> trainIds, validIds;
    readonly IRewardSource reward;
    readonly OnlineRlConfig c;
    int step;
    long stepTokens;
    RolloutBlock? block;
    readonly List<SampleRecord> samples = [];
    double? firstEntropy;
    double beta; // the KL coefficient: c.Beta, steered toward kl_target between blocks when that is set
    readonly HashSet<string> warned = [];
    bool Comparable => c.TopK is null && c.TopP >= 1; // without filtering, sampler and trainer use one distribution

    public OnlineRlMethod(CausalLM policy, CausalLM? reference, ITokenizer tok, IReadOnlyList<GenerationPrompt> train, IReadOnlyList<GenerationPrompt> valid,
        PromptEncoder encoder, IRewardSource reward, OnlineRlConfig c)
    {
        (this.policy, this.reference, this.tok, this.train, this.valid, this.reward, this.c) = (policy, reference, tok, train, valid, reward, c);
        trainIds = train.Select(p => encoder.Encode(p.Text)).ToList();
        validIds = valid.Select(p => encoder.Encode(p.Text)).ToList();
        if (c is PpoConfig)
        {
            // Zero-initialised: values start at 0 and need no random numbers.
            valueHead = Devices.OnCpu(() => nn.Linear(policy.Architecture.HiddenSize, 1));
            using (no_grad()) { valueHead.weight!.zero_(); valueHead.bias!.zero_(); }
            valueHead.to(policy.Device);
        }
        Parameters = [.. Lora.Trainable(policy), .. valueHead?.parameters() ?? []];
        hasReference = reference is not null || (c.Beta > 0 && Lora.IsAdapted(policy));
        beta = c.Beta;
        if (valueHead is not null && c is PpoConfig { ValueLearningRate: double vlr })
        {
            var head = valueHead.parameters().ToHashSet();
            lrScale = p => head.Contains(p) ? vlr / c.PeakLearningRate : 1.0;
        }
    }

    readonly Func<Parameter, double> lrScale = _ => 1.0;
    readonly bool hasReference;

    /// <summary>The reference's logits: the reference model, or a LoRA policy with its adapters switched off (under no_grad).</summary>
    Tensor ReferenceLogits(Tensor ids)
    {
        if (reference is not null) return reference.forward(ids);
        using (Lora.Disabled(policy)) return policy.forward(ids);
    }
    /// <summary>PPO's value head trains at value_learning_rate / the policy's peak rate, on the same schedule.</summary>
    public double LearningRateScale(Parameter p) => lrScale(p);

    public CausalLM Model => policy;
    public IReadOnlyList<Parameter> Parameters { get; }
    public int TrainRows => train.Count;
    public int ValidRows => valid.Count;
    public IReadOnlyList<string> StatNames { get; } =
    [
        "loss_rows", "kl_tokens", "entropy_tokens", "clip_low_tokens", "clip_high_tokens", "tokens",
        "rows", "reward_sum", "completions", "group_std_sum", "groups", "zero_std_groups", "length_sum", "truncated",
        "timing_generate", "timing_reward", "training", "logprob_diff_tokens", "value_loss_rows", "explained_variance_rows",
    ];

    public void BeginStep(int s) => step = s;
    public void SetTraining(bool on) { if (on) { policy.train(); valueHead?.train(); } else { policy.eval(); valueHead?.eval(); } }
    public double Weight(IReadOnlyList<int> rows, bool valid) => rows.Count;

    public long Tokens(IReadOnlyList<int> rows)
    {
        var n = stepTokens;
        stepTokens = 0;
        return n;
    }

    GenerationOptions Sampling => new() { MaxNewTokens = c.MaxCompletionLength, Temperature = c.Temperature, TopP = c.TopP, TopK = c.TopK };

    double[] Score(IReadOnlyList<GenerationPrompt> data, List<Rollout> rs) =>
        reward.Score(rs.Select(r => new RewardInput(data[r.PromptIndex].Text, r.Completion.Text, data[r.PromptIndex].Row)).ToList());

    /// <summary>Samples and scores a batch of prompts: the start of a block.</summary>
    RolloutBlock Sample(IReadOnlyList<int> rows, bool isValid)
    {
        var data = isValid ? valid : train;
        var clock = Stopwatch.StartNew();
        List<Rollout> rollouts = isValid
            // Evaluation: one greedy completion per prompt.
            ? Rollouts.Sample(policy, tok, rows.Select(i => validIds[i]).ToList(), rows, 1, Sampling with { Temperature = 0 }, c.Seed, 0, rows.Count)
            : Rollouts.Sample(policy, tok, rows.Select(i => trainIds[i]).ToList(), rows, c.NumGenerations, Sampling, c.Seed, step, rows.Count * c.NumGenerations);
        // ReMax's baseline: the greedy completion of each prompt, sampled and scored with the rest.
        var greedy = !isValid && c is RemaxConfig
            ? Rollouts.Sample(policy, tok, rows.Select(i => trainIds[i]).ToList(), rows, 1, Sampling with { Temperature = 0 }, c.Seed, step, rows.Count)
            : null;
        double tGenerate = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var rewards = Score(data, rollouts);
        var greedyRewards = greedy is null ? null : Score(data, greedy);
        double tReward = clock.Elapsed.TotalSeconds;
        int k = isValid ? 1 : c.NumGenerations;
        var groups = rewards.Chunk(k).ToList();
        double StdOf(double[] g) { double m = g.Average(); return g.Length < 2 ? 0 : Math.Sqrt(g.Sum(x => (x - m) * (x - m)) / (g.Length - 1)); }
        double[] host =
        [
            rows.Count, rewards.Sum(), rewards.Length, groups.Sum(StdOf), groups.Count, groups.Count(g => StdOf(g) < 1e-8),
            rollouts.Sum(r => r.Completion.Tokens.Length), rollouts.Count(r => r.Completion.FinishReason == "length"),
            tGenerate, tReward, isValid ? 0 : 1,
        ];
        return new RolloutBlock { Rollouts = rollouts, Rewards = rewards, GreedyRewards = greedyRewards, Host = host, FirstStep = step };
    }

    static float[] Host(Tensor t) => t.detach().to_type(ScalarType.Float32).cpu().data<float>().ToArray();

    public (Tensor Loss, Tensor Stats) Forward(IReadOnlyList<int> rows, bool isValid)
    {
        var device = policy.Device;
        if (isValid)
        {
            var v = Sample(rows, true);
            return (zeros(1, device: device).sum(), cat([zeros(6, dtype: ScalarType.Float64, device: device), tensor(v.Host, device: device), zeros(3, dtype: ScalarType.Float64, device: device)]));
        }
        bool fresh = block is null || step % c.UpdatesPerBatch == 0 || step < block.FirstStep;
        if (fresh) { block = Sample(rows, false); block.Beta = beta; }
        var b = block!;
        var all = b.Rollouts;
        var data = train;
        int k = c.NumGenerations;
        using var batch = Rollouts.ToBatch(all, tok.PadId, device);
        var fullIds = batch.Sequences.InputIds;
        var fullMask = batch.Sequences.CompletionMask[.., 1..];
        if (c.MaskTruncatedCompletions)
        {
            var keep = tensor(all.Select(r => r.Completion.FinishReason == "length" ? 0f : 1f).ToArray(), device: device);
            fullMask = fullMask * keep.unsqueeze(1);
        }
        long n = all.Count, width = fullMask.shape[1];
        // PPO's minibatches: each update of the block trains on a shuffled share of its completions (rows of the block's batch).
        int parts = c is PpoConfig { NumMiniBatches: var nm } ? nm : 1;
        using var part = parts > 1 ? tensor(MiniBatch(b, step - b.FirstStep, parts, c.Seed), device: device) : null;
        Tensor Part(Tensor t) => part is null ? t : t.index_select(0, part);
        var trained = part is null ? all : part.data<long>().ToArray().Select(i => all[(int)i]).ToList();
        stepTokens += trained.Sum(r => (long)r.PromptIds.Length + r.Completion.Tokens.Length);
        var ids = Part(fullIds);
        var mask = Part(fullMask);

        (Tensor Logps, Tensor? Values, Tensor Scaled) Policy(Tensor x, Tensor m)
        {
            var hidden = policy.Hidden(x, null, null);
            var logits = policy.LmHead(hidden) / c.Temperature;
            var values = valueHead is null ? null : valueHead.forward(hidden[.., ..^1, ..].to_type(ScalarType.Float32)).squeeze(-1) * m; // V of the state before each token
            return (SupervisedLoss.NextTokenLogProbs(logits, x), values, logits);
        }
        var (logps, values, scaled) = Policy(ids, mask);
        Tensor Stored(float[] a, bool perSequence = false) => Part(perSequence ? tensor(a, [n], device: device) : tensor(a, [n, width], device: device));

        Tensor oldLogps, advantages;
        Tensor? refLogps = null, oldValues = null, returns = null;
        // GRPO and ReMax put beta * k3 in the loss; RLOO, REINFORCE++ and PPO fold beta * k1 into the reward.
        double lossBeta = c is IGroupAdvantages or RemaxConfig ? b.Beta : 0.0;
        if (fresh)
        {
            // The first update of a block: pi_old is the policy itself (ratio 1), and the advantages are computed now, over the
            // whole block (from this update's own forward when it trains on all of it, else from one pass without gradients).
            Tensor oldAll;
            Tensor? valuesAll;
            if (part is null) (oldAll, valuesAll) = (logps.detach(), values?.detach());
            else using (no_grad()) { var (l, v, _) = Policy(fullIds, fullMask); (oldAll, valuesAll) = (l, v); }
            Tensor? refAll = null;
            if (hasReference)
                using (no_grad())
                    refAll = SupervisedLoss.NextTokenLogProbs(ReferenceLogits(fullIds) / c.Temperature, fullIds);
            var r = tensor(b.Rewards, device: device).to_type(ScalarType.Float32);
            var k1 = refAll is null ? null : KlEstimators.K1(oldAll, refAll) * fullMask; // per-token k1 of the sampled tokens
            var advAll = c switch
            {
                IGroupAdvantages g => Advantages.Group(r, k, g.ScaleRewards), // GRPO, and OpenAI's reinforcement, which runs as GRPO
                RlooConfig => Advantages.LeaveOneOut(k1 is null ? r : r - b.Beta * k1.sum(1), k),
                ReinforcePpConfig => Advantages.ReinforcePlusPlus(r, k1 ?? zeros_like(fullMask), fullMask, b.Beta),
                RemaxConfig => Advantages.ReMax(r, tensor(b.GreedyRewards!, device: device).to_type(ScalarType.Float32), k),
                PpoConfig => zeros_like(fullMask), // GAE below, from the values
                BestOfNConfig bon => Selected(b.Rewards, k, bon, device),
                OnlineDpoConfig => PairSides(b.Rewards, device),
                _ => throw new InvalidOperationException($"no advantage estimator for {c.GetType().Name}"),
            };
            Tensor? returnsAll = null;
            if (c is PpoConfig ppo)
            {
                // Token rewards: -beta * k1 on every completion token, the score at the last one (Ouyang et al., 2022).
                var tokenRewards = Advantages.TokenRewards(r, k1 ?? zeros_like(fullMask), fullMask, b.Beta);
                (advAll, returnsAll) = Advantages.Gae(tokenRewards, valuesAll!, fullMask, ppo.Gamma, ppo.Lam);
                if (ppo.WhitenAdvantages) advAll = Advantages.Whiten(advAll, fullMask);
            }
            // Adaptive KL control between blocks, from this block's KL at sampling time; the block keeps the beta it started with.
            if (c.KlTarget is double target && k1 is not null)
                beta = KlControl.Adaptive(beta, k1.sum(1).mean().item<float>(), target, c.KlHorizon, (int)n);
            if (c.UpdatesPerBatch > 1)
            {
                // Keep what the block's later updates need (host arrays, so a checkpoint inside the block keeps them too).
                b.Width = width;
                b.OldLogps = Host(oldAll);
                b.RefLogps = refAll is null ? null : Host(refAll);
                b.Advantages = Host(advAll);
                b.AdvantagesPerSequence = advAll.dim() == 1;
                b.OldValues = valuesAll is null ? null : Host(valuesAll);
                b.Returns = returnsAll is null ? null : Host(returnsAll);
            }
            bool logThisBlock = Enumerable.Range(step, c.UpdatesPerBatch).Any(s => (s + 1) % c.LogCompletionsSteps == 0);
            if (logThisBlock && samples.Count < c.NumCompletionsToLog)
            {
                using var perSequence = advAll.dim() == 1 ? advAll.detach() : (advAll.detach() * fullMask).sum(1) / fullMask.sum(1).clamp_min(1);
                var adv = perSequence.to_type(ScalarType.Float64).cpu().data<double>().ToArray();
                for (int i = 0; i < all.Count && samples.Count < c.NumCompletionsToLog; i++)
                    samples.Add(new SampleRecord(data[all[i].PromptIndex].Text, all[i].Completion.Text, b.Rewards[i],
                        new Dictionary<string, double> { [reward.Name] = b.Rewards[i] }, adv[i], all[i].Completion.FinishReason));
            }
            oldLogps = Part(oldAll);
            refLogps = refAll is null ? null : Part(refAll);
            advantages = Part(advAll);
            oldValues = valuesAll is null ? null : Part(valuesAll);
            returns = returnsAll is null ? null : Part(returnsAll);
        }
        else
        {
            oldLogps = Stored(b.OldLogps!);
            refLogps = b.RefLogps is null ? null : Stored(b.RefLogps);
            advantages = Stored(b.Advantages!, b.AdvantagesPerSequence);
            oldValues = b.OldValues is null ? null : Stored(b.OldValues);
            returns = b.Returns is null ? null : Stored(b.Returns);
        }
        var o = c switch
        {
            // Supervised on the kept completions: with A = 1 and ratio 1 the surrogate's gradient is the NLL's.
            BestOfNConfig => PolicyLosses.Clipped(logps, oldLogps, ones_like(mask), mask * advantages.unsqueeze(1), c.Epsilon,
                c.EpsilonHigh ?? c.Epsilon, "dapo", c.MaxCompletionLength),
            OnlineDpoConfig => OnlineDpoLoss(logps, refLogps!, mask, advantages),
            _ => PolicyLosses.Clipped(logps, oldLogps, advantages, mask, c.Epsilon, c.EpsilonHigh ?? c.Epsilon, c.LossType, c.MaxCompletionLength, refLogps, lossBeta),
        };
        var loss = o.Loss;
        Tensor valueLoss = zeros_like(o.Loss.detach()), explained = zeros_like(o.Loss.detach());
        if (c is PpoConfig p && values is not null)
        {
            valueLoss = PolicyLosses.ClippedValue(values, oldValues!, returns!, mask, p.CliprangeValue);
            loss = loss + p.VfCoef * valueLoss;
            using var _ = no_grad();
            var count = mask.sum().clamp_min(2);
            Tensor Var(Tensor x) { var m = (x * mask).sum() / count; return ((x - m) * mask).pow(2).sum() / (count - 1); }
            explained = 1 - Var(returns! - oldValues!) / Var(returns!).clamp_min(1e-12);
        }
        using var noGrad = no_grad();
        var tokens = mask.sum();
        var kl = refLogps is null ? zeros_like(tokens) : (KlEstimators.K3(logps, refLogps) * mask).sum(); // reported as k3 for every method
        var logpAll = scaled[.., ..^1, ..].log_softmax(-1);
        var entropy = (-(logpAll.exp() * logpAll).sum(-1) * mask).sum();
        var deviceStats = stack([o.Loss.detach() * rows.Count, kl, entropy, o.ClipLow * tokens, o.ClipHigh * tokens, tokens]).to_type(ScalarType.Float64);
        // The sampler's log-probs of its tokens against the trainer's recomputation of them (same distribution when unfiltered).
        var diff = fresh ? ((logps.detach() - Part(batch.SamplingLogProbs)).abs() * mask).sum() : zeros_like(tokens);
        // Sampling time belongs to the block's first step only.
        var host = fresh ? b.Host : [.. b.Host[..8], 0, 0, .. b.Host[10..]];
        var extra = stack([diff, valueLoss.detach() * rows.Count, explained * rows.Count]).to_type(ScalarType.Float64);
        return (loss, cat([deviceStats, tensor(host, device: device), extra]));
    }

    /// <summary>
    /// The completions (rows of the block's batch) that update <paramref name="update"/> of a block trains on, with
    /// <paramref name="parts"/> minibatches per epoch: epoch update / parts shuffles the block (seeded by the run's seed,
    /// the block's first step and the epoch), and its part update % parts is the share taken.
    /// </summary>
    static long[] MiniBatch(RolloutBlock b, int update, int parts, long seed)
    {
        int n = b.Rollouts.Count, epoch = update / parts, j = update % parts;
        var order = Enumerable.Range(0, n).Select(i => (long)i).ToArray();
        new Random(unchecked((int)(seed * 1_000_003 + b.FirstStep * 8191L + epoch))).Shuffle(order);
        return order[(j * n / parts)..((j + 1) * n / parts)];
    }

    /// <summary>Best-of-N: 1 for the top keep_top completions of each prompt by reward (ties by sample order) that reach min_reward, else 0.</summary>
    static Tensor Selected(double[] rewards, int k, BestOfNConfig c, Device device)
    {
        var keep = new float[rewards.Length];
        for (int p = 0; p < rewards.Length / k; p++)
            foreach (var i in Enumerable.Range(p * k, k).OrderByDescending(i => rewards[i]).ThenBy(i => i).Take(c.KeepTop))
                if (c.MinReward is not double min || rewards[i] >= min) keep[i] = 1;
        return tensor(keep, device: device);
    }

    /// <summary>Online DPO's sides per completion: +1 chosen, -1 rejected, 0 for both of a tie (no pair).</summary>
    static Tensor PairSides(double[] rewards, Device device)
    {
        var side = new float[rewards.Length];
        for (int i = 0; i + 1 < rewards.Length; i += 2)
            if (rewards[i] != rewards[i + 1]) (side[i], side[i + 1]) = rewards[i] > rewards[i + 1] ? (1f, -1f) : (-1f, 1f);
        return tensor(side, device: device);
    }

    /// <summary>DPO's sigmoid loss (<see cref="PreferenceLosses.Sigmoid"/>) over the prompts whose two samples were ranked, against the reference.</summary>
    PolicyLossOutput OnlineDpoLoss(Tensor logps, Tensor refLogps, Tensor mask, Tensor sides)
    {
        var seq = (logps * mask).sum(1).view(-1, 2);
        var refSeq = (refLogps * mask).sum(1).view(-1, 2);
        var s2 = sides.view(-1, 2);
        var chosenFirst = s2[.., 0].gt(0);
        var paired = s2[.., 0].ne(0).to_type(ScalarType.Float32);
        var pc = where(chosenFirst, seq[.., 0], seq[.., 1]);
        var pr = where(chosenFirst, seq[.., 1], seq[.., 0]);
        var rc = where(chosenFirst, refSeq[.., 0], refSeq[.., 1]);
        var rr = where(chosenFirst, refSeq[.., 1], refSeq[.., 0]);
        var o = PreferenceLosses.Sigmoid(new PairLogps(pc, pr, rc, rr), c.Beta);
        var loss = (o.Losses * paired).sum() / paired.sum().clamp_min(1);
        var none = zeros_like(loss.detach());
        return new PolicyLossOutput(loss, zeros_like(mask), none, none);
    }

    public Dictionary<string, double> Metrics(double[] s)
    {
        double rows = Math.Max(1, s[6]), n = Math.Max(1, s[8]), tokens = Math.Max(1, s[5]), groups = Math.Max(1, s[10]);
        var m = new Dictionary<string, double>
        {
            ["reward"] = s[7] / n,
            [$"rewards/{reward.Name}/mean"] = s[7] / n,
            ["completions/mean_length"] = s[12] / n,
            ["completions/clipped_ratio"] = s[13] / n,
        };
        if (s[16] == 0) return m; // evaluation: rewards of greedy completions only
        m[MetricNames.Loss] = s[0] / rows;
        m["reward_std"] = s[9] / groups;
        m["frac_reward_zero_std"] = s[11] / groups;
        m["entropy"] = s[2] / tokens;
        m["clip_ratio/low_mean"] = s[3] / tokens;
        m["clip_ratio/high_mean"] = s[4] / tokens;
        m["clip_ratio/region_mean"] = (s[3] + s[4]) / tokens;
        if (hasReference) { m["kl"] = s[1] / tokens; m["beta"] = block?.Beta ?? beta; }
        if (Comparable && s[14] > 0) m["sampling/logprob_diff"] = s[17] / tokens; // measured at a block's first update
        if (valueHead is not null)
        {
            m["policy_loss"] = s[0] / rows;
            m["value_loss"] = s[18] / rows;
            m["explained_variance"] = s[19] / rows;
        }
        m["timing/generate"] = s[14];
        m["timing/reward"] = s[15];
        return m;
    }

    /// <summary>The step's samples go to the samples table; early warnings, each once a run, go to the events.</summary>
    public void AfterStep(int completedStep, IReadOnlyDictionary<string, double> metrics, ITrainingReporter reporter)
    {
        if (samples.Count > 0) { reporter.Samples(completedStep, [.. samples]); samples.Clear(); }
        firstEntropy ??= metrics.GetValueOrDefault("entropy");
        void Warn(string kind, string message)
        {
            if (warned.Add(kind)) reporter.Event("warn", message, new Dictionary<string, object> { ["warning"] = kind, ["step"] = completedStep });
        }
        if (metrics.TryGetValue("kl", out var kl) && kl > c.KlWarning)
            Warn("kl", $"KL to the reference is {kl:G3} per token at step {completedStep}, above kl_warning {c.KlWarning:G3}: the policy is drifting; lower the learning rate or raise beta");
        if (metrics.TryGetValue("entropy", out var h) && firstEntropy is > 0 && h < c.EntropyCollapse * firstEntropy)
            Warn("entropy", $"Entropy collapsed to {h:G3} at step {completedStep}, below {c.EntropyCollapse:P0} of its start ({firstEntropy:G3}): samples are becoming deterministic");
        if (metrics.TryGetValue("sampling/logprob_diff", out var d) && d > c.LogprobMismatchTolerance)
            Warn("logprob_mismatch", $"The trainer's log-probs of the sampled tokens differ from the sampler's by {d:G3} on average at step {completedStep} (tolerance {c.LogprobMismatchTolerance:G3})");
    }

    /// <summary>
    /// What a resume needs beyond weights and optimizer state: the first step's entropy (the collapse warning compares
    /// with it), PPO's value head, and the current block of rollouts when the checkpoint falls inside one.
    /// </summary>
    public System.Text.Json.Nodes.JsonObject? SaveState()
    {
        var state = new System.Text.Json.Nodes.JsonObject();
        if (firstEntropy is double e) state["first_entropy"] = e;
        if (c.KlTarget is not null) state["beta"] = beta; // the adaptive KL controller's coefficient
        if (valueHead is not null)
            state["value_head"] = System.Text.Json.JsonSerializer.SerializeToNode(new[] { Host(valueHead.weight!), Host(valueHead.bias!) });
        if (block is not null && step + 1 < block.FirstStep + c.UpdatesPerBatch) // the next step still trains on this block
            state["block"] = System.Text.Json.JsonSerializer.SerializeToNode(block);
        return state.Count == 0 ? null : state;
    }

    public void LoadState(System.Text.Json.Nodes.JsonObject? state)
    {
        if (state is null) return;
        firstEntropy = state["first_entropy"]?.GetValue<double>() ?? firstEntropy;
        beta = state["beta"]?.GetValue<double>() ?? beta;
        if (valueHead is not null && state["value_head"]?.Deserialize<float[][]>() is { } vh)
            using (no_grad())
            {
                valueHead.weight!.copy_(tensor(vh[0], valueHead.weight!.shape, device: valueHead.weight!.device));
                valueHead.bias!.copy_(tensor(vh[1], valueHead.bias!.shape, device: valueHead.bias!.device));
            }
        block = state["block"]?.Deserialize<RolloutBlock>();
    }

    public string StartMessage(int totalSteps) =>
        $"Training {c.GetType().Name.Replace("Config", "")}: {train.Count} prompts, {c.NumGenerations} completions each, {totalSteps} steps of {c.BatchSize} prompts, reward {reward.Name}";

    public void Dispose() { policy.Dispose(); valueHead?.Dispose(); }
}

/// <summary>Runs an online RL job (grpo, rloo, reinforce_pp, remax): prompt rows, a grader on their fields or a reward model, and a fine-tuned model at the end.</summary>
public sealed class OnlineRlRunner(string method) : Methods.IMethodRunner
{
    public string Method => method;
    public bool Resumable => true;

    public Methods.MethodOutcome Run(Methods.MethodContext ctx, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = ctx.ConfigAs<OnlineRlConfig>();
        using IRewardSource source = c.ParsedGrader() is { } g ? new GraderSource(ctx.Bind(g))
            : RewardEnsembleSource.Load(ctx.Model(c.RewardModel!), 0, 64, ctx.Device);
        var policy = ctx.Model(ctx.Job.Model);
        var chat = policy.ChatFormat();
        var validation = ctx.ValidationRows(p => JsonlRows.LoadPrompts(p, chat));
        if (c is ReinforcementConfig { EvalSamples: int n }) validation = validation?.Take(n).ToList();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(policy, ctx.Rows(ctx.Job.TrainingFile, p => JsonlRows.LoadPrompts(p, chat)),
            validation, c, ctx.CheckpointRoot, ctx.ResumeFrom, source, ctx.Device), reporter, ct);
        return new Methods.MethodOutcome(result, result.LastCheckpoint);
    }
}
