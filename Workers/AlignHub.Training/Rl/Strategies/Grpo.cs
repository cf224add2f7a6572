using AlignHub.Domain;
using AlignHub.Training.Losses;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// GRPO (Shao et al., 2024, "DeepSeekMath"), as TRL's GRPOTrainer computes a step: group-relative advantages over the
/// whole batch (<see cref="Advantages.Group"/>, scaled per <c>scale_rewards</c>), the clipped surrogate per token or,
/// with <c>importance_sampling_level = "sequence"</c>, per sequence (GSPO, Zheng et al., 2025), plus beta k3 to the
/// reference in the loss, aggregated per <c>loss_type</c> over the whole batch (<see cref="PolicyLosses"/>).
/// </summary>
public abstract class GroupRelative<TConfig>(TConfig c) : ClippedStrategy<TConfig>(c) where TConfig : OnlineRlConfig, IGroupAdvantages
{
    public override RlNeeds Needs => new() { Reference = Config.NeedsReference };
    public override RlTargets Targets(RolloutTensors b) => new(Advantages.Group(b.Rewards, b.K, Config.ScaleRewards));
    public override Tensor Loss(RlMicroBatch m, StatSink stats) => ClippedLoss(m, stats, m.Beta, Config.ImportanceSamplingLevel);
}

public sealed class Grpo(GrpoConfig c) : GroupRelative<GrpoConfig>(c);

/// <summary>OpenAI's reinforcement method runs as GRPO.</summary>
public sealed class Reinforcement(ReinforcementConfig c) : GroupRelative<ReinforcementConfig>(c);
