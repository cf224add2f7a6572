using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Generation;
using AlignHub.Training.Methods;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Rewards;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Evaluation;

/// <summary>What an evaluation needs: the evaluated model, optional reference and judge, held-out pairs, where to write details.</summary>
public sealed record EvaluateRun(ModelSource Model, ModelSource? Reference, ModelSource? Judge, IReadOnlyList<PreferencePair> Pairs,
    EvaluateConfig Config, string OutputPath, Device? Device = null, Judge? AiJudge = null, IPairwiseJudging? Judges = null);

/// <summary>
/// The evaluation job. A reward model: accuracy = share of pairs with r(chosen) &gt; r(rejected). A policy:
/// implicit-reward accuracy = share of pairs with (log pi(c) - log ref(c)) - (log pi(r) - log ref(r)) &gt; 0. With a
/// judge (an <see cref="IRewardSource"/>: a reward model or an ensemble's mean - k * std): for each distinct prompt,
/// one completion from the policy and one from the reference; win = judge reward of the policy's &gt; the
/// reference's (a tie counts half); the 95% interval is the 2.5th and 97.5th percentiles of the win rate over
/// bootstrap resamples of the prompts (Efron, 1979), seeded. Results are metrics at step 1 (and 2 with a judge) and a
/// JSONL file of the per-prompt samples and rewards. The stop protocol is the training engine's, between phases.
/// </summary>
public sealed class EvaluateRunner : IMethodRunner
{
    public Type ConfigType => typeof(EvaluateConfig);
    public bool Resumable => false;

    public MethodOutcome Run(MethodContext ctx, ITrainingReporter reporter, CancellationToken ct)
    {
        var job = ctx.Job;
        var c = ctx.ConfigAs<EvaluateConfig>();
        var model = ctx.FindModel(job.Model);
        // The reference of a trained policy defaults to the model its training job started from.
        var referenceId = c.ReferenceModel ?? (model.ParentJobId is { } parent ? ctx.StartingModelOf(parent) : null);
        var chat = ctx.Source(model).ChatFormat();
        var pairs = ctx.Rows(job.TrainingFile, p => JsonlRows.LoadPreferences(p, chat));
        reporter.Event("info", $"Evaluating {job.Model} on {pairs.Count} pairs" + (referenceId is null ? "" : $" against {referenceId}") +
            (c.RewardModel is null ? "" : $", judged by {c.RewardModel}") + (c.Judge is null ? "" : $", judged by AI judge {c.Judge} (both orders)"));
        var aiJudge = c.Judge is { } judgeId ? ctx.FindJudge(judgeId) ?? throw new InvalidDataException($"judge \"{judgeId}\" no longer exists") : null;
        var run = new EvaluateRun(ctx.Source(model), referenceId is null ? null : ctx.Model(referenceId), c.RewardModel is null ? null : ctx.Model(c.RewardModel),
            pairs, c, ctx.Output("evaluation.jsonl"), ctx.Device, aiJudge, ctx.Judges);
        var (result, metrics) = Evaluate(run, reporter, ct, ctx.Stopping);
        var summary = string.Join(", ", metrics.Select(kv => $"{kv.Key} {kv.Value:0.###}"));
        return new MethodOutcome(result, File: new ProducedFile(run.OutputPath, $"{job.Id}-evaluation.jsonl", "evaluation", File.ReadLines(run.OutputPath).Count()),
            Message: $"Evaluation finished: {summary}", Data: metrics.ToDictionary(kv => kv.Key, kv => (object)kv.Value));
    }

