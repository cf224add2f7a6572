using System.Text.Json;
using System.Text.RegularExpressions;
using AlignHub.Domain;
using Microsoft.ML.Tokenizers;

namespace AlignHub.Training.Tokenizers;

/// <summary>
/// A tokenizer read from a Hugging Face model folder: <c>tokenizer.json</c> (the fast-tokenizer file; BPE models,
/// byte-level or SentencePiece-style, read by <see cref="TokenizerJson"/>), else through Microsoft.ML.Tokenizers GPT-2
/// byte-level BPE (vocab.json + merges.txt), SentencePiece (tokenizer.model) or tiktoken (*.tiktoken). bos/eos/pad ids
/// come from config.json, then tokenizer_config.json / special_tokens_map.json.
/// Added tokens, as transformers' <c>tokenizer(text)</c> treats them: the entries of <c>added_tokens_decoder</c>
/// (tokenizer_config.json) and <c>added_tokens</c> (tokenizer.json), and the bos/eos/pad/unk strings, are found in the
/// text first (leftmost, and the longest at a position) and become their own ids; the text between them is encoded by
/// the model. An added token with <c>lstrip</c> takes the whitespace before it, one with <c>rstrip</c> the whitespace
/// after it. (<c>single_word</c> and <c>normalized</c> are read but not applied: the families in the tests leave them false.)
/// Special tokens around a text (<see cref="AddBos"/>, <see cref="AddEos"/>) follow transformers' rules: tokenizer_config.json's
/// <c>add_bos_token</c> / <c>add_eos_token</c> where it sets them; else tokenizer.json's post-processor; else the
/// tokenizer class's default (SentencePiece, as LlamaTokenizer: a BOS; GPT-2 BPE and tiktoken: none).
/// </summary>
public sealed class HfTokenizer : ITokenizer
{
    /// <summary>GPT-2's pre-tokenization: contractions, letters, numbers, other symbols, with one leading space; whitespace runs.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>cl100k's pattern, used for tiktoken files that carry none.</summary>
    public const string Cl100kPattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    readonly Func<string, int[]> model;
    readonly Func<IReadOnlyList<int>, string> decodeRun;
    readonly IReadOnlyList<AddedToken> added;
    readonly Dictionary<int, string> addedById;
    readonly AddedTrie trie;
    readonly bool cleanUpSpaces;
    readonly HashSet<int> endIds;

