using AlignHub.Training.Tokenizers;

namespace AlignHub.Training.Data;

/// <summary>
/// The one way a prompt becomes token ids, for every method (preference pairs, generation, evaluation, rollouts,
/// reward scoring), with the special tokens transformers' <c>tokenizer(text)</c> would add: a BOS first when the
/// tokenizer adds one (<see cref="ITokenizer.AddBos"/>: Llama/SentencePiece and Gemma yes, GPT-2 and Qwen no; AlignHub's
/// byte tokenizer yes, the tiny presets were trained with it) and the text does not already start with it (a chat template
/// that writes <c>bos_token</c> itself, as TRL avoids a doubled BOS). Two visible choices differ from
/// <c>tokenizer(text)</c>: an empty prompt always starts with the BOS (a model needs one token to continue from), and a
/// prompt never ends with the EOS even where <c>add_eos_token</c> is set (a prompt is continued, not closed).
/// A prompt longer than <see cref="MaxPromptTokens"/> loses tokens from the side named by <see cref="Truncation"/>:
/// <c>Left</c> (the default) keeps its end, which holds the question, and always keeps the BOS. A completion is its
/// tokens plus EOS, cut from the right to the room left.
/// </summary>
public sealed record PromptEncoder(ITokenizer Tokenizer, int MaxPromptTokens, TruncationSide Truncation = TruncationSide.Left)
{
    public int[] Encode(string prompt)
    {
        var body = Tokenizer.Encode(prompt);
        int[] prefix = [];
        if (NeedsBos(Tokenizer, body)) prefix = [Tokenizer.BosId];
        else if (body[0] == Tokenizer.BosId) { prefix = [body[0]]; body = body[1..]; } // a BOS the text wrote survives truncation
        int room = Math.Max(0, MaxPromptTokens - prefix.Length);
        if (body.Length > room) body = Truncation == TruncationSide.Left ? body[^room..] : body[..room];
        return [.. prefix, .. body];
    }

    /// <summary>Whether a BOS goes before these ids: the tokenizer adds one and they do not start with it, or there are none.</summary>
    public static bool NeedsBos(ITokenizer tok, IReadOnlyList<int> body) => body.Count == 0 || (tok.AddBos && body[0] != tok.BosId);

    /// <summary>The completion's tokens plus EOS, at most <paramref name="room"/> of them (cut from the end).</summary>
    public int[] EncodeCompletion(string completion, int room)
    {
        int[] ids = [.. Tokenizer.Encode(completion), Tokenizer.EosId];
        room = Math.Max(1, room);
        return ids.Length > room ? ids[..room] : ids;
    }
}

public enum TruncationSide { Left, Right }
