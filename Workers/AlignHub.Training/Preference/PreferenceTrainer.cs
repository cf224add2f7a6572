using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Sft;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Preference;

/// <summary>What an offline preference run needs: <c>Method</c> is <c>dpo</c> or <c>reward_model</c>.</summary>
public sealed record PreferenceRun(
    ModelSource Model,
    string Method,
    IReadOnlyList<PreferencePair> Train,
    IReadOnlyList<PreferencePair>? Validation,
    PreferenceConfig Config,
    string CheckpointRoot,
    string? ResumeFrom,
    string ReferenceCachePath,
    IReadOnlyList<UnpairedExample>? UnpairedTrain = null,
    IReadOnlyList<UnpairedExample>? UnpairedValidation = null);

/// <summary>A pair as token ids: [bos] + prompt (kept from its end), and each continuation + [eos].</summary>
public sealed record TokenizedPair(int[] Prompt, int[] Chosen, int[] Rejected, float Margin);

/// <summary>Reference log-probs of every pair (summed and averaged over completion tokens), computed once.</summary>
public sealed record ReferenceLogps(float[] Chosen, float[] Rejected, float[] ChosenMean, float[] RejectedMean);

/// <summary>
/// Offline preference training: DPO and its family (<see cref="PreferenceLosses"/>) or a Bradley-Terry reward model
/// (<see cref="RewardLoss"/>). AdamW, warmup then cosine or linear decay, gradient clipping (the pre-clip norm is
/// reported), gradient accumulation, epochs or max steps, evaluation every <c>eval_steps</c>, checkpoints every
/// <c>save_steps</c>. The data order is a pure function of (seed, epoch) and the learning rate of the step, so a run
/// resumed from a checkpoint (weights, optimizer state, step) continues exactly where it stopped. DPO's reference
/// log-probs are computed once before training, by a reference model that is then released, and cached on disk
/// under a fingerprint of (model, data, tokenisation), so no reference model sits in memory during the updates.
/// Chosen and rejected go through one concatenated forward.
/// </summary>
public static class PreferenceTrainer
{
    public static TokenizedPair Tokenize(PreferencePair p, ITokenizer tok, int maxLength, int maxPrompt)
    {
        var prompt = new[] { tok.BosId }.Concat(tok.Encode(p.Prompt)).ToArray();
        if (prompt.Length > maxPrompt) prompt = prompt[^maxPrompt..];
        int room = Math.Max(1, maxLength - prompt.Length);
        int[] Cont(string text)
        {
            var ids = tok.Encode(text).Append(tok.EosId).ToArray();
            return ids.Length > room ? ids[..room] : ids;
        }
        return new TokenizedPair(prompt, Cont(p.Chosen), Cont(p.Rejected), (float)p.Margin);
    }

    public static int TotalSteps(int pairs, PreferenceConfig c) =>
        (int)Math.Min((long)StepsPerEpoch(pairs, c) * c.NEpochs, c.MaxSteps ?? int.MaxValue);

    static int StepsPerEpoch(int pairs, PreferenceConfig c) => Math.Max(1, (pairs + c.BatchSize - 1) / c.BatchSize);

    /// <summary>Linear warmup, then cosine decay to 10% of the peak or linear decay to 0.</summary>
    public static double LearningRate(int step, int total, int warmup, PreferenceConfig c) => c.LrSchedulerType == "linear"
        ? (step < warmup ? c.PeakLearningRate * (step + 1) / warmup : c.PeakLearningRate * Math.Max(0, total - step) / Math.Max(1, total - warmup))
        : Schedules.WarmupCosine(step, total, warmup, c.PeakLearningRate);

