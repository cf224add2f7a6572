using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using Xunit;

namespace AlignHub.Tests;

public class GenerationTests
{
    static readonly ByteTokenizer Tok = new();

    public static TheoryData<string> Configs => new() { TinyConfigs.Gpt2(), TinyConfigs.Llama(kvHeads: 2), TinyConfigs.Llama(kvHeads: 1, type: "qwen2") };

    static readonly int[][] Prompts =
    [
        [256, .. "The cat"u8.ToArray().Select(b => (int)b)],
        [256, .. "Once upon a time, there"u8.ToArray().Select(b => (int)b)],
        [256, 65],
    ];

    /// <summary>
    /// Nash-MD's geometric mixture, checked against full forward passes of both models (no cache) over each finished
    /// sequence: a mixed row's sampling log-probs are log_softmax((1 - c) l_model + c l_ref) at its tokens and its
    /// log-probs the model's; an unmixed row in the same batch samples exactly what the model alone samples; at c = 1 a
    /// row samples exactly what the reference alone samples.
    /// </summary>
    [Theory]
    [MemberData(nameof(Configs))]
    public void Geometric_mixture_sampling_draws_from_the_renormalised_product_of_model_and_reference(string config)
    {
        using var model = TinyConfigs.Create(config, 11);
        using var reference = TinyConfigs.Create(config, 12);
        var o = new GenerationOptions { MaxNewTokens = 24, Temperature = 1 };
        long[] seeds = [5, 6, 7];
        var mixed = TextGenerator.Generate(model, Tok, Prompts, o, seeds, new GeometricMixture(reference, 0.5, [true, false, true]));
        var alone = TextGenerator.Generate(model, Tok, Prompts, o, seeds);
        Assert.Equal(alone[1].Tokens, mixed[1].Tokens);
        Assert.Equal(alone[1].SamplingLogProbs, mixed[1].SamplingLogProbs);
        using (TorchSharp.torch.no_grad())
            foreach (int row in new[] { 0, 2 })
            {
                var seq = Prompts[row].Concat(mixed[row].Tokens).Select(t => (long)t).ToArray();
                using var ids = TorchSharp.torch.tensor(seq, [1, seq.Length]);
                using var lm = model.forward(ids, null, null).log_softmax(-1);
                using var lr = reference.forward(ids, null, null).log_softmax(-1);
                using var mix = (lm * 0.5 + lr * 0.5).log_softmax(-1);
                for (int j = 0; j < mixed[row].Tokens.Length; j++)
                {
                    int at = Prompts[row].Length - 1 + j, token = mixed[row].Tokens[j];
                    Assert.InRange(mixed[row].SamplingLogProbs[j] - mix[0, at, token].item<float>(), -1e-3f, 1e-3f);
                    Assert.InRange(mixed[row].LogProbs[j] - lm[0, at, token].item<float>(), -1e-3f, 1e-3f);
                }
            }
        Assert.NotEqual(alone[0].Tokens, mixed[0].Tokens); // the mixture is not the model (two random models differ)
        var allRef = TextGenerator.Generate(model, Tok, Prompts, o, seeds, new GeometricMixture(reference, 1.0, [true, true, true]));
        var refAlone = TextGenerator.Generate(reference, Tok, Prompts, o, seeds);
        for (int i = 0; i < Prompts.Length; i++) Assert.Equal(refAlone[i].Tokens, allRef[i].Tokens);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void Greedy_generation_with_the_KV_cache_yields_exactly_the_tokens_without_it(string config)
    {
        using var model = TinyConfigs.Create(config, 11);
        var greedy = new GenerationOptions { MaxNewTokens = 40, Temperature = 0 };
        var cached = TextGenerator.Generate(model, Tok, Prompts, greedy);
        var uncached = TextGenerator.Generate(model, Tok, Prompts, greedy with { UseKvCache = false });
        for (int i = 0; i < Prompts.Length; i++)
        {
            Assert.Equal(uncached[i].Tokens, cached[i].Tokens);
            Assert.Equal(uncached[i].FinishReason, cached[i].FinishReason);
            Assert.True(cached[i].LogProbs.Zip(uncached[i].LogProbs).All(x => Math.Abs(x.First - x.Second) < 1e-4f));
        }
        Assert.Contains(cached, s => s.Tokens.Length > 5);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void Batched_left_padded_generation_equals_one_prompt_at_a_time(string config)
    {
        using var model = TinyConfigs.Create(config, 12);
        var greedy = new GenerationOptions { MaxNewTokens = 30, Temperature = 0 };
        var batched = TextGenerator.Generate(model, Tok, Prompts, greedy);
        for (int i = 0; i < Prompts.Length; i++)
        {
            var single = TextGenerator.Generate(model, Tok, [Prompts[i]], greedy)[0];
            Assert.Equal(single.Tokens, batched[i].Tokens);
            Assert.True(single.LogProbs.Zip(batched[i].LogProbs).All(x => Math.Abs(x.First - x.Second) < 1e-4f));
        }
    }

    [Fact]
    public void Sampling_is_reproducible_by_seed_and_top_k_1_is_greedy()
    {
        using var model = TinyConfigs.Create(TinyConfigs.Llama(2), 13);
        var sample = new GenerationOptions { MaxNewTokens = 25, Temperature = 1.0, TopP = 0.95, Seed = 5 };
        var a = TextGenerator.Generate(model, Tok, Prompts, sample);
        var b = TextGenerator.Generate(model, Tok, Prompts, sample);
        var c = TextGenerator.Generate(model, Tok, Prompts, sample with { Seed = 6 });
        Assert.Equal(a.Select(s => s.Tokens), b.Select(s => s.Tokens));
        Assert.NotEqual(a.SelectMany(s => s.Tokens), c.SelectMany(s => s.Tokens));
        var greedy = TextGenerator.Generate(model, Tok, Prompts, sample with { Temperature = 0 });
        var topK1 = TextGenerator.Generate(model, Tok, Prompts, sample with { TopK = 1, TopP = null });
        Assert.Equal(greedy.Select(s => s.Tokens), topK1.Select(s => s.Tokens));
    }

    [Fact]
    public void Generation_stops_at_max_new_tokens_at_a_stop_string_and_at_eos()
    {
        using var model = TinyConfigs.Create(TinyConfigs.Gpt2(), 14);
        var greedy = new GenerationOptions { MaxNewTokens = 12, Temperature = 0 };
        var plain = TextGenerator.Generate(model, Tok, [Prompts[0]], greedy)[0];
        Assert.Equal("length", plain.FinishReason);
        Assert.Equal(12, plain.Tokens.Length);
        Assert.Equal(12, plain.LogProbs.Length);
        Assert.All(plain.LogProbs, lp => Assert.True(lp <= 0));

        // A stop string taken from the greedy text itself: the completion ends there and the text stops before it.
        var stop = Tok.Decode(plain.Tokens.Skip(4).Take(2));
        var stopped = TextGenerator.Generate(model, Tok, [Prompts[0]], greedy with { Stop = [stop] })[0];
        Assert.Equal("stop", stopped.FinishReason);
        Assert.Equal(plain.Text[..plain.Text.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);

        // Make eos the argmax: the sequence ends at once, with no tokens.
        using (TorchSharp.torch.no_grad())
        {
            var wte = model.named_parameters().Single(p => p.name == "transformer.wte.weight").parameter;
            var lnf = model.named_parameters().Single(p => p.name == "transformer.ln_f.bias").parameter;
            lnf.copy_(TorchSharp.torch.ones(32));
            wte[257].copy_(TorchSharp.torch.ones(32) * 5);
        }
        var eos = TextGenerator.Generate(model, Tok, [Prompts[0]], greedy)[0];
        Assert.Equal("stop", eos.FinishReason);
        Assert.Equal([257], eos.Tokens); // the EOS that ended it is returned, as sampled
        Assert.Equal("", eos.Text);
    }
}
