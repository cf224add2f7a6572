using AlignHub.Domain;
using AlignHub.Training.Losses;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// ReMax (Li et al., 2023): each prompt's greedy completion, sampled and scored with the batch, is the baseline of its
/// samples (<see cref="Advantages.ReMax"/>); the clipped token-level surrogate plus beta k3 to the reference.
/// </summary>
public sealed class Remax(RemaxConfig c) : ClippedStrategy<RemaxConfig>(c)
{
    public override RlNeeds Needs => new() { Reference = Config.NeedsReference, GreedyBaseline = true };
    public override RlTargets Targets(RolloutTensors b) => new(Advantages.ReMax(b.Rewards, b.GreedyRewards!, b.K));
    public override Tensor Loss(RlMicroBatch m, StatSink stats) => ClippedLoss(m, stats, m.Beta);
}
