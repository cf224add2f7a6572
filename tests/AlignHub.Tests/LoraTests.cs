using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.IO;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Sft;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>
/// LoRA for every trainer: adapters on the named layers with the base frozen, PEFT's folder layout, merging, the base as
/// the reference, and exact resume with dropout.
/// </summary>
public class LoraTests
{
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-lora-").FullName;

    static readonly string LlamaConfig = JsonSerializer.Serialize(new
    {
        model_type = "llama", vocab_size = 259, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, num_attention_heads = 4,
        num_key_value_heads = 2, max_position_embeddings = 128, tie_word_embeddings = true,
    });

    static readonly string Gpt2Config = JsonSerializer.Serialize(new { model_type = "gpt2", vocab_size = 259, n_embd = 32, n_layer = 2, n_head = 4, n_positions = 128 });

    /// <summary>A seeded random model saved as an HF folder: LoRA needs stored base weights.</summary>
    static ModelSource Base(string config, int seed = 3)
    {
        var dir = TempDir();
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        torch.manual_seed(seed);
        using var m = CausalLM.Create(config);
        HfWeights.Save(m, dir);
        return new ModelSource(config, "byte", dir, Name: "base-model");
    }

    static List<SupervisedExample> Examples(int n) => TestData.Greetings(n).Select(g => ChatTemplate.FromPromptCompletion(g.Prompt, g.Completion)).ToList();

    static Dictionary<string, Tensor> ReadFile(string path) => SafeTensors.Read(path);

    static float MaxDiff(Tensor a, Tensor b) { using var d = (a - b).abs().max(); return d.item<float>(); }

    static Tensor Logits(CausalLM m, long[] ids)
    {
        using var _ = no_grad();
        m.eval();
        using var x = tensor(ids, [1, ids.Length]);
        return m.forward(x);
    }

