using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Evaluation;
using AlignHub.Training.Generation;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Rewards;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// What an online RL run needs: the starting model, prompt rows (with the fields graders read), the config, the
/// reward source (null only for methods that need none: distillation) and, for distillation, the teacher.
/// </summary>
public sealed record OnlineRlRun(
    ModelSource Model,
    IReadOnlyList<GenerationPrompt> Train,
    IReadOnlyList<GenerationPrompt>? Validation,
    OnlineRlConfig Config,
    string CheckpointRoot,
    string? ResumeFrom,
    IRewardSource? Reward,
    Device? Device = null,
    ModelSource? Teacher = null,
    IRewardSource? Gold = null);

/// <summary>Sampled, scored completions of some prompts (prompt-major, K each), with each prompt's greedy completion's reward where the method asks for one.</summary>
/// <param name="Timing">Seconds spent sampling and scoring (null: not measured apart; the caller times the whole as sampling).</param>
public sealed record ScoredRollouts(List<Rollout> Rollouts, double[] Rewards, double[]? GreedyRewards = null, (double Generate, double Reward)? Timing = null);

/// <summary>Builds the models of an online RL run and runs its <see cref="OnlineRlMethod"/> on the <see cref="TrainingEngine"/>.</summary>
public static class OnlineRlTrainer
{
    public static TrainingResult Train(OnlineRlRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        var needs = RlStrategies.For(c).Needs;
        var tok = run.Model.CreateTokenizer();
        int maxPos = run.Model.Architecture.MaxPositions;
        if (c.MaxCompletionLength >= maxPos) throw new InvalidDataException($"max_completion_length must be below the model's context length {maxPos}");
        var encoder = new PromptEncoder(tok, Math.Clamp(c.MaxPromptLength ?? maxPos - c.MaxCompletionLength, 1, maxPos - 1));
        var device = run.Device ?? CPU;
        if (needs.Teacher && run.Teacher is null) throw new InvalidDataException("this method needs a teacher model");
        if (run.Teacher is { } t) RequireSameTokenizer(run.Model, t, run.Train);
        torch.manual_seed(c.Seed);
        var lora = LoraSettings.From(c, run.Model.Architecture);
        var policy = run.Model.CreateModel(device, lora, c.Seed, Dtypes.Resolve(c.TorchDtype, device, run.Model, frozen: lora is not null));
        CausalLM? reference = null, teacher = null;
        try
        {
            // With LoRA the reference is the policy's base, its adapters switched off: no second copy of the weights.
            if (needs.Reference && lora is null)
            {
                torch.manual_seed(c.Seed); // the policy's own start, for random-init models too
                reference = run.Model.CreateModel(device);
                reference.eval();
            }
            if (needs.Teacher)
            {
                teacher = run.Teacher!.CreateModel(device);
                teacher.eval();
            }
            using var method = new OnlineRlMethod(policy, reference, teacher, tok, run.Train, run.Validation ?? [], encoder, run.Reward, c, gold: run.Gold);
            return TrainingEngine.Run(method, new EngineRun(run.Model, c, run.CheckpointRoot, run.ResumeFrom), reporter, ct);
        }
        finally { reference?.Dispose(); teacher?.Dispose(); }
    }

    /// <summary>
    /// A teacher's log-probs are compared token by token with the student's, so both must read text as the same ids:
    /// the same vocabulary size, special ids, and encodings of a probe text and of the first training prompts.
    /// </summary>
    public static void RequireSameTokenizer(ModelSource student, ModelSource teacher, IReadOnlyList<GenerationPrompt> prompts)
    {
        var (s, t) = (student.CreateTokenizer(), teacher.CreateTokenizer());
        string? Differs()
        {
            if (student.Architecture.VocabSize != teacher.Architecture.VocabSize) return $"vocabulary {teacher.Architecture.VocabSize} vs {student.Architecture.VocabSize}";
            if (s.BosId != t.BosId || s.EosId != t.EosId) return $"special ids (bos {t.BosId}, eos {t.EosId} vs bos {s.BosId}, eos {s.EosId})";
            foreach (var text in prompts.Take(16).Select(p => p.Text).Prepend("Hello, world! 12+34= naïve café\n\t  ok"))
                if (!s.Encode(text).SequenceEqual(t.Encode(text))) return $"the encodings of \"{(text.Length > 40 ? text[..40] + "..." : text)}\"";
            return null;
        }
        if (Differs() is { } why) throw new InvalidDataException($"the teacher's tokenizer differs from the student's ({why}): distillation compares log-probs of the same tokens");
    }
}

/// <summary>
/// A batch of rollouts and what was computed from it, once, over the whole batch: the block that trains the next
/// <see cref="TrainingConfig.UpdatesPerBatch"/> steps. Per-token values are flattened in the layout of
/// <see cref="Rollouts.ToBatch"/> ([N, Width]); everything is host data, so a checkpoint inside a block keeps it.
/// </summary>
public sealed class RolloutBlock
{
    public required List<Rollout> Rollouts { get; init; }
    /// <summary>Rewards as trained (overlong shaping applied).</summary>
    public required double[] Rewards { get; init; }
    public double[]? GreedyRewards { get; init; }
    /// <summary>The sampling step's host statistics in the run's <see cref="StatLayout"/> order.</summary>
    public required double[] Host { get; init; }
    public int FirstStep { get; init; }
    /// <summary>Dynamic sampling found no group with a reward signal: the block's steps take no update.</summary>
    public bool Skipped { get; init; }
    /// <summary>The KL coefficient this block trains with (the adaptive controller moves it between blocks).</summary>
    public double Beta { get; set; }
    public long Width { get; set; }
    public float[]? OldLogps { get; set; }
    public float[]? RefLogps { get; set; }
    public float[]? OldValues { get; set; }
    public float[] Advantages { get; set; } = [];
    /// <summary>One advantage per completion rather than per token.</summary>
    public bool AdvantagesPerSequence { get; set; }
    public float[]? Returns { get; set; }
    /// <summary>Per completion: 1 carries loss, 0 does not.</summary>
    public float[] Weights { get; set; } = [];
    /// <summary>What the block's first step tells the events (dynamic sampling's outcome); null: nothing.</summary>
    public string? Notice { get; init; }
}

