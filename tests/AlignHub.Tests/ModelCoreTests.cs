using System.Text;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>Tiny configs of each family, in the Hugging Face config.json form.</summary>
public static class TinyConfigs
{
    public static string Gpt2(int vocab = 259) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["model_type"] = "gpt2", ["vocab_size"] = vocab, ["n_embd"] = 32, ["n_layer"] = 2, ["n_head"] = 4, ["n_positions"] = 128,
        ["bos_token_id"] = 256, ["eos_token_id"] = 257, ["pad_token_id"] = 258,
    });

    /// <summary>Llama with grouped-query attention (4 query heads, <paramref name="kvHeads"/> key/value heads).</summary>
    public static string Llama(int kvHeads = 2, bool tied = false, string type = "llama", int vocab = 259) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["model_type"] = type, ["vocab_size"] = vocab, ["hidden_size"] = 32, ["intermediate_size"] = 64, ["num_hidden_layers"] = 2,
        ["num_attention_heads"] = 4, ["num_key_value_heads"] = kvHeads, ["max_position_embeddings"] = 128, ["rms_norm_eps"] = 1e-6,
        ["rope_theta"] = 10000.0, ["tie_word_embeddings"] = tied, ["hidden_act"] = "silu",
        ["bos_token_id"] = 256, ["eos_token_id"] = 257, ["pad_token_id"] = 258,
    });

    public static CausalLM Create(string json, int seed)
    {
        torch.manual_seed(seed);
        var m = CausalLM.Create(json);
        m.eval();
        return m;
    }
}

public class ModelCoreTests
{
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-model-").FullName;
    static readonly long[] Ids = [256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100];

    static float[] Logits(CausalLM m, long[] ids)
    {
        using var _ = no_grad();
        using var t = tensor(ids, [1, ids.Length]);
        using var l = m.forward(t);
        return l.data<float>().ToArray();
    }

    public static TheoryData<string, string> Families => new()
    {
        { "gpt2", TinyConfigs.Gpt2() },
        { "llama-gqa-untied", TinyConfigs.Llama(kvHeads: 2) },
        { "llama-tied-mha", TinyConfigs.Llama(kvHeads: 4, tied: true) },
        { "qwen2-bias", TinyConfigs.Llama(kvHeads: 1, type: "qwen2") },
    };

