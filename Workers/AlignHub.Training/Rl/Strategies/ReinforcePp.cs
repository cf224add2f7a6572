using AlignHub.Domain;
using AlignHub.Training.Losses;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// REINFORCE++ (Hu, 2025), as verl's <c>compute_reinforce_plus_plus_outcome_advantage</c> with the KL in the reward:
/// token rewards -beta k1_t (pi_old against the reference) with the sequence reward at the last token, returns-to-go,
/// whitened over every completion token of the whole batch (<see cref="Advantages.ReinforcePlusPlus"/>), in the
/// clipped token-level surrogate.
/// </summary>
public sealed class ReinforcePp(ReinforcePpConfig c) : RlStrategy<ReinforcePpConfig>(c)
{
    public override RlNeeds Needs => new() { Reference = Config.Beta > 0, PolicyLogProbs = Config.Beta > 0 };
    public override IReadOnlyList<string> StatNames => ClipStats.Names;

    public override RlTargets Targets(RolloutTensors b)
    {
        using var kl = b.TokenKl();
        return new(Advantages.ReinforcePlusPlus(b.Rewards, kl, b.Mask, b.Beta));
    }

    public override Tensor Loss(RlMicroBatch m, StatSink stats) => ClippedLoss(m, stats);
    public override void Metrics(StatSums s, Dictionary<string, double> m) => ClipStats.Metrics(s, m);
}