    public static TrainingResult Train(PreferenceRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        if (run.Method == "reward_model" && run.Config.EnsembleSize > 1) return TrainEnsemble(run, reporter, ct);
        var c = run.Config;
        bool rm = run.Method == "reward_model", kto = !rm && c.LossType == "kto";
        var tok = run.Model.CreateTokenizer();
        var arch = run.Model.Architecture;
        int maxLen = Math.Min(c.MaxLength ?? arch.MaxPositions, arch.MaxPositions);
        int maxPrompt = Math.Clamp(c.MaxPromptLength ?? maxLen / 2, 1, maxLen - 1);
        // KTO reads unpaired rows; a paired file gives one desirable and one undesirable row per pair (as TRL does).
        List<TokenizedPair> Prepare(IReadOnlyList<PreferencePair>? pairs, IReadOnlyList<UnpairedExample>? unpaired) => kto
            ? Kto.Rows(unpaired ?? Kto.FromPairs(pairs ?? []), tok, maxLen, maxPrompt)
            : (pairs ?? []).Select(p => Tokenize(p, tok, maxLen, maxPrompt)).ToList();
        var train = Prepare(run.Train, run.UnpairedTrain);
        var valid = run.Validation is null && run.UnpairedValidation is null ? null : Prepare(run.Validation, run.UnpairedValidation);
        if (train.Count == 0) throw new InvalidDataException("the training file has no rows");

        (ReferenceLogps Train, ReferenceLogps? Valid)? reference = null;
        if (!rm && PreferenceLosses.NeedsReference(c.LossType))
            reference = ReferenceCache.LoadOrCompute(run, train, valid, tok.PadId, maxLen, reporter);

        int total = TotalSteps(train.Count, c), perEpoch = StepsPerEpoch(train.Count, c);
        int warmup = (int)Math.Round(c.WarmupRatio * total);
        torch.manual_seed(c.Seed);
        using var rewardModel = rm ? run.Model.CreateRewardModel() : null;
        var policy = rewardModel?.Backbone ?? run.Model.CreateModel();
        using var policyOwner = rm ? null : policy;
        var parameters = rm ? rewardModel!.Parameters().ToList() : policy.parameters().ToList();
        using var optimizer = optim.AdamW(parameters, lr: c.PeakLearningRate, weight_decay: c.WeightDecay);

        // One micro-batch: its mean loss (with the graph) and its statistics.
        Tensor Step(IReadOnlyList<TokenizedPair> data, IReadOnlyList<int> idx, ReferenceLogps? r, BatchStats stats) =>
            rm ? RewardStep(rewardModel!, data, idx, tok.PadId, maxLen, c, stats)
            : kto ? Kto.Step(policy, data, idx, r!, tok.PadId, maxLen, c, stats)
            : DpoStep(policy, data, idx, r, tok.PadId, maxLen, c, stats);

        int step = 0, epochs = 0;
        long tokens = 0;
        string? lastCheckpoint = null;
        if (run.ResumeFrom is not null)
        {
            HfWeights.Load(policy, run.ResumeFrom, rewardModel?.Extra);
            optimizer.load_state_dict(Path.Combine(run.ResumeFrom, Checkpoints.Optimizer));
            var st = Checkpoints.LoadState(run.ResumeFrom);
            (step, epochs, tokens) = (st.Step, st.EpochsCompleted, st.TrainedTokens);
            lastCheckpoint = run.ResumeFrom;
            reporter.Event("info", $"Resumed from checkpoint at step {step}", new Dictionary<string, object> { ["step"] = step });
        }
        else
        {
            reporter.Event("info", $"Training {(rm ? "a reward model" : $"DPO ({c.LossType})")}: {train.Count} {(kto ? "rows" : "pairs")}, {total} steps, batch size {c.BatchSize}",
                new Dictionary<string, object> { ["rows"] = train.Count, ["total_steps"] = total });
        }
        SetTrain(policy, rewardModel, true);

        int[]? order = null; int orderEpoch = -1;
        var clock = Stopwatch.StartNew();
        int stepsThisRun = 0;
        var lastMetrics = new Dictionary<string, double>();
        int micro = Math.Max(1, (c.BatchSize + c.GradientAccumulationSteps - 1) / c.GradientAccumulationSteps);
        long TokensOf(int i) => (long)train[i].Prompt.Length * 2 + train[i].Chosen.Length + train[i].Rejected.Length;
        while (step < total)
        {
            if (reporter.CancelRequested())
            {
                if (reporter.PauseRequested && step > 0)
                    lastCheckpoint = Save(run, policy, rewardModel, optimizer, step, epochs, tokens, total, lastMetrics, reporter);
                return new TrainingResult(TrainingOutcome.Cancelled, step, lastCheckpoint, tokens);
            }
            if (ct.IsCancellationRequested)
            {
                lastCheckpoint = Save(run, policy, rewardModel, optimizer, step, epochs, tokens, total, lastMetrics, reporter);
                return new TrainingResult(TrainingOutcome.Interrupted, step, lastCheckpoint, tokens);
            }
            int epoch = step / perEpoch, inEpoch = step % perEpoch;
            if (epoch != orderEpoch) { order = SftTrainer.EpochOrder(train.Count, c.Seed, epoch); orderEpoch = epoch; }
            var batch = order!.Skip(inEpoch * c.BatchSize).Take(c.BatchSize).ToList();

            var sw = Stopwatch.StartNew();
            double lr = LearningRate(step, total, warmup, c);
            var stats = new BatchStats();
            double gradNorm;
            using (var scope = NewDisposeScope())
            {
                optimizer.zero_grad();
                foreach (var part in batch.Chunk(micro))
                {
                    using var inner = NewDisposeScope();
                    var loss = Step(train, part, reference?.Train, stats);
                    (loss * ((double)part.Length / batch.Count)).backward();
                }
                gradNorm = nn.utils.clip_grad_norm_(parameters, c.MaxGradNorm);
                foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
                optimizer.step();
            }
            if (!double.IsFinite(stats.Loss / stats.Count))
                throw new InvalidOperationException($"loss became {stats.Loss / stats.Count} at step {step + 1}; lower the learning rate");
            step++; stepsThisRun++;
            tokens += batch.Sum(TokensOf);
            if (step % perEpoch == 0 || step == total) epochs = (step + perEpoch - 1) / perEpoch;

            Dictionary<string, double>? metrics = null;
            if (step % c.LoggingSteps == 0 || step == total)
            {
                metrics = stats.Metrics(rm, kto, "");
                metrics["grad_norm"] = gradNorm;
                metrics["learning_rate"] = lr;
                metrics["tokens_per_second"] = batch.Sum(TokensOf) / Math.Max(1e-9, sw.Elapsed.TotalSeconds);
                lastMetrics = new Dictionary<string, double>(metrics);
            }
            double perStep = clock.Elapsed.TotalSeconds / stepsThisRun;
            var progress = new TrainingProgress(step, total, epochs, tokens, perStep * (total - step));
            reporter.Step(progress, metrics);

            if (valid is { Count: > 0 } && (step % c.EvalSteps == 0 || step == total))
            {
                var eval = Evaluate(policy, rewardModel, valid, (d, i, s2) => Step(d, i, reference?.Valid, s2), rm, kto, c.BatchSize);
                foreach (var (k, v) in eval) lastMetrics[k] = v;
                reporter.Step(progress, eval);
            }
            if (step % c.SaveSteps == 0 || step == total)
                lastCheckpoint = Save(run, policy, rewardModel, optimizer, step, epochs, tokens, total, lastMetrics, reporter);
        }
        return new TrainingResult(TrainingOutcome.Completed, step, lastCheckpoint, tokens);
    }

