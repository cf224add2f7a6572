using AlignHub.Domain;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// SPPO (Wu et al., 2024): the rewards are win rates within each group (<see cref="Rewards.GroupWinRateSource"/>, as
/// <see cref="OnlineRlConfig.RewardsAreGroupWinRates"/> asks of the runner); each sample's target is
/// eta (P(y &gt; pi) - 1/2), and its summed log-ratio to the sampling policy is regressed onto it, averaged over the batch's
/// samples.
/// </summary>
public sealed class Sppo(SppoConfig c) : RlStrategy<SppoConfig>(c)
{
    const string TargetAbs = "sppo_target_abs_sum", Count = "sppo_samples";
    public override RlNeeds Needs => new();
    public override IReadOnlyList<string> StatNames => [TargetAbs, Count];

    public override RlTargets Targets(RolloutTensors b) => new(Config.Eta * (b.Rewards - 0.5));

    public override Tensor Loss(RlMicroBatch m, StatSink stats)
    {
        using var logRatio = ((m.Logps - m.OldLogps) * m.Mask).sum(1);
        using var residual = logRatio - m.Advantages;
        stats.Add(TargetAbs, m.Advantages.abs().sum());
        stats.Add(Count, (double)m.Advantages.shape[0]);
        return (residual.pow(2) * m.Weights).sum() / Math.Max(1, m.Norm.Sequences);
    }

    public override void Metrics(StatSums s, Dictionary<string, double> m) => m["sppo/target_abs"] = s.Mean(TargetAbs, Count);
}
