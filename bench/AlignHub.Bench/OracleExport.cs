using System.Text.Json;
using System.Text.Json.Nodes;
using AlignHub.Domain;
using AlignHub.Domain.Templates;
using AlignHub.Training.Data;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Sft;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Writes cases for bench/device/oracle_check.py, which runs them through Hugging Face transformers and PEFT (on a machine
/// that has them; none is installed here): small GPT-2 and Llama base folders (the Llama with llama3 rope scaling and an
/// untied head), LoRA adapter folders trained on them (every linear layer; a reward model with its score head), their
/// merged folders, and AlignHub's own outputs for the same inputs: logits, rewards, rotary frequencies, token ids and chat
/// renderings. The check compares and writes a report; nothing here is compared with itself.
/// </summary>
static class OracleExport
{
    static readonly long[] Ids = [1, 17, 42, 99, 250, 7, 64, 33, 12, 5, 200, 150];

    public static void Run(string outDir, string? tokenizerFolders)
    {
        Directory.CreateDirectory(outDir);
        var manifest = new JsonObject();
        var cases = new JsonArray();
        manifest["ids"] = new JsonArray(Ids.Select(i => (JsonNode)i).ToArray());

        var llama = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["model_type"] = "llama", ["vocab_size"] = 300, ["hidden_size"] = 64,
            ["intermediate_size"] = 128, ["num_hidden_layers"] = 2, ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2,
            ["max_position_embeddings"] = 128, ["tie_word_embeddings"] = false, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 10000.0,
            ["rope_scaling"] = new Dictionary<string, object> { ["rope_type"] = "llama3", ["factor"] = 4.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 8 },
            ["bos_token_id"] = 256, ["eos_token_id"] = 257, ["pad_token_id"] = 258, ["hidden_act"] = "silu",
        });
        var gpt2 = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["architectures"] = new[] { "GPT2LMHeadModel" }, ["model_type"] = "gpt2", ["vocab_size"] = 300, ["n_embd"] = 64, ["n_layer"] = 2,
            ["n_head"] = 4, ["n_positions"] = 128, ["bos_token_id"] = 256, ["eos_token_id"] = 257, ["activation_function"] = "gelu_new",
        });
        foreach (var (name, config) in new[] { ("llama", llama), ("gpt2", gpt2) })
        {
            var baseDir = Path.Combine(outDir, name + "-base");
            Directory.CreateDirectory(baseDir);
            File.WriteAllText(Path.Combine(baseDir, "config.json"), config);
            torch.manual_seed(11);
            using (var m = CausalLM.Create(config)) HfWeights.Save(m, baseDir);
            var source = new ModelSource(config, "byte", baseDir, Name: name + "-base");
            var sft = new SftConfig { MaxSteps = 8, BatchSize = 8, LearningRate = 2e-2, SaveSteps = 1000, Seed = 5, UsePeft = true, LoraR = 4, LoraAlpha = 8,
                LoraDropout = 0, LoraTargetModules = ["all-linear"], SaveMergedModel = true };
            var root = Directory.CreateTempSubdirectory("alignhub-oracle-").FullName;
            var examples = Enumerable.Range(0, 64).Select(i => ChatTemplate.FromPromptCompletion($"Greet {i}.\n", $"Hello, {i}!")).ToList();
            var result = SftTrainer.Train(new SftRun(source, examples, null, sft, root, null), new BenchReporter(), CancellationToken.None);
            var adapterDir = Path.Combine(outDir, name + "-adapter");
            CopyFolder(result.LastCheckpoint!, adapterDir);

            using var baseModel = source.CreateModel();
            using var adapted = source.CreateModel(null, LoraSettings.From(sft, source.Architecture), sft.Seed);
            PeftAdapter.Load(adapted, adapterDir);
            cases.Add(new JsonObject
            {
                ["kind"] = "causal_lm", ["family"] = name, ["base"] = name + "-base", ["adapter"] = name + "-adapter", ["merged"] = name + "-adapter/merged",
                ["base_logits"] = Logits(baseModel), ["adapted_logits"] = Logits(adapted),
            });
        }

        // A LoRA reward model on the Llama base: adapters plus the score head (PEFT's modules_to_save).
        {
            var source = new ModelSource(llama, "byte", Path.Combine(outDir, "llama-base"), Name: "llama-base");
            var c = new RewardModelConfig { MaxSteps = 6, BatchSize = 8, LearningRate = 1e-2, SaveSteps = 1000, Seed = 3, UsePeft = true, LoraR = 4, LoraAlpha = 8, LoraDropout = 0 };
            var root = Directory.CreateTempSubdirectory("alignhub-oracle-").FullName;
            var result = RewardModelTrainer.Train(new RewardModelRun(source, PreferenceTask.Pairs(48, 1), null, c, root, null), new BenchReporter(), CancellationToken.None);
            var dir = Path.Combine(outDir, "llama-rm-adapter");
            CopyFolder(result.LastCheckpoint!, dir);
            var rmSource = new ModelSource(File.ReadAllText(Path.Combine(dir, "config.json")), "byte", dir, source);
            using var rm = rmSource.CreateRewardModel();
            rm.Train(false);
            using var _ = no_grad();
            using var ids = tensor(Ids, [1, Ids.Length]);
            using var last = tensor(new long[] { Ids.Length - 1 });
            using var r = rm.Rewards(ids, last);
            cases.Add(new JsonObject { ["kind"] = "reward_model", ["base"] = "llama-base", ["adapter"] = "llama-rm-adapter", ["reward"] = r.item<float>() });
        }

        // Rotary frequencies for real configs (Llama 3.1 and 3.2) and the other types.
        var rope = new JsonArray();
        foreach (var (label, headDim, theta, maxPos, scaling, seqLen) in new (string, int, double, int, object?, long)[]
        {
            ("llama3.1", 128, 500000, 131072, new { rope_type = "llama3", factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position_embeddings = 8192 }, 0),
            ("llama3.2", 64, 500000, 131072, new { rope_type = "llama3", factor = 32.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position_embeddings = 8192 }, 0),
            ("linear", 64, 10000, 2048, new { rope_type = "linear", factor = 4.0 }, 0),
            ("dynamic", 64, 10000, 2048, new { rope_type = "dynamic", factor = 2.0 }, 3000),
        })
        {
            var cfg = JsonDocument.Parse(JsonSerializer.Serialize(new Dictionary<string, object?> { ["max_position_embeddings"] = maxPos, ["rope_scaling"] = scaling })).RootElement;
            var inv = RopeScaling.InverseFrequencies(headDim, theta, RopeScaling.Parse(cfg, maxPos), seqLen);
            rope.Add(new JsonObject
            {
                ["label"] = label, ["head_dim"] = headDim, ["theta"] = theta, ["max_position_embeddings"] = maxPos, ["seq_len"] = seqLen,
                ["rope_scaling"] = JsonSerializer.SerializeToNode(scaling), ["inv_freq"] = new JsonArray(inv.Select(x => (JsonNode)x).ToArray()),
            });
        }
        manifest["rope"] = rope;

        // Token ids and chat renderings of real tokenizer folders (tokenizer.json + tokenizer_config.json), copied beside the cases.
        var tokenizers = new JsonArray();
        if (tokenizerFolders is not null)
            foreach (var folder in tokenizerFolders.Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var label = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(folder).TrimEnd('/'))!)!.Replace("tokenizer-", "");
                var dest = Path.Combine(outDir, "tok-" + label);
                CopyFolder(folder, dest);
                var arch = ModelArchitecture.Parse(JsonSerializer.Serialize(new { model_type = "llama", vocab_size = 300_000, hidden_size = 8, intermediate_size = 8, num_hidden_layers = 1, num_attention_heads = 1 }));
                var tok = HfTokenizer.Load(dest, arch);
                var encoder = new PromptEncoder(tok, 1_000_000);
                string[] texts = ["Hello world", "It's 1234567 tokens, naïve café 東京 🙂!\n\n  x", "def f(x):\n    return x ** 2\n", "<|im_start|>user\nhi<|im_end|>"];
                var template = ModelChatTemplate.FromFolder(dest);
                var messages = new List<ChatMessage> { new("system", "Be brief."), new("user", "What is 2+2?"), new("assistant", "4."), new("user", "And 3+3?") };
                var chat = template?.Prompt(messages);
                tokenizers.Add(new JsonObject
                {
                    ["folder"] = "tok-" + label,
                    ["texts"] = new JsonArray(texts.Select(t => (JsonNode)new JsonObject
                    {
                        ["text"] = t, ["ids"] = new JsonArray(encoder.Encode(t).Select(i => (JsonNode)i).ToArray()),
                    }).ToArray()),
                    ["chat"] = chat is null ? null : new JsonObject
                    {
                        ["messages"] = JsonSerializer.SerializeToNode(messages.Select(m => new { role = m.Role, content = m.Content })),
                        ["text"] = chat, ["ids"] = new JsonArray(encoder.Encode(chat).Select(i => (JsonNode)i).ToArray()),
                    },
                });
            }
        manifest["tokenizers"] = tokenizers;
        manifest["cases"] = cases;
        File.WriteAllText(Path.Combine(outDir, "cases.json"), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {cases.Count} model cases, {rope.Count} rope cases, {tokenizers.Count} tokenizers to {outDir}");
    }

    static JsonArray Logits(CausalLM m)
    {
        m.eval();
        using var _ = no_grad();
        using var ids = tensor(Ids, [1, Ids.Length]);
        using var logits = m.forward(ids);
        using var flat = logits.reshape(-1).to(ScalarType.Float64).cpu();
        return new JsonArray(flat.data<double>().ToArray().Select(x => (JsonNode)x).ToArray());
    }

    static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from))
        {
            var name = Path.GetFileName(f);
            if (name is "optimizer.bin" or "trainer_state.json" or "alignhub_config.json") continue;
            File.Copy(f, Path.Combine(to, name), true);
        }
        foreach (var d in Directory.GetDirectories(from)) CopyFolder(d, Path.Combine(to, Path.GetFileName(d)));
    }
}
