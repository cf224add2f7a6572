using AlignHub.Training.Losses;
using static TorchSharp.torch;

namespace AlignHub.Training.Data;

/// <summary>
/// The one collator for training and scoring: sequences right-padded into one batch on the model's device. Right
/// padding keeps plain causal attention exact for every real token (padding only ever follows them). Generation
/// pads on the left instead, inside <see cref="Generation.TextGenerator"/>.
/// </summary>
public static class Collator
{
    /// <summary>Token ids with a per-token loss mask (true: the token is predicted with loss); longer rows are cut to <paramref name="maxLength"/>.</summary>
    public static CompletionBatch Sequences(IReadOnlyList<(int[] Ids, bool[] LossMask)> rows, int padId, Device? device, int? maxLength = null)
    {
        int b = rows.Count;
        int t = Math.Max(2, rows.Max(r => Math.Min(r.Ids.Length, maxLength ?? int.MaxValue)));
        var ids = new long[b * t];
        var att = new float[b * t];
        var loss = new float[b * t];
        for (int i = 0; i < b; i++)
        {
            var (rowIds, mask) = rows[i];
            int n = Math.Min(rowIds.Length, t);
            for (int j = 0; j < t; j++)
            {
                bool real = j < n;
                ids[i * t + j] = real ? rowIds[j] : padId;
                att[i * t + j] = real ? 1 : 0;
                loss[i * t + j] = real && mask[j] ? 1 : 0;
            }
        }
        return new CompletionBatch(tensor(ids, [b, t], device: device), tensor(att, [b, t], device: device), tensor(loss, [b, t], device: device));
    }

    /// <summary>(prompt, completion) rows: the completion's tokens carry loss, the prompt's never.</summary>
    public static CompletionBatch PromptCompletions(IReadOnlyList<(int[] Prompt, int[] Completion)> pairs, int padId, Device? device, int? maxLength = null) =>
        Sequences(pairs.Select(p => ((int[])[.. p.Prompt, .. p.Completion],
            Enumerable.Repeat(false, p.Prompt.Length).Concat(Enumerable.Repeat(true, p.Completion.Length)).ToArray())).ToList(), padId, device, maxLength);
}
