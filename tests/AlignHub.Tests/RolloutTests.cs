using AlignHub.Training.Generation;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>The rollout primitives of online RL: what was sampled, under which distribution, and reproducibly.</summary>
public class RolloutTests
{
    static readonly ByteTokenizer Tok = new();

    static readonly int[][] Prompts =
    [
        [256, .. "The cat"u8.ToArray().Select(b => (int)b)],
        [256, .. "Once upon a time, there"u8.ToArray().Select(b => (int)b)],
        [256, 65],
    ];

    /// <summary>
    /// log p(token) recomputed without the generator: one plain forward over prompt + tokens (no cache, no padding,
    /// no batch), logits / T, top-k applied by hand on the host (keep the k largest, renormalise), log-softmax.
    /// </summary>
    static (double[] Sampling, double[] Model) Recompute(CausalLM model, int[] prompt, int[] tokens, double temperature, int? topK)
    {
        using var _ = no_grad();
        long[] ids = [.. prompt.Select(x => (long)x), .. tokens.Select(x => (long)x)];
        using var input = tensor(ids, [1, ids.Length]);
        using var logits = model.forward(input);
        var all = logits.data<float>().ToArray();
        int v = (int)logits.shape[2];
        var sampling = new double[tokens.Length];
        var raw = new double[tokens.Length];
        for (int j = 0; j < tokens.Length; j++)
        {
            var row = all.Skip((prompt.Length - 1 + j) * v).Take(v).Select(x => (double)x).ToArray();
            raw[j] = row[tokens[j]] - LogSumExp(row);
            var scaled = row.Select(x => x / temperature).ToArray();
            if (topK is int k)
            {
                double kth = scaled.OrderByDescending(x => x).ElementAt(k - 1);
                scaled = scaled.Select(x => x >= kth ? x : double.NegativeInfinity).ToArray();
            }
            sampling[j] = scaled[tokens[j]] - LogSumExp(scaled);
        }
        return (sampling, raw);
    }

    static double LogSumExp(double[] xs)
    {
        double m = xs.Max();
        return m + Math.Log(xs.Sum(x => double.IsNegativeInfinity(x) ? 0 : Math.Exp(x - m)));
    }

    [Theory]
    [InlineData(0.7, null)]
    [InlineData(1.3, 5)]
    public void Log_probs_of_sampled_tokens_equal_an_independent_recomputation(double temperature, int? topK)
    {
        foreach (var config in new[] { TinyConfigs.Gpt2(), TinyConfigs.Llama(kvHeads: 2) })
        {
            using var model = TinyConfigs.Create(config, 21);
            var o = new GenerationOptions { MaxNewTokens = 20, Temperature = temperature, TopK = topK };
            // Batched and left-padded, with the KV cache: K = 3 samples of each prompt.
            var rollouts = Rollouts.Sample(model, Tok, Prompts, [0, 1, 2], 3, o, seed: 9, step: 4, batchSize: 9);
            Assert.Equal(9, rollouts.Count);
            foreach (var r in rollouts)
            {
                var c = r.Completion;
                Assert.Equal(c.Tokens.Length, c.LogProbs.Length);
                Assert.Equal(c.Tokens.Length, c.SamplingLogProbs.Length);
                var (sampling, raw) = Recompute(model, r.PromptIds, c.Tokens, temperature, topK);
                for (int j = 0; j < c.Tokens.Length; j++)
                {
                    Assert.True(Math.Abs(sampling[j] - c.SamplingLogProbs[j]) <= 1e-5, $"sampling log-prob of token {j}: {c.SamplingLogProbs[j]} vs {sampling[j]}");
                    Assert.True(Math.Abs(raw[j] - c.LogProbs[j]) <= 1e-5, $"model log-prob of token {j}: {c.LogProbs[j]} vs {raw[j]}");
                }
            }
            // Not the same distribution: temperature (and top-k) changed the log-probs.
            Assert.Contains(rollouts, r => r.Completion.LogProbs.Zip(r.Completion.SamplingLogProbs).Any(x => Math.Abs(x.First - x.Second) > 1e-3));
        }
    }

    [Fact]
    public void The_batch_form_lays_sampler_log_probs_out_as_the_trainer_computes_them()
    {
        using var model = TinyConfigs.Create(TinyConfigs.Llama(kvHeads: 1, type: "qwen2"), 22);
        var o = new GenerationOptions { MaxNewTokens = 12, Temperature = 1.0 };
        var rollouts = Rollouts.Sample(model, Tok, Prompts, [0, 1, 2], 2, o, seed: 3, step: 0, batchSize: 4);
        using var _ = no_grad();
        using var batch = Rollouts.ToBatch(rollouts, Tok.PadId, model.Device);
        var fresh = CompletionLogProbs.Compute(model, batch.Sequences);
        // At temperature 1 with no filtering the sampling distribution is the model's: the ratio is 1 on every completion token.
        using var ratio = (fresh.PerToken - batch.SamplingLogProbs).exp() * fresh.Mask;
        Assert.Equal(rollouts.Sum(r => r.Completion.Tokens.Length), (int)fresh.Mask.sum().item<float>());
        Assert.True(((ratio - fresh.Mask).abs().max().item<float>()) < 1e-4f);
        Assert.True(((fresh.PerToken - batch.ModelLogProbs).abs().max().item<float>()) < 1e-5f);
    }