/// <summary>
/// The shared part of every online RL method on the <see cref="TrainingEngine"/>; a step's rows are prompts and the
/// method's <see cref="IRlStrategy"/> is the only thing that differs between methods. At the first step of a block:
/// sample <c>num_generations</c> completions of each prompt (<see cref="Rollouts.Sample"/>, seeded by (seed, step,
/// prompt, sample), so a resumed run samples what the uninterrupted one did), score them (overlong shaping; DAPO's
/// dynamic sampling refills the batch), compute under no_grad the log-probs the strategy needs over the whole batch
/// (pi_old and its values in eval mode, the reference, the teacher), and the strategy's advantages over the whole
/// batch. Each step of the block then trains its completions (all of them, or PPO's minibatch) as
/// gradient_accumulation_steps micro-batches whose losses are normalised by the whole update's counts, so the
/// step's loss and gradient do not depend on how it was split. pi_old is the sampling policy: with one update per
/// batch and no stored log-probs, the policy's own detached log-probs (ratio 1, gradient A grad log pi), as TRL does.
/// Evaluation: the mean reward of greedy completions of the validation prompts (<c>eval/reward</c>).
/// </summary>
public sealed class OnlineRlMethod : ITrainingMethod, IDisposable
{
    // Statistics every method shares; the strategy's follow, then the host-side ones of a block.
    const string Loss = "loss", KlSum = "kl_sum", EntropySum = "entropy_sum", TokenCount = "tokens", LogprobDiffSum = "logprob_diff_sum";
    const string Prompts = "prompts", RewardSum = "reward_sum", SourceRewardSum = "source_reward_sum", Completions = "completions",
        GroupStdSum = "group_std_sum", Groups = "groups", ZeroStdGroups = "zero_std_groups", LengthSum = "length_sum", Truncated = "truncated",
        TimingGenerate = "timing_generate", TimingReward = "timing_reward", Training = "training", FirstUpdate = "first_update",
        OverlongSum = "overlong_penalty_sum", ExtraRounds = "extra_rounds", SampledCompletions = "sampled_completions", Skipped = "skipped",
        GoldSum = "gold_sum", TopMassSum = "top10_mass_sum", TopEntropySum = "top10_entropy_sum";

    readonly CausalLM policy;
    readonly CausalLM? reference, teacher;
    readonly Linear? valueHead; // values from the policy's last hidden states
    readonly ITokenizer tok;
    readonly IReadOnlyList<GenerationPrompt> train, valid;
    readonly List<int[]> trainIds, validIds;
    readonly IRewardSource? reward, gold;
    readonly OnlineRlConfig c;
    GoldProxyMonitor goldMonitor;
    readonly IRlStrategy strategy;
    readonly RlNeeds needs;
    readonly StatLayout layout;
    readonly Func<IReadOnlyList<int>, int, ScoredRollouts> sampleAndScore;
    readonly bool hasReference, policyPass;
    readonly Func<Parameter, double> lrScale = _ => 1.0;
    int step, microPrompts = 1;
    long stepTokens;
    RolloutBlock? block;
    StepTensors? current;
    readonly List<SampleRecord> samples = [];
    double? firstEntropy;
    double beta; // the KL coefficient: c.Beta, steered toward kl_target between blocks when that is set
    readonly HashSet<string> warned = [];
    string? notice;
    bool Comparable => c.TopK is null && c.TopP >= 1 && (needs.TemperatureScaledLogProbs || c.Temperature == 1); // sampler and trainer use one distribution

    /// <param name="sampler">Sampled and scored completions of a batch's prompts at a step (null: sample from the policy and score with <paramref name="reward"/>); tests give fixed rollouts.</param>
    public OnlineRlMethod(CausalLM policy, CausalLM? reference, CausalLM? teacher, ITokenizer tok, IReadOnlyList<GenerationPrompt> train,
        IReadOnlyList<GenerationPrompt> valid, PromptEncoder encoder, IRewardSource? reward, OnlineRlConfig c,
        Func<IReadOnlyList<int>, int, ScoredRollouts>? sampler = null, IRewardSource? gold = null)
    {
        (this.policy, this.reference, this.teacher, this.tok, this.train, this.valid, this.reward, this.c) = (policy, reference, teacher, tok, train, valid, reward, c);
        this.gold = gold;
        goldMonitor = new GoldProxyMonitor { Drop = c.GoldDropWarning };
        strategy = RlStrategies.For(c);
        needs = strategy.Needs;
        if (reward is null && sampler is null && c.RequiresRewardSource) throw new InvalidDataException("a reward source is required: a grader or a reward_model");
        trainIds = train.Select(p => encoder.Encode(p.Text)).ToList();
        validIds = valid.Select(p => encoder.Encode(p.Text)).ToList();
        if (needs.ValueHead)
        {
            // Zero-initialised: values start at 0 and need no random numbers.
            valueHead = Devices.OnCpu(() => nn.Linear(policy.Architecture.HiddenSize, 1));
            using (no_grad()) { valueHead.weight!.zero_(); valueHead.bias!.zero_(); }
            valueHead.to(policy.Device);
            if (needs.ValueLearningRate is double vlr)
            {
                var head = valueHead.parameters().ToHashSet();
                lrScale = p => head.Contains(p) ? vlr / c.PeakLearningRate : 1.0;
            }
        }
        Parameters = [.. Lora.Trainable(policy), .. valueHead?.parameters() ?? []];
        hasReference = needs.Reference && (reference is not null || Lora.IsAdapted(policy));
        // pi_old's own pass at sampling time: when the strategy reads it, when the batch trains more than once (pi_old
        // must be the sampling policy on the later updates), or when the KL controller measures the batch's KL.
        policyPass = needs.PolicyLogProbs || needs.ValueHead || c.UpdatesPerBatch > 1 || (c.KlTarget is not null && hasReference);
        beta = c.Beta;
        sampleAndScore = sampler ?? SampleAndScore;
        layout = new StatLayout([Loss, KlSum, EntropySum, TokenCount, LogprobDiffSum, TopMassSum, TopEntropySum, GoldSum, .. strategy.StatNames,
            Prompts, RewardSum, SourceRewardSum, Completions, GroupStdSum, Groups, ZeroStdGroups, LengthSum, Truncated,
            TimingGenerate, TimingReward, Training, FirstUpdate, OverlongSum, ExtraRounds, SampledCompletions, Skipped]);
    }