    /// <param name="stopping">Fires on a cancel between the engine's checks: the AI judge's calls take it with <paramref name="ct"/>.</param>
    public static (TrainingResult Result, Dictionary<string, double> Metrics) Evaluate(EvaluateRun run, ITrainingReporter reporter, CancellationToken ct,
        CancellationToken stopping = default)
    {
        var c = run.Config;
        var tok = run.Model.CreateTokenizer();
        var arch = run.Model.Architecture;
        var device = run.Device ?? CPU;
        int maxLen = arch.MaxPositions;
        var encoder = new PromptEncoder(tok, maxLen / 2);
        var pairs = run.Pairs.Select(p => PairData.Tokenize(p, encoder, maxLen)).ToList();
        var metrics = new Dictionary<string, double>();
        int total = run.Judge is null && run.AiJudge is null ? 1 : 2;
        var clock = new StepClock(total);
        if (RunControl.Check(reporter, ct) is { } stop0) return (new TrainingResult(stop0, 0, null, 0), metrics);
        using var _ = no_grad();

        if (arch.IsRewardModel)
        {
            using var ensemble = RewardEnsemble.Load(run.Model, device); // a single reward model is an ensemble of one
            metrics["eval/accuracy"] = Accuracy(ensemble, pairs, tok.PadId, maxLen, c.BatchSize);
        }
        else
        {
            if (run.Reference is null) throw new InvalidDataException("a policy's implicit reward needs a reference model (reference_model)");
            ReferenceLogps pol, refl;
            using (var policy = run.Model.CreateModel(device)) { policy.eval(); pol = ReferenceCache.Compute(policy, pairs, tok.PadId, maxLen, c.BatchSize); }
            using (var reference = run.Reference.CreateModel(device)) { reference.eval(); refl = ReferenceCache.Compute(reference, pairs, tok.PadId, maxLen, c.BatchSize); }
            int wins = 0;
            for (int i = 0; i < pairs.Count; i++)
                if ((pol.Chosen[i] - refl.Chosen[i]) - (pol.Rejected[i] - refl.Rejected[i]) > 0) wins++;
            metrics["eval/rewards/accuracies"] = (double)wins / Math.Max(1, pairs.Count);
        }
        reporter.Step(clock.Tick(1, 0, 0), new Dictionary<string, double>(metrics));

        var details = new List<Dictionary<string, object>>();
        if (run.Judge is not null || run.AiJudge is not null)
        {
            if (RunControl.Check(reporter, ct) is { } stop1) return (new TrainingResult(stop1, 1, null, 0), metrics);
            if (arch.IsRewardModel) throw new InvalidDataException("a win rate compares a policy's samples; the evaluated model is a reward model");
            if (run.Reference is null) throw new InvalidDataException("a win rate needs a reference model (reference_model)");
            var prompts = run.Pairs.Select(p => p.Prompt).Distinct().ToList();
            var encoded = prompts.Select(encoder.Encode).ToList();
            var o = new GenerationOptions { MaxNewTokens = c.MaxNewTokens, Temperature = c.Temperature };
            List<GeneratedSequence> Sample(ModelSource source)
            {
                using var m = source.CreateModel(device);
                return Rollouts.Sample(m, tok, encoded, Enumerable.Range(0, encoded.Count).ToList(), 1, o, c.Seed, 0, c.BatchSize)
                    .Select(r => r.Completion).ToList();
            }
            var policySamples = Sample(run.Model);
            var referenceSamples = Sample(run.Reference);
            double[] outcome, rp, rr;
            PairVerdict[]? verdicts = null;
            if (run.AiJudge is { } ai)
            {
                // Policy as A, reference as B, then swapped (JudgeClient.CompareAsync); a few prompts at a time, which the model server batches.
                var client = run.Judges ?? throw new InvalidDataException("an AI judge needs a model server or an endpoint here");
                using var asking = CancellationTokenSource.CreateLinkedTokenSource(ct, stopping);
                verdicts = new PairVerdict[prompts.Count];
                foreach (var chunk in Enumerable.Range(0, prompts.Count).Chunk(8))
                {
                    if (ct.IsCancellationRequested) break;
                    var done = Task.WhenAll(chunk.Select(async i => verdicts[i] = await client.CompareAsync(ai, prompts[i], policySamples[i].Text, referenceSamples[i].Text, asking.Token)));
                    done.GetAwaiter().GetResult();
                }
                outcome = verdicts.Select(v => v.Verdict switch { "a" => 1.0, "b" => 0.0, _ => 0.5 }).ToArray();
                (rp, rr) = (outcome, outcome.Select(x => 1 - x).ToArray());
                metrics["judge/ties"] = verdicts.Count(v => v.Verdict == "tie") / (double)Math.Max(1, verdicts.Length);
            }
            else
            {
                using var judge = RewardEnsembleSource.Load(run.Judge!, c.UncertaintyPenalty, c.BatchSize, device);
                rp = judge.Score(prompts.Select((p, i) => new RewardInput(p, policySamples[i].Text)).ToList());
                rr = judge.Score(prompts.Select((p, i) => new RewardInput(p, referenceSamples[i].Text)).ToList());
                outcome = rp.Zip(rr, (a, b) => a > b ? 1.0 : a == b ? 0.5 : 0.0).ToArray();
            }
            metrics["win_rate"] = outcome.Average();
            var (lo, hi) = Bootstrap(outcome, c.BootstrapSamples, c.Seed);
            metrics["win_rate_ci_low"] = lo;
            metrics["win_rate_ci_high"] = hi;
            if (verdicts is null)
            {
                metrics["reward/policy"] = rp.Average();
                metrics["reward/reference"] = rr.Average();
            }
            for (int i = 0; i < prompts.Count; i++)
            {
                var d = new Dictionary<string, object>
                {
                    ["prompt"] = prompts[i], ["policy"] = policySamples[i].Text, ["reference"] = referenceSamples[i].Text, ["win"] = outcome[i],
                };
                if (verdicts is null) { d["policy_reward"] = Math.Round(rp[i], 6); d["reference_reward"] = Math.Round(rr[i], 6); }
                else
                {
                    d["judge"] = new Dictionary<string, object>
                    {
                        ["verdict"] = verdicts[i].Verdict switch { "a" => "policy", "b" => "reference", _ => "tie" },
                        ["policy_first"] = new { pick = verdicts[i].FirstPick, answer = verdicts[i].FirstAnswer },
                        ["reference_first"] = new { pick = verdicts[i].SecondPick, answer = verdicts[i].SecondAnswer },
                    };
                }
                details.Add(d);
            }
            reporter.Step(clock.Tick(2, 0, 0), metrics.Where(kv => !kv.Key.StartsWith(MetricNames.EvalPrefix)).ToDictionary());
        }
        File.WriteAllLines(run.OutputPath, details.Count > 0
            ? details.Select(d => JsonSerializer.Serialize(d))
            : [JsonSerializer.Serialize(metrics)]);
        return (new TrainingResult(TrainingOutcome.Completed, total, null, 0), metrics);
    }