    /// <summary>
    /// PEFT's adapter folder, checked against its documented layout (peft's <c>save_pretrained</c>): <c>adapter_config.json</c>
    /// with <c>peft_type</c> "LORA", <c>task_type</c>, <c>r</c>, <c>lora_alpha</c>, <c>target_modules</c>, <c>bias</c> "none",
    /// <c>base_model_name_or_path</c>, <c>fan_in_fan_out</c> (true for GPT-2's Conv1D layers); <c>adapter_model.safetensors</c>
    /// holding exactly <c>base_model.model.{module}.lora_A.weight</c> [r, in] and <c>.lora_B.weight</c> [out, r] for each
    /// targeted layer (module names as transformers names them, no ".default" adapter name) and no base tensor.
    /// </summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void A_LoRA_SFT_checkpoint_is_a_PEFT_adapter_folder_and_only_the_adapters_train(string family)
    {
        bool gpt2 = family == "gpt2";
        var source = Base(gpt2 ? Gpt2Config : LlamaConfig);
        var c = new SftConfig { MaxSteps = 6, BatchSize = 8, LearningRate = 1e-2, SaveSteps = 100, Seed = 4, UsePeft = true, LoraR = 4, LoraAlpha = 8, LoraDropout = 0 };
        var root = TempDir();
        var result = SftTrainer.Train(new SftRun(source, Examples(48), null, c, root, null), new RecordingReporter(), CancellationToken.None);
        var dir = result.LastCheckpoint!;
        Assert.False(File.Exists(Path.Combine(dir, "model.safetensors")));

        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json"))).RootElement;
        Assert.Equal("LORA", config.GetProperty("peft_type").GetString());
        Assert.Equal("CAUSAL_LM", config.GetProperty("task_type").GetString());
        Assert.Equal(4, config.GetProperty("r").GetInt32());
        Assert.Equal(8, config.GetProperty("lora_alpha").GetInt32());
        Assert.Equal("none", config.GetProperty("bias").GetString());
        Assert.Equal("base-model", config.GetProperty("base_model_name_or_path").GetString());
        Assert.Equal(gpt2, config.GetProperty("fan_in_fan_out").GetBoolean());
        string[] targets = gpt2 ? ["c_attn"] : ["q_proj", "v_proj"]; // PEFT's defaults for the architecture
        Assert.Equal(targets, config.GetProperty("target_modules").EnumerateArray().Select(t => t.GetString()));

        var tensors = ReadFile(Path.Combine(dir, "adapter_model.safetensors"));
        var expected = new Dictionary<string, long[]>();
        for (int layer = 0; layer < 2; layer++)
        {
            if (gpt2)
            {
                expected[$"base_model.model.transformer.h.{layer}.attn.c_attn.lora_A.weight"] = [4, 32];
                expected[$"base_model.model.transformer.h.{layer}.attn.c_attn.lora_B.weight"] = [96, 4];
            }
            else
            {
                expected[$"base_model.model.model.layers.{layer}.self_attn.q_proj.lora_A.weight"] = [4, 32];
                expected[$"base_model.model.model.layers.{layer}.self_attn.q_proj.lora_B.weight"] = [32, 4];
                expected[$"base_model.model.model.layers.{layer}.self_attn.v_proj.lora_A.weight"] = [4, 32];
                expected[$"base_model.model.model.layers.{layer}.self_attn.v_proj.lora_B.weight"] = [16, 4]; // 2 kv heads of 8
            }
        }
        Assert.Equal(expected.Keys.Order(), tensors.Keys.Order());
        foreach (var (k, shape) in expected) Assert.Equal(shape, tensors[k].shape);
        // B starts at zero; after training it is not (the adapters learned), and the folder passes the registration check.
        Assert.True(tensors.Where(kv => kv.Key.Contains("lora_B")).All(kv => kv.Value.abs().max().item<float>() > 0));
        Assert.Null(PeftFolder.Check(dir, ModelArchitecture.Parse(gpt2 ? Gpt2Config : LlamaConfig)));
        foreach (var t in tensors.Values) t.Dispose();

        // The base weights did not move: a model built from the base folder equals the adapted model with its adapters off.
        using var baseModel = source.CreateModel();
        var adapted = new ModelSource(source.ConfigJson, "byte", dir, source);
        using var merged = adapted.CreateModel();
        using var withAdapters = source.CreateModel(null, LoraSettings.From(c, source.Architecture), c.Seed);
        PeftAdapterLoad(withAdapters, dir);
        long[] ids = [256, 72, 105, 33, 10, 5];
        using var lb = Logits(baseModel, ids);
        using var la = Logits(withAdapters, ids);
        using (Lora.Disabled(withAdapters)) { using var off = Logits(withAdapters, ids); Assert.True(MaxDiff(off, lb) == 0, "adapters off must be the base exactly"); }
        Assert.True(MaxDiff(la, lb) > 1e-4, "the adapters changed nothing");
        // Merging (W + s B A, PEFT's merge_and_unload) reproduces the adapted model's logits.
        using var lm = Logits(merged, ids);
        Assert.True(MaxDiff(lm, la) < 1e-5, $"merged logits differ by {MaxDiff(lm, la)}");
    }

    static void PeftAdapterLoad(CausalLM model, string dir) => PeftAdapter.Load(model, dir);