    /// <summary>The value head's parameters train at value_learning_rate / the policy's peak rate, on the same schedule.</summary>
    public double LearningRateScale(Parameter p) => lrScale(p);

    public CausalLM Model => policy;
    public IReadOnlyList<Parameter> Parameters { get; }
    public int TrainRows => train.Count;
    public int ValidRows => reward is null ? 0 : valid.Count;
    public IReadOnlyList<string> StatNames => layout.Names;
    /// <summary>The value head (PPO), for tests and the checkpoint's state.</summary>
    public Linear? ValueHead => valueHead;

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

    double[] Score(IReadOnlyList<GenerationPrompt> data, List<Rollout> rs) => reward is null ? new double[rs.Count] : ScoreWith(reward, data, rs);

    static double[] ScoreWith(IRewardSource source, IReadOnlyList<GenerationPrompt> data, List<Rollout> rs) =>
        source.Score(rs.Select(r => new RewardInput(data[r.PromptIndex].Text, r.Completion.Text, data[r.PromptIndex].Row)).ToList());

    /// <summary>The default sampler: K completions of each prompt from the policy (and ReMax's greedy ones), scored by the reward source.</summary>
    ScoredRollouts SampleAndScore(IReadOnlyList<int> prompts, int atStep)
    {
        var clock = Stopwatch.StartNew();
        var ids = prompts.Select(i => trainIds[i]).ToList();
        var rollouts = Rollouts.Sample(policy, tok, ids, prompts, c.NumGenerations, Sampling, c.Seed, atStep, microPrompts * c.NumGenerations,
            needs.MixtureCoef > 0 ? (reference ?? throw new InvalidOperationException("the geometric mixture needs a reference model"), needs.MixtureCoef, k => k % 2 == 1) : null);
        var greedy = needs.GreedyBaseline ? Rollouts.Sample(policy, tok, ids, prompts, 1, Sampling with { Temperature = 0 }, c.Seed, atStep, microPrompts) : null;
        double generate = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var rewards = Score(train, rollouts);
        var greedyRewards = greedy is null ? null : Score(train, greedy);
        return new ScoredRollouts(rollouts, rewards, greedyRewards, (generate, clock.Elapsed.TotalSeconds));
    }

    // ---- the start of a block: sampling, scoring, dynamic sampling, then the whole batch's log-probs and advantages ----

