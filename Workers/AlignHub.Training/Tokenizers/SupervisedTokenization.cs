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
    /// Segments, then the EOS (unless the example says its text ends its own turn, as a chat template's rendering does),
    /// with a BOS first under the prompt encoder's rule (<see cref="Data.PromptEncoder.NeedsBos"/>: where the tokenizer adds
    /// one and the text does not start with it), truncated to <paramref name="maxLength"/> from the end. The EOS carries
    /// loss when the last segment does (a completion or assistant turn ends the example). Prompt tokens never carry loss.
    /// </summary>
    public static TokenizedExample Tokenize(SupervisedExample example, ITokenizer tok, int maxLength)
    {
        var ids = new List<int>();
        var trainable = new List<bool>();
        foreach (var seg in example.Segments)
        {
            var t = tok.Encode(seg.Text);
            ids.AddRange(t);
            trainable.AddRange(Enumerable.Repeat(seg.Trainable, t.Length));
        }
        if (Data.PromptEncoder.NeedsBos(tok, ids)) { ids.Insert(0, tok.BosId); trainable.Insert(0, false); }
        if (example.AppendEos)
        {
            ids.Add(tok.EosId);
            trainable.Add(example.Segments.Count > 0 && example.Segments[^1].Trainable);
        }
        if (ids.Count > maxLength)
        {
            ids.RemoveRange(maxLength, ids.Count - maxLength);
            trainable.RemoveRange(maxLength, trainable.Count - maxLength);
        }
        return new TokenizedExample([.. ids], [.. trainable]);
    }
}
