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
public sealed class ReinforcePp(ReinforcePpConfig c) : ClippedStrategy<ReinforcePpConfig>(c)
{
    public override RlNeeds Needs => KlInReward;

    /// <summary>(Tensors made here are freed by the dispose scope the trainer computes targets in.)</summary>
    public override RlTargets Targets(RolloutTensors b) => new(Advantages.ReinforcePlusPlus(b.Rewards, b.TokenKl(), b.Mask, b.Beta));

    public override Tensor Loss(RlMicroBatch m, StatSink stats) => ClippedLoss(m, stats);
}