    RolloutBlock NewBlock(IReadOnlyList<int> prompts)
    {
        int k = c.NumGenerations, wanted = prompts.Count;
        var host = new double[layout.Names.Count];
        var kept = new List<(List<Rollout> Group, double[] Rewards, double Raw, double? Greedy)>();
        var used = new HashSet<int>();
        IEnumerator<int>? fillers = null;
        int rounds = 0, sampled = 0;
        var next = prompts.ToList();
        while (next.Count > 0)
        {
            rounds++;
            foreach (var p in next) used.Add(p);
            var clock = Stopwatch.StartNew();
            var scored = sampleAndScore(next, step);
            var (tGenerate, tReward) = scored.Timing ?? (clock.Elapsed.TotalSeconds, 0);
            host[layout[TimingGenerate]] += tGenerate;
            host[layout[TimingReward]] += tReward;
            sampled += scored.Rollouts.Count;
            for (int g = 0; g < next.Count; g++)
            {
                var group = scored.Rollouts.GetRange(g * k, k);
                var raw = scored.Rewards[(g * k)..((g + 1) * k)];
                var shaped = raw.Select((r, i) => r + Overlong(group[i])).ToArray();
                if (c.DynamicSampling && shaped.Max() - shaped.Min() < 1e-8) continue; // no signal: DAPO drops the group
                kept.Add((group, shaped, raw.Sum(), scored.GreedyRewards?[g]));
            }
            if (!c.DynamicSampling || kept.Count >= wanted || rounds >= c.MaxNumGenBatches) break;
            // More prompts, from the others of the file in an order fixed by (seed, step), never one twice in a step: as many as
            // the share of groups kept so far says will fill the batch (a whole batch while none was kept; verl always samples
            // a whole generation batch), so few completions are sampled only to be cut; any surplus is cut after the loop.
            fillers ??= TrainingEngine.EpochOrder(train.Count, unchecked(c.Seed * 31 + 7), step).Where(i => !used.Contains(i)).GetEnumerator();
            int missing = wanted - kept.Count;
            int ask = kept.Count == 0 ? wanted : Math.Min(wanted, (int)Math.Ceiling(missing * (double)used.Count / kept.Count));
            next = [];
            while (next.Count < ask && fillers.MoveNext()) next.Add(fillers.Current);
        }
        if (kept.Count > wanted) kept.RemoveRange(wanted, kept.Count - wanted);

        var rollouts = kept.SelectMany(g => g.Group).ToList();
        var rewards = kept.SelectMany(g => g.Rewards).ToArray();
        double StdOf(double[] g) { double m = g.Average(); return g.Length < 2 ? 0 : Math.Sqrt(g.Sum(x => (x - m) * (x - m)) / (g.Length - 1)); }
        void Set(string name, double v) => host[layout[name]] = v;
        Set(Prompts, kept.Count);
        Set(RewardSum, rewards.Sum());
        Set(SourceRewardSum, kept.Sum(g => g.Raw));
        Set(Completions, rewards.Length);
        Set(GroupStdSum, kept.Sum(g => StdOf(g.Rewards)));
        Set(Groups, kept.Count);
        Set(ZeroStdGroups, kept.Count(g => StdOf(g.Rewards) < 1e-8));
        Set(LengthSum, rollouts.Sum(r => r.Completion.Tokens.Length));
        Set(Truncated, rollouts.Count(r => r.Completion.FinishReason == "length"));
        Set(OverlongSum, rollouts.Sum(Overlong));
        Set(ExtraRounds, rounds - 1);
        if (gold is not null && rollouts.Count > 0) Set(GoldSum, ScoreWith(gold, train, rollouts).Sum());
        Set(SampledCompletions, sampled);
        Set(Training, 1);
        string? message = null;
        if (kept.Count == 0) message = $"Step {step + 1} skipped: dynamic sampling found no group with unequal rewards in {rounds} sampling round(s) of {sampled} completions";
        else if (c.DynamicSampling && kept.Count < wanted)
            message = $"Step {step + 1} trains {kept.Count} of {wanted} groups: dynamic sampling reached max_num_gen_batches ({c.MaxNumGenBatches}) rounds";
        var b = new RolloutBlock
        {
            Rollouts = rollouts, Rewards = rewards, Host = host, FirstStep = step, Beta = beta, Skipped = kept.Count == 0, Notice = message,
            GreedyRewards = needs.GreedyBaseline ? kept.Select(g => g.Greedy ?? 0).ToArray() : null,
        };
        if (!b.Skipped) Prepare(b);
        return b;
    }

    /// <summary>DAPO's overlong penalty of a completion (0 when overlong shaping is off).</summary>
    double Overlong(Rollout r) => c.OverlongBufferLen is int buffer
        ? Advantages.OverlongPenalty(r.Completion.Tokens.Length, c.MaxCompletionLength, buffer, c.OverlongPenaltyFactor) : 0;

    /// <summary>The completion mask of a block's batch: truncated completions masked out when mask_truncated_completions.</summary>
    Tensor CompletionMask(RolloutBatch batch, IReadOnlyList<Rollout> all)
    {
        var mask = batch.Sequences.CompletionMask[.., 1..].to_type(ScalarType.Float32);
        if (!c.MaskTruncatedCompletions) return mask;
        using var keep = tensor(all.Select(r => r.Completion.FinishReason == "length" ? 0f : 1f).ToArray(), device: mask.device);
        using (mask) return mask * keep.unsqueeze(1);
    }

    Tensor PolicyLogits(Tensor hidden) => needs.TemperatureScaledLogProbs ? policy.LmHead(hidden) / c.Temperature : policy.LmHead(hidden);

    /// <summary>The reference's logits: the reference model, or a LoRA policy with its adapters switched off (under no_grad).</summary>
    Tensor ReferenceLogits(Tensor ids)
    {
        var logits = reference is not null ? reference.forward(ids) : Disabled(ids);
        return needs.TemperatureScaledLogProbs ? logits / c.Temperature : logits;
        Tensor Disabled(Tensor x) { using (Lora.Disabled(policy)) return policy.forward(x); }
    }

    /// <summary>Under no_grad, over the whole batch in micro-batch chunks: pi_old's log-probs and values (eval mode), the reference's, the teacher's; then the strategy's targets.</summary>
    void Prepare(RolloutBlock b)
    {
        var device = policy.Device;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var batch = Rollouts.ToBatch(b.Rollouts, tok.PadId, device);
        var ids = batch.Sequences.InputIds;
        var mask = CompletionMask(batch, b.Rollouts);
        int n = b.Rollouts.Count, chunk = Math.Max(1, microPrompts * c.NumGenerations);
        List<Tensor> old = [], values = [], refs = [], teach = [];
        SetTraining(false);
        try
        {
            for (int i = 0; i < n; i += chunk)
            {
                var x = ids[i..Math.Min(n, i + chunk)];
                if (policyPass)
                {
                    var hidden = policy.Hidden(x, null, null);
                    old.Add(SupervisedLoss.NextTokenLogProbs(PolicyLogits(hidden), x));
                    if (valueHead is not null) values.Add(valueHead.forward(hidden[.., ..^1, ..].to_type(ScalarType.Float32)).squeeze(-1));
                }
                if (hasReference) refs.Add(SupervisedLoss.NextTokenLogProbs(ReferenceLogits(x), x));
                if (teacher is not null) teach.Add(SupervisedLoss.NextTokenLogProbs(teacher.forward(x), x));
            }
        }
        finally { SetTraining(true); }
        // Log-probs stay unmasked (a padding position's may be very negative: exp of it times a zero mask would be NaN); values are 0 off the mask.
        Tensor? Cat(List<Tensor> parts) => parts.Count == 0 ? null : cat(parts);
        var oldAll = Cat(old);
        var valuesAll = values.Count == 0 ? null : cat(values) * mask;
        var refAll = Cat(refs);
        var view = new RolloutTensors
        {
            Rewards = tensor(b.Rewards, device: device).to_type(ScalarType.Float32), RewardValues = b.Rewards, Mask = mask, K = c.NumGenerations, Beta = b.Beta,
            OldLogps = oldAll, RefLogps = refAll, OldValues = valuesAll, TeacherLogps = Cat(teach),
            GreedyRewards = b.GreedyRewards is null ? null : tensor(b.GreedyRewards, device: device).to_type(ScalarType.Float32),
        };
        var targets = strategy.Targets(view);
        // Adaptive KL control between blocks, from this batch's KL at sampling time; the block keeps the beta it started with.
        if (c.KlTarget is double target && oldAll is not null && refAll is not null)
            beta = KlControl.Adaptive(beta, view.SequenceKl().mean().item<float>(), target, c.KlHorizon, n);
        b.Width = mask.shape[1];
        b.OldLogps = oldAll is null ? null : Host(oldAll);
        b.RefLogps = refAll is null ? null : Host(refAll);
        b.OldValues = valuesAll is null ? null : Host(valuesAll);
        b.Advantages = Host(targets.Advantages);
        b.AdvantagesPerSequence = targets.Advantages.dim() == 1;
        b.Returns = targets.Returns is null ? null : Host(targets.Returns);
        b.Weights = targets.Weights is null ? Enumerable.Repeat(1f, n).ToArray() : Host(targets.Weights);
        LogSamples(b, targets.Advantages, mask);
    }

