using AlignHub.Training.Tokenizers;

namespace AlignHub.Training.Data;

/// <summary>
/// The one way a prompt becomes token ids, for every method (preference pairs, generation, evaluation, rollouts,
/// reward scoring). Convention: a BOS token first (<see cref="AddBos"/>; the tiny presets and the models trained
/// here expect it), then the prompt's tokens. A prompt longer than <see cref="MaxPromptTokens"/> loses tokens from
/// the side named by <see cref="Truncation"/>: <c>Left</c> (the default) keeps its end, which holds the question,
/// and always keeps the BOS. A completion is its tokens plus EOS, cut from the right to the room left.
/// </summary>
public sealed record PromptEncoder(ITokenizer Tokenizer, int MaxPromptTokens, bool AddBos = true, TruncationSide Truncation = TruncationSide.Left)
{
    /// <summary>The tokens every sequence starts with (the BOS, or none).</summary>
    public int[] Prefix => AddBos ? [Tokenizer.BosId] : [];

    public int[] Encode(string prompt)
    {
        var body = Tokenizer.Encode(prompt);
        var prefix = Prefix;
        int room = Math.Max(0, MaxPromptTokens - prefix.Length);
        if (body.Length > room) body = Truncation == TruncationSide.Left ? body[^room..] : body[..room];
        return [.. prefix, .. body];
    }

    /// <summary>The completion's tokens plus EOS, at most <paramref name="room"/> of them (cut from the end).</summary>
    public int[] EncodeCompletion(string completion, int room)
    {
        int[] ids = [.. Tokenizer.Encode(completion), Tokenizer.EosId];
        room = Math.Max(1, room);
        return ids.Length > room ? ids[..room] : ids;
    }
}

public enum TruncationSide { Left, Right }
