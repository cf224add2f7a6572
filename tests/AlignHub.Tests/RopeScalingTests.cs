using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using AlignHub.Domain;
using AlignHub.Training.Models;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>
/// rope_scaling of type llama3, linear and dynamic: AlignHub's frequencies against tests/oracles/rope.py, a transcription of
/// transformers' modeling_rope_utils in plain Python, on Llama 3.1's and 3.2's real settings and small ones; and the model
/// uses them (a scaled Llama's logits differ from the unscaled one's exactly where the frequencies do).
/// </summary>
public class RopeScalingTests
{
    static readonly JsonObject Llama31 = new() { ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 8192 };
    static readonly JsonObject Llama32 = new() { ["rope_type"] = "llama3", ["factor"] = 32.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 8192 };

    static (int HeadDim, double Theta, JsonObject? Scaling, int MaxPositions, long SeqLen)[] Cases =>
    [
        (128, 500000, Llama31, 131072, 0),      // Llama 3.1 8B
        (64, 500000, Llama32, 131072, 0),       // Llama 3.2 1B
        (16, 10000, new JsonObject { ["rope_type"] = "llama3", ["factor"] = 4.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 64 }, 256, 0),
        (64, 10000, new JsonObject { ["type"] = "linear", ["factor"] = 4.0 }, 2048, 0),
        (64, 10000, new JsonObject { ["type"] = "dynamic", ["factor"] = 2.0 }, 2048, 1000),   // within the original context: unchanged
        (64, 10000, new JsonObject { ["type"] = "dynamic", ["factor"] = 2.0 }, 2048, 3000),   // beyond it: a larger base
        (128, 1000000, null, 32768, 0),
    ];

    [Fact]
    public async Task Frequencies_match_transformers_formulas()
    {
        var request = new JsonArray(Cases.Select(c => (JsonNode)new JsonObject
        {
            ["head_dim"] = c.HeadDim, ["theta"] = c.Theta, ["scaling"] = c.Scaling?.DeepClone(), ["max_positions"] = c.MaxPositions, ["seq_len"] = c.SeqLen,
        }).ToArray());
        var psi = new ProcessStartInfo("python3", "rope.py") { WorkingDirectory = Oracles.Dir, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        await p.StandardInput.WriteAsync(request.ToJsonString());
        p.StandardInput.Close();
        var output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, await p.StandardError.ReadToEndAsync());
        var expected = JsonNode.Parse(output)!.AsArray();
        for (int k = 0; k < Cases.Length; k++)
        {
            var c = Cases[k];
            var config = new JsonObject { ["max_position_embeddings"] = c.MaxPositions };
            if (c.Scaling is not null) config["rope_scaling"] = c.Scaling.DeepClone();
            var scaling = RopeScaling.Parse(JsonDocument.Parse(config.ToJsonString()).RootElement, c.MaxPositions);
            var ours = RopeScaling.InverseFrequencies(c.HeadDim, c.Theta, scaling, c.SeqLen);
            var theirs = expected[k]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
            Assert.Equal(theirs.Length, ours.Length);
            for (int i = 0; i < ours.Length; i++)
                Assert.True(Math.Abs(ours[i] - theirs[i]) <= 1e-12 * Math.Max(1, Math.Abs(theirs[i])) + 1e-15, $"case {k}, i {i}: {ours[i]} vs {theirs[i]}");
        }
        // Llama 3.1: the highest frequencies are kept, the lowest divided by 8, and some in between interpolated.
        var l31 = RopeScaling.InverseFrequencies(128, 500000, RopeScaling.Parse(JsonDocument.Parse(new JsonObject { ["rope_scaling"] = Llama31.DeepClone() }.ToJsonString()).RootElement, 131072));
        var plain = RopeScaling.InverseFrequencies(128, 500000, null);
        Assert.Equal(plain[0], l31[0]);
        Assert.Equal(plain[^1] / 8, l31[^1], 15);
        Assert.Contains(Enumerable.Range(0, 64), i => l31[i] < plain[i] && l31[i] > plain[i] / 8);
    }