    void LogSamples(RolloutBlock b, Tensor advantages, Tensor mask)
    {
        bool logThisBlock = Enumerable.Range(b.FirstStep, c.UpdatesPerBatch).Any(s => (s + 1) % c.LogCompletionsSteps == 0);
        if (!logThisBlock || samples.Count >= c.NumCompletionsToLog) return;
        using var perSequence = advantages.dim() == 1 ? advantages.detach() : (advantages * mask).sum(1) / mask.sum(1).clamp_min(1);
        var adv = perSequence.to_type(ScalarType.Float64).cpu().data<double>().ToArray();
        string name = reward?.Name ?? "reward";
        for (int i = 0; i < b.Rollouts.Count && samples.Count < c.NumCompletionsToLog; i++)
        {
            var r = b.Rollouts[i];
            samples.Add(new SampleRecord(train[r.PromptIndex].Text, r.Completion.Text, b.Rewards[i],
                new Dictionary<string, double> { [name] = b.Rewards[i] - Overlong(r) }, adv[i], r.Completion.FinishReason));
        }
    }

    static float[] Host(Tensor t) => t.detach().to_type(ScalarType.Float32).cpu().data<float>().ToArray();

    // ---- a step: which completions it trains, split into micro-batches ----

    /// <summary>The block's batch on the device for one step (disposed with the step's scope).</summary>
    sealed record StepTensors(RolloutBatch Batch, Tensor Mask, Tensor Weights, Tensor Advantages, Tensor? OldLogps, Tensor? RefLogps,
        Tensor? OldValues, Tensor? Returns, LossNormalizer Norm, bool First);

    public IReadOnlyList<MicroBatch> MicroBatches(IReadOnlyList<int> batch, int accumulation, int microRows)
    {
        microPrompts = microRows;
        int updates = c.UpdatesPerBatch;
        int first = step - step % updates;
        if (block is null || block.FirstStep != first)
        {
            block = NewBlock(batch);
            notice = block.Notice;
        }
        current = null;
        var b = block;
        int update = step - b.FirstStep;
        var rows = UpdateRows(b, update);
        stepTokens = rows.Sum(i => (long)b.Rollouts[i].PromptIds.Length + b.Rollouts[i].Completion.Tokens.Length);
        if (b.Skipped || rows.Length == 0) return [];

        var device = policy.Device;
        var sequences = Rollouts.ToBatch(b.Rollouts, tok.PadId, device);
        long n = b.Rollouts.Count, width = b.Width;
        Tensor Stored(float[] a, bool perSequence = false) => perSequence ? tensor(a, [n], device: device) : tensor(a, [n, width], device: device);
        var mask = CompletionMask(sequences, b.Rollouts);
        var weights = Stored(b.Weights, true);

        // Micro-batches: consecutive completions of the update, whole prompts when the strategy pairs them.
        int unit = needs.WholeGroups ? c.NumGenerations : 1;
        var units = rows.Chunk(unit).ToList();
        int parts = Math.Min(Math.Max(1, accumulation), units.Count), per = (units.Count + parts - 1) / parts;
        var chunks = units.Chunk(per).Select(u => (IReadOnlyList<int>)u.SelectMany(x => x).ToList()).ToList();
        using var rowIndex = tensor(rows.Select(i => (long)i).ToArray(), device: device);
        using var updateWeights = weights.index_select(0, rowIndex);
        using var updateTokens = (mask.index_select(0, rowIndex) * updateWeights.unsqueeze(1)).sum();
        var norm = new LossNormalizer(updateWeights.sum().item<float>(), updateTokens.item<float>(), c.MaxCompletionLength, chunks.Count);
        current = new StepTensors(sequences, mask, weights, Stored(b.Advantages, b.AdvantagesPerSequence),
            b.OldLogps is null ? null : Stored(b.OldLogps), b.RefLogps is null ? null : Stored(b.RefLogps),
            b.OldValues is null ? null : Stored(b.OldValues), b.Returns is null ? null : Stored(b.Returns), norm, update == 0);
        return chunks.Select(x => new MicroBatch(x, 1.0)).ToList();
    }

