using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace AlignHub.Training.Tokenizers;

/// <summary>
/// The BPE model of a <c>tokenizer.json</c> (the file Hugging Face's fast tokenizers read), applied as the
/// <c>tokenizers</c> library applies it to the text between added tokens: the normalizer (NFC/NFD/NFKC/NFKD, Lowercase,
/// Prepend, Replace, Sequence), the pre-tokenizer (Split with its five behaviours and invert, ByteLevel with
/// add_prefix_space and use_regex, Digits, Metaspace, Sequence), the BPE model (merges by rank, leftmost first;
/// <c>ignore_merges</c>: a pre-token that is itself in the vocabulary is one id; <c>byte_fallback</c>: a character
/// outside the vocabulary becomes its UTF-8 bytes as <c>&lt;0xXX&gt;</c> tokens; <c>unk_token</c> with
/// <c>fuse_unk</c>), and the decoder (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence).
/// The post-processor tells which special tokens <c>tokenizer(text)</c> adds (<see cref="Prefix"/>,
/// <see cref="Suffix"/>: TemplateProcessing, Roberta/Bert processing, or none for ByteLevel).
/// Byte-level BPE (GPT-2, Llama 3, Qwen2/3, SmolLM2) and SentencePiece-style BPE with byte fallback (Llama 2, Gemma)
/// are both this class; WordPiece, Unigram and WordLevel models are refused with their name.
/// </summary>
public sealed class TokenizerJson
{
    readonly Dictionary<string, int> vocab;
    readonly string[] tokens;
    readonly Dictionary<(string, string), int> ranks;
    readonly bool ignoreMerges, byteFallback, fuseUnk;
    readonly int? unkId;
    readonly Func<string, string> normalize;
    readonly Func<List<string>, List<string>> preTokenize;
    readonly Func<List<string>, List<string>> decode;
    readonly Dictionary<string, int[]> cache = new(StringComparer.Ordinal);

    /// <summary>Special token ids <c>tokenizer(text)</c> puts before and after the text (the post-processor's template).</summary>
    public int[] Prefix { get; }
    public int[] Suffix { get; }
    /// <summary>True when the file names a post-processor that decides <see cref="Prefix"/> and <see cref="Suffix"/>.</summary>
    public bool HasTemplate { get; }
    public IReadOnlyDictionary<string, int> Vocabulary => vocab;

