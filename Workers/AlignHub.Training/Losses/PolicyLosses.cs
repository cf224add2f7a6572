using static TorchSharp.torch;

namespace AlignHub.Training.Losses;

/// <summary>
/// The denominators of a batch's loss, counted over the whole optimizer step's batch (every micro-batch of it), so a
/// micro-batch's loss is its share of the batch's and the accumulated gradient does not depend on how the batch was split.
/// </summary>
/// <param name="Sequences">Completions in the batch (that carry loss).</param>
/// <param name="Tokens">Loss-carrying completion tokens in the batch (masked).</param>
/// <param name="MaxCompletionLength">Dr. GRPO's constant L.</param>
/// <param name="MicroBatches">How many micro-batches the batch was split into (TRL's local <c>bnpo</c> averages over them).</param>
public readonly record struct LossNormalizer(double Sequences, double Tokens, int MaxCompletionLength, int MicroBatches = 1)
{
    /// <summary>A normaliser for one micro-batch that is the whole batch.</summary>
    public static LossNormalizer Of(Tensor mask, int maxCompletionLength) => new(mask.shape[0], mask.sum().item<float>(), maxCompletionLength);
}

/// <summary>The policy loss of a micro-batch and what it clipped.</summary>
/// <param name="Loss">The micro-batch's share of the batch's loss (a scalar).</param>
/// <param name="PerToken">Per-token loss [B, T] (0 off the mask), before aggregation.</param>
/// <param name="ClipLow">Count of clipping units (tokens; sequences at sequence level) with A &lt; 0 and ratio &lt; 1 - epsilon.</param>
/// <param name="ClipHigh">Count with A &gt; 0 and ratio &gt; 1 + epsilon_high (CISPO: ratio &gt; epsilon_high).</param>
/// <param name="ClipUnits">Count of clipping units the counts are out of (masked tokens, or sequences).</param>
public sealed record PolicyLossOutput(Tensor Loss, Tensor PerToken, Tensor ClipLow, Tensor ClipHigh, Tensor ClipUnits);

/// <summary>
/// Policy-gradient losses of online RL, pure functions of per-token log-probs [B, T], advantages and a mask.
/// PPO's clipped surrogate (Schulman et al., 2017): with ratio_t = exp(log pi(y_t) - log pi_old(y_t)),
/// l_t = -min(ratio_t A, clip(ratio_t, 1 - epsilon, 1 + epsilon_high) A) + beta k3_t (DAPO's decoupled
/// epsilon_high, Yu et al., 2025). GSPO (Zheng et al., 2025, <c>level = "sequence"</c>): one ratio per completion,
/// s_i = exp(mean_t (log pi - log pi_old)), clipped per sequence, as TRL's <c>importance_sampling_level</c>. CISPO
/// (MiniMax, 2025, <c>loss_type = "cispo"</c>): l_t = -sg(min(ratio_t, epsilon_high)) A log pi(y_t), as TRL computes it.
/// Aggregations (<c>loss_type</c>, TRL's names, over the whole batch by <see cref="LossNormalizer"/>): <c>grpo</c>
/// (mean per sequence, then over the batch's sequences; Shao et al., 2024), <c>dapo</c> and <c>cispo</c> (sum over
/// tokens / the batch's tokens), <c>bnpo</c> (TRL's local variant: the micro-batch's own token mean, / micro-batches),
/// <c>dr_grpo</c> (sum / (sequences x max_completion_length); Liu et al., 2025).
/// </summary>
public static class PolicyLosses
{
    public static PolicyLossOutput Clipped(Tensor logps, Tensor oldLogps, Tensor advantages, Tensor mask, double epsilon, double epsilonHigh,
        string lossType, LossNormalizer norm, Tensor? referenceLogps = null, double beta = 0, string level = "token")
    {
        var adv = advantages.dim() == 1 ? advantages.unsqueeze(1) : advantages; // sequence advantages apply to every token
        using var logRatio = logps - oldLogps;
        using var ratio = level switch
        {
            "token" => logRatio.exp(),
            "sequence" => ((logRatio * mask).sum(1, keepdim: true) / mask.sum(1, keepdim: true).clamp_min(1)).exp(), // [B, 1]
            _ => throw new ArgumentException($"unknown importance_sampling_level \"{level}\""),
        };
        Tensor perToken;
        Tensor low, high;
        if (lossType == "cispo")
        {
            if (level != "token") throw new ArgumentException("cispo weighs tokens; importance_sampling_level must be token");
            using var capped = ratio.clamp(max: epsilonHigh).detach();
            perToken = -(capped * adv * logps);
            low = zeros_like(ratio);
            high = (ratio.gt(epsilonHigh) & adv.gt(0)).to_type(mask.dtype);
        }
        else
        {
            using var unclipped = ratio * adv;
            using var clipped = ratio.clamp(1 - epsilon, 1 + epsilonHigh) * adv;
            perToken = -minimum(unclipped, clipped); // [B, T], or [B, 1] at sequence level
            low = (ratio.lt(1 - epsilon) & adv.lt(0)).to_type(mask.dtype);
            high = (ratio.gt(1 + epsilonHigh) & adv.gt(0)).to_type(mask.dtype);
        }
        if (referenceLogps is not null && beta != 0)
        {
            using var kl = KlEstimators.K3(logps, referenceLogps);
            var withKl = perToken + beta * kl;
            perToken.Dispose();
            perToken = withKl;
        }
        var masked = perToken * mask; // broadcasts a sequence-level loss over its tokens, as TRL does
        perToken.Dispose();
        var loss = Aggregate(masked, mask, lossType, norm);
        Tensor units;
        if (level == "sequence")
        {
            using var has = mask.sum(1, keepdim: true).gt(0).to_type(mask.dtype);
            (low, high) = (Keep(low * has, low), Keep(high * has, high));
            units = has.sum();
        }
        else
        {
            (low, high) = (Keep(low * mask, low), Keep(high * mask, high));
            units = mask.sum();
        }
        using (low) using (high) return new PolicyLossOutput(loss, masked, low.sum(), high.sum(), units);

        static Tensor Keep(Tensor result, Tensor input) { input.Dispose(); return result; }
    }