    /// <summary>
    /// The completions update <paramref name="update"/> of a block trains: all of them, or with
    /// <see cref="OnlineRlConfig.MiniBatchCount"/> shares per pass, share update % parts of pass update / parts, the
    /// pass's order shuffled by (seed, the block's first step, pass).
    /// </summary>
    int[] UpdateRows(RolloutBlock b, int update)
    {
        int n = b.Rollouts.Count, parts = c.MiniBatchCount;
        if (parts <= 1) return Enumerable.Range(0, n).ToArray();
        int pass = update / parts, j = update % parts;
        var order = Enumerable.Range(0, n).ToArray();
        new Random(unchecked((int)(c.Seed * 1_000_003L + b.FirstStep * 8191L + pass))).Shuffle(order);
        return order[(j * n / parts)..((j + 1) * n / parts)];
    }

    public double[]? StepStats()
    {
        if (block is null) return null;
        var host = (double[])block.Host.Clone();
        bool first = step == block.FirstStep;
        if (!first) host[layout[TimingGenerate]] = host[layout[TimingReward]] = 0; // sampling time belongs to the block's first step
        host[layout[FirstUpdate]] = first ? 1 : 0;
        host[layout[Skipped]] = block.Skipped ? 1 : 0;
        return host;
    }

    // ---- the forward of a micro-batch ----

    public (Tensor Loss, Tensor Stats) Forward(IReadOnlyList<int> rows, bool isValid)
    {
        if (isValid) return (zeros(1, device: policy.Device).sum(), Evaluate(rows).ToVector(policy.Device));
        var s = current ?? throw new InvalidOperationException("Forward before MicroBatches");
        var device = policy.Device;
        using var idx = tensor(rows.Select(i => (long)i).ToArray(), device: device);
        Tensor Pick(Tensor t) => t.index_select(0, idx);
        var ids = Pick(s.Batch.Sequences.InputIds);
        var completion = Pick(s.Mask);
        var weights = Pick(s.Weights);
        var mask = completion * weights.unsqueeze(1);
        var hidden = policy.Hidden(ids, null, null);
        var logits = PolicyLogits(hidden);
        var logps = SupervisedLoss.NextTokenLogProbs(logits, ids);
        var values = valueHead is null ? null : valueHead.forward(hidden[.., ..^1, ..].to_type(ScalarType.Float32)).squeeze(-1) * completion;
        var micro = new RlMicroBatch
        {
            Logps = logps, Mask = mask, Weights = weights, Advantages = Pick(s.Advantages), Beta = block!.Beta, Norm = s.Norm,
            OldLogps = s.OldLogps is null ? logps.detach() : Pick(s.OldLogps),
            RefLogps = s.RefLogps is null ? null : Pick(s.RefLogps),
            Values = values, OldValues = s.OldValues is null ? null : Pick(s.OldValues), Returns = s.Returns is null ? null : Pick(s.Returns),
        };
        var stats = new StatSink(layout);
        var loss = strategy.Loss(micro, stats);
        using (no_grad())
        {
            stats.Add(Loss, loss);
            stats.Add(TokenCount, completion.sum());
            if (micro.RefLogps is not null) stats.Add(KlSum, (KlEstimators.K3(logps, micro.RefLogps) * completion).sum()); // k3 for every method
            using var logpAll = logits[.., ..^1, ..].log_softmax(-1);
            stats.Add(EntropySum, (-(logpAll.exp() * logpAll).sum(-1) * completion).sum());
            var (mass, topEntropy) = NextTokenDiagnostics.TopK(logpAll, NextTokenDiagnostics.K);
            stats.Add(TopMassSum, (mass * completion).sum());
            stats.Add(TopEntropySum, (topEntropy * completion).sum());
            // The sampler's log-probs of its tokens against the trainer's recomputation of them (one distribution when unfiltered).
            if (s.First) stats.Add(LogprobDiffSum, ((logps - Pick(s.Batch.SamplingLogProbs)).abs() * completion).sum());
        }
        return (loss, stats.ToVector(device));
    }

    /// <summary>Evaluation rows: one greedy completion per validation prompt, scored.</summary>
    StatSink Evaluate(IReadOnlyList<int> rows)
    {
        var clock = Stopwatch.StartNew();
        var rollouts = Rollouts.Sample(policy, tok, rows.Select(i => validIds[i]).ToList(), rows, 1, Sampling with { Temperature = 0 }, c.Seed, 0, rows.Count);
        double tGenerate = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var rewards = Score(valid, rollouts);
        var stats = new StatSink(layout);
        stats.Add(Prompts, rows.Count);
        stats.Add(RewardSum, rewards.Sum());
        stats.Add(SourceRewardSum, rewards.Sum());
        stats.Add(Completions, rewards.Length);
        if (gold is not null) stats.Add(GoldSum, ScoreWith(gold, valid, rollouts).Sum());
        stats.Add(LengthSum, rollouts.Sum(r => r.Completion.Tokens.Length));
        stats.Add(Truncated, rollouts.Count(r => r.Completion.FinishReason == "length"));
        stats.Add(TimingGenerate, tGenerate);
        stats.Add(TimingReward, clock.Elapsed.TotalSeconds);
        return stats;
    }

