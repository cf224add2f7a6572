using static TorchSharp.torch;

namespace AlignHub.Training.Losses;

/// <summary>The clipped policy loss of a batch and what it clipped.</summary>
/// <param name="Loss">The aggregated loss (a scalar).</param>
/// <param name="PerToken">Per-token loss [B, T] (0 off the mask), before aggregation.</param>
/// <param name="ClipLow">Share of masked tokens with A &lt; 0 and ratio &lt; 1 - epsilon (the lower bound clipped).</param>
/// <param name="ClipHigh">Share of masked tokens with A &gt; 0 and ratio &gt; 1 + epsilon_high.</param>
public sealed record PolicyLossOutput(Tensor Loss, Tensor PerToken, Tensor ClipLow, Tensor ClipHigh)
{
    /// <summary>Share of masked tokens clipped at either bound (<c>clip_ratio/region_mean</c>).</summary>
    public Tensor ClipRegion => ClipLow + ClipHigh;
}

/// <summary>
/// Policy-gradient losses of online RL, pure functions of per-token log-probs [B, T], advantages and a mask.
/// PPO's clipped surrogate (Schulman et al., 2017): with ratio_t = exp(log pi(y_t) - log pi_old(y_t)),
/// l_t = -min(ratio_t A, clip(ratio_t, 1 - epsilon, 1 + epsilon_high) A) + beta k3_t (DAPO's decoupled
/// epsilon_high, Yu et al., 2025). Aggregations (<c>loss_type</c>, TRL's names): <c>grpo</c> (mean per sequence,
/// then over sequences; Shao et al., 2024), <c>bnpo</c> and <c>dapo</c> (sum over all tokens / masked tokens of the
/// batch: the same within one process), <c>dr_grpo</c> (sum / (B * max_completion_length); Liu et al., 2025).
/// </summary>
public static class PolicyLosses
{
    public static PolicyLossOutput Clipped(Tensor logps, Tensor oldLogps, Tensor advantages, Tensor mask, double epsilon, double epsilonHigh,
        string lossType, int maxCompletionLength, Tensor? referenceLogps = null, double beta = 0)
    {
        var adv = advantages.dim() == 1 ? advantages.unsqueeze(1) : advantages; // sequence advantages apply to every token
        using var ratio = (logps - oldLogps).exp();
        using var unclipped = ratio * adv;
        using var clipped = ratio.clamp(1 - epsilon, 1 + epsilonHigh) * adv;
        var perToken = -minimum(unclipped, clipped);
        if (referenceLogps is not null && beta != 0)
        {
            using var kl = KlEstimators.K3(logps, referenceLogps);
            var withKl = perToken + beta * kl;
            perToken.Dispose();
            perToken = withKl;
        }
        var masked = perToken * mask;
        perToken.Dispose();
        var loss = Aggregate(masked, mask, lossType, maxCompletionLength);
        using var tokens = mask.sum().clamp_min(1);
        using var low = (ratio.lt(1 - epsilon) & adv.lt(0)).to_type(mask.dtype) * mask;
        using var high = (ratio.gt(1 + epsilonHigh) & adv.gt(0)).to_type(mask.dtype) * mask;
        return new PolicyLossOutput(loss, masked, low.sum() / tokens, high.sum() / tokens);
    }

    /// <summary>Aggregates a masked per-token loss [B, T] as <paramref name="lossType"/> says.</summary>
    public static Tensor Aggregate(Tensor maskedPerToken, Tensor mask, string lossType, int maxCompletionLength) => lossType switch
    {
        "grpo" => (maskedPerToken.sum(1) / mask.sum(1).clamp_min(1)).mean(),
        "bnpo" or "dapo" => maskedPerToken.sum() / mask.sum().clamp_min(1),
        "dr_grpo" => maskedPerToken.sum() / (maskedPerToken.shape[0] * (double)maxCompletionLength),
        _ => throw new ArgumentException($"unknown loss_type \"{lossType}\""),
    };

    /// <summary>
    /// PPO's clipped value loss: 0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2), averaged over masked tokens.
    /// </summary>
    public static Tensor ClippedValue(Tensor values, Tensor oldValues, Tensor returns, Tensor mask, double clip)
    {
        using var vClipped = oldValues + (values - oldValues).clamp(-clip, clip);
        using var a = (values - returns).pow(2);
        using var b = (vClipped - returns).pow(2);
        using var worst = maximum(a, b) * mask;
        return 0.5 * worst.sum() / mask.sum().clamp_min(1);
    }
}
