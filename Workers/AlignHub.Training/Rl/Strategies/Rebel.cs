using AlignHub.Domain;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// REBEL (Gao et al., 2024): completions pair up as samples 2i and 2i + 1 of a prompt; each pair's loss is
/// ((1/eta) [(log pi - log pi_old)(y) - (log pi - log pi_old)(y')] - (r(y) - r(y')))^2 with log-probs summed over each
/// completion, averaged over the batch's pairs. The targets are the rewards themselves: only their differences within
/// a pair enter (taken in double precision), so a constant added to every reward leaves the update unchanged.
/// </summary>
public sealed class Rebel(RebelConfig c) : RlStrategy<RebelConfig>(c)
{
    const string TargetAbs = "rebel_target_abs_sum", Residual = "rebel_residual_sum", Pairs = "rebel_pairs";
    public override RlNeeds Needs => new() { WholeGroups = true };
    public override IReadOnlyList<string> StatNames => [TargetAbs, Residual, Pairs];

    /// <summary>Each completion's target is its pair's reward difference, r(y) - r(y') for the first and its negative for the second.</summary>
    public override RlTargets Targets(RolloutTensors b) => new(b.PairRewardGaps());

    public override Tensor Loss(RlMicroBatch m, StatSink stats)
    {
        using var logRatio = ((m.Logps - m.OldLogps) * m.Mask).sum(1).view(-1, 2);
        using var gaps = m.Advantages.view(-1, 2);
        using var predicted = (logRatio[.., 0] - logRatio[.., 1]) / Config.Eta;
        using var target = gaps[.., 0];
        using var residual = predicted - target;
        using (no_grad())
        {
            stats.Add(TargetAbs, target.abs().sum());
            stats.Add(Residual, residual.abs().sum());
            stats.Add(Pairs, (double)target.shape[0]);
        }
        return residual.pow(2).sum() / Math.Max(1, m.Norm.Sequences / 2);
    }

    public override void Metrics(StatSums s, Dictionary<string, double> m)
    {
        m["rebel/reward_gap"] = s.Mean(TargetAbs, Pairs); // mean |r(y) - r(y')| of a pair
        m["rebel/residual"] = s.Mean(Residual, Pairs);    // mean |prediction - target| of the regression
    }
}