    public Dictionary<string, double> Metrics(double[] sums)
    {
        var s = new StatSums(layout, sums);
        var m = new Dictionary<string, double>();
        if (reward is not null)
        {
            m["reward"] = s.Mean(RewardSum, Completions);
            m[$"rewards/{reward.Name}/mean"] = s.Mean(SourceRewardSum, Completions);
        }
        if (gold is not null) m["gold/reward"] = s.Mean(GoldSum, Completions);
        m["completions/mean_length"] = s.Mean(LengthSum, Completions);
        m["completions/clipped_ratio"] = s.Mean(Truncated, Completions);
        if (s[Training] == 0) return m; // evaluation: rewards of greedy completions only
        m[MetricNames.Loss] = s[Loss];
        if (reward is not null)
        {
            m["reward_std"] = s.Mean(GroupStdSum, Groups);
            m["frac_reward_zero_std"] = s.Mean(ZeroStdGroups, Groups);
        }
        m["entropy"] = s.Mean(EntropySum, TokenCount);
        m["diagnostics/top10_mass"] = s.Mean(TopMassSum, TokenCount);
        m["diagnostics/top10_entropy"] = s.Mean(TopEntropySum, TokenCount);
        if (hasReference) { m["kl"] = s.Mean(KlSum, TokenCount); m["beta"] = block?.Beta ?? beta; }
        if (Comparable && s[FirstUpdate] > 0 && s[Skipped] == 0) m["sampling/logprob_diff"] = s.Mean(LogprobDiffSum, TokenCount); // measured at a block's first update
        strategy.Metrics(s, m);
        if (c.DynamicSampling)
        {
            m["dynamic_sampling/extra_rounds"] = s[ExtraRounds];
            m["dynamic_sampling/kept_groups"] = s[Groups];
            m["dynamic_sampling/sampled_completions"] = s[SampledCompletions];
            m["dynamic_sampling/skipped"] = s[Skipped];
        }
        if (c.OverlongBufferLen is not null) m["rewards/overlong_penalty/mean"] = s.Mean(OverlongSum, Completions);
        m["timing/generate"] = s[TimingGenerate];
        m["timing/reward"] = s[TimingReward];
        return m;
    }

    /// <summary>The step's samples go to the samples table; early warnings, each once a run, and dynamic sampling's notices go to the events.</summary>
    public void AfterStep(int completedStep, IReadOnlyDictionary<string, double> metrics, ITrainingReporter reporter)
    {
        if (samples.Count > 0) { reporter.Samples(completedStep, [.. samples]); samples.Clear(); }
        if (notice is not null)
        {
            reporter.Event("warn", notice, new Dictionary<string, object> { ["warning"] = "dynamic_sampling", ["step"] = completedStep });
            notice = null;
        }
        if (metrics.TryGetValue("entropy", out var e0) && metrics.GetValueOrDefault("dynamic_sampling/skipped") == 0) firstEntropy ??= e0;
        void Warn(string kind, string message)
        {
            if (warned.Add(kind)) reporter.Event("warn", message, new Dictionary<string, object> { ["warning"] = kind, ["step"] = completedStep });
        }
        if (metrics.TryGetValue("kl", out var kl) && kl > c.KlWarning)
            Warn("kl", $"KL to the reference is {kl:G3} per token at step {completedStep}, above kl_warning {c.KlWarning:G3}: the policy is drifting; lower the learning rate or raise beta");
        if (metrics.TryGetValue("entropy", out var h) && firstEntropy is > 0 && h > 0 && h < c.EntropyCollapse * firstEntropy)
            Warn("entropy", $"Entropy collapsed to {h:G3} at step {completedStep}, below {c.EntropyCollapse:P0} of its start ({firstEntropy:G3}): samples are becoming deterministic");
        if (metrics.TryGetValue("gold/reward", out var g) && metrics.TryGetValue("reward", out var proxy) && goldMonitor.Add(completedStep, proxy, g) is { } over)
            Warn("overoptimisation", over);
        if (metrics.TryGetValue("sampling/logprob_diff", out var d) && d > c.LogprobMismatchTolerance)
            Warn("logprob_mismatch", $"The trainer's log-probs of the sampled tokens differ from the sampler's by {d:G3} on average at step {completedStep} (tolerance {c.LogprobMismatchTolerance:G3})");
    }