    [Theory]
    [MemberData(nameof(Families))]
    public void Save_then_load_in_the_HF_layout_gives_bit_identical_logits_single_and_sharded(string family, string config)
    {
        using var a = TinyConfigs.Create(config, 1);
        using var b = TinyConfigs.Create(config, 2);
        Assert.NotEqual(Logits(a, Ids), Logits(b, Ids));
        var single = TempDir();
        HfWeights.Save(a, single);
        Assert.True(File.Exists(Path.Combine(single, "model.safetensors")), family);
        HfWeights.Load(b, single);
        Assert.Equal(Logits(a, Ids), Logits(b, Ids)); // exact, not approximate

        var sharded = TempDir();
        HfWeights.Save(a, sharded, maxShardBytes: 16 * 1024);
        Assert.False(File.Exists(Path.Combine(sharded, "model.safetensors")));
        var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(sharded, "model.safetensors.index.json"))).RootElement;
        var shards = index.GetProperty("weight_map").EnumerateObject().Select(p => p.Value.GetString()).Distinct().ToList();
        Assert.True(shards.Count > 1, $"{family}: {shards.Count} shard(s)");
        using var c = TinyConfigs.Create(config, 3);
        HfWeights.Load(c, sharded);
        Assert.Equal(Logits(a, Ids), Logits(c, Ids));
    }

    [Fact]
    public void Parameter_names_are_the_Hugging_Face_keys_and_the_count_matches_the_config()
    {
        using var llama = TinyConfigs.Create(TinyConfigs.Llama(kvHeads: 2), 1);
        var names = llama.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("model.embed_tokens.weight", names);
        Assert.Contains("model.layers.1.self_attn.k_proj.weight", names);
        Assert.Contains("model.layers.0.mlp.gate_proj.weight", names);
        Assert.Contains("model.layers.0.post_attention_layernorm.weight", names);
        Assert.Contains("model.norm.weight", names);
        Assert.Contains("lm_head.weight", names);
        Assert.Equal([16L, 32L], llama.named_parameters().Single(p => p.name == "model.layers.0.self_attn.k_proj.weight").parameter.shape); // 2 kv heads x 8
        using var qwen = TinyConfigs.Create(TinyConfigs.Llama(type: "qwen2"), 1);
        Assert.Contains("model.layers.0.self_attn.q_proj.bias", qwen.named_parameters().Select(p => p.name));
        Assert.DoesNotContain("model.layers.0.self_attn.o_proj.bias", qwen.named_parameters().Select(p => p.name));
        foreach (var config in new[] { TinyConfigs.Gpt2(), TinyConfigs.Llama(2), TinyConfigs.Llama(4, tied: true), TinyConfigs.Llama(1, type: "qwen2") })
        {
            using var m = TinyConfigs.Create(config, 1);
            Assert.Equal(ModelArchitecture.Parse(config).Parameters(), m.parameters().Sum(p => p.numel()));
        }
    }

    /// <summary>
    /// Grouped-query attention equals multi-head attention whose key/value heads are the GQA heads repeated: query
    /// head h reads kv head h / (heads / kv_heads).
    /// </summary>
    [Fact]
    public void Grouped_query_attention_equals_multi_head_attention_with_repeated_kv_heads()
    {
        using var gqa = TinyConfigs.Create(TinyConfigs.Llama(kvHeads: 2), 1);
        using var mha = TinyConfigs.Create(TinyConfigs.Llama(kvHeads: 4), 2);
        var src = gqa.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
        {
            foreach (var (name, p) in mha.named_parameters())
            {
                var w = src[name];
                if (name.EndsWith("k_proj.weight") || name.EndsWith("v_proj.weight"))
                {
                    using var heads = w.view(2, 8, 32);                 // [kv_heads, head_dim, in]
                    using var rep = heads.repeat_interleave(2, dim: 0); // kv head g serves query heads 2g, 2g+1
                    p.copy_(rep.reshape(32, 32));
                }
                else p.copy_(w);
            }
        }
        var a = Logits(gqa, Ids);
        var b = Logits(mha, Ids);
        Assert.Equal(a.Length, b.Length);
        Assert.True(a.Zip(b).Max(x => Math.Abs(x.First - x.Second)) < 1e-5f);

        // With an attention mask the query heads of a group are folded onto their kv head instead of repeating k and
        // v: the same logits.
        using var _ = no_grad();
        using var ids = tensor(Ids, [1, Ids.Length]);
        using var mask = ones_like(ids);
        using var folded = gqa.forward(ids, mask, null);
        Assert.True(a.Zip(folded.data<float>().ToArray()).Max(x => Math.Abs(x.First - x.Second)) < 1e-5f);
    }

    /// <summary>HF GPT-2 files use Conv1D ([in, out]) weights, keys without "transformer." and attn.bias mask buffers.</summary>
    [Fact]
    public void A_GPT2_checkpoint_in_HF_layout_written_by_hand_loads_with_Conv1D_weights_transposed()
    {
        using var source = TinyConfigs.Create(TinyConfigs.Gpt2(), 7);
        var tensors = new List<(string Name, long[] Shape, float[] Data)>();
        foreach (var (name, p) in source.named_parameters())
        {
            var key = name["transformer.".Length..];
            bool conv1d = name.EndsWith("c_attn.weight") || name.EndsWith("c_proj.weight") || name.EndsWith("c_fc.weight");
            using var stored = conv1d ? p.detach().t().contiguous() : p.detach().contiguous();
            tensors.Add((key, stored.shape, stored.data<float>().ToArray()));
            if (name.EndsWith("attn.c_attn.weight"))
                tensors.Add((key.Replace("c_attn.weight", "bias"), [1, 1, 4, 4], new float[16])); // causal-mask buffer, ignored
        }
        var dir = TempDir();
        File.WriteAllText(Path.Combine(dir, "config.json"), TinyConfigs.Gpt2());
        WriteByHand(Path.Combine(dir, "model.safetensors"), tensors);

        using var loaded = HfWeights.LoadModel(dir);
        loaded.eval();
        Assert.Equal(Logits(source, Ids), Logits(loaded, Ids));
    }

    /// <summary>The safetensors layout from the spec, without our writer: u64 header length, JSON, F32 little-endian data.</summary>
    static void WriteByHand(string path, List<(string Name, long[] Shape, float[] Data)> tensors)
    {
        var header = new StringBuilder("{");
        long offset = 0;
        foreach (var (name, shape, data) in tensors)
        {
            header.Append($"\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{offset},{offset + data.Length * 4}]}},");
            offset += data.Length * 4;
        }
        header.Append("\"__metadata__\":{\"format\":\"pt\"}}");
        var json = Encoding.UTF8.GetBytes(header.ToString());
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes((ulong)json.Length));
        f.Write(json);
        foreach (var (_, _, data) in tensors) foreach (var x in data) f.Write(BitConverter.GetBytes(x));
    }

    [Fact]
    public void Loading_errors_name_the_tensor()
    {
        using var model = TinyConfigs.Create(TinyConfigs.Llama(kvHeads: 2), 1);
        var good = TempDir();
        HfWeights.Save(model, good);
        var all = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(good, "model.safetensors"));

        string Variant(Func<Dictionary<string, Tensor>, IEnumerable<(string, Tensor)>> f)
        {
            var dir = TempDir();
            AlignHub.Training.IO.SafeTensors.Write(Path.Combine(dir, "model.safetensors"), f(all).ToList());
            return Assert.Throws<InvalidDataException>(() => HfWeights.Load(model, dir)).Message;
        }
        Assert.Contains("missing tensor \"model.norm.weight\"", Variant(d => d.Where(kv => kv.Key != "model.norm.weight").Select(kv => (kv.Key, kv.Value))));
        Assert.Contains("\"model.layers.0.self_attn.k_proj.weight\" has shape [32, 32], the model expects [16, 32]",
            Variant(d => d.Select(kv => kv.Key == "model.layers.0.self_attn.k_proj.weight" ? (kv.Key, zeros(32, 32)) : (kv.Key, kv.Value))));
        Assert.Contains("unexpected tensor \"model.layers.9.mlp.up_proj.weight\"",
            Variant(d => d.Select(kv => (kv.Key, kv.Value)).Append(("model.layers.9.mlp.up_proj.weight", zeros(2, 2)))));
        var badIndex = TempDir();
        File.WriteAllText(Path.Combine(badIndex, "model.safetensors.index.json"), "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\"}}");
        Assert.Contains("model-00001-of-00002.safetensors", Assert.Throws<FileNotFoundException>(() => HfWeights.Load(model, badIndex)).Message);
    }

    [Fact]
    public void Config_errors_name_the_key()
    {
        Assert.Contains("num_key_value_heads", Assert.Throws<InvalidDataException>(() => ModelArchitecture.Parse(TinyConfigs.Llama(kvHeads: 3))).Message);
        Assert.Contains("\"hidden_size\"", Assert.Throws<InvalidDataException>(() => ModelArchitecture.Parse("{\"model_type\":\"llama\"}")).Message);
        Assert.Contains("model_type \"bert\"", Assert.Throws<InvalidDataException>(() => ModelArchitecture.Parse("{\"model_type\":\"bert\"}")).Message);
    }

    /// <summary>Summed completion log-probs equal a sum built one token at a time from prefix-only forwards.</summary>
    [Theory]
    [MemberData(nameof(Families))]
    public void Completion_log_probs_equal_a_teacher_forced_sum_step_by_step(string family, string config)
    {
        using var model = TinyConfigs.Create(config, 3);
        var pairs = new List<(int[] Prompt, int[] Completion)>
        {
            ([256, 10, 20, 30], [40, 50, 257]),
            ([256, 11], [60, 61, 62, 63, 64, 257]), // shorter prompt, longer completion: padding in the batch
            ([256, 12, 13, 14, 15, 16, 17], [70]),
        };
        using var batch = AlignHub.Training.Data.Collator.PromptCompletions(pairs, 258, null);
        using var _ = no_grad();
        var result = CompletionLogProbs.Compute(model, batch);
        var sums = result.Sum.data<float>().ToArray();
        var counts = result.Count.data<float>().ToArray();
        for (int i = 0; i < pairs.Count; i++)
        {
            var (prompt, completion) = pairs[i];
            double expected = 0;
            var prefix = prompt.ToList();
            foreach (var token in completion)
            {
                using var ids = tensor(prefix.Select(x => (long)x).ToArray(), [1, prefix.Count]);
                using var logits = model.forward(ids);
                using var lp = logits[0, -1].log_softmax(-1);
                expected += lp[token].item<float>();
                prefix.Add(token);
            }
            Assert.Equal(completion.Length, counts[i]);
            Assert.True(Math.Abs(expected - sums[i]) < 1e-4, $"{family} row {i}: {sums[i]} vs step-by-step {expected}");
        }
        // Prompt positions and padding carry nothing.
        var mask = result.Mask.data<float>().ToArray();
        int t = (int)result.Mask.shape[1];
        Assert.All(Enumerable.Range(0, pairs[0].Prompt.Length - 1), j => Assert.Equal(0f, mask[j]));
        Assert.Equal(0f, mask[t - 1]); // row 0 is shorter than the batch: padding
    }

    [Fact]
    public void The_concatenated_chosen_rejected_forward_equals_separate_forwards()
    {
        using var model = TinyConfigs.Create(TinyConfigs.Llama(2), 4);
        var chosen = new List<(int[], int[])> { ([256, 1, 2], [3, 4, 257]), ([256, 5], [6, 257]) };
        var rejected = new List<(int[], int[])> { ([256, 1, 2], [9, 257]), ([256, 5], [7, 8, 9, 10, 257]) };
        using var _ = no_grad();
        var (c, r) = CompletionLogProbs.Concatenated(model, chosen, rejected, 258);
        using var cb = AlignHub.Training.Data.Collator.PromptCompletions(chosen, 258, null);
        using var rb = AlignHub.Training.Data.Collator.PromptCompletions(rejected, 258, null);
        var cs = CompletionLogProbs.Compute(model, cb).Sum.data<float>().ToArray();
        var rs = CompletionLogProbs.Compute(model, rb).Sum.data<float>().ToArray();
        Assert.Equal(cs.Select(x => Math.Round(x, 4)), c.Sum.data<float>().ToArray().Select(x => Math.Round(x, 4)));
        Assert.Equal(rs.Select(x => Math.Round(x, 4)), r.Sum.data<float>().ToArray().Select(x => Math.Round(x, 4)));
    }
}

