using System.Text.Json;
using System.Text.RegularExpressions;
using AlignHub.Domain;
using Microsoft.ML.Tokenizers;

namespace AlignHub.Training.Tokenizers;

/// <summary>
/// A tokenizer read from a Hugging Face model folder through Microsoft.ML.Tokenizers: GPT-2 byte-level BPE
/// (vocab.json + merges.txt), SentencePiece (tokenizer.model) or tiktoken (*.tiktoken). Special-token strings in
/// text are encoded as text, never as control tokens; bos/eos/pad ids come from config.json, then
/// tokenizer_config.json / special_tokens_map.json.
/// </summary>
public sealed class HfTokenizer : ITokenizer
{
    /// <summary>GPT-2's pre-tokenization: contractions, letters, numbers, other symbols, with one leading space; whitespace runs.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>cl100k's pattern, used for tiktoken files that carry none.</summary>
    public const string Cl100kPattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    readonly Tokenizer inner;

    HfTokenizer(string kind, Tokenizer inner, int vocabSize, int bos, int eos, int pad)
    {
        Kind = kind; this.inner = inner; VocabSize = vocabSize; BosId = bos; EosId = eos; PadId = pad;
    }

    public string Kind { get; }
    public int VocabSize { get; }
    public int BosId { get; }
    public int EosId { get; }
    public int PadId { get; }

    public int[] Encode(string text) => text.Length == 0 ? [] : [.. inner.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true)];

    public string Decode(IEnumerable<int> ids) => inner.Decode(ids.Where(i => i != PadId && i != BosId && i != EosId)) ?? "";

    /// <summary>The tokenizer a model uses: the byte tokenizer for <c>byte</c>, else the one in <paramref name="folder"/>.</summary>
    public static ITokenizer ForModel(string kind, string? folder, ModelArchitecture arch)
    {
        if (kind == TokenizerFiles.Byte)
        {
            if (arch.VocabSize < ModelPresets.ByteVocab)
                throw new InvalidDataException($"the byte tokenizer needs a vocabulary of at least {ModelPresets.ByteVocab}; the model has {arch.VocabSize}");
            return new ByteTokenizer();
        }
        if (folder is null) throw new InvalidDataException($"tokenizer \"{kind}\" needs the model's folder");
        return Load(folder, arch);
    }

    public static ITokenizer Load(string folder, ModelArchitecture arch)
    {
        var kind = TokenizerFiles.Detect(folder);
        Tokenizer t;
        Func<string, int?> lookup;
        switch (kind)
        {
            case TokenizerFiles.Gpt2Bpe:
            {
                var bpe = BpeTokenizer.Create(new BpeOptions(Path.Combine(folder, "vocab.json"), Path.Combine(folder, "merges.txt"))
                {
                    ByteLevel = true,
                    PreTokenizer = new RegexPreTokenizer(new Regex(Gpt2Pattern, RegexOptions.Compiled), null),
                });
                t = bpe;
                lookup = s => bpe.Vocabulary.TryGetValue(s, out var id) ? id : null;
                break;
            }
            case TokenizerFiles.SentencePiece:
            {
                using var s = File.OpenRead(Path.Combine(folder, "tokenizer.model"));
                var sp = LlamaTokenizer.Create(s, addBeginOfSentence: false, addEndOfSentence: false);
                t = sp;
                lookup = x => sp.Vocabulary.TryGetValue(x, out var id) ? id : null;
                break;
            }
            case TokenizerFiles.Tiktoken:
            {
                var pattern = TokenizerConfigString(folder, "pat_str") ?? Cl100kPattern;
                using var s = File.OpenRead(TokenizerFiles.TiktokenFile(folder)!);
                var tk = TiktokenTokenizer.Create(s, new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), null), null);
                t = tk;
                lookup = x => { var ids = tk.EncodeToIds(x); return ids.Count == 1 ? ids[0] : null; };
                break;
            }
            default:
                return new ByteTokenizer();
        }
        int? Special(int? fromConfig, string name) =>
            fromConfig ?? (TokenizerConfigString(folder, name) is { } str ? lookup(str) : null);
        var eos = Special(arch.EosTokenId, "eos_token")
            ?? throw new InvalidDataException($"{folder}: no eos token (config.json eos_token_id or tokenizer_config.json eos_token)");
        var bos = Special(arch.BosTokenId, "bos_token") ?? eos;
        var pad = Special(arch.PadTokenId, "pad_token") ?? eos;
        return new HfTokenizer(kind, t, arch.VocabSize, bos, eos, pad);
    }

    /// <summary>A string setting of tokenizer_config.json or special_tokens_map.json (a string, or an object with <c>content</c>).</summary>
    static string? TokenizerConfigString(string folder, string key)
    {
        foreach (var file in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            var path = Path.Combine(folder, file);
            if (!File.Exists(path)) continue;
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (!doc.RootElement.TryGetProperty(key, out var v)) continue;
            if (v.ValueKind == JsonValueKind.String) return v.GetString();
            if (v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String) return c.GetString();
        }
        return null;
    }
}
