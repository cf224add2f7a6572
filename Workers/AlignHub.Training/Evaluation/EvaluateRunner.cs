using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Generation;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Evaluation;

/// <summary>What an evaluation needs: the evaluated model, optional reference and judge, held-out pairs, where to write details.</summary>
public sealed record EvaluateRun(ModelSource Model, ModelSource? Reference, ModelSource? Judge, IReadOnlyList<PreferencePair> Pairs,
    EvaluateConfig Config, string OutputPath);

/// <summary>
/// The evaluation job. A reward model: accuracy = share of pairs with r(chosen) &gt; r(rejected). A policy:
/// implicit-reward accuracy = share of pairs with (log pi(c) - log ref(c)) - (log pi(r) - log ref(r)) &gt; 0. With a
/// judge: for each distinct prompt, one completion from the policy and one from the reference; win = judge reward of
/// the policy's &gt; the reference's (a tie counts half); the 95% interval is the 2.5th and 97.5th percentiles of the
/// win rate over bootstrap resamples of the prompts (Efron, 1979), seeded. Results are metrics at step 1 and a JSONL
/// file of the per-prompt samples and rewards.
/// </summary>
public static class EvaluateRunner
{
    public static (TrainingResult Result, Dictionary<string, double> Metrics) Run(EvaluateRun run, ITrainingReporter reporter)
    {
        var c = run.Config;
        var tok = run.Model.CreateTokenizer();
        var arch = run.Model.Architecture;
        int maxLen = arch.MaxPositions;
        var pairs = run.Pairs.Select(p => PreferenceTrainer.Tokenize(p, tok, maxLen, maxLen / 2)).ToList();
        var metrics = new Dictionary<string, double>();
        int total = run.Judge is null ? 1 : 2;
        using var _ = no_grad();

        if (arch.IsRewardModel)
        {
            using var ensemble = RewardEnsemble.Load(run.Model); // a single reward model is an ensemble of one
            metrics["eval/accuracy"] = Accuracy(ensemble, pairs, tok.PadId, maxLen, c.BatchSize);
        }
        else
        {
            if (run.Reference is null) throw new InvalidDataException("a policy's implicit reward needs a reference model (reference_model)");
            ReferenceLogps pol, refl;
            using (var policy = run.Model.CreateModel()) { policy.eval(); pol = ReferenceCache.Compute(policy, pairs, tok.PadId, maxLen, c.BatchSize); }
            using (var reference = run.Reference.CreateModel()) { reference.eval(); refl = ReferenceCache.Compute(reference, pairs, tok.PadId, maxLen, c.BatchSize); }
            int wins = 0;
            for (int i = 0; i < pairs.Count; i++)
                if ((pol.Chosen[i] - refl.Chosen[i]) - (pol.Rejected[i] - refl.Rejected[i]) > 0) wins++;
            metrics["eval/rewards/accuracies"] = (double)wins / Math.Max(1, pairs.Count);
        }
        reporter.Step(new TrainingProgress(1, total, 0, 0, null), new Dictionary<string, double>(metrics));

        var details = new List<Dictionary<string, object>>();
        if (run.Judge is not null)
        {
            if (arch.IsRewardModel) throw new InvalidDataException("a win rate compares a policy's samples; the evaluated model is a reward model");
            if (run.Reference is null) throw new InvalidDataException("a win rate needs a reference model (reference_model)");
            var prompts = run.Pairs.Select(p => p.Prompt).Distinct().ToList();
            var encoded = prompts.Select(p => new[] { tok.BosId }.Concat(tok.Encode(p)).TakeLast(maxLen / 2).ToArray()).ToList();
            var o = new GenerationOptions { MaxNewTokens = c.MaxNewTokens, Temperature = c.Temperature, Seed = c.Seed };
            List<GeneratedSequence> Sample(ModelSource source)
            {
                using var m = source.CreateModel();
                var all = new List<GeneratedSequence>();
                for (int i = 0; i < encoded.Count; i += c.BatchSize)
                    all.AddRange(TextGenerator.Generate(m, tok, encoded.Skip(i).Take(c.BatchSize).ToList(), o with { Seed = c.Seed + i }));
                return all;
            }
            var policySamples = Sample(run.Model);
            var referenceSamples = Sample(run.Reference);
            using var judge = RewardEnsemble.Load(run.Judge);
            var judgeTok = run.Judge.CreateTokenizer();
            var rp = Score(judge, judgeTok, prompts, policySamples.Select(s => s.Text).ToList(), c.BatchSize, c.UncertaintyPenalty);
            var rr = Score(judge, judgeTok, prompts, referenceSamples.Select(s => s.Text).ToList(), c.BatchSize, c.UncertaintyPenalty);
            var outcome = rp.Zip(rr, (a, b) => a > b ? 1.0 : a == b ? 0.5 : 0.0).ToArray();
            metrics["win_rate"] = outcome.Average();
            var (lo, hi) = Bootstrap(outcome, c.BootstrapSamples, c.Seed);
            metrics["win_rate_ci_low"] = lo;
            metrics["win_rate_ci_high"] = hi;
            metrics["reward/policy"] = rp.Average();
            metrics["reward/reference"] = rr.Average();
            for (int i = 0; i < prompts.Count; i++)
                details.Add(new Dictionary<string, object>
                {
                    ["prompt"] = prompts[i], ["policy"] = policySamples[i].Text, ["reference"] = referenceSamples[i].Text,
                    ["policy_reward"] = Math.Round(rp[i], 6), ["reference_reward"] = Math.Round(rr[i], 6), ["win"] = outcome[i],
                });
            reporter.Step(new TrainingProgress(2, total, 0, 0, null), metrics.Where(kv => !kv.Key.StartsWith("eval/")).ToDictionary());
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

    /// <summary>
    /// Judge rewards of prompt + completion texts (the completion ends with eos, as in training): the members' mean
    /// minus <paramref name="penalty"/> times their standard deviation.
    /// </summary>
    static double[] Score(RewardEnsemble judge, Tokenizers.ITokenizer tok, IReadOnlyList<string> prompts, IReadOnlyList<string> completions, int batchSize, double penalty)
    {
        int maxLen = judge.Models[0].Backbone.Architecture.MaxPositions;
        var data = prompts.Select((p, i) => PreferenceTrainer.Tokenize(new PreferencePair(p, completions[i], completions[i]), tok, maxLen, maxLen / 2)).ToList();
        var scores = new double[data.Count];
        for (int i = 0; i < data.Count; i += batchSize)
        {
            using var scope = NewDisposeScope();
            var idx = Enumerable.Range(i, Math.Min(batchSize, data.Count - i)).ToList();
            var (mean, std, _, _) = judge.ScorePairs(data, idx, tok.PadId, maxLen);
            var arr = (mean - penalty * std).data<float>().ToArray();
            for (int k = 0; k < idx.Count; k++) scores[i + k] = arr[k];
        }
        return scores;
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
