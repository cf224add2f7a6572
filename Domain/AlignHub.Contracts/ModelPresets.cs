using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// Built-in tiny decoders (random initialisation from the job's seed, byte-level tokenizer) that exist
/// from first start, so a newcomer can train something at once.
/// </summary>
public static class ModelPresets
{
    public const string ByteTokenizer = "byte";

    public sealed record Gpt2Shape(int NEmbd, int NLayer, int NHead, int NPositions);

    public static readonly IReadOnlyDictionary<string, Gpt2Shape> All = new Dictionary<string, Gpt2Shape>
    {
        ["alignhub/tiny"] = new(64, 2, 4, 256),
        ["alignhub/tiny-128"] = new(128, 4, 4, 512),
    };

    /// <summary>Byte tokenizer ids: 0..255 bytes, then bos, eos, pad.</summary>
    public const int ByteVocab = 259, ByteBos = 256, ByteEos = 257, BytePad = 258;

    public static string ConfigJson(Gpt2Shape s) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["model_type"] = "gpt2",
        ["architectures"] = new[] { "GPT2LMHeadModel" },
        ["n_embd"] = s.NEmbd,
        ["n_layer"] = s.NLayer,
        ["n_head"] = s.NHead,
        ["n_positions"] = s.NPositions,
        ["vocab_size"] = ByteVocab,
        ["layer_norm_epsilon"] = 1e-5,
        ["bos_token_id"] = ByteBos,
        ["eos_token_id"] = ByteEos,
        ["pad_token_id"] = BytePad,
        ["tie_word_embeddings"] = true,
    });

    /// <summary>GPT-2 parameter count with tied embeddings.</summary>
    public static long Gpt2Parameters(long vocab, Gpt2Shape s)
    {
        long d = s.NEmbd;
        return vocab * d + s.NPositions * d + s.NLayer * (12 * d * d + 13 * d) + 2 * d;
    }

    public static IEnumerable<ModelRecord> Records() => All.Select(kv => new ModelRecord
    {
        Id = kv.Key,
        CreatedAt = 0,
        OwnedBy = "alignhub",
        Architecture = "gpt2",
        ConfigJson = ConfigJson(kv.Value),
        Tokenizer = ByteTokenizer,
        WeightsPath = null,
        Parameters = Gpt2Parameters(ByteVocab, kv.Value),
    });
}