    /// <summary>
    /// Members one after another, seeds seed + k, each in <c>member-k</c> under the job's checkpoint folder, steps
    /// numbered across the ensemble. A resumed job skips members whose final checkpoint exists and resumes the member
    /// its checkpoint belongs to. Ends with the ensemble folder and the ensemble's eval/ensemble metrics.
    /// </summary>
    static TrainingResult TrainEnsemble(PreferenceRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        int k = c.EnsembleSize, per = TotalSteps(run.Train.Count, c), total = k * per;
        var finals = new List<string>();
        long tokens = 0;
        for (int m = 0; m < k; m++)
        {
            var root = Path.Combine(run.CheckpointRoot, $"member-{m}");
            var final = Path.Combine(root, $"step-{per:D7}");
            if (Directory.Exists(final)) { finals.Add(final); continue; }
            var resume = run.ResumeFrom is { } r && Path.GetFullPath(r).StartsWith(Path.GetFullPath(root) + Path.DirectorySeparatorChar) ? r : null;
            var result = Train(run with { Config = c with { Seed = c.Seed + m, EnsembleSize = 1 }, CheckpointRoot = root, ResumeFrom = resume },
                new MemberReporter(reporter, m * per, total, m, k), ct);
            tokens += result.TrainedTokens;
            if (result.Outcome != TrainingOutcome.Completed) return result with { Step = result.Step + m * per };
            finals.Add(result.LastCheckpoint!);
        }
        var ensembleDir = Path.Combine(run.CheckpointRoot, "ensemble");
        RewardEnsemble.Write(ensembleDir, finals);
        if (run.Validation is { Count: > 0 } v)
        {
            var tok = run.Model.CreateTokenizer();
            int maxLen = Math.Min(c.MaxLength ?? run.Model.Architecture.MaxPositions, run.Model.Architecture.MaxPositions);
            var valid = v.Select(p => Tokenize(p, tok, maxLen, Math.Clamp(c.MaxPromptLength ?? maxLen / 2, 1, maxLen - 1))).ToList();
            using var ensemble = RewardEnsemble.Load(run.Model with { Folder = ensembleDir });
            using var _ = no_grad();
            double correct = 0, std = 0;
            for (int i = 0; i < valid.Count; i += c.BatchSize)
            {
                using var scope = NewDisposeScope();
                var idx = Enumerable.Range(i, Math.Min(c.BatchSize, valid.Count - i)).ToList();
                var (cm, cs, rmn, rs) = ensemble.ScorePairs(valid, idx, tok.PadId, maxLen);
                correct += cm.gt(rmn).sum().item<long>();
                std += (cs + rs).sum().item<float>() / 2;
            }
            reporter.Step(new TrainingProgress(total, total, c.NEpochs, tokens, 0), new Dictionary<string, double>
            {
                ["eval/ensemble/accuracy"] = correct / valid.Count, ["eval/ensemble/reward_std"] = std / valid.Count,
            });
        }
        reporter.Event("info", $"Reward-model ensemble of {k} members written", new Dictionary<string, object> { ["members"] = k });
        return new TrainingResult(TrainingOutcome.Completed, total, ensembleDir, tokens);
    }