    /// <summary>Share of pairs whose chosen side gets the higher (mean) reward.</summary>
    public static double Accuracy(RewardEnsemble rm, IReadOnlyList<TokenizedPair> pairs, int pad, int maxLen, int batchSize)
    {
        int wins = 0;
        for (int i = 0; i < pairs.Count; i += batchSize)
        {
            using var scope = NewDisposeScope();
            var idx = Enumerable.Range(i, Math.Min(batchSize, pairs.Count - i)).ToList();
            var (c, _, r, _) = rm.ScorePairs(pairs, idx, pad, maxLen);
            wins += (int)c.gt(r).sum().item<long>();
        }
        return (double)wins / Math.Max(1, pairs.Count);
    }

    /// <summary>Percentile bootstrap 95% interval of the mean of <paramref name="outcomes"/>.</summary>
    public static (double Low, double High) Bootstrap(IReadOnlyList<double> outcomes, int samples, int seed)
    {
        if (outcomes.Count == 0) return (0, 0);
        var rng = new Random(seed);
        var means = new double[samples];
        for (int s = 0; s < samples; s++)
        {
            double sum = 0;
            for (int i = 0; i < outcomes.Count; i++) sum += outcomes[rng.Next(outcomes.Count)];
            means[s] = sum / outcomes.Count;
        }
        Array.Sort(means);
        return (means[(int)Math.Floor(0.025 * (samples - 1))], means[(int)Math.Ceiling(0.975 * (samples - 1))]);
    }
}