    /// <summary>
    /// Self-play's round evaluation, after a block's last update: one new sample of each of the round's prompts (its
    /// own seed stream) against the round's first sample of the prompt (the previous policy's), the oracle asked in
    /// both orders, P(new &gt; old) = (P[new, old] + P[new, old | old shown first]) / 2; the mean over prompts with a normal
    /// 95% interval goes to the step's metrics (<c>round/*</c>) and an event.
    /// </summary>
    public void AfterUpdate(int completedStep, Dictionary<string, double> metrics, ITrainingReporter reporter)
    {
        if (c is not SelfPlayConfig { RoundWinRate: true } || reward is not GroupWinRateSource wr) return;
        if (block is not { Skipped: false } b || completedStep != b.FirstStep + c.UpdatesPerBatch) return;
        var firsts = b.Rollouts.Where(r => r.Sample == 0).ToList();
        if (firsts.Count == 0) return;
        List<Rollout> fresh;
        SetTraining(false);
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            fresh = Rollouts.Sample(policy, tok, firsts.Select(r => r.PromptIds).ToList(), firsts.Select(r => r.PromptIndex).ToList(), 1, Sampling,
                unchecked(c.Seed * 1_000_003L + 17), completedStep, Math.Max(1, microPrompts * c.NumGenerations));
        }
        finally { SetTraining(true); }
        var wins = new double[firsts.Count];
        for (int i = 0; i < firsts.Count; i++)
        {
            var row = train[firsts[i].PromptIndex];
            var input = new RewardInput(row.Text, "", row.Row);
            var newFirst = wr.Oracle.Matrix(input, [fresh[i].Completion.Text, firsts[i].Completion.Text]);
            var oldFirst = wr.Oracle.Matrix(input, [firsts[i].Completion.Text, fresh[i].Completion.Text]);
            wins[i] = (newFirst[0, 1] + oldFirst[1, 0]) / 2;
        }
        double mean = wins.Average();
        double sd = wins.Length < 2 ? 0 : Math.Sqrt(wins.Sum(x => (x - mean) * (x - mean)) / (wins.Length - 1));
        double half = 1.96 * sd / Math.Sqrt(wins.Length);
        int round = completedStep / c.UpdatesPerBatch;
        metrics["round"] = round;
        metrics["round/win_rate"] = mean;
        metrics["round/win_rate_low"] = Math.Max(0, mean - half);
        metrics["round/win_rate_high"] = Math.Min(1, mean + half);
        reporter.Event("info", $"Round {round}: win rate over the previous round {mean:F3} [{Math.Max(0, mean - half):F3}, {Math.Min(1, mean + half):F3}] " +
            $"on its {wins.Length} prompts, {wr.Oracle.Name} asked in both orders",
            new Dictionary<string, object> { ["round"] = round, ["step"] = completedStep, ["win_rate"] = mean, ["low"] = Math.Max(0, mean - half), ["high"] = Math.Min(1, mean + half) });
    }

    /// <summary>
    /// What a resume needs beyond weights and optimizer state: the first step's entropy (the collapse warning compares
    /// with it), the KL controller's beta, the value head, and the current block of rollouts when the checkpoint falls inside one.
    /// </summary>
    public JsonObject? SaveState()
    {
        var state = new JsonObject();
        if (firstEntropy is double e) state["first_entropy"] = e;
        if (c.KlTarget is not null) state["beta"] = beta;
        if (gold is not null) state["gold_monitor"] = JsonSerializer.SerializeToNode(goldMonitor);
        if (valueHead is not null)
            state["value_head"] = JsonSerializer.SerializeToNode(new[] { Host(valueHead.weight!), Host(valueHead.bias!) });
        if (block is not null && step + 1 < block.FirstStep + c.UpdatesPerBatch) // the next step still trains on this block
            state["block"] = JsonSerializer.SerializeToNode(block);
        return state.Count == 0 ? null : state;
    }

    public void LoadState(JsonObject? state)
    {
        if (state is null) return;
        firstEntropy = state["first_entropy"]?.GetValue<double>() ?? firstEntropy;
        beta = state["beta"]?.GetValue<double>() ?? beta;
        if (state["gold_monitor"]?.Deserialize<GoldProxyMonitor>() is { } gm) goldMonitor = gm;
        if (valueHead is not null && state["value_head"]?.Deserialize<float[][]>() is { } vh)
            using (no_grad())
            {
                valueHead.weight!.copy_(tensor(vh[0], valueHead.weight!.shape, device: valueHead.weight!.device));
                valueHead.bias!.copy_(tensor(vh[1], valueHead.bias!.shape, device: valueHead.bias!.device));
            }
        block = state["block"]?.Deserialize<RolloutBlock>();
    }

    public string StartMessage(int totalSteps) =>
        $"Training {c.GetType().Name.Replace("Config", "")}: {train.Count} prompts, {c.NumGenerations} completions each, {totalSteps} steps " +
        $"({c.UpdatesPerBatch} per batch of {c.BatchSize} prompts){(reward is null ? "" : $", reward {reward.Name}")}";

    public void Dispose() { policy.Dispose(); valueHead?.Dispose(); }
}

/// <summary>
/// Runs every online RL job (each method's config derives from <see cref="OnlineRlConfig"/>; its strategy is found by
/// the config's type): prompt rows, a grader on their fields or a reward model (and a teacher for distillation), and a
/// fine-tuned model at the end.
/// </summary>
public sealed class OnlineRlRunner : Methods.IMethodRunner
{
    public Type ConfigType => typeof(OnlineRlConfig);
    public bool Resumable => true;

    public Methods.MethodOutcome Run(Methods.MethodContext ctx, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = ctx.ConfigAs<OnlineRlConfig>();
        IRewardSource? pointwise = ctx.RewardSource(c.ParsedGrader(), c.RewardModel, 64);
        // Self-play methods' rewards are win rates within each group, from a general preference model or the pointwise source through Bradley-Terry.
        using IRewardSource? source = !c.RewardsAreGroupWinRates ? pointwise
            : new GroupWinRateSource(c.PairwiseOracle is { } pm ? PreferenceModelSource.Load(ctx.Model(pm), ctx.Device)
                : new BradleyTerryPreference(pointwise ?? throw new InvalidDataException("a pairwise oracle is required: a preference_model, a grader or a reward_model")),
                c is SelfPlayConfig sp ? sp.WinRateGroupSize : c.NumGenerations);
        var policy = ctx.Model(ctx.Job.Model);
        var chat = policy.ChatFormat();
        // Win rates need a group; the greedy evaluation has one completion per prompt, so self-play methods evaluate outside the run.
        var validation = c.RewardsAreGroupWinRates ? null : ctx.ValidationRows(p => JsonlRows.LoadPrompts(p, chat));
        if (c is ReinforcementConfig { EvalSamples: int n }) validation = validation?.Take(n).ToList();
        var teacher = c.NeedsTeacher && c.ScoringModel is { } t ? ctx.Model(t) : null;
        using IRewardSource? gold = ctx.RewardSource(c.ParsedGoldGrader(), c.GoldRewardModel, 64);
        var result = OnlineRlTrainer.Train(new OnlineRlRun(policy, ctx.Rows(ctx.Job.TrainingFile, p => JsonlRows.LoadPrompts(p, chat)),
            validation, c, ctx.CheckpointRoot, ctx.ResumeFrom, source, ctx.Device, teacher, gold), reporter, ct);
        return new Methods.MethodOutcome(result, result.LastCheckpoint);
    }
}