    static void SetTrain(CausalLM policy, RewardModel? rm, bool on)
    {
        if (rm is not null) rm.Train(on);
        else if (on) policy.train(); else policy.eval();
    }

    /// <summary>Running sums over the pairs of one step (or of an evaluation).</summary>
    internal sealed class BatchStats
    {
        public double Loss, ChosenRewards, RejectedRewards, Correct, LogpsChosen, LogpsRejected, Count;

        public double Desirable, Undesirable, Kl;

        public Dictionary<string, double> Metrics(bool rm, bool kto, string prefix)
        {
            double n = Math.Max(1, Count);
            if (kto)
                return new Dictionary<string, double>
                {
                    [prefix + "loss"] = Loss / n,
                    [prefix + "rewards/chosen"] = ChosenRewards / Math.Max(1, Desirable), [prefix + "rewards/rejected"] = RejectedRewards / Math.Max(1, Undesirable),
                    [prefix + "rewards/margins"] = ChosenRewards / Math.Max(1, Desirable) - RejectedRewards / Math.Max(1, Undesirable),
                    [prefix + "logps/chosen"] = LogpsChosen / Math.Max(1, Desirable), [prefix + "logps/rejected"] = LogpsRejected / Math.Max(1, Undesirable),
                    [prefix + "kl"] = Kl / n,
                };
            return rm
                ? new Dictionary<string, double>
                {
                    [prefix + "loss"] = Loss / n, [prefix + "accuracy"] = Correct / n,
                    [prefix + "margin"] = (ChosenRewards - RejectedRewards) / n,
                }
                : new Dictionary<string, double>
                {
                    [prefix + "loss"] = Loss / n, [prefix + "rewards/chosen"] = ChosenRewards / n, [prefix + "rewards/rejected"] = RejectedRewards / n,
                    [prefix + "rewards/accuracies"] = Correct / n, [prefix + "rewards/margins"] = (ChosenRewards - RejectedRewards) / n,
                    [prefix + "logps/chosen"] = LogpsChosen / n, [prefix + "logps/rejected"] = LogpsRejected / n,
                };
        }

