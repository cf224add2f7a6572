using AlignHub.Domain;

namespace AlignHub.Training.Tokenizers;

/// <summary>Token ids of one example and, per token, whether predicting it carries loss.</summary>
public sealed record TokenizedExample(int[] Ids, bool[] Trainable)
{
    public int TrainableCount => Trainable.Count(t => t);
}

public static class SupervisedTokenization
{
    /// <summary>
    /// The prompt encoder's prefix (<see cref="Data.PromptEncoder.Prefix"/>: the BOS) + segments + [eos], truncated
    /// to <paramref name="maxLength"/> from the end. The eos carries loss when the last segment does (a completion or
    /// assistant turn ends the example). Prompt tokens never carry loss.
    /// </summary>
    public static TokenizedExample Tokenize(SupervisedExample example, ITokenizer tok, int maxLength)
    {
        var ids = new List<int>(new Data.PromptEncoder(tok, maxLength).Prefix);
        var trainable = Enumerable.Repeat(false, ids.Count).ToList();
        foreach (var seg in example.Segments)
        {
            var t = tok.Encode(seg.Text);
            ids.AddRange(t);
            trainable.AddRange(Enumerable.Repeat(seg.Trainable, t.Length));
        }
        ids.Add(tok.EosId);
        trainable.Add(example.Segments.Count > 0 && example.Segments[^1].Trainable);
        if (ids.Count > maxLength)
        {
            ids.RemoveRange(maxLength, ids.Count - maxLength);
            trainable.RemoveRange(maxLength, trainable.Count - maxLength);
        }
        return new TokenizedExample([.. ids], [.. trainable]);
    }
}