    static string Config(object? ropeScaling, int maxPos = 64) => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["model_type"] = "llama", ["vocab_size"] = 300, ["hidden_size"] = 32, ["intermediate_size"] = 64, ["num_hidden_layers"] = 1,
        ["num_attention_heads"] = 2, ["max_position_embeddings"] = maxPos, ["rope_scaling"] = ropeScaling,
    });

    [Fact]
    public void Configs_with_rope_scaling_parse_and_the_model_uses_it()
    {
        // Llama 3.1's config parses; yarn is refused by name; dynamic extends the context by its factor.
        var a = ModelArchitecture.Parse(Config(new { rope_type = "llama3", factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position_embeddings = 16 }));
        Assert.Equal("llama3", a.RopeScaling!.Type);
        var e = Assert.Throws<InvalidDataException>(() => ModelArchitecture.Parse(Config(new { rope_type = "yarn", factor = 4.0 })));
        Assert.Contains("yarn", e.Message);
        Assert.Throws<InvalidDataException>(() => ModelArchitecture.Parse(Config(new { rope_type = "llama3", factor = 8.0 })));
        Assert.Equal(128, ModelArchitecture.Parse(Config(new { type = "dynamic", factor = 2.0 })).MaxPositions);
        Assert.Null(ModelArchitecture.Parse(Config(new { rope_type = "default" })).RopeScaling);
        // v5's rope_parameters is read too.
        var v5 = JsonNode.Parse(Config(null))!.AsObject();
        v5["rope_parameters"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0, ["rope_theta"] = 10000.0 };
        Assert.Equal("linear", ModelArchitecture.Parse(v5.ToJsonString()).RopeScaling!.Type);

        // The same weights with and without linear scaling: position 0 sees no rotation, so the first token's logits agree;
        // later positions differ.
        manual_seed(1);
        using var plain = CausalLM.Create(Config(null));
        manual_seed(1);
        using var scaled = CausalLM.Create(Config(new { type = "linear", factor = 4.0 }));
        plain.eval(); scaled.eval();
        using var _ = no_grad();
        using var ids = tensor(new long[] { 5, 17, 200, 33, 9 }, [1, 5]);
        using var lp = plain.forward(ids);
        using var ls = scaled.forward(ids);
        using var d0 = (lp[0, 0] - ls[0, 0]).abs().max();
        using var d4 = (lp[0, 4] - ls[0, 4]).abs().max();
        Assert.True(d0.item<float>() < 1e-6);
        Assert.True(d4.item<float>() > 1e-5);
    }
}

/// <summary>Reward models in Hugging Face's <c>*ForSequenceClassification</c> layout: no <c>lm_head</c>, a <c>score.weight</c>.</summary>
public class SequenceClassificationTests
{
    [Fact]
    public void A_sequence_classifier_folder_without_lm_head_loads_as_a_reward_model_and_a_reward_source()
    {
        // An untied Llama (tie_word_embeddings false), as LlamaForSequenceClassification saves it: model.* and score.weight, no lm_head.
        var config = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["architectures"] = new[] { "LlamaForSequenceClassification" }, ["model_type"] = "llama", ["vocab_size"] = 259, ["hidden_size"] = 32,
            ["intermediate_size"] = 64, ["num_hidden_layers"] = 2, ["num_attention_heads"] = 4, ["max_position_embeddings"] = 64,
            ["tie_word_embeddings"] = false, ["num_labels"] = 1, ["pad_token_id"] = 258,
        });
        var arch = ModelArchitecture.Parse(config);
        Assert.True(arch.IsRewardModel);
        Assert.False(arch.HasLmHead);
        var dir = Directory.CreateTempSubdirectory("alignhub-seqcls-").FullName;
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        manual_seed(2);
        using (var model = CausalLM.Create(arch))
        {
            Assert.DoesNotContain(model.named_parameters(), p => p.name.StartsWith("lm_head"));
            using var score = randn(1, 32) * 0.1;
            HfWeights.Save(model, dir, extra: new Dictionary<string, Tensor> { ["score.weight"] = score });
        }
        var keys = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(dir, "model.safetensors")).Keys.ToList();
        Assert.Contains("score.weight", keys);
        Assert.DoesNotContain("lm_head.weight", keys);
        // Registration counts exactly these tensors (no lm_head), and the folder loads as a reward model and a reward source.
        var inspected = ModelService.Inspect(dir);
        Assert.Null(inspected.Error);
        var source = new ModelSource(config, "byte", dir);
        using var rm = source.CreateRewardModel();
        rm.Train(false);
        using var _ = no_grad();
        using var r = rm.Rewards([([256, 72, 105], [33, 257]), ([256, 72, 105], [63, 63, 257])], 258);
        Assert.Equal(2, r.shape[0]);
        Assert.NotEqual(r[0].item<float>(), r[1].item<float>());
        using var reward = AlignHub.Training.Rewards.RewardEnsembleSource.Load(source, 0, 8, null);
        Assert.NotNull(reward);
    }
}