        public void Add(Tensor losses, Tensor chosen, Tensor rejected, Tensor? logpsChosen = null, Tensor? logpsRejected = null)
        {
            Loss += losses.sum().item<float>();
            ChosenRewards += chosen.sum().item<float>();
            RejectedRewards += rejected.sum().item<float>();
            Correct += chosen.gt(rejected).sum().item<long>();
            if (logpsChosen is not null) LogpsChosen += logpsChosen.sum().item<float>();
            if (logpsRejected is not null) LogpsRejected += logpsRejected.sum().item<float>();
            Count += losses.shape[0];
        }
    }

    static List<(int[], int[])> Side(IReadOnlyList<TokenizedPair> data, IEnumerable<int> idx, bool chosen) =>
        idx.Select(i => (data[i].Prompt, chosen ? data[i].Chosen : data[i].Rejected)).ToList();

    internal static Tensor Pick(float[] values, IReadOnlyList<int> idx) => tensor(idx.Select(i => values[i]).ToArray());

    /// <summary>The mean DPO-family loss of some pairs; adds their statistics.</summary>
    static Tensor DpoStep(CausalLM policy, IReadOnlyList<TokenizedPair> data, IReadOnlyList<int> idx, ReferenceLogps? reference,
        int pad, int maxLen, PreferenceConfig c, BatchStats stats)
    {
        var (pc, pr) = CompletionLogProbs.Concatenated(policy, Side(data, idx, true), Side(data, idx, false), pad, maxLen);
        var x = new PairLogps(pc.Sum, pr.Sum,
            reference is null ? null : Pick(reference.Chosen, idx), reference is null ? null : Pick(reference.Rejected, idx),
            pc.Mean(), pr.Mean(),
            reference is null ? null : Pick(reference.ChosenMean, idx), reference is null ? null : Pick(reference.RejectedMean, idx));
        var o = PreferenceLosses.Compute(c.LossType, x, c.Beta, c.LabelSmoothing, c.SimpoGamma, c.OrpoLambda);
        stats.Add(o.Losses.detach(), o.ChosenRewards, o.RejectedRewards, pc.Sum.detach(), pr.Sum.detach());
        return o.Losses.mean();
    }

    /// <summary>The mean Bradley-Terry loss of some pairs (chosen and rejected scored in one forward); adds their statistics.</summary>
    static Tensor RewardStep(RewardModel model, IReadOnlyList<TokenizedPair> data, IReadOnlyList<int> idx, int pad, int maxLen,
        PreferenceConfig c, BatchStats stats)
    {
        var (rc, rr) = ScorePairs(model, data, idx, pad, maxLen);
        var margin = tensor(idx.Select(i => data[i].Margin).ToArray());
        var losses = RewardLoss.BradleyTerry(rc, rr, margin, c.CenterRewardsCoefficient);
        stats.Add(losses.detach(), rc.detach(), rr.detach());
        return losses.mean();
    }

    /// <summary>Rewards of the chosen and rejected continuations of some pairs.</summary>
    public static (Tensor Chosen, Tensor Rejected) ScorePairs(RewardModel model, IReadOnlyList<TokenizedPair> data, IReadOnlyList<int> idx, int pad, int maxLen)
    {
        var rows = Side(data, idx, true).Concat(Side(data, idx, false)).ToList();
        using var batch = CompletionLogProbs.Collate(rows, pad, maxLen);
        using var lengths = batch.AttentionMask.sum(1).to_type(ScalarType.Int64);
        using var last = (lengths - 1).clamp_min(0);
        var r = model.Rewards(batch.InputIds, last);
        int b = idx.Count;
        return (r[..b], r[b..]);
    }