    /// <summary>A token matched in text before the model's own encoding (tokenizer.json's <c>added_tokens</c>).</summary>
    public sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip);

    HfTokenizer(string kind, Func<string, int[]> model, Func<IReadOnlyList<int>, string> decodeRun, int vocabSize, int bos, int eos, int pad,
        IReadOnlyList<AddedToken> added, bool addBos, bool addEos, bool cleanUpSpaces, IEnumerable<int> endIds)
    {
        this.endIds = [eos, .. endIds];
        Kind = kind; this.model = model; this.decodeRun = decodeRun; VocabSize = vocabSize; BosId = bos; EosId = eos; PadId = pad;
        AddBos = addBos; AddEos = addEos; this.cleanUpSpaces = cleanUpSpaces;
        // Longest first, so "<|im_start|>" wins over a shorter token it contains.
        this.added = added.Where(a => a.Content.Length > 0).OrderByDescending(a => a.Content.Length).ToList();
        addedById = this.added.GroupBy(a => a.Id).ToDictionary(g => g.Key, g => g.First().Content);
        trie = new AddedTrie(this.added);
    }

    public IReadOnlyList<AddedToken> AddedTokens => added;

    public string Kind { get; }
    public int VocabSize { get; }
    public int BosId { get; }
    public int EosId { get; }
    public int PadId { get; }
    /// <summary>Whether transformers' <c>tokenizer(text)</c> puts the BOS first.</summary>
    public bool AddBos { get; }
    /// <summary>Whether transformers' <c>tokenizer(text)</c> puts the EOS last (read; prompts never end with it, see <see cref="Data.PromptEncoder"/>).</summary>
    public bool AddEos { get; }

    public bool IsEos(int id) => endIds.Contains(id);

    public int[] Encode(string text)
    {
        if (added.Count == 0) return model(text);
        var ids = new List<int>();
        int at = 0, scan = 0;
        while (at < text.Length)
        {
            // The leftmost added token; at one position, the longest.
            var (best, token) = trie.Find(text, scan);
            if (token is null) { ids.AddRange(model(text[at..])); break; }
            var before = text[at..best];
            if (token.LStrip) before = before.TrimEnd();
            ids.AddRange(model(before));
            ids.Add(token.Id);
            at = scan = best + token.Content.Length;
            if (token.RStrip) while (at < text.Length && char.IsWhiteSpace(text[at])) at++;
            scan = at;
        }
        return [.. ids];
    }

    public string Decode(IEnumerable<int> ids)
    {
        var sb = new System.Text.StringBuilder();
        var run = new List<int>();
        void Flush() { if (run.Count > 0) { sb.Append(decodeRun(run)); run.Clear(); } }
        foreach (var id in ids)
        {
            if (id == PadId || id == BosId || endIds.Contains(id)) continue;
            if (addedById.TryGetValue(id, out var content)) { Flush(); sb.Append(content); }
            else run.Add(id);
        }
        Flush();
        return cleanUpSpaces ? CleanUp(sb.ToString()) : sb.ToString();
    }

    /// <summary>transformers' <c>clean_up_tokenization</c>, applied when tokenizer_config.json sets <c>clean_up_tokenization_spaces</c>.</summary>
    static string CleanUp(string s) => s.Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",").Replace(" ' ", "'")
        .Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re");

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
        Func<string, int[]> encode;
        Func<IReadOnlyList<int>, string> decode;
        Func<string, int?> lookup;
        bool defaultBos = false;
        (int[] Prefix, int[] Suffix)? template = null;
        switch (kind)
        {
            case TokenizerFiles.TokenizerJson:
            {
                var tj = TokenizerJson.Load(Path.Combine(folder, "tokenizer.json"));
                encode = tj.Encode; decode = tj.Decode;
                lookup = s => tj.Vocabulary.TryGetValue(s, out var id) ? id : null;
                if (tj.HasTemplate) template = (tj.Prefix, tj.Suffix);
                break;
            }
            case TokenizerFiles.Gpt2Bpe:
            {
                var bpe = BpeTokenizer.Create(new BpeOptions(Path.Combine(folder, "vocab.json"), Path.Combine(folder, "merges.txt"))
                {
                    ByteLevel = true,
                    PreTokenizer = new RegexPreTokenizer(new Regex(Gpt2Pattern, RegexOptions.Compiled), null),
                });
                (encode, decode) = Wrap(bpe);
                lookup = s => bpe.Vocabulary.TryGetValue(s, out var id) ? id : null;
                break;
            }
            case TokenizerFiles.SentencePiece:
            {
                using var s = File.OpenRead(Path.Combine(folder, "tokenizer.model"));
                var sp = LlamaTokenizer.Create(s, addBeginOfSentence: false, addEndOfSentence: false);
                (encode, decode) = Wrap(sp);
                lookup = x => sp.Vocabulary.TryGetValue(x, out var id) ? id : null;
                defaultBos = true; // LlamaTokenizer's add_bos_token default
                break;
            }
            case TokenizerFiles.Tiktoken:
            {
                var pattern = TokenizerConfigString(folder, "pat_str") ?? Cl100kPattern;
                using var s = File.OpenRead(TokenizerFiles.TiktokenFile(folder)!);
                var tk = TiktokenTokenizer.Create(s, new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), null), null);
                (encode, decode) = Wrap(tk);
                lookup = x => { var ids = tk.EncodeToIds(x); return ids.Count == 1 ? ids[0] : null; };
                break;
            }
            default:
                return new ByteTokenizer();
        }
        // The tokenizer's own special tokens first (transformers' tokenizer.eos_token_id, which TRL appends), then config.json's ids.
        int? Special(int? fromConfig, string name) =>
            (TokenizerConfigString(folder, name) is { } str ? lookup(str) ?? AddedId(folder, str) : null) ?? fromConfig;
        var eos = Special(arch.EosTokenId, "eos_token")
            ?? throw new InvalidDataException($"{folder}: no eos token (config.json eos_token_id or tokenizer_config.json eos_token)");
        var bosToken = Special(arch.BosTokenId, "bos_token");
        var bos = bosToken ?? eos;
        var pad = Special(arch.PadTokenId, "pad_token") ?? eos;
        var addBosSetting = TokenizerConfigBool(folder, "add_bos_token");
        var addEosSetting = TokenizerConfigBool(folder, "add_eos_token");
        bool addBos = addBosSetting ?? (template is { } t1 ? t1.Prefix.Length > 0 : defaultBos);
        bool addEos = addEosSetting ?? (template is { } t2 && t2.Suffix.Length > 0);
        if (bosToken is null && addBosSetting is null && template is null) addBos = false;
        // Generation ends at any end id the folder names: config.json's and generation_config.json's eos_token_id (an id or a list).
        var endIds = new[] { "config.json", "generation_config.json" }.SelectMany(f => IdsOf(folder, f, "eos_token_id")).Append(eos);
        return new HfTokenizer(kind, encode, decode, arch.VocabSize, bos, eos, pad, AddedTokensOf(folder, lookup), addBos, addEos,
            TokenizerConfigBool(folder, "clean_up_tokenization_spaces") ?? false, endIds);
    }

    static IEnumerable<int> IdsOf(string folder, string file, string key)
    {
        var path = Path.Combine(folder, file);
        if (!File.Exists(path)) return [];
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        if (!doc.RootElement.TryGetProperty(key, out var v)) return [];
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var one)) return [one];
        if (v.ValueKind == JsonValueKind.Array) return v.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.Number).Select(x => x.GetInt32()).ToList();
        return [];
    }

    static (Func<string, int[]>, Func<IReadOnlyList<int>, string>) Wrap(Tokenizer t) =>
        (text => text.Length == 0 ? [] : [.. t.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true)], ids => t.Decode(ids) ?? "");

    /// <summary>The id of an added token by its content (a special token that only tokenizer.json or tokenizer_config.json lists).</summary>
    static int? AddedId(string folder, string content) => AddedTokensOf(folder, _ => null).FirstOrDefault(a => a.Content == content)?.Id;

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

    static bool? TokenizerConfigBool(string folder, string key)
    {
        var path = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(path)) return null;
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
    }

    /// <summary>Added tokens by their characters: the leftmost match in a text, the longest at its position.</summary>
    sealed class AddedTrie
    {
        sealed class Node { public Dictionary<char, Node> Next = []; public AddedToken? Token; }
        readonly Node root = new();

        public AddedTrie(IEnumerable<AddedToken> tokens)
        {
            foreach (var t in tokens)
            {
                var n = root;
                foreach (var c in t.Content) n = n.Next.TryGetValue(c, out var x) ? x : n.Next[c] = new Node();
                n.Token ??= t;
            }
        }

        public (int At, AddedToken? Token) Find(string text, int from)
        {
            if (root.Next.Count == 0) return (-1, null);
            for (int i = from; i < text.Length; i++)
            {
                if (!root.Next.TryGetValue(text[i], out var n)) continue;
                AddedToken? best = n.Token;
                for (int j = i + 1; j < text.Length && n.Next.TryGetValue(text[j], out var child); j++)
                {
                    n = child;
                    if (n.Token is not null) best = n.Token;
                }
                if (best is not null) return (i, best);
            }
            return (-1, null);
        }
    }
}
