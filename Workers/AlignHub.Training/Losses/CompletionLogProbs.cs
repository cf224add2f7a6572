using AlignHub.Training.Data;
using AlignHub.Training.Models;
using static TorchSharp.torch;

namespace AlignHub.Training.Losses;

/// <summary>A right-padded batch of prompt + completion sequences.</summary>
/// <param name="InputIds">[B, T] token ids, padding on the right.</param>
/// <param name="AttentionMask">[B, T] 1 on real tokens.</param>
/// <param name="CompletionMask">[B, T] 1 on tokens predicted with loss: completion (or assistant) tokens, never prompt or padding.</param>
public sealed record CompletionBatch(Tensor InputIds, Tensor AttentionMask, Tensor CompletionMask) : IDisposable
{
    public void Dispose() { InputIds.Dispose(); AttentionMask.Dispose(); CompletionMask.Dispose(); }
}

/// <summary>Per-token log-probs over completion tokens ([B, T-1], zero elsewhere), their sum and count per sequence.</summary>
public sealed record CompletionLogProbsResult(Tensor PerToken, Tensor Mask, Tensor Sum, Tensor Count)
{
    /// <summary>Mean log-prob per completion token (the length-normalised form SimPO, IPO and ORPO use).</summary>
    public Tensor Mean() => Sum / Count.clamp_min(1);
}

/// <summary>
/// The primitive every trainer stands on: log pi(y | x) = sum over completion tokens t of
/// log softmax(logits[t-1])[y_t], for right-padded prompt+completion batches; prompt tokens never count.
/// </summary>
public static class CompletionLogProbs
{
    /// <summary>Log-probs of the completion tokens given the logits of the batch ([B, T, V]).</summary>
    public static CompletionLogProbsResult FromLogits(Tensor logits, CompletionBatch batch)
    {
        using var logp = SupervisedLoss.NextTokenLogProbs(logits, batch.InputIds); // [B, T-1], predicts token t+1
        var mask = batch.CompletionMask[.., 1..].to(logp.dtype);
        var perToken = logp * mask;
        return new CompletionLogProbsResult(perToken, mask, perToken.sum(1), mask.sum(1));
    }

    /// <summary>One forward of the model over the batch (right padding: plain causal attention is exact for real tokens).</summary>
    public static CompletionLogProbsResult Compute(CausalLM model, CompletionBatch batch)
    {
        using var logits = model.forward(batch.InputIds);
        return FromLogits(logits, batch);
    }

    /// <summary>
    /// Chosen and rejected completions through one concatenated forward (both halves padded to one length): rows
    /// 0..B-1 are chosen, B..2B-1 rejected. Returns the two halves' results.
    /// </summary>
    public static (CompletionLogProbsResult Chosen, CompletionLogProbsResult Rejected) Concatenated(
        CausalLM model, IReadOnlyList<(int[] Prompt, int[] Completion)> chosen, IReadOnlyList<(int[] Prompt, int[] Completion)> rejected,
        int padId, int? maxLength = null)
    {
        if (chosen.Count != rejected.Count) throw new ArgumentException("chosen and rejected must pair up");
        using var batch = Collator.PromptCompletions([.. chosen, .. rejected], padId, model.Device, maxLength);
        var all = Compute(model, batch);
        int b = chosen.Count;
        CompletionLogProbsResult Half(int from, int to) =>
            new(all.PerToken[from..to], all.Mask[from..to], all.Sum[from..to], all.Count[from..to]);
        return (Half(0, b), Half(b, 2 * b));
    }
}
