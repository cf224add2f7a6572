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
    public long Seed { get; init; }
    /// <summary>Reuse keys and values of earlier tokens (same tokens as without, much faster).</summary>
    public bool UseKvCache { get; init; } = true;
}

/// <summary>
/// One completion: its tokens (eos excluded), text (cut before a stop string), the model's log-prob of each token
/// (log softmax of the raw logits, before temperature or filtering: what trainers compare against), and why it ended.
/// </summary>
public sealed record GeneratedSequence(int[] Tokens, string Text, float[] LogProbs, string FinishReason)
{
    public double SumLogProb => LogProbs.Sum(x => (double)x);
}

/// <summary>
/// Batched autoregressive generation: prompts are left-padded (an attention mask keeps padding out and position ids
/// start at each prompt's first real token), then one token per step for every unfinished sequence, with a KV cache
/// so each step feeds only the new token. Runs under <c>no_grad</c> and <c>eval()</c>; one dispose scope per step.
/// </summary>
public static class TextGenerator
{
    public static List<GeneratedSequence> Generate(CausalLM model, ITokenizer tok, IReadOnlyList<int[]> prompts, GenerationOptions o)
    {
        if (prompts.Count == 0) return [];
        if (o.MaxNewTokens < 1) throw new ArgumentException("max_new_tokens must be at least 1");
        int maxPos = model.Architecture.MaxPositions;
        int longest = prompts.Max(p => p.Length);
        if (prompts.Any(p => p.Length == 0)) throw new ArgumentException("every prompt needs at least one token");
        if (longest >= maxPos) throw new ArgumentException($"a prompt of {longest} tokens leaves no room in the model's context of {maxPos}");
        int maxNew = Math.Min(o.MaxNewTokens, maxPos - longest);

        bool wasTraining = model.training;
        model.eval();
        using var noGrad = no_grad();
        using var gen = new torch.Generator((ulong)o.Seed);
        int b = prompts.Count;
        var generated = Enumerable.Range(0, b).Select(_ => new List<int>()).ToArray();
        var logprobs = Enumerable.Range(0, b).Select(_ => new List<float>()).ToArray();
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
        var allIds = tensor(ids, [b, longest]).DetachFromDisposeScope();
        var allMask = tensor(mask, [b, longest]).DetachFromDisposeScope();
        using var cache = o.UseKvCache ? new KvCache(model.Architecture.NumLayers, longest + maxNew) : null;
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
                var logp = last.log_softmax(-1);
                var chosen = Pick(last, o, gen); // [B]
                var chosenLogp = logp.gather(1, chosen.unsqueeze(1)).squeeze(1);
                var chosenArr = chosen.data<long>().ToArray();
                var lpArr = chosenLogp.data<float>().ToArray();

                var feed = new long[b];
                var feedMask = new long[b];
                for (int i = 0; i < b; i++)
                {
                    if (finish[i] is not null) { feed[i] = tok.PadId; continue; }
                    int t = (int)chosenArr[i];
                    feed[i] = t; feedMask[i] = 1;
                    if (t == tok.EosId) { finish[i] = "stop"; continue; }
                    generated[i].Add(t);
                    logprobs[i].Add(lpArr[i]);
                    if (o.Stop.Count > 0)
                    {
                        var text = tok.Decode(generated[i]);
                        int cut = o.Stop.Select(s => s.Length == 0 ? -1 : text.IndexOf(s, StringComparison.Ordinal)).Where(k => k >= 0).DefaultIfEmpty(-1).Min();
                        if (cut >= 0) { finish[i] = "stop"; texts[i] = text[..cut]; }
                    }
                }
                var feedT = tensor(feed, [b, 1]);
                var newIds = cat([allIds, feedT], 1).DetachFromDisposeScope();
                var newMask = cat([allMask, tensor(feedMask, [b, 1])], 1).DetachFromDisposeScope();
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
        }
        return Enumerable.Range(0, b).Select(i => new GeneratedSequence(
            [.. generated[i]], texts[i] ?? tok.Decode(generated[i]), [.. logprobs[i]], finish[i] ?? "length")).ToList();
    }

    /// <summary>Greedy argmax at temperature 0; else sample from softmax(logits / T) after top-k and top-p filtering.</summary>
    public static Tensor Pick(Tensor logits, GenerationOptions o, torch.Generator gen)
    {
        if (o.Temperature <= 0) return logits.argmax(-1);
        var scaled = logits / o.Temperature;
        if (o.TopK is int k && k > 0 && k < scaled.shape[^1])
        {
            var kth = scaled.topk(k, dim: -1).values[.., ^1..]; // [B, 1]
            scaled = scaled.masked_fill(scaled.lt(kth), double.NegativeInfinity);
        }
        if (o.TopP is double p && p > 0 && p < 1)
        {
            var (sorted, order) = scaled.sort(-1, descending: true);
            var cum = sorted.softmax(-1).cumsum(-1);
            // Drop a token when the tokens before it already reach p (the most likely token always stays).
            var before = cum - sorted.softmax(-1);
            var dropSorted = before.ge(p);
            var drop = dropSorted.scatter(-1, order, dropSorted); // back to vocabulary order (order is a permutation)
            scaled = scaled.masked_fill(drop, double.NegativeInfinity);
        }
        var probs = scaled.softmax(-1);
        return multinomial(probs, 1, generator: gen).squeeze(1);
    }
}