    /// <summary>The eval/ metrics over the validation rows, under no_grad and eval().</summary>
    static Dictionary<string, double> Evaluate(CausalLM policy, RewardModel? rm, IReadOnlyList<TokenizedPair> valid,
        Func<IReadOnlyList<TokenizedPair>, IReadOnlyList<int>, BatchStats, Tensor> step, bool isRm, bool kto, int batchSize)
    {
        SetTrain(policy, rm, false);
        try
        {
            using var _ = no_grad();
            var stats = new BatchStats();
            for (int i = 0; i < valid.Count; i += batchSize)
            {
                using var scope = NewDisposeScope();
                step(valid, Enumerable.Range(i, Math.Min(batchSize, valid.Count - i)).ToList(), stats);
            }
            return stats.Metrics(isRm, kto, "eval/");
        }
        finally { SetTrain(policy, rm, true); }
    }

    static string Save(PreferenceRun run, CausalLM policy, RewardModel? rm, TorchSharp.Modules.OptimizerHelper optimizer, int step, int epochs, long tokens,
        int total, Dictionary<string, double> metrics, ITrainingReporter reporter)
    {
        string? config = null;
        if (rm is not null)
        {
            // An HF sequence-classification config: transformers loads the folder as a reward model.
            var node = System.Text.Json.Nodes.JsonNode.Parse(run.Model.ConfigJson)!.AsObject();
            node["architectures"] = new System.Text.Json.Nodes.JsonArray(
                (run.Model.Architecture.Family == DecoderFamily.Gpt2 ? "GPT2" : "Llama") + "ForSequenceClassification");
            node["num_labels"] = 1;
            config = node.ToJsonString();
        }
        var dir = Checkpoints.Save(run.CheckpointRoot, policy, optimizer, new TrainerState(step, epochs, tokens, total),
            run.Model, run.Config.ToJson(), rm?.Extra, config);
        reporter.Checkpoint(step, dir, new Dictionary<string, double>(metrics) { ["step"] = step });
        return dir;
    }
}

/// <summary>
/// KTO's data path. Each unpaired row becomes a <see cref="TokenizedPair"/> whose <c>Chosen</c> is its completion,
/// whose <c>Rejected</c> is the completion of the row half the file away (a mismatched prompt/completion pair for the
/// KL estimate, fixed per row so its reference log-prob can be cached), and whose <c>Margin</c> is 1 when desirable.
/// </summary>
static class Kto
{
    public static List<UnpairedExample> FromPairs(IReadOnlyList<PreferencePair> pairs) =>
        pairs.SelectMany(p => new[] { new UnpairedExample(p.Prompt, p.Chosen, true), new UnpairedExample(p.Prompt, p.Rejected, false) }).ToList();

    public static List<TokenizedPair> Rows(IReadOnlyList<UnpairedExample> rows, ITokenizer tok, int maxLen, int maxPrompt)
    {
        int n = rows.Count, shift = Math.Max(1, n / 2);
        return rows.Select((r, i) => PreferenceTrainer.Tokenize(
            new PreferencePair(r.Prompt, r.Completion, rows[(i + shift) % n].Completion, r.Desirable ? 1 : 0), tok, maxLen, maxPrompt)).ToList();
    }

    public static Tensor Step(CausalLM policy, IReadOnlyList<TokenizedPair> data, IReadOnlyList<int> idx, ReferenceLogps reference,
        int pad, int maxLen, PreferenceConfig c, PreferenceTrainer.BatchStats stats)
    {
        var (matched, mismatched) = CompletionLogProbs.Concatenated(policy,
            idx.Select(i => (data[i].Prompt, data[i].Chosen)).ToList(), idx.Select(i => (data[i].Prompt, data[i].Rejected)).ToList(), pad, maxLen);
        var desirable = tensor(idx.Select(i => data[i].Margin > 0.5f).ToArray());
        var refMatched = PreferenceTrainer.Pick(reference.Chosen, idx);
        var refMismatched = PreferenceTrainer.Pick(reference.Rejected, idx);
        var o = PreferenceLosses.Kto(matched.Sum, refMatched, desirable, mismatched.Sum, refMismatched, c.Beta, c.DesirableWeight, c.UndesirableWeight);
        var want = desirable.to_type(ScalarType.Float32);
        int nd = (int)want.sum().item<float>();
        stats.Loss += o.Losses.sum().item<float>();
        stats.ChosenRewards += o.ChosenRewards.sum().item<float>();
        stats.RejectedRewards += o.RejectedRewards.sum().item<float>();
        stats.LogpsChosen += (matched.Sum.detach() * want).sum().item<float>();
        stats.LogpsRejected += (matched.Sum.detach() * (1 - want)).sum().item<float>();
        stats.Kl += (mismatched.Sum.detach() - refMismatched).mean().clamp_min(0).item<float>() * idx.Count;
        stats.Desirable += nd;
        stats.Undesirable += idx.Count - nd;
        stats.Count += idx.Count;
        return o.Losses.mean();
    }
}

