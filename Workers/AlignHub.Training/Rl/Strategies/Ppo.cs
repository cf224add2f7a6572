using AlignHub.Domain;
using AlignHub.Training.Losses;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// PPO (Schulman et al., 2017) as InstructGPT (Ouyang et al., 2022), TRL's PPOTrainer and verl compute a step: token
/// rewards -beta k1_t (pi_old against the reference) with the score at the last token
/// (<see cref="Advantages.TokenRewards"/>), GAE over the value head's values at sampling time
/// (<see cref="Advantages.Gae"/>), advantages whitened over the whole batch's tokens; per update the clipped
/// token-level surrogate plus vf_coef times the clipped value loss, both normalised over the update's tokens.
/// </summary>
public sealed class Ppo(PpoConfig c) : PpoFamily<PpoConfig>(c);

/// <summary>
/// RTO (Zhong et al., 2024): PPO whose token rewards add dpo_beta x (log pi_dpo - log pi_ref) of each sampled token, the
/// DPO model's log-probs read in the trainer's scoring-model slot (<see cref="RolloutTensors.TeacherLogps"/>).
/// </summary>
public sealed class Rto(RtoConfig c) : PpoFamily<RtoConfig>(c)
{
    protected override Tensor DenseRewards(RolloutTensors b) => Config.DpoBeta * (b.TeacherLogps! - b.RefLogps!) * b.Mask;
}

/// <summary>PPO's step; a member of the family adds token rewards of its own (<see cref="DenseRewards"/>).</summary>
public abstract class PpoFamily<TConfig>(TConfig c) : ClippedStrategy<TConfig>(c) where TConfig : PpoConfig
{
    const string PolicyLoss = "policy_loss", ValueLoss = "value_loss",
        ResidualSum = "ev_residual_sum", ResidualSquares = "ev_residual_squares", ReturnSum = "ev_return_sum", ReturnSquares = "ev_return_squares", Tokens = "ev_tokens";

    public override RlNeeds Needs => new()
    {
        Reference = Config.NeedsReference, PolicyLogProbs = true, ValueHead = Config.NeedsValueModel, ValueLearningRate = Config.ValueLearningRate,
        Teacher = Config.NeedsTeacher,
    };

    /// <summary>Token rewards [N, T-1] added to the KL-penalised score (none for PPO itself).</summary>
    protected virtual Tensor? DenseRewards(RolloutTensors b) => null;
    public override IReadOnlyList<string> StatNames => [.. ClipStats.Names, PolicyLoss, ValueLoss, ResidualSum, ResidualSquares, ReturnSum, ReturnSquares, Tokens];

    public override RlTargets Targets(RolloutTensors b)
    {
        using var kl = b.TokenKl();
        var sparse = Advantages.TokenRewards(b.Rewards, kl, b.Mask, b.Beta); // freed with the trainer's scope for targets
        var tokenRewards = DenseRewards(b) is { } dense ? sparse + dense : sparse;
        var (adv, returns) = Advantages.Gae(tokenRewards, b.OldValues!, b.Mask, Config.Gamma, Config.Lam);
        if (!Config.WhitenAdvantages) return new(adv, returns);
        using (adv) return new(Advantages.Whiten(adv, b.Mask), returns);
    }

    public override Tensor Loss(RlMicroBatch m, StatSink stats)
    {
        var policy = ClippedLoss(m, stats);
        var value = PolicyLosses.ClippedValue(m.Values!, m.OldValues!, m.Returns!, m.Mask, Config.CliprangeValue, m.Norm.Tokens);
        stats.Add(PolicyLoss, policy);
        stats.Add(ValueLoss, value);
        // Explained variance over the update's tokens: 1 - Var(R - V_old) / Var(R), from sums.
        using (no_grad())
        {
            using var residual = (m.Returns! - m.OldValues!) * m.Mask;
            using var returns = m.Returns! * m.Mask;
            stats.Add(ResidualSum, residual.sum());
            stats.Add(ResidualSquares, residual.pow(2).sum());
            stats.Add(ReturnSum, returns.sum());
            stats.Add(ReturnSquares, returns.pow(2).sum());
            stats.Add(Tokens, m.Mask.sum());
        }
        return policy + Config.VfCoef * value;
    }

    public override void Metrics(StatSums s, Dictionary<string, double> m)
    {
        base.Metrics(s, m);
        m[PolicyLoss] = s[PolicyLoss];
        m[ValueLoss] = s[ValueLoss];
        double n = Math.Max(2, s[Tokens]);
        double Var(string sum, string squares) => (s[squares] - s[sum] * s[sum] / n) / (n - 1);
        m["explained_variance"] = 1 - Var(ResidualSum, ResidualSquares) / Math.Max(1e-12, Var(ReturnSum, ReturnSquares));
    }
}
