using System.Text.Json;
using System.Text.RegularExpressions;
using AlignHub.Domain;
using Microsoft.ML.Tokenizers;

namespace AlignHub.Training.Tokenizers;

/// <summary>
/// A tokenizer read from a Hugging Face model folder through Microsoft.ML.Tokenizers: GPT-2 byte-level BPE
/// (vocab.json + merges.txt), SentencePiece (tokenizer.model) or tiktoken (*.tiktoken). bos/eos/pad ids come from
/// config.json, then tokenizer_config.json / special_tokens_map.json. Added tokens, as transformers' <c>tokenizer(text)</c>
/// treats them: the entries of <c>added_tokens_decoder</c> (tokenizer_config.json) and <c>added_tokens</c>
/// (tokenizer.json), and the bos/eos/pad/unk strings, are found in the text first (the longest at a position wins)
/// and become their own ids; the text between them is encoded by the model. An added token with <c>lstrip</c> takes
/// the whitespace before it, one with <c>rstrip</c> the whitespace after it. (<c>single_word</c> and
/// <c>normalized</c> are read but not applied: the families in the tests leave them false.)
/// </summary>
public sealed class HfTokenizer : ITokenizer
{
    /// <summary>GPT-2's pre-tokenization: contractions, letters, numbers, other symbols, with one leading space; whitespace runs.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>cl100k's pattern, used for tiktoken files that carry none.</summary>
    public const string Cl100kPattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    readonly Tokenizer inner;
    readonly IReadOnlyList<AddedToken> added;
    readonly Dictionary<int, string> addedById;

    /// <summary>A token matched in text before the model's own encoding (tokenizer.json's <c>added_tokens</c>).</summary>
    public sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip);

    HfTokenizer(string kind, Tokenizer inner, int vocabSize, int bos, int eos, int pad, IReadOnlyList<AddedToken> added)
    {
        Kind = kind; this.inner = inner; VocabSize = vocabSize; BosId = bos; EosId = eos; PadId = pad;
        // Longest first, so "<|im_start|>" wins over a shorter token it contains.
        this.added = added.Where(a => a.Content.Length > 0).OrderByDescending(a => a.Content.Length).ToList();
        addedById = this.added.GroupBy(a => a.Id).ToDictionary(g => g.Key, g => g.First().Content);
    }

    public IReadOnlyList<AddedToken> AddedTokens => added;

    public string Kind { get; }
    public int VocabSize { get; }
    public int BosId { get; }
    public int EosId { get; }
    public int PadId { get; }

    public int[] Encode(string text)
    {
        if (added.Count == 0) return Model(text);
        var ids = new List<int>();
        int at = 0;
        while (at < text.Length)
        {
            // The leftmost added token; at one position, the longest.
            int best = -1;
            AddedToken? token = null;
            foreach (var a in added)
            {
                int i = text.IndexOf(a.Content, at, StringComparison.Ordinal);
                if (i >= 0 && (best < 0 || i < best)) { best = i; token = a; }
            }
            if (token is null) { ids.AddRange(Model(text[at..])); break; }
            var before = text[at..best];
            if (token.LStrip) before = before.TrimEnd();
            ids.AddRange(Model(before));
            ids.Add(token.Id);
            at = best + token.Content.Length;
            if (token.RStrip) while (at < text.Length && char.IsWhiteSpace(text[at])) at++;
        }
        return [.. ids];
    }

    int[] Model(string text) => text.Length == 0 ? [] : [.. inner.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true)];

    public string Decode(IEnumerable<int> ids)
    {
        var sb = new System.Text.StringBuilder();
        var run = new List<int>();
        void Flush() { if (run.Count > 0) { sb.Append(inner.Decode(run) ?? ""); run.Clear(); } }
        foreach (var id in ids)
        {
            if (id == PadId || id == BosId || id == EosId) continue;
            if (addedById.TryGetValue(id, out var content)) { Flush(); sb.Append(content); }
            else run.Add(id);
        }
        Flush();
        return sb.ToString();
    }

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
        return new HfTokenizer(kind, t, arch.VocabSize, bos, eos, pad, AddedTokensOf(folder, lookup));
    }

    /// <summary>
    /// The folder's added tokens: tokenizer.json's <c>added_tokens</c>, tokenizer_config.json's <c>added_tokens_decoder</c>
    /// (by id), and the special-token strings of the configs that the vocabulary knows.
    /// </summary>
    public static List<AddedToken> AddedTokensOf(string folder, Func<string, int?> lookup)
    {
        var byContent = new Dictionary<string, AddedToken>();
        AddedToken Read(int id, JsonElement e) => new(id, e.GetProperty("content").GetString() ?? "",
            Flag(e, "special"), Flag(e, "lstrip"), Flag(e, "rstrip"));
        var tokenizerJson = Path.Combine(folder, "tokenizer.json");
        if (File.Exists(tokenizerJson))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(tokenizerJson));
            if (doc.RootElement.TryGetProperty("added_tokens", out var list) && list.ValueKind == JsonValueKind.Array)
                foreach (var e in list.EnumerateArray()) { var a = Read(e.GetProperty("id").GetInt32(), e); byContent[a.Content] = a; }
        }
        var config = Path.Combine(folder, "tokenizer_config.json");
        if (File.Exists(config))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(config));
            if (doc.RootElement.TryGetProperty("added_tokens_decoder", out var map) && map.ValueKind == JsonValueKind.Object)
                foreach (var p in map.EnumerateObject())
                    if (int.TryParse(p.Name, out var id)) { var a = Read(id, p.Value); byContent[a.Content] = a; }
        }
        foreach (var key in new[] { "bos_token", "eos_token", "pad_token", "unk_token" })
            if (TokenizerConfigString(folder, key) is { Length: > 0 } str && !byContent.ContainsKey(str) && lookup(str) is int id)
                byContent[str] = new AddedToken(id, str, true, false, false);
        return [.. byContent.Values];
    }

    static bool Flag(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;

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