public class RopeTests
{
    /// <summary>
    /// Against an independent computation in double precision: each pair (x[i], x[i + d/2]) is the complex number
    /// x[i] + j x[i + d/2] multiplied by exp(j * pos * theta^(-2i/d)).
    /// </summary>
    [Fact]
    public void Rotary_embeddings_rotate_each_half_split_pair_by_position_times_frequency()
    {
        const int b = 2, h = 3, t = 5, d = 8;
        const double theta = 500;
        torch.manual_seed(9);
        using var x = torch.randn(b, h, t, d);
        var pos = new long[] { 0, 1, 2, 3, 4, 7, 8, 9, 10, 30 };
        using var positions = torch.tensor(pos, [b, t]);
        using var inv = Rope.InverseFrequencies(d, theta);
        var (cos, sin) = Rope.CosSin(positions, inv);
        using var rotated = Rope.Apply(x, cos, sin);
        cos.Dispose(); sin.Dispose();
        var xs = x.data<float>().ToArray();
        var ys = rotated.data<float>().ToArray();
        for (int bi = 0; bi < b; bi++)
        for (int hi = 0; hi < h; hi++)
        for (int ti = 0; ti < t; ti++)
        for (int i = 0; i < d / 2; i++)
        {
            int baseIdx = ((bi * h + hi) * t + ti) * d;
            double angle = pos[bi * t + ti] * Math.Pow(theta, -2.0 * i / d);
            double re = xs[baseIdx + i], im = xs[baseIdx + i + d / 2];
            double yr = re * Math.Cos(angle) - im * Math.Sin(angle), yi = re * Math.Sin(angle) + im * Math.Cos(angle);
            Assert.True(Math.Abs(yr - ys[baseIdx + i]) < 1e-4 && Math.Abs(yi - ys[baseIdx + i + d / 2]) < 1e-4,
                $"b{bi} h{hi} t{ti} i{i}: ({ys[baseIdx + i]}, {ys[baseIdx + i + d / 2]}) vs ({yr}, {yi})");
        }
    }
}