/// <summary>
/// Reference log-probs on disk, one JSON file per fingerprint of (reference model, data, tokenisation): every job
/// that shares them reads them instead of running the reference model again.
/// </summary>
public static class ReferenceCache
{
    sealed record Stored(int TrainPairs, int ValidPairs, ReferenceLogps Train, ReferenceLogps? Valid);

    public static (ReferenceLogps Train, ReferenceLogps? Valid) LoadOrCompute(PreferenceRun run, IReadOnlyList<TokenizedPair> train,
        IReadOnlyList<TokenizedPair>? valid, int pad, int maxLen, ITrainingReporter reporter)
    {
        var path = run.ReferenceCachePath;
        if (File.Exists(path))
        {
            try
            {
                var s = JsonSerializer.Deserialize<Stored>(File.ReadAllText(path));
                if (s is not null && s.TrainPairs == train.Count && s.ValidPairs == (valid?.Count ?? 0))
                {
                    reporter.Event("info", $"Reference log-probs reused from the cache ({Path.GetFileNameWithoutExtension(path)})",
                        new Dictionary<string, object> { ["reference_cache"] = Path.GetFileNameWithoutExtension(path) });
                    return (s.Train, s.Valid);
                }
            }
            catch (JsonException) { /* a damaged cache is recomputed */ }
        }
        var sw = Stopwatch.StartNew();
        torch.manual_seed(run.Config.Seed); // the same initialisation as the policy's, for random-init models
        ReferenceLogps trainRef;
        ReferenceLogps? validRef;
        using (var reference = run.Model.CreateModel())
        {
            reference.eval();
            trainRef = Compute(reference, train, pad, maxLen, run.Config.BatchSize);
            validRef = valid is { Count: > 0 } ? Compute(reference, valid, pad, maxLen, run.Config.BatchSize) : null;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var tmp = path + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(tmp, JsonSerializer.Serialize(new Stored(train.Count, valid?.Count ?? 0, trainRef, validRef)));
        File.Move(tmp, path, overwrite: true);
        reporter.Event("info", $"Reference log-probs computed for {train.Count + (valid?.Count ?? 0)} pairs in {sw.Elapsed.TotalSeconds:F1} s and cached",
            new Dictionary<string, object> { ["reference_cache"] = Path.GetFileNameWithoutExtension(path) });
        return (trainRef, validRef);
    }

    public static ReferenceLogps Compute(CausalLM reference, IReadOnlyList<TokenizedPair> data, int pad, int maxLen, int batchSize)
    {
        using var _ = no_grad();
        int n = data.Count;
        var (c, r, cm, rm) = (new float[n], new float[n], new float[n], new float[n]);
        for (int i = 0; i < n; i += batchSize)
        {
            using var scope = NewDisposeScope();
            var idx = Enumerable.Range(i, Math.Min(batchSize, n - i)).ToList();
            var (pc, pr) = CompletionLogProbs.Concatenated(reference,
                idx.Select(j => (data[j].Prompt, data[j].Chosen)).ToList(), idx.Select(j => (data[j].Prompt, data[j].Rejected)).ToList(), pad, maxLen);
            var (a, b, am, bm) = (pc.Sum.data<float>().ToArray(), pr.Sum.data<float>().ToArray(), pc.Mean().data<float>().ToArray(), pr.Mean().data<float>().ToArray());
            for (int k = 0; k < idx.Count; k++) (c[i + k], r[i + k], cm[i + k], rm[i + k]) = (a[k], b[k], am[k], bm[k]);
        }
        return new ReferenceLogps(c, r, cm, rm);
    }
}
