using AlignHub.Domain;
using AlignHub.Training.Losses;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// RLOO (Ahmadian et al., 2024; Kool et al., 2019), as TRL's RLOOTrainer computes a step: the reward less beta times
/// pi_old's summed k1 to the reference, leave-one-out baselines over each prompt's K samples
/// (<see cref="Advantages.LeaveOneOut"/>), and the clipped surrogate per sequence (summed log-probs, one ratio per
/// completion, mean over the batch's sequences: <see cref="PolicyLosses.ClippedSequence"/>).
/// </summary>
public sealed class Rloo(RlooConfig c) : ClippedStrategy<RlooConfig>(c)
{
    public override RlNeeds Needs => KlInReward;

    public override RlTargets Targets(RolloutTensors b)
    {
        using var kl = b.SequenceKl();
        using var shaped = b.Rewards - b.Beta * kl;
        return new(Advantages.LeaveOneOut(shaped, b.K));
    }

    public override Tensor Loss(RlMicroBatch m, StatSink stats)
    {
        using var seq = (m.Logps * m.Mask).sum(1);
        using var oldSeq = (m.OldLogps * m.Mask).sum(1);
        var o = PolicyLosses.ClippedSequence(seq, oldSeq, m.Advantages, m.Weights, Config.Epsilon, Config.EpsilonHigh ?? Config.Epsilon, m.Norm.Sequences);
        RecordClips(o, stats);
        o.PerToken.Dispose();
        return o.Loss;
    }
}
