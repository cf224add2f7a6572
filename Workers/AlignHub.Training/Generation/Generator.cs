using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Generation;

/// <summary>Sampling settings; <c>temperature = 0</c> is greedy decoding.</summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 64;
    /// <summary>0: greedy (argmax); otherwise logits are divided by it before sampling.</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep only the k most likely tokens (null or 0: all).</summary>
    public int? TopK { get; init; }
    /// <summary>Nucleus sampling: the smallest set of tokens whose probability reaches p (null or 1: all).</summary>
    public double? TopP { get; init; }
    /// <summary>Text that ends a completion (not included in its text).</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Seeds row i as <see cref="Seeds.Row(long, long, long, long)"/>(seed, 0, i, 0) unless the call gives each row its own seed.</summary>
    public long Seed { get; init; }
    /// <summary>Reuse keys and values of earlier tokens (same tokens as without, much faster).</summary>
    public bool UseKvCache { get; init; } = true;
}

/// <summary>
/// One completion as an RL trainer needs it. <paramref name="Tokens"/>: the ids actually sampled, including the EOS
/// that ended it, and ending with the token that completed a matched stop string (nothing after).
/// <paramref name="Text"/>: the decoded completion without the EOS and cut before the stop string.
/// <paramref name="LogProbs"/>: each token's log-prob under the unmodified model (log softmax of the raw logits).
/// <paramref name="SamplingLogProbs"/>: each token's log-prob under the distribution it was drawn from (temperature,
/// top-k and top-p applied, renormalised; 0 for greedy decoding, a point mass) — the behaviour policy of a
/// policy-gradient ratio. <paramref name="FinishReason"/>: <c>stop</c> (EOS or a stop string) or <c>length</c>.
/// </summary>
public sealed record GeneratedSequence(int[] Tokens, string Text, float[] LogProbs, float[] SamplingLogProbs, string FinishReason)
{
    public double SumLogProb => LogProbs.Sum(x => (double)x);
}

/// <summary>
/// Counter-based seeds: each sequence's randomness is a function of (seed, step, prompt, sample) alone, never of the
/// batch it was generated in, so a resumed job (or a different batch size) samples the same completions. The
/// uniform number for a row's n-th token is SplitMix64 of (row seed, n), computed on the host and sent with the
/// step; it drives inverse-CDF sampling on the device.
/// </summary>
public static class Seeds
{
    public static long Row(long seed, long step, long prompt, long sample) =>
        (long)Mix(Mix(Mix(Mix((ulong)seed) ^ (ulong)step) ^ (ulong)prompt) ^ (ulong)sample);

    /// <summary>A uniform number in [0, 1) for the <paramref name="position"/>-th token of a row.</summary>
    public static double Uniform(long rowSeed, int position) => (Mix((ulong)rowSeed ^ Mix((ulong)position + 0x632BE59BD9B4E019UL)) >> 11) * (1.0 / (1UL << 53));

