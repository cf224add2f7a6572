using AlignHub.Training.Models;
using static TorchSharp.torch;

namespace AlignHub.Training.Losses;

/// <summary>A right-padded batch of prompt + completion sequences.</summary>
/// <param name="InputIds">[B, T] token ids, padding on the right.</param>
/// <param name="AttentionMask">[B, T] 1 on real tokens.</param>
/// <param name="CompletionMask">[B, T] 1 on completion tokens only (never prompt or padding).</param>
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
    /// <summary>Right-pads (prompt, completion) pairs into one batch; <paramref name="maxLength"/> truncates completions from the end.</summary>
    public static CompletionBatch Collate(IReadOnlyList<(int[] Prompt, int[] Completion)> pairs, int padId, int? maxLength = null)
    {
        var seqs = pairs.Select(p =>
        {
            var ids = p.Prompt.Concat(p.Completion).ToArray();
            var comp = Enumerable.Repeat(false, p.Prompt.Length).Concat(Enumerable.Repeat(true, p.Completion.Length)).ToArray();
            if (maxLength is int m && ids.Length > m) { ids = ids[..m]; comp = comp[..m]; }
            return (ids, comp);
        }).ToList();
        int b = seqs.Count, t = Math.Max(2, seqs.Max(s => s.ids.Length));
        var idArr = new long[b * t];
        var att = new float[b * t];
        var cm = new float[b * t];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++)
            {
                bool real = j < seqs[i].ids.Length;
                idArr[i * t + j] = real ? seqs[i].ids[j] : padId;
                att[i * t + j] = real ? 1 : 0;
                cm[i * t + j] = real && seqs[i].comp[j] ? 1 : 0;
            }
        return new CompletionBatch(tensor(idArr, [b, t]), tensor(att, [b, t]), tensor(cm, [b, t]));
    }

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
        using var batch = Collate([.. chosen, .. rejected], padId, maxLength);
        var all = Compute(model, batch);
        int b = chosen.Count;
        CompletionLogProbsResult Half(int from, int to) =>
            new(all.PerToken[from..to], all.Mask[from..to], all.Sum[from..to], all.Count[from..to]);
        return (Half(0, b), Half(b, 2 * b));
    }
}
