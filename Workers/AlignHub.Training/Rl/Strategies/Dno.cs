using AlignHub.Domain;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// DNO (Rosset et al., 2024), batched on-policy: the rewards are win rates within each group of K
/// (<see cref="Rewards.GroupWinRateSource"/>); the group's best sample (highest win rate, the first on a tie) is chosen
/// and its worst rejected when their win rates differ by at least min_win_rate_gap (and at all), and the pair trains with
/// DPO's sigmoid loss, -log sigmoid(beta [log pi(y+)/pi_t(y+) - log pi(y-)/pi_t(y-)]), where pi_t is the round's sampling
/// policy (pi_old), on log-probs of the raw logits, averaged over the batch's trained groups.
/// </summary>
public sealed class Dno(DnoConfig c) : RlStrategy<DnoConfig>(c)
{
    const string Pairs = "dno_pairs", Margin = "dno_margin_sum", Correct = "dno_correct", Groups = "dno_groups";
    public override RlNeeds Needs => new() { WholeGroups = true, TemperatureScaledLogProbs = false };
    public override IReadOnlyList<string> StatNames => [Pairs, Margin, Correct, Groups];

    /// <summary>Sides per completion: +1 the group's best, -1 its worst, 0 the rest (and every sample of a group that does not train).</summary>
    public override RlTargets Targets(RolloutTensors b)
    {
        var r = b.RewardValues;
        int k = b.K;
        var side = new float[r.Count];
        for (int g = 0; g + k <= r.Count; g += k)
        {
            int best = g, worst = g;
            for (int i = g + 1; i < g + k; i++)
            {
                if (r[i] > r[best]) best = i;
                if (r[i] < r[worst]) worst = i;
            }
            double gap = r[best] - r[worst];
            if (gap > 0 && gap >= Config.MinWinRateGap) (side[best], side[worst]) = (1f, -1f);
        }
        var sides = tensor(side, device: b.Rewards.device);
        return new(sides, Weights: sides.abs());
    }

    public override Tensor Loss(RlMicroBatch m, StatSink stats)
    {
        int k = Config.NumGenerations;
        using var logRatio = ((m.Logps - m.OldLogps) * m.Mask).sum(1).view(-1, k);
        using var sides = m.Advantages.view(-1, k);
        using var chosen = (logRatio * sides.gt(0)).sum(1);
        using var rejected = (logRatio * sides.lt(0)).sum(1);
        using var paired = sides.abs().sum(1).gt(0).to_type(ScalarType.Float32);
        using var margin = (chosen - rejected) * Config.Beta;
        using var losses = -nn.functional.logsigmoid(margin);
        using (no_grad())
        {
            stats.Add(Pairs, paired.sum());
            stats.Add(Margin, (margin * paired).sum());
            stats.Add(Correct, (margin.gt(0).to_type(ScalarType.Float32) * paired).sum());
            stats.Add(Groups, (double)sides.shape[0]);
        }
        return (losses * paired).sum() / Math.Max(1, m.Norm.Sequences / 2);
    }

    public override void Metrics(StatSums s, Dictionary<string, double> m)
    {
        m["dno/trained_groups"] = s.Mean(Pairs, Groups); // share of groups with a best-worst pair
        m["rewards/margins"] = s.Mean(Margin, Pairs);
        m["rewards/accuracies"] = s.Mean(Correct, Pairs);
    }
}