    /// <summary>SplitMix64's finaliser (Steele, Lea and Flood, 2014).</summary>
    static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

/// <summary>
/// Batched autoregressive generation: prompts are left-padded (an attention mask keeps padding out and position ids
/// start at each prompt's first real token), then one token per step for every unfinished sequence, with a KV cache
/// so each step feeds only the new token. Runs under <c>no_grad</c> and <c>eval()</c>; one dispose scope per step;
/// every tensor on the model's device, one small host copy per step (the tokens, to check EOS and stop strings).
/// </summary>
public static class TextGenerator
{
    /// <param name="rowSeeds">One seed per prompt (<see cref="Seeds.Row"/>); null: (options.Seed, 0, i, 0) for row i.</param>
    /// <param name="mixture">
    /// Nash-MD's geometric mixture (Munos et al., 2023), token by token as TRL's GeometricMixtureWrapper: the rows it marks
    /// draw each token from softmax((1 - coef) * logits_model + coef * logits_reference), i.e. pi^(1-coef) pi_ref^coef
    /// renormalised per token; their <see cref="GeneratedSequence.SamplingLogProbs"/> are under that mixture and their
    /// <see cref="GeneratedSequence.LogProbs"/> under the model. The reference keeps its own key-value cache.
    /// </param>
    public static List<GeneratedSequence> Generate(CausalLM model, ITokenizer tok, IReadOnlyList<int[]> prompts, GenerationOptions o,
        IReadOnlyList<long>? rowSeeds = null, GeometricMixture? mixture = null)
    {
        if (mixture is not null && mixture.Rows.Count != prompts.Count) throw new ArgumentException("one mixture flag per prompt");
        bool mixing = mixture is not null && mixture.Coef > 0 && mixture.Rows.Any(x => x);
        if (prompts.Count == 0) return [];
        if (o.MaxNewTokens < 1) throw new ArgumentException("max_new_tokens must be at least 1");
        if (rowSeeds is not null && rowSeeds.Count != prompts.Count) throw new ArgumentException("one seed per prompt");
        int maxPos = model.Architecture.MaxPositions;
        int longest = prompts.Max(p => p.Length);
        if (prompts.Any(p => p.Length == 0)) throw new ArgumentException("every prompt needs at least one token");
        if (longest >= maxPos) throw new ArgumentException($"a prompt of {longest} tokens leaves no room in the model's context of {maxPos}");
        int maxNew = Math.Min(o.MaxNewTokens, maxPos - longest);
        var device = model.Device;
        int b = prompts.Count;
        var seeds = rowSeeds ?? Enumerable.Range(0, b).Select(i => Seeds.Row(o.Seed, 0, i, 0)).ToList();

        bool wasTraining = model.training;
        model.eval();
        using var noGrad = no_grad();
        var generated = Enumerable.Range(0, b).Select(_ => new List<int>()).ToArray();
        var logprobs = Enumerable.Range(0, b).Select(_ => new List<float>()).ToArray();
        var samplingLogprobs = Enumerable.Range(0, b).Select(_ => new List<float>()).ToArray();
        var finish = new string?[b];
        var texts = new string?[b];

        // Left padding: [pad ... pad, prompt].
        var ids = new long[b * longest];
        var mask = new long[b * longest];
        for (int i = 0; i < b; i++)
        {
            int off = longest - prompts[i].Length;
            for (int j = 0; j < longest; j++)
            {
                ids[i * longest + j] = j < off ? tok.PadId : prompts[i][j - off];
                mask[i * longest + j] = j < off ? 0 : 1;
            }
        }
        var allIds = tensor(ids, [b, longest], device: device).DetachFromDisposeScope();
        var allMask = tensor(mask, [b, longest], device: device).DetachFromDisposeScope();
        using var cache = o.UseKvCache ? new KvCache(model.Architecture.NumLayers, longest + maxNew) : null;
        using var refCache = o.UseKvCache && mixing ? new KvCache(mixture!.Reference.Architecture.NumLayers, longest + maxNew) : null;
        bool refWasTraining = mixing && mixture!.Reference.training;
        if (mixing) mixture!.Reference.eval();
        using var mixRows = mixing ? tensor(mixture!.Rows.ToArray(), device: device).unsqueeze(1).DetachFromDisposeScope() : null;
        Tensor? next = null; // [B, 1] token fed at this step (cache mode)
        try
        {
            for (int step = 0; step < maxNew && finish.Any(f => f is null); step++)
            {
                using var scope = NewDisposeScope();
                Tensor logits;
                if (cache is null) logits = model.forward(allIds, allMask, null);
                else logits = step == 0 ? model.forward(allIds, allMask, cache) : model.forward(next!, allMask, cache);
                var last = logits[.., -1, ..]; // [B, V]
                var drawFrom = last;
                if (mixing)
                {
                    var r = mixture!.Reference;
                    var refLogits = refCache is null ? r.forward(allIds, allMask, null) : step == 0 ? r.forward(allIds, allMask, refCache) : r.forward(next!, allMask, refCache);
                    var mixed = last.to_type(ScalarType.Float32) * (1 - mixture.Coef) + refLogits[.., -1, ..].to_type(ScalarType.Float32) * mixture.Coef;
                    drawFrom = where(mixRows!, mixed, last.to_type(ScalarType.Float32));
                }
                var u = tensor(seeds.Select(s => Seeds.Uniform(s, step)).ToArray(), device: device);
                var (chosen, samplingLogp) = Sampler.Pick(drawFrom, o, u);
                var modelLogp = last.log_softmax(-1).gather(1, chosen.unsqueeze(1)).squeeze(1);
                // One host copy per step: the tokens and both log-probs.
                using var host = stack([chosen.to_type(ScalarType.Float64), modelLogp.to_type(ScalarType.Float64), samplingLogp.to_type(ScalarType.Float64)]).cpu();
                var h = host.data<double>().ToArray();

                var feed = new long[b];
                var feedMask = new long[b];
                for (int i = 0; i < b; i++)
                {
                    if (finish[i] is not null) { feed[i] = tok.PadId; continue; }
                    int t = (int)h[i];
                    feed[i] = t; feedMask[i] = 1;
                    generated[i].Add(t);
                    logprobs[i].Add((float)h[b + i]);
                    samplingLogprobs[i].Add((float)h[2 * b + i]);
                    if (tok.IsEos(t)) { finish[i] = "stop"; continue; }
                    if (o.Stop.Count > 0)
                    {
                        var text = tok.Decode(generated[i]);
                        int cut = o.Stop.Select(s => s.Length == 0 ? -1 : text.IndexOf(s, StringComparison.Ordinal)).Where(k => k >= 0).DefaultIfEmpty(-1).Min();
                        if (cut >= 0) { finish[i] = "stop"; texts[i] = text[..cut]; }
                    }
                }
                var feedT = tensor(feed, [b, 1], device: device);
                var newIds = cat([allIds, feedT], 1).DetachFromDisposeScope();
                var newMask = cat([allMask, tensor(feedMask, [b, 1], device: device)], 1).DetachFromDisposeScope();
                allIds.Dispose(); allMask.Dispose();
                (allIds, allMask) = (newIds, newMask);
                next?.Dispose();
                next = feedT.DetachFromDisposeScope();
            }
        }
        finally
        {
            allIds.Dispose(); allMask.Dispose(); next?.Dispose();
            if (wasTraining) model.train();
            if (refWasTraining) mixture!.Reference.train();
        }
        return Enumerable.Range(0, b).Select(i =>
        {
            var body = generated[i].Count > 0 && tok.IsEos(generated[i][^1]) && finish[i] == "stop" && texts[i] is null ? generated[i][..^1] : generated[i];
            return new GeneratedSequence([.. generated[i]], texts[i] ?? tok.Decode(body), [.. logprobs[i]], [.. samplingLogprobs[i]], finish[i] ?? "length");
        }).ToList();
    }
}

/// <summary>Nash-MD's geometric mixture of a model with <paramref name="Reference"/> for the rows flagged in <paramref name="Rows"/> (0 &lt;= coef &lt;= 1; 0: the model itself).</summary>
public sealed record GeometricMixture(CausalLM Reference, double Coef, IReadOnlyList<bool> Rows);

/// <summary>The sampling step, a pure function of logits, settings and one uniform number per row.</summary>
public static class Sampler
{
    /// <summary>
    /// The processed logits a token is drawn from: logits / T, then top-k (the k largest), then top-p (the smallest
    /// set whose probability reaches p; the most likely token always stays), others at -inf. Transformers' order.
    /// </summary>
    public static Tensor Processed(Tensor logits, GenerationOptions o)
    {
        var scaled = logits / o.Temperature;
        if (o.TopK is int k && k > 0 && k < scaled.shape[^1])
        {
            var kth = scaled.topk(k, dim: -1).values[.., ^1..]; // [B, 1]
            scaled = scaled.masked_fill(scaled.lt(kth), double.NegativeInfinity);
        }
        if (o.TopP is double p && p > 0 && p < 1)
        {
            var (sorted, order) = scaled.sort(-1, descending: true);
            var probs = sorted.softmax(-1);
            // Drop a token when the tokens before it already reach p.
            var dropSorted = (probs.cumsum(-1) - probs).ge(p);
            var drop = dropSorted.scatter(-1, order, dropSorted); // back to vocabulary order (order is a permutation)
            scaled = scaled.masked_fill(drop, double.NegativeInfinity);
        }
        return scaled;
    }

    /// <summary>
    /// Tokens [B] and their log-probs under the sampling distribution [B]. Greedy at temperature 0 (log-prob 0);
    /// otherwise inverse-CDF sampling: token = the first index whose cumulative probability (float64) exceeds
    /// u * total, which picks token j with probability p_j for u uniform in [0, 1).
    /// </summary>
    public static (Tensor Tokens, Tensor LogProbs) Pick(Tensor logits, GenerationOptions o, Tensor u)
    {
        if (o.Temperature <= 0)
        {
            var greedy = logits.argmax(-1);
            return (greedy, zeros_like(greedy, dtype: ScalarType.Float32));
        }
        var logp = Processed(logits, o).log_softmax(-1);
        var cum = logp.to_type(ScalarType.Float64).exp().cumsum(-1);
        var target = u.to_type(ScalarType.Float64).unsqueeze(1) * cum[.., ^1..];
        var tokens = cum.le(target).sum(-1).clamp_max(logits.shape[^1] - 1);
        return (tokens, logp.gather(1, tokens.unsqueeze(1)).squeeze(1));
    }
}