    TokenizerJson(JsonElement root)
    {
        var model = root.GetProperty("model");
        var type = model.TryGetProperty("type", out var t) ? t.GetString() : "BPE";
        if (type != "BPE") throw new NotSupportedException($"tokenizer.json: model type \"{type}\" is not supported (BPE)");
        vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in model.GetProperty("vocab").EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
        // Added tokens are ids too (decode); the model's own vocabulary wins for encoding.
        var added = root.TryGetProperty("added_tokens", out var a) && a.ValueKind == JsonValueKind.Array ? a.EnumerateArray().ToList() : [];
        int size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(x => x.GetProperty("id").GetInt32()) + 1);
        tokens = new string[size];
        foreach (var (s, id) in vocab) tokens[id] = s;
        foreach (var x in added) tokens[x.GetProperty("id").GetInt32()] ??= x.GetProperty("content").GetString() ?? "";
        ranks = new Dictionary<(string, string), int>();
        int rank = 0;
        foreach (var m in model.GetProperty("merges").EnumerateArray())
        {
            (string, string) pair;
            if (m.ValueKind == JsonValueKind.Array) pair = (m[0].GetString()!, m[1].GetString()!);
            else
            {
                var s = m.GetString()!;
                int sp = s.IndexOf(' ', 1); // a merge "a b"; the first symbol is never empty
                pair = (s[..sp], s[(sp + 1)..]);
            }
            ranks.TryAdd(pair, rank++);
        }
        ignoreMerges = Bool(model, "ignore_merges");
        byteFallback = Bool(model, "byte_fallback");
        fuseUnk = Bool(model, "fuse_unk");
        if (model.TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String && vocab.TryGetValue(unk.GetString()!, out var u)) unkId = u;
        foreach (var key in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0)
                throw new NotSupportedException($"tokenizer.json: BPE with {key} \"{v.GetString()}\" is not supported");
        normalize = Normalizer(root.TryGetProperty("normalizer", out var n) ? n : default);
        preTokenize = PreTokenizer(root.TryGetProperty("pre_tokenizer", out var pt) ? pt : default);
        decode = Decoder(root.TryGetProperty("decoder", out var d) ? d : default);
        (Prefix, Suffix, HasTemplate) = PostProcessor(root.TryGetProperty("post_processor", out var pp) ? pp : default, added);
    }

    public static TokenizerJson Load(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { MaxDepth = 256 });
        try { return new TokenizerJson(doc.RootElement); }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"tokenizer.json is not a readable tokenizers file: {e.Message}");
        }
    }

    /// <summary>The model type and whether this class reads it, without building the vocabulary (registration checks).</summary>
    public static string? Unsupported(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { MaxDepth = 256 });
            var model = doc.RootElement.GetProperty("model");
            var type = model.TryGetProperty("type", out var t) ? t.GetString() : "BPE";
            return type == "BPE" ? null : $"tokenizer.json has a {type} model; AlignHub reads BPE models";
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return $"tokenizer.json is not a readable tokenizers file: {e.Message}";
        }
    }

    public int VocabSize => tokens.Length;

    /// <summary>The token string of an id (null outside the vocabulary).</summary>
    public string? Token(int id) => id >= 0 && id < tokens.Length ? tokens[id] : null;

    /// <summary>Ids of text holding no added tokens: normalize, pre-tokenize, BPE each piece.</summary>
    public int[] Encode(string text)
    {
        if (text.Length == 0) return [];
        var normalized = normalize(text);
        if (normalized.Length == 0) return [];
        var ids = new List<int>();
        foreach (var piece in preTokenize([normalized]))
            if (piece.Length > 0) ids.AddRange(Piece(piece));
        return [.. ids];
    }

    int[] Piece(string piece)
    {
        lock (cache)
            if (cache.TryGetValue(piece, out var hit)) return hit;
        int[] ids;
        if (ignoreMerges && vocab.TryGetValue(piece, out var whole)) ids = [whole];
        else ids = Bpe(piece);
        lock (cache)
        {
            if (cache.Count > 200_000) cache.Clear();
            cache[piece] = ids;
        }
        return ids;
    }

    /// <summary>BPE of one pre-token: its characters (or byte tokens), then the lowest-ranked adjacent pair merged, leftmost first, until none merges.</summary>
    int[] Bpe(string piece)
    {
        var syms = new List<string>();
        var isUnk = new List<bool>();
        for (int i = 0; i < piece.Length;)
        {
            int len = char.IsSurrogatePair(piece, i) ? 2 : 1;
            var ch = piece.Substring(i, len);
            i += len;
            if (vocab.ContainsKey(ch)) { syms.Add(ch); isUnk.Add(false); continue; }
            if (byteFallback)
            {
                var bytes = Encoding.UTF8.GetBytes(ch);
                var byteTokens = bytes.Select(b => $"<0x{b:X2}>").ToList();
                if (byteTokens.All(vocab.ContainsKey)) { foreach (var bt in byteTokens) { syms.Add(bt); isUnk.Add(false); } continue; }
            }
            if (unkId is null) throw new InvalidDataException($"tokenizer.json: the character U+{char.ConvertToUtf32(ch, 0):X4} is not in the vocabulary and the model has no unk_token");
            if (fuseUnk && isUnk.Count > 0 && isUnk[^1]) continue;
            syms.Add(tokens[unkId.Value]); isUnk.Add(true);
        }
        // Doubly linked symbols and a heap of candidate merges ordered by (rank, position).
        int n = syms.Count;
        var prev = new int[n]; var next = new int[n]; var alive = new bool[n];
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; alive[i] = true; }
        var heap = new PriorityQueue<int, (int Rank, int Pos)>();
        void Push(int i)
        {
            int j = next[i];
            if (i < 0 || j < 0 || isUnk[i] || isUnk[j]) return;
            if (ranks.TryGetValue((syms[i], syms[j]), out var r) && vocab.ContainsKey(syms[i] + syms[j])) heap.Enqueue(i, (r, i));
        }
        for (int i = 0; i + 1 < n; i++) Push(i);
        while (heap.TryDequeue(out var i, out var pr))
        {
            if (!alive[i] || next[i] < 0) continue;
            int j = next[i];
            if (!ranks.TryGetValue((syms[i], syms[j]), out var r) || r != pr.Rank) continue; // stale entry
            syms[i] += syms[j];
            alive[j] = false;
            next[i] = next[j];
            if (next[j] >= 0) prev[next[j]] = i;
            if (prev[i] >= 0) Push(prev[i]);
            Push(i);
        }
        var ids = new List<int>(n);
        for (int i = 0; i >= 0 && i < n; i = next[i]) ids.Add(vocab[syms[i]]);
        return [.. ids];
    }

    /// <summary>Text of ids (added tokens included as their content), through the decoder chain.</summary>
    public string Decode(IReadOnlyList<int> ids) =>
        string.Concat(decode(ids.Select(id => Token(id) ?? "").ToList()));

    // ---- normalizers ----

    static Func<string, string> Normalizer(JsonElement n)
    {
        if (n.ValueKind != JsonValueKind.Object) return s => s;
        var type = n.GetProperty("type").GetString();
        switch (type)
        {
            case "NFC": return s => s.Normalize(NormalizationForm.FormC);
            case "NFD": return s => s.Normalize(NormalizationForm.FormD);
            case "NFKC": return s => s.Normalize(NormalizationForm.FormKC);
            case "NFKD": return s => s.Normalize(NormalizationForm.FormKD);
            case "Lowercase": return s => s.ToLowerInvariant();
            case "Prepend":
            {
                var p = n.GetProperty("prepend").GetString()!;
                return s => s.Length == 0 ? s : p + s;
            }
            case "Replace":
            {
                var (pattern, isRegex) = Pattern(n.GetProperty("pattern"));
                var content = n.GetProperty("content").GetString()!;
                if (!isRegex) return s => s.Replace(pattern, content, StringComparison.Ordinal);
                var re = new Regex(pattern, RegexOptions.Compiled);
                return s => re.Replace(s, content.Replace("$", "$$"));
            }
            case "Sequence":
            {
                var steps = n.GetProperty("normalizers").EnumerateArray().Select(Normalizer).ToList();
                return s => steps.Aggregate(s, (acc, f) => f(acc));
            }
            default: throw new NotSupportedException($"tokenizer.json: normalizer \"{type}\" is not supported");
        }
    }

    static (string Pattern, bool IsRegex) Pattern(JsonElement p) =>
        p.TryGetProperty("Regex", out var r) ? (r.GetString()!, true) : (p.GetProperty("String").GetString()!, false);

    // ---- pre-tokenizers: each refines a list of pieces ----

    /// <summary>GPT-2's pattern, which ByteLevel uses when <c>use_regex</c> is true.</summary>
    static readonly Regex Gpt2 = new(HfTokenizer.Gpt2Pattern, RegexOptions.Compiled);

    static Func<List<string>, List<string>> PreTokenizer(JsonElement p)
    {
        if (p.ValueKind != JsonValueKind.Object) return s => s;
        var type = p.GetProperty("type").GetString();
        switch (type)
        {
            case "Sequence":
            {
                var steps = p.GetProperty("pretokenizers").EnumerateArray().Select(PreTokenizer).ToList();
                return s => steps.Aggregate(s, (acc, f) => f(acc));
            }
            case "Split":
            {
                var (pattern, isRegex) = Pattern(p.GetProperty("pattern"));
                var re = new Regex(isRegex ? pattern : Regex.Escape(pattern), RegexOptions.Compiled);
                var behavior = p.GetProperty("behavior").GetString()!;
                bool invert = Bool(p, "invert");
                return s => s.SelectMany(x => Split(x, re, behavior, invert)).ToList();
            }
            case "ByteLevel":
            {
                bool prefix = Bool(p, "add_prefix_space"), useRegex = !p.TryGetProperty("use_regex", out var ur) || ur.ValueKind != JsonValueKind.False;
                return s => s.SelectMany(x =>
                {
                    if (prefix && !x.StartsWith(' ')) x = " " + x;
                    var parts = useRegex ? Split(x, Gpt2, "Isolated", false) : [x];
                    return parts.Select(ByteLevel.ToChars);
                }).ToList();
            }
            case "Digits":
            {
                var re = new Regex(Bool(p, "individual_digits") ? @"\p{Nd}" : @"\p{Nd}+", RegexOptions.Compiled);
                return s => s.SelectMany(x => Split(x, re, "Isolated", false)).ToList();
            }
            case "Metaspace":
            {
                var rep = p.GetProperty("replacement").GetString()!;
                var scheme = p.TryGetProperty("prepend_scheme", out var ps) ? ps.GetString() : Bool(p, "add_prefix_space") ? "always" : "never";
                bool split = !p.TryGetProperty("split", out var sp) || sp.ValueKind != JsonValueKind.False;
                var re = new Regex(Regex.Escape(rep), RegexOptions.Compiled);
                return s => s.SelectMany((x, i) =>
                {
                    x = x.Replace(" ", rep, StringComparison.Ordinal);
                    if ((scheme == "always" || (scheme == "first" && i == 0)) && !x.StartsWith(rep, StringComparison.Ordinal)) x = rep + x;
                    return split ? Split(x, re, "MergedWithNext", false) : [x];
                }).ToList();
            }
            default: throw new NotSupportedException($"tokenizer.json: pre-tokenizer \"{type}\" is not supported");
        }
    }

    /// <summary>The tokenizers library's Split: matches (or, inverted, the text between them) are the delimiters, kept as the behaviour says.</summary>
    internal static List<string> Split(string s, Regex re, string behavior, bool invert)
    {
        var spans = new List<(int Start, int End, bool Delim)>();
        int at = 0;
        foreach (Match m in re.Matches(s))
        {
            if (m.Length == 0) continue;
            if (m.Index > at) spans.Add((at, m.Index, invert));
            spans.Add((m.Index, m.Index + m.Length, !invert));
            at = m.Index + m.Length;
        }
        if (at < s.Length) spans.Add((at, s.Length, invert));
        var outp = new List<string>();
        switch (behavior)
        {
            case "Removed":
                foreach (var x in spans) if (!x.Delim) outp.Add(s[x.Start..x.End]);
                break;
            case "Isolated":
                foreach (var x in spans) outp.Add(s[x.Start..x.End]);
                break;
            case "MergedWithPrevious":
            {
                var sb = new StringBuilder();
                foreach (var x in spans)
                {
                    sb.Append(s, x.Start, x.End - x.Start);
                    if (x.Delim) { outp.Add(sb.ToString()); sb.Clear(); }
                }
                if (sb.Length > 0) outp.Add(sb.ToString());
                break;
            }
            case "MergedWithNext":
            {
                var sb = new StringBuilder();
                foreach (var x in spans)
                {
                    if (x.Delim && sb.Length > 0) { outp.Add(sb.ToString()); sb.Clear(); }
                    sb.Append(s, x.Start, x.End - x.Start);
                }
                if (sb.Length > 0) outp.Add(sb.ToString());
                break;
            }
            case "Contiguous":
            {
                for (int i = 0; i < spans.Count;)
                {
                    int j = i, end = spans[i].End;
                    while (spans[i].Delim && j + 1 < spans.Count && spans[j + 1].Delim) { j++; end = spans[j].End; }
                    outp.Add(s[spans[i].Start..end]);
                    i = j + 1;
                }
                break;
            }
            default: throw new NotSupportedException($"tokenizer.json: split behavior \"{behavior}\" is not supported");
        }
        return outp;
    }

    // ---- decoders: each maps a list of token strings to a list of strings ----

    static Func<List<string>, List<string>> Decoder(JsonElement d)
    {
        if (d.ValueKind != JsonValueKind.Object) return s => s;
        var type = d.GetProperty("type").GetString();
        switch (type)
        {
            case "Sequence":
            {
                var steps = d.GetProperty("decoders").EnumerateArray().Select(Decoder).ToList();
                return s => steps.Aggregate(s, (acc, f) => f(acc));
            }
            case "ByteLevel":
                return s => [ByteLevel.FromChars(string.Concat(s))];
            case "Replace":
            {
                var (pattern, isRegex) = Pattern(d.GetProperty("pattern"));
                var content = d.GetProperty("content").GetString()!;
                var re = isRegex ? new Regex(pattern) : null;
                return s => s.Select(x => re is null ? x.Replace(pattern, content, StringComparison.Ordinal) : re.Replace(x, content.Replace("$", "$$"))).ToList();
            }
            case "ByteFallback":
                return ByteFallbackDecode;
            case "Fuse":
                return s => [string.Concat(s)];
            case "Strip":
            {
                var content = d.GetProperty("content").GetString()![0];
                int start = d.GetProperty("start").GetInt32(), stop = d.GetProperty("stop").GetInt32();
                return s => s.Select(x =>
                {
                    int a = 0, b = x.Length;
                    while (a < start && a < b && x[a] == content) a++;
                    int cut = 0;
                    while (cut < stop && b > a && x[b - 1] == content) { b--; cut++; }
                    return x[a..b];
                }).ToList();
            }
            case "Metaspace":
            {
                var rep = d.GetProperty("replacement").GetString()!;
                var scheme = d.TryGetProperty("prepend_scheme", out var ps) ? ps.GetString() : Bool(d, "add_prefix_space") ? "always" : "never";
                return s => s.Select((x, i) =>
                {
                    var y = x.Replace(rep, " ", StringComparison.Ordinal);
                    return i == 0 && scheme != "never" && y.StartsWith(' ') ? y[1..] : y;
                }).ToList();
            }
            default: throw new NotSupportedException($"tokenizer.json: decoder \"{type}\" is not supported");
        }
    }

    /// <summary>Runs of <c>&lt;0xXX&gt;</c> tokens become the text of their bytes (U+FFFD per byte when they are not valid UTF-8).</summary>
    static List<string> ByteFallbackDecode(List<string> s)
    {
        var outp = new List<string>();
        var bytes = new List<byte>();
        void Flush()
        {
            if (bytes.Count == 0) return;
            try { outp.Add(new UTF8Encoding(false, true).GetString(bytes.ToArray())); }
            catch (DecoderFallbackException) { outp.AddRange(bytes.Select(_ => "\uFFFD")); }
            bytes.Clear();
        }
        foreach (var x in s)
        {
            if (x.Length == 6 && x.StartsWith("<0x", StringComparison.Ordinal) && x[5] == '>'
                && byte.TryParse(x.AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var b)) { bytes.Add(b); continue; }
            Flush();
            outp.Add(x);
        }
        Flush();
        return outp;
    }

    // ---- post-processor ----

    static (int[] Prefix, int[] Suffix, bool HasTemplate) PostProcessor(JsonElement p, List<JsonElement> added)
    {
        if (p.ValueKind != JsonValueKind.Object) return ([], [], false);
        var type = p.GetProperty("type").GetString();
        switch (type)
        {
            case "Sequence":
            {
                var found = p.GetProperty("processors").EnumerateArray().Select(x => PostProcessor(x, added)).Where(x => x.HasTemplate).ToList();
                return found.Count > 0 ? found[^1] : ([], [], true);
            }
            case "ByteLevel": return ([], [], true);
            case "TemplateProcessing":
            {
                var specials = new Dictionary<string, int[]>();
                if (p.TryGetProperty("special_tokens", out var st))
                    foreach (var e in st.EnumerateObject()) specials[e.Name] = e.Value.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
                var prefix = new List<int>(); var suffix = new List<int>();
                bool seenSequence = false;
                foreach (var item in p.GetProperty("single").EnumerateArray())
                {
                    if (item.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
                    if (item.TryGetProperty("SpecialToken", out var sp))
                    {
                        var id = sp.GetProperty("id").GetString()!;
                        var ids = specials.TryGetValue(id, out var known) ? known : throw new InvalidDataException($"tokenizer.json: post-processor token \"{id}\" has no ids");
                        (seenSequence ? suffix : prefix).AddRange(ids);
                    }
                }
                return ([.. prefix], [.. suffix], true);
            }
            case "RobertaProcessing" or "BertProcessing":
            {
                int Id(string key) => p.GetProperty(key)[1].GetInt32();
                return ([Id("cls")], [Id("sep")], true);
            }
            default: throw new NotSupportedException($"tokenizer.json: post-processor \"{type}\" is not supported");
        }
    }

    static bool Bool(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;
}

/// <summary>GPT-2's reversible map from bytes to printable characters (<c>bytes_to_unicode</c>), which byte-level BPE vocabularies are written in.</summary>
public static class ByteLevel
{
    static readonly char[] ByteToChar = Build();
    static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(x => x.c, x => (byte)x.b);

    static char[] Build()
    {
        var map = new char[256];
        bool Printable(int b) => b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
        int n = 0;
        for (int b = 0; b < 256; b++) map[b] = Printable(b) ? (char)b : (char)(256 + n++);
        return map;
    }

    public static string ToChars(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>The text of byte-level characters; characters outside the map are kept as their UTF-8, invalid UTF-8 becomes U+FFFD.</summary>
    public static string FromChars(string chars)
    {
        var bytes = new List<byte>(chars.Length);
        foreach (var c in chars)
            if (CharToByte.TryGetValue(c, out var b)) bytes.Add(b);
            else bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}