    [Fact]
    public void The_merged_folder_is_a_plain_HF_model_with_the_adapted_logits()
    {
        var source = Base(LlamaConfig);
        var c = new SftConfig { MaxSteps = 4, BatchSize = 8, LearningRate = 1e-2, SaveSteps = 100, Seed = 4, UsePeft = true, LoraR = 8, LoraAlpha = 16,
            LoraTargetModules = ["all-linear"], SaveMergedModel = true };
        var result = SftTrainer.Train(new SftRun(source, Examples(32), null, c, TempDir(), null), new RecordingReporter(), CancellationToken.None);
        var merged = Path.Combine(result.LastCheckpoint!, "merged");
        Assert.True(File.Exists(Path.Combine(merged, "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(merged, "config.json")));
        using var plain = HfWeights.LoadModel(merged); // strict: exactly the base's tensors, no adapter keys
        using var adapted = new ModelSource(source.ConfigJson, "byte", result.LastCheckpoint, source).CreateModel();
        long[] ids = [256, 65, 66, 67, 32, 10];
        using var a = Logits(plain, ids);
        using var b = Logits(adapted, ids);
        Assert.True(MaxDiff(a, b) < 1e-5, $"merged folder differs by {MaxDiff(a, b)}");
        // all-linear: seven layers per block carry adapters.
        var keys = ReadFile(Path.Combine(result.LastCheckpoint!, "adapter_model.safetensors")).Keys;
        Assert.Equal(2 * 7 * 2, keys.Count);
    }

    /// <summary>
    /// The LoRA DPO reference is the base: the cached reference log-probs equal those of the base model computed on their own,
    /// and after training the policy with its adapters switched off still gives the base's log-probs.
    /// </summary>
    [Fact]
    public void LoRA_DPO_reference_log_probs_are_the_base_models()
    {
        var source = Base(LlamaConfig);
        var pairs = PreferenceTask.Pairs(48, 1);
        var c = new DpoConfig { MaxSteps = 6, BatchSize = 8, LearningRate = 5e-3, Beta = 0.1, SaveSteps = 100, Seed = 2, UsePeft = true, LoraR = 4, LoraAlpha = 8 };
        var cache = Path.Combine(TempDir(), "ref.json");
        var result = DpoTrainer.Train(new DpoRun(source, pairs, null, c, TempDir(), null, cache), new RecordingReporter(), CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);

        var tok = source.CreateTokenizer();
        var (maxLen, maxPrompt) = c.Limits(source.Architecture.MaxPositions);
        var encoder = new AlignHub.Training.Data.PromptEncoder(tok, maxPrompt);
        var tokenized = pairs.Select(p => PairData.Tokenize(p, encoder, maxLen)).ToList();
        using var baseModel = source.CreateModel();
        baseModel.eval();
        var byBase = ReferenceCache.Compute(baseModel, tokenized, tok.PadId, maxLen, 8);
        var cached = JsonDocument.Parse(File.ReadAllText(cache)).RootElement.GetProperty("Train");
        var chosen = cached.GetProperty("Chosen").EnumerateArray().Select(x => x.GetSingle()).ToArray();
        Assert.Equal(byBase.Chosen.Length, chosen.Length);
        for (int i = 0; i < chosen.Length; i++) Assert.True(Math.Abs(chosen[i] - byBase.Chosen[i]) < 1e-4, $"pair {i}: {chosen[i]} vs {byBase.Chosen[i]}");

        using var policy = source.CreateModel(null, LoraSettings.From(c, source.Architecture), c.Seed);
        PeftAdapter.Load(policy, result.LastCheckpoint!);
        policy.eval();
        ReferenceLogps off;
        using (Lora.Disabled(policy)) off = ReferenceCache.Compute(policy, tokenized, tok.PadId, maxLen, 8);
        var on = ReferenceCache.Compute(policy, tokenized, tok.PadId, maxLen, 8);
        Assert.Equal(byBase.Chosen, off.Chosen);
        Assert.Equal(byBase.Rejected, off.Rejected);
        Assert.True(on.Chosen.Zip(byBase.Chosen).Any(x => Math.Abs(x.First - x.Second) > 1e-3), "the trained adapters change the policy's log-probs");
    }

    /// <summary>A LoRA run with adapter dropout, paused and resumed, ends with the adapters of the uninterrupted run: dropout masks are seeded per step.</summary>
    [Fact]
    public void A_LoRA_run_with_dropout_resumes_exactly()
    {
        var source = Base(LlamaConfig);
        var c = new SftConfig { MaxSteps = 6, BatchSize = 8, LearningRate = 1e-2, SaveSteps = 100, Seed = 9, UsePeft = true, LoraR = 4, LoraAlpha = 8, LoraDropout = 0.3 };
        var whole = SftTrainer.Train(new SftRun(source, Examples(48), null, c, TempDir(), null), new RecordingReporter(), CancellationToken.None);
        var root = TempDir();
        var paused = SftTrainer.Train(new SftRun(source, Examples(48), null, c, root, null), new RecordingReporter { PauseAtStep = 3 }, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Paused, paused.Outcome);
        var resumed = SftTrainer.Train(new SftRun(source, Examples(48), null, c, root, paused.LastCheckpoint), new RecordingReporter(), CancellationToken.None);
        var a = ReadFile(Path.Combine(whole.LastCheckpoint!, "adapter_model.safetensors"));
        var b = ReadFile(Path.Combine(resumed.LastCheckpoint!, "adapter_model.safetensors"));
        foreach (var (k, t) in a) Assert.True(MaxDiff(t, b[k]) < 1e-6, $"{k} differs by {MaxDiff(t, b[k])}");
        // Without seeding the masks the runs would differ; with dropout 0 they would not test it: check that dropout acted.
        var noDropout = SftTrainer.Train(new SftRun(source, Examples(48), null, c with { LoraDropout = 0 }, TempDir(), null), new RecordingReporter(), CancellationToken.None);
        var d = ReadFile(Path.Combine(noDropout.LastCheckpoint!, "adapter_model.safetensors"));
        Assert.Contains(a, kv => MaxDiff(kv.Value, d[kv.Key]) > 1e-5);
    }

    /// <summary>
    /// torch_dtype bfloat16 with LoRA: the frozen base is held in bfloat16, adapters and logits stay float32, training runs and
    /// the adapter file is float32; the bfloat16 model's logits are the float32 model's within bfloat16's precision.
    /// </summary>
    [Fact]
    public void A_bfloat16_base_trains_float32_adapters()
    {
        var source = Base(LlamaConfig);
        var c = new SftConfig { MaxSteps = 8, BatchSize = 8, LearningRate = 1e-2, SaveSteps = 100, Seed = 4, UsePeft = true, LoraR = 4, LoraAlpha = 8, LoraDropout = 0,
            TorchDtype = "bfloat16" };
        var reporter = new RecordingReporter();
        var result = SftTrainer.Train(new SftRun(source, Examples(64), null, c, TempDir(), null), reporter, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        var losses = reporter.Metrics.Where(m => m.Metrics.ContainsKey("loss")).Select(m => m.Metrics["loss"]).ToList();
        Assert.All(losses, l => Assert.True(double.IsFinite(l)));
        Assert.True(losses[^1] < losses[0], $"loss {losses[0]} -> {losses[^1]}");
        var header = System.Text.Json.JsonDocument.Parse(System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(Path.Combine(result.LastCheckpoint!, "adapter_model.safetensors"))
            .Skip(8).Take((int)BitConverter.ToInt64(File.ReadAllBytes(Path.Combine(result.LastCheckpoint!, "adapter_model.safetensors")), 0)).ToArray())).RootElement;
        Assert.All(header.EnumerateObject().Where(p => p.Name != "__metadata__"), p => Assert.Equal("F32", p.Value.GetProperty("dtype").GetString()));

        using var half = source.CreateModel(null, LoraSettings.From(c, source.Architecture), c.Seed, ScalarType.BFloat16);
        Assert.Contains(half.named_parameters(), p => p.name.EndsWith("q_proj.weight") && p.parameter.dtype == ScalarType.BFloat16);
        Assert.All(half.named_parameters().Where(p => Lora.IsAdapterParameter(p.name)), p => Assert.Equal(ScalarType.Float32, p.parameter.dtype));
        using var full = source.CreateModel();
        long[] ids = [256, 72, 105, 33, 10, 5];
        using var a = Logits(half, ids);
        using var b = Logits(full, ids);
        Assert.Equal(ScalarType.Float32, a.dtype);
        using var scale = b.abs().max();
        Assert.True(MaxDiff(a, b) < 0.05 * scale.item<float>() + 0.05, $"bfloat16 logits differ by {MaxDiff(a, b)} (scale {scale.item<float>()})");
        // Full fine-tuning in bfloat16 is refused where the config is checked.
        var errors = new List<string>();
        (new SftConfig { TorchDtype = "bfloat16" }).Validate("h.", (f, m) => errors.Add(f));
        Assert.Contains("h.torch_dtype", errors);
    }

    [Fact]
    public void A_LoRA_reward_model_keeps_its_head_beside_the_adapters()
    {
        var source = Base(LlamaConfig);
        var c = new RewardModelConfig { MaxSteps = 4, BatchSize = 8, LearningRate = 5e-3, SaveSteps = 100, Seed = 2, UsePeft = true, LoraR = 4, LoraAlpha = 8 };
        var result = RewardModelTrainer.Train(new RewardModelRun(source, PreferenceTask.Pairs(32, 1), null, c, TempDir(), null), new RecordingReporter(), CancellationToken.None);
        var dir = result.LastCheckpoint!;
        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json"))).RootElement;
        Assert.Equal("SEQ_CLS", config.GetProperty("task_type").GetString());
        Assert.Equal(["score"], config.GetProperty("modules_to_save").EnumerateArray().Select(x => x.GetString()));
        var keys = ReadFile(Path.Combine(dir, "adapter_model.safetensors")).Keys.ToList();
        Assert.Contains("base_model.model.score.weight", keys);
        Assert.True(ModelArchitecture.Parse(File.ReadAllText(Path.Combine(dir, "config.json"))).IsRewardModel);
        // Loaded as a reward model (the base merged with the adapter, the head from the file), it scores as the trained one did.
        var rmSource = new ModelSource(File.ReadAllText(Path.Combine(dir, "config.json")), "byte", dir, source);
        using var rm = rmSource.CreateRewardModel();
        rm.Train(false);
        using var _ = no_grad();
        using var r = rm.Rewards([([256, 72, 105], [33, 257]), ([256, 72, 105], [63, 257])], 258);
        Assert.Equal(2, r.shape[0]);
        Assert.NotEqual(0f, r.abs().sum().item<float>());
    }
}

/// <summary>LoRA jobs through a real AlignHub process: SFT and DPO with use_peft, adapter downloads, adapters as models.</summary>
public class LoraApiTests
{
    static List<string> TarNames(byte[] gz)
    {
        using var ms = new MemoryStream(gz);
        using var z = new System.IO.Compression.GZipStream(ms, System.IO.Compression.CompressionMode.Decompress);
        using var tar = new System.Formats.Tar.TarReader(z);
        var names = new List<string>();
        while (tar.GetNextEntry() is { } e) names.Add(Path.GetFileName(e.Name));
        return names;
    }

    [Fact]
    public async Task LoRA_SFT_and_LoRA_DPO_jobs_run_end_to_end_and_their_adapters_are_models()
    {
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-lora-api-").FullName);
        var (s1, sftFile) = await app.Upload(TestData.Jsonl(64), "sft.jsonl");
        Assert.True(s1 == System.Net.HttpStatusCode.OK, sftFile.ToString());
        var sftId = sftFile.GetProperty("id").GetString()!;

        async Task<(System.Net.HttpStatusCode, JsonElement)> Create(string type, string model, string file, object hyperparameters) =>
            await app.PostJson("/v1/fine_tuning/jobs", new { model, training_file = file, seed = 3, method = new Dictionary<string, object> { ["type"] = type, [type] = new { hyperparameters } } });

        // A model without weights has nothing to adapt; a target the architecture lacks is named.
        var (bad, badBody) = await Create("supervised", "alignhub/tiny", sftId, new { use_peft = true });
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, bad);
        Assert.Contains("use_peft", badBody.GetProperty("error").GetProperty("param").GetString());

        // The base: a short full fine-tune gives the tiny model weights.
        var (ok0, full) = await Create("supervised", "alignhub/tiny", sftId, new { max_steps = 4, batch_size = 8 });
        Assert.True(ok0 == System.Net.HttpStatusCode.OK, full.ToString());
        var baseModel = (await app.WaitForStatus(full.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(3))).GetProperty("fine_tuned_model").GetString()!;

        var (bad2, bad2Body) = await Create("supervised", baseModel, sftId, new { use_peft = true, lora_target_modules = new[] { "q_proj" } });
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, bad2);
        Assert.Contains("q_proj", bad2Body.GetProperty("error").GetProperty("message").GetString());

        var (ok1, sft) = await Create("supervised", baseModel, sftId, new { max_steps = 6, batch_size = 8, learning_rate = 1e-2, use_peft = true, lora_r = 4, lora_alpha = 8, save_merged_model = true });
        Assert.True(ok1 == System.Net.HttpStatusCode.OK, sft.ToString());
        var sftJob = await app.WaitForStatus(sft.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(3));
        var adapterModel = sftJob.GetProperty("fine_tuned_model").GetString()!;
        Assert.True(sftJob.GetProperty("config").GetProperty("use_peft").GetBoolean());

        // The fine-tuned model downloads as its PEFT adapter folder; with merged=true as the merged HF model.
        var adapterTar = await app.Http.GetByteArrayAsync($"/v1/models/{adapterModel}/content");
        var names = TarNames(adapterTar);
        Assert.Contains("adapter_config.json", names);
        Assert.Contains("adapter_model.safetensors", names);
        Assert.DoesNotContain("model.safetensors", names);
        var mergedNames = TarNames(await app.Http.GetByteArrayAsync($"/v1/models/{adapterModel}/content?merged=true"));
        Assert.Contains("model.safetensors", mergedNames);
        Assert.DoesNotContain("adapter_config.json", mergedNames);
        Assert.Equal(System.Net.HttpStatusCode.Conflict, (await app.Http.GetAsync($"/v1/models/{baseModel}/content?merged=true")).StatusCode);

        // The adapter, uploaded as an archive under a new id, registers on its base (base_model_name_or_path) and generates.
        using (var form = new MultipartFormDataContent { { new ByteArrayContent(adapterTar), "file", "adapter.tar.gz" }, { new StringContent("me/greeter-lora"), "id" } })
        {
            var r = await app.Http.PostAsync("/v1/models", form);
            Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
        }
        var (sp, promptFile) = await app.Upload(string.Join("\n", TestData.Greetings(4).Select(g => JsonSerializer.Serialize(new { prompt = g.Prompt }))), "prompts.jsonl");
        Assert.True(sp == System.Net.HttpStatusCode.OK, promptFile.ToString());
        var (og, gen) = await Create("generate", "me/greeter-lora", promptFile.GetProperty("id").GetString()!, new { n = 1, max_new_tokens = 8, temperature = 0 });
        Assert.True(og == System.Net.HttpStatusCode.OK, gen.ToString());
        await app.WaitForStatus(gen.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(2));

        // LoRA DPO on the adapter model (its base chain: adapter -> full fine-tune): the reference is the base with new adapters off.
        var pairs = string.Join("\n", PreferenceTask.Pairs(32, 1).Select(p => JsonSerializer.Serialize(new { prompt = p.Prompt, chosen = p.Chosen, rejected = p.Rejected })));
        var (s2, pairFile) = await app.Upload(pairs, "pairs.jsonl");
        Assert.True(s2 == System.Net.HttpStatusCode.OK, pairFile.ToString());
        var (ok2, dpo) = await Create("dpo", adapterModel, pairFile.GetProperty("id").GetString()!, new { max_steps = 4, batch_size = 8, beta = 0.1, use_peft = true, lora_r = 4, lora_alpha = 8, lora_dropout = 0.1 });
        Assert.True(ok2 == System.Net.HttpStatusCode.OK, dpo.ToString());
        var dpoId = dpo.GetProperty("id").GetString()!;
        var dpoJob = await app.WaitForStatus(dpoId, "succeeded", TimeSpan.FromMinutes(3));
        var events = (await app.GetJson($"/v1/fine_tuning/jobs/{dpoId}/events?limit=1000")).GetProperty("data").EnumerateArray().Select(e => e.GetProperty("message").GetString()!).ToList();
        Assert.Contains(events, m => m.StartsWith("Reference log-probs computed"));
        var dpoModel = dpoJob.GetProperty("fine_tuned_model").GetString()!;
        Assert.Contains("adapter_config.json", TarNames(await app.Http.GetByteArrayAsync($"/v1/models/{dpoModel}/content")));
        var checkpoints = (await app.GetJson($"/v1/fine_tuning/jobs/{dpoId}/checkpoints")).GetProperty("data");
        Assert.True(checkpoints.GetArrayLength() >= 1);
    }
}
