using static TorchSharp.torch;

namespace AlignHub.Training.Losses;

/// <summary>Supervised fine-tuning loss: masked next-token negative log-likelihood.</summary>
public static class SupervisedLoss
{
    /// <summary>
    /// Per-token log-probabilities of the next token: logp[b, t] = log softmax(logits[b, t])[ids[b, t + 1]],
    /// shape [B, T-1].
    /// </summary>
    public static Tensor NextTokenLogProbs(Tensor logits, Tensor inputIds)
    {
        using var shifted = logits[.., ..^1, ..];
        using var logSoftmax = shifted.log_softmax(-1);
        using var targets = inputIds[.., 1..].unsqueeze(-1);
        using var gathered = logSoftmax.gather(-1, targets);
        return gathered.squeeze(-1);
    }

    /// <summary>
    /// L = -(1 / |M|) * sum over (b, t) in M of log p(ids[b, t+1] | ids[b, ..t]), where M holds the positions whose
    /// next token is trainable (completion or assistant tokens; never prompt or padding). <paramref name="trainable"/>
    /// is [B, T] and marks tokens; position t is counted when token t+1 is trainable.
    /// Also returns the count of correct argmax predictions in M and |M| (for <c>train_mean_token_accuracy</c>).
    /// </summary>
    public static (Tensor Loss, Tensor Correct, Tensor Count) MaskedNll(Tensor logits, Tensor inputIds, Tensor trainable)
    {
        using var logp = NextTokenLogProbs(logits, inputIds);
        using var mask = trainable[.., 1..].to(logp.dtype);
        var count = mask.sum();
        using var clampedCount = count.clamp_min(1);
        using var total = (logp * mask).sum();
        var loss = -total / clampedCount;
        using var predicted = logits[.., ..^1, ..].argmax(-1);
        using var hits = predicted.eq(inputIds[.., 1..]).to(logp.dtype);
        var correct = (hits * mask).sum();
        return (loss, correct, count);
    }
}
