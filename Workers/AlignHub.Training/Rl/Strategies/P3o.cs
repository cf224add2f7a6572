using AlignHub.Domain;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// P3O (Wu et al., 2023), joint clipping: completions pair up as samples 2i and 2i + 1 of a prompt; each reward less
/// beta x its completion's k1 to the reference (pi_old's, when beta &gt; 0) gives the pair's difference D = R(y) - R(y')
/// (the rewards' part in double precision, so a constant added to every reward cancels); with the relative ratio
/// rho = exp(sum_t [log pi - log pi_old](y) - sum_t [log pi - log pi_old](y')), the pair's loss is
/// -(1/2) min(rho D, clip(rho, 1 - eps, 1 + eps_high) D), averaged over the batch's pairs.
/// </summary>
public sealed class P3o(P3oConfig c) : ClippedStrategy<P3oConfig>(c)
{
    public override RlNeeds Needs => KlInReward with { WholeGroups = true };

    /// <summary>Each completion's target: its pair's shaped reward difference, D for the first and -D for the second.</summary>
    public override RlTargets Targets(RolloutTensors b)
    {
        var d = b.PairRewardGaps();
        if (b.Beta == 0 || b.RefLogps is null) return new(d);
        using var kl = b.SequenceKl().view(-1, 2);
        using var klGap = (kl[.., 0] - kl[.., 1]).unsqueeze(1);
        using var signed = cat([klGap, -klGap], 1).view(-1);
        using (d) return new(d - b.Beta * signed);
    }

    public override Tensor Loss(RlMicroBatch m, StatSink stats)
    {
        using var logRatio = ((m.Logps - m.OldLogps) * m.Mask).sum(1).view(-1, 2);
        using var rho = (logRatio[.., 0] - logRatio[.., 1]).exp();
        using var d = m.Advantages.view(-1, 2)[.., 0];
        double eLow = Config.Epsilon, eHigh = Config.EpsilonHigh ?? Config.Epsilon;
        using var clipped = rho.clamp(1 - eLow, 1 + eHigh);
        using var objective = minimum(rho * d, clipped * d);
        using (no_grad())
        {
            stats.Add(ClipStats.Low, (rho.lt(1 - eLow) & d.lt(0)).to_type(ScalarType.Float32).sum());
            stats.Add(ClipStats.High, (rho.gt(1 + eHigh) & d.gt(0)).to_type(ScalarType.Float32).sum());
            stats.Add(ClipStats.Units, (double)rho.shape[0]);
        }
        return -0.5 * objective.sum() / Math.Max(1, m.Norm.Sequences / 2);
    }
}