    [Fact]
    public void A_completion_ends_with_the_EOS_that_stopped_it_or_at_its_stop_string()
    {
        using var model = TinyConfigs.Create(TinyConfigs.Gpt2(), 23);
        var greedy = new GenerationOptions { MaxNewTokens = 16, Temperature = 0 };
        var plain = TextGenerator.Generate(model, Tok, [Prompts[1]], greedy)[0];
        Assert.Equal("length", plain.FinishReason);

        // A stop string that straddles tokens: the tokens end with the one that completed it, the text before it.
        var stop = Tok.Decode(plain.Tokens.Skip(5).Take(3));
        var stopped = TextGenerator.Generate(model, Tok, [Prompts[1]], greedy with { Stop = [stop] })[0];
        Assert.Equal("stop", stopped.FinishReason);
        Assert.Contains(stop, Tok.Decode(stopped.Tokens));
        Assert.DoesNotContain(stop, Tok.Decode(stopped.Tokens[..^1]));
        Assert.Equal(plain.Tokens[..stopped.Tokens.Length], stopped.Tokens);
        Assert.Equal(plain.Text[..plain.Text.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
        Assert.Equal(stopped.Tokens.Length, stopped.LogProbs.Length);

        // Make EOS likely but not certain: sampled completions that stopped end with EOS, and only there.
        using (no_grad())
        {
            // With a unit ln_f bias every hidden state sums to 32, so a constant c on EOS's embedding adds 32c to its logit.
            model.named_parameters().Single(p => p.name == "transformer.ln_f.bias").parameter.copy_(ones(32));
            model.named_parameters().Single(p => p.name == "transformer.wte.weight").parameter[257].add_(0.12);
        }
        var samples = Rollouts.Sample(model, Tok, Prompts, [0, 1, 2], 8, new GenerationOptions { MaxNewTokens = 10, Temperature = 1.0 }, 5, 0, 24);
        var ended = samples.Where(s => s.Completion.FinishReason == "stop").ToList();
        var running = samples.Where(s => s.Completion.FinishReason == "length").ToList();
        Assert.NotEmpty(ended);
        Assert.NotEmpty(running);
        Assert.All(ended, s =>
        {
            Assert.Equal(Tok.EosId, s.Completion.Tokens[^1]);
            Assert.DoesNotContain(Tok.EosId, s.Completion.Tokens[..^1]);
            Assert.Equal(Tok.Decode(s.Completion.Tokens[..^1]), s.Completion.Text);
        });
        Assert.All(running, s => { Assert.DoesNotContain(Tok.EosId, s.Completion.Tokens); Assert.Equal(10, s.Completion.Tokens.Length); });
    }

    [Fact]
    public void Samples_are_a_function_of_seed_step_prompt_and_sample_not_of_the_batch()
    {
        using var model = TinyConfigs.Create(TinyConfigs.Llama(kvHeads: 2), 24);
        var o = new GenerationOptions { MaxNewTokens = 15, Temperature = 1.0, TopP = 0.9 };
        Dictionary<(int, int), int[]> Run(IReadOnlyList<int[]> prompts, IReadOnlyList<int> idx, int batch, int step) =>
            Rollouts.Sample(model, Tok, prompts, idx, 3, o, seed: 17, step: step, batchSize: batch).ToDictionary(r => (r.PromptIndex, r.Sample), r => r.Completion.Tokens);

        var a = Run(Prompts, [10, 11, 12], 9, 2);
        var b = Run(Prompts, [10, 11, 12], 2, 2);                               // other batches
        var c = Run([Prompts[2], Prompts[0], Prompts[1]], [12, 10, 11], 4, 2);  // other order
        foreach (var key in a.Keys)
        {
            Assert.Equal(a[key], b[key]);
            Assert.Equal(a[key], c[key]);
        }
        Assert.NotEqual(a[(10, 0)], a[(10, 1)]);                                    // samples of one prompt differ
        var next = Run(Prompts, [10, 11, 12], 9, 3);                                // the next step samples anew
        Assert.Contains(a.Keys, k => !a[k].SequenceEqual(next[k]));
    }

    [Fact]
    public void Inverse_CDF_sampling_follows_the_distribution()
    {
        // 20,000 draws from a known 4-token distribution: each frequency within 4 standard errors of its probability.
        var p = new[] { 0.1, 0.2, 0.3, 0.4 };
        using var logits = tensor(p.Select(x => (float)Math.Log(x)).ToArray(), [1, 4]).expand(20_000, 4).contiguous();
        using var u = tensor(Enumerable.Range(0, 20_000).Select(i => Seeds.Uniform(Seeds.Row(1, 0, i, 0), 0)).ToArray());
        var (tokens, logp) = Sampler.Pick(logits, new GenerationOptions { Temperature = 1 }, u);
        var counts = tokens.data<long>().ToArray().GroupBy(t => t).ToDictionary(g => g.Key, g => g.Count());
        for (int k = 0; k < 4; k++)
        {
            double freq = counts.GetValueOrDefault(k) / 20_000.0, se = Math.Sqrt(p[k] * (1 - p[k]) / 20_000);
            Assert.True(Math.Abs(freq - p[k]) < 4 * se, $"token {k}: {freq:F4} vs {p[k]}");
        }
        Assert.Equal(Math.Log(0.4), logp.data<float>().ToArray().Max(), 5);
    }
}