    /// <summary>Aggregates a masked per-token loss [B, T] as <paramref name="lossType"/> says, over the batch <paramref name="norm"/> counts.</summary>
    public static Tensor Aggregate(Tensor maskedPerToken, Tensor mask, string lossType, LossNormalizer norm) => lossType switch
    {
        "grpo" => (maskedPerToken.sum(1) / mask.sum(1).clamp_min(1)).sum() / Math.Max(1, norm.Sequences),
        "dapo" or "cispo" => maskedPerToken.sum() / Math.Max(1, norm.Tokens),
        "bnpo" => maskedPerToken.sum() / mask.sum().clamp_min(1) / Math.Max(1, norm.MicroBatches),
        "dr_grpo" => maskedPerToken.sum() / (Math.Max(1, norm.Sequences) * (double)norm.MaxCompletionLength),
        _ => throw new ArgumentException($"unknown loss_type \"{lossType}\""),
    };

    /// <summary>
    /// The clipped surrogate per sequence (TRL's RLOOTrainer): ratio_i = exp(sum_t log pi - sum_t log pi_old) over
    /// each completion, l_i = -min(ratio_i A_i, clip(ratio_i, 1 - epsilon, 1 + epsilon_high) A_i), summed over the
    /// micro-batch's sequences (weighted) / the batch's sequences. Shapes: sequence log-probs and advantages [B].
    /// </summary>
    public static PolicyLossOutput ClippedSequence(Tensor seqLogps, Tensor oldSeqLogps, Tensor advantages, Tensor weights,
        double epsilon, double epsilonHigh, double batchSequences)
    {
        using var ratio = (seqLogps - oldSeqLogps).exp();
        using var unclipped = ratio * advantages;
        using var clipped = ratio.clamp(1 - epsilon, 1 + epsilonHigh) * advantages;
        var perSequence = -minimum(unclipped, clipped) * weights;
        var loss = perSequence.sum() / Math.Max(1, batchSequences);
        using var low = (ratio.lt(1 - epsilon) & advantages.lt(0)).to_type(weights.dtype) * weights;
        using var high = (ratio.gt(1 + epsilonHigh) & advantages.gt(0)).to_type(weights.dtype) * weights;
        return new PolicyLossOutput(loss, perSequence, low.sum(), high.sum(), weights.sum());
    }

    /// <summary>
    /// PPO's clipped value loss: 0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2), summed over the
    /// micro-batch's masked tokens / the batch's tokens (<paramref name="batchTokens"/>).
    /// </summary>
    public static Tensor ClippedValue(Tensor values, Tensor oldValues, Tensor returns, Tensor mask, double clip, double batchTokens)
    {
        using var vClipped = oldValues + (values - oldValues).clamp(-clip, clip);
        using var a = (values - returns).pow(2);
        using var b = (vClipped - returns).pow(2);
        using var worst = maximum(a, b) * mask;
        return 0.5 * worst.sum() / Math.Max(1, batchTokens);
    }

    /// <summary>Negative log-likelihood of the masked tokens: -sum(log pi * mask) / the batch's masked tokens.</summary>
    public static Tensor Nll(Tensor logps, Tensor mask, double batchTokens)
    {
        using var total = (logps * mask).sum();
        return -total / Math.Max(1, batchTokens);
    }
}
