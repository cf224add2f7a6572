using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Generation;
using AlignHub.Training.Losses;
using AlignHub.Training.Methods;
using AlignHub.Training.Models;
using AlignHub.Training.Rewards;
using static TorchSharp.torch;

namespace AlignHub.Training.Evaluation;

/// <summary>One point of the frontier: a policy by name, the step of the run it was saved at (0: the reference; null: not a checkpoint).</summary>
public sealed record FrontierPoint(string Name, int? Step, ModelSource Source);

/// <summary>What a frontier evaluation needs: the reference, the points, held-out prompts, the reward source, where the result goes.</summary>
public sealed record FrontierRun(ModelSource Reference, string ReferenceName, IReadOnlyList<FrontierPoint> Points, IReadOnlyList<GenerationPrompt> Prompts,
    FrontierConfig Config, IRewardSource Reward, string OutputPath, Device? Device = null, IRewardSource? Gold = null);

/// <summary>
/// The KL-reward frontier (<see cref="FrontierConfig"/>). For the reference and then each point: <c>num_samples</c>
/// completions y of every prompt x sampled from the policy pi at the temperature T (<see cref="Rollouts.Sample"/>,
/// seeded, so a re-run writes the same file); reward = the mean of r(x, y); KL = the mean over completions of
/// sum_t [log pi_T(y_t) - log ref_T(y_t)] (k1, <see cref="KlEstimators.K1"/>: an unbiased estimate of KL(pi_T || ref_T)
/// in nats per completion), the policy's log-probs being the sampler's own and the reference's one forward pass;
/// kl_per_token = the mean k3 per completion token (the training runs' <c>kl</c>). 95% intervals: percentile bootstrap
/// over prompts (<see cref="EvaluateRunner.Bootstrap"/>). Each point is one metrics row (its step is the point's
/// number; <c>checkpoint_step</c> is the run's) and one row of the JSONL result file.
/// </summary>
public sealed class FrontierRunner : IMethodRunner
{
    public Type ConfigType => typeof(FrontierConfig);
    public bool Resumable => false;

    public MethodOutcome Run(MethodContext ctx, ITrainingReporter reporter, CancellationToken ct)
    {
        var job = ctx.Job;
        var c = ctx.ConfigAs<FrontierConfig>();
        var points = new List<FrontierPoint>();
        if (c.Run is { } run)
            foreach (var (step, name) in ctx.CheckpointsOf(run)) points.Add(new FrontierPoint(name, step, ctx.Model(name)));
        foreach (var name in c.Models.Where(m => points.All(p => p.Name != m)))
            points.Add(new FrontierPoint(name, ctx.CheckpointStepOf(name), ctx.Model(name)));
        if (points.Count == 0) throw new InvalidDataException($"job {c.Run} has no checkpoints to evaluate");
        using IRewardSource reward = ctx.RewardSource(c.ParsedGrader(), c.RewardModel, c.BatchSize)!;
        using IRewardSource? gold = ctx.RewardSource(c.ParsedGoldGrader(), c.GoldRewardModel, c.BatchSize);
        var chat = ctx.Model(job.Model).ChatFormat();
        var prompts = ctx.Rows(job.TrainingFile, p => JsonlRows.LoadPrompts(p, chat));
        reporter.Event("info", $"Evaluating the KL-reward frontier of {points.Count} point(s) against {job.Model} on {prompts.Count} prompts, " +
            $"{c.NumSamples} samples each, reward {reward.Name}{(gold is null ? "" : $", gold {gold.Name}")}");
        var frontier = new FrontierRun(ctx.Model(job.Model), job.Model, points, prompts, c, reward, ctx.Output("frontier.jsonl"), ctx.Device, gold);
        var (result, rows) = Evaluate(frontier, reporter, ct);
        if (result.Outcome != TrainingOutcome.Completed) return new MethodOutcome(result);
        var best = rows.MaxBy(r => (double)r["reward"])!;
        return new MethodOutcome(result, File: new ProducedFile(frontier.OutputPath, $"{job.Id}-frontier.jsonl", "evaluation", rows.Count),
            Message: $"Frontier evaluated at {rows.Count} points; highest mean reward {(double)best["reward"]:0.###} at KL {(double)best["kl"]:0.###} ({best["model"]})",
            Data: new Dictionary<string, object> { ["points"] = rows.Count, ["best_model"] = best["model"], ["best_reward"] = best["reward"] });
    }

    public static (TrainingResult Result, List<Dictionary<string, object>> Rows) Evaluate(FrontierRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        var tok = run.Reference.CreateTokenizer();
        int maxPos = run.Reference.Architecture.MaxPositions;
        if (c.MaxNewTokens >= maxPos) throw new InvalidDataException($"max_new_tokens must be below the model's context length {maxPos}");
        var encoder = new PromptEncoder(tok, maxPos - c.MaxNewTokens);
        var ids = run.Prompts.Select(p => encoder.Encode(p.Text)).ToList();
        var indexes = Enumerable.Range(0, ids.Count).ToList();
        var device = run.Device ?? CPU;
        var o = new GenerationOptions { MaxNewTokens = c.MaxNewTokens, Temperature = c.Temperature };
        var all = new List<(string Name, int? Step, ModelSource? Source)> { (run.ReferenceName, 0, null) };
        all.AddRange(run.Points.Select(p => (p.Name, p.Step, (ModelSource?)p.Source)));
        var clock = new StepClock(all.Count);
        var rows = new List<Dictionary<string, object>>();
        using var _ = no_grad();
        using var reference = run.Reference.CreateModel(device);
        reference.eval();
        for (int i = 0; i < all.Count; i++)
        {
            if (RunControl.Check(reporter, ct) is { } stop) return (new TrainingResult(stop, i, null, 0), rows);
            var (name, step, source) = all[i];
            var policy = source is null ? reference : source.CreateModel(device);
            try
            {
                policy.eval();
                var rollouts = Rollouts.Sample(policy, tok, ids, indexes, c.NumSamples, o, c.Seed, 0, c.BatchSize);
                var inputs = rollouts.Select(r => new RewardInput(run.Prompts[r.PromptIndex].Text, r.Completion.Text, run.Prompts[r.PromptIndex].Row)).ToList();
                var rewards = run.Reward.Score(inputs);
                var goldRewards = run.Gold?.Score(inputs);
                var (kl, k3Tokens, tokens) = source is null ? (new double[rollouts.Count], 0.0, 0L) : Kl(rollouts, reference, tok.PadId, c.Temperature, c.BatchSize, device);
                // Per-prompt means (rollouts come prompt by prompt, num_samples each): the units the bootstrap resamples.
                double[] PerPrompt(double[] x) => x.Chunk(c.NumSamples).Select(g => g.Average()).ToArray();
                var (rLo, rHi) = EvaluateRunner.Bootstrap(PerPrompt(rewards), c.BootstrapSamples, c.Seed);
                var (kLo, kHi) = EvaluateRunner.Bootstrap(PerPrompt(kl), c.BootstrapSamples, c.Seed);
                var metrics = new Dictionary<string, double>
                {
                    ["reward"] = rewards.Average(), ["reward_ci_low"] = rLo, ["reward_ci_high"] = rHi,
                    ["kl"] = kl.Average(), ["kl_ci_low"] = kLo, ["kl_ci_high"] = kHi,
                    ["kl_per_token"] = tokens == 0 ? 0 : k3Tokens / tokens,
                    ["completions/mean_length"] = rollouts.Average(r => r.Completion.Tokens.Length),
                };
                if (goldRewards is not null)
                {
                    var (gLo, gHi) = EvaluateRunner.Bootstrap(PerPrompt(goldRewards), c.BootstrapSamples, c.Seed);
                    (metrics["gold_reward"], metrics["gold_reward_ci_low"], metrics["gold_reward_ci_high"]) = (goldRewards.Average(), gLo, gHi);
                }
                if (step is int s) metrics["checkpoint_step"] = s;
                reporter.Step(clock.Tick(i + 1, 0, 0), metrics);
                var row = new Dictionary<string, object> { ["model"] = name, ["step"] = step is int st ? st : (object)"none" };
                foreach (var (k, v) in metrics) if (k != "checkpoint_step") row[k] = Math.Round(v, 6);
                row["samples"] = rollouts.Count;
                rows.Add(row);
            }
            finally { if (source is not null) policy.Dispose(); }
        }
        File.WriteAllLines(run.OutputPath, rows.Select(r => JsonSerializer.Serialize(r)));
        return (new TrainingResult(TrainingOutcome.Completed, all.Count, null, 0), rows);
    }

    /// <summary>
    /// Per completion: sum_t k1 = log pi_T(y_t) - log ref_T(y_t) over its tokens (the sampler's log-probs for pi); and over
    /// the batch, the sum of k3 over completion tokens and their count.
    /// </summary>
    static (double[] PerCompletion, double K3Sum, long Tokens) Kl(List<Rollout> rollouts, CausalLM reference, int pad, double temperature, int batchSize, Device device)
    {
        var perCompletion = new List<double>(rollouts.Count);
        double k3 = 0;
        long tokens = 0;
        foreach (var chunk in rollouts.Chunk(batchSize))
        {
            using var scope = NewDisposeScope();
            using var batch = Rollouts.ToBatch(chunk, pad, device);
            var x = batch.Sequences.InputIds;
            var mask = batch.Sequences.CompletionMask[.., 1..];
            var refLogps = SupervisedLoss.NextTokenLogProbs(reference.forward(x) / temperature, x);
            var polLogps = batch.SamplingLogProbs;
            perCompletion.AddRange((KlEstimators.K1(polLogps, refLogps) * mask).sum(1).to_type(ScalarType.Float64).cpu().data<double>().ToArray());
            k3 += (KlEstimators.K3(polLogps, refLogps) * mask).sum().to_type(ScalarType.Float64).item<double>();
            tokens += (long)mask.sum().item<float>();
        }
        return ([.. perCompletion], k3, tokens);
    }
}
