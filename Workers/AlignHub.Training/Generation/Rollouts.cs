using AlignHub.Training.Data;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using static TorchSharp.torch;

namespace AlignHub.Training.Generation;

/// <summary>One sampled completion of one prompt: which prompt (its index in the job's data), which of its K samples.</summary>
public sealed record Rollout(int PromptIndex, int Sample, int[] PromptIds, GeneratedSequence Completion);

/// <summary>
/// Rollouts as a right-padded batch for the policy-gradient forward: prompt + completion ids with the completion
/// mask (<see cref="CompletionBatch"/>), and the sampler's per-token log-probs laid out as
/// <see cref="CompletionLogProbs.FromLogits"/> lays out the trainer's ([N, T-1], position t predicts token t+1,
/// zero off the completion), so a ratio is exp(new - old) under the same mask.
/// </summary>
public sealed record RolloutBatch(CompletionBatch Sequences, Tensor SamplingLogProbs, Tensor ModelLogProbs) : IDisposable
{
    public void Dispose() { Sequences.Dispose(); SamplingLogProbs.Dispose(); ModelLogProbs.Dispose(); }
}

/// <summary>The rollout primitives of online RL: K samples per prompt, deterministically seeded, and their batch form.</summary>
public static class Rollouts
{
    /// <summary>
    /// K completions of each prompt, generated <paramref name="batchSize"/> sequences at a time; the randomness of
    /// sample k of prompt p at <paramref name="step"/> is <see cref="Seeds.Row"/>(seed, step, p, k), so a resumed job
    /// samples the same completions, whatever the batching.
    /// </summary>
    /// <param name="mixture">Samples whose index k it accepts are drawn from Nash-MD's geometric mixture of the model with the reference (<see cref="GeometricMixture"/>).</param>
    public static List<Rollout> Sample(CausalLM model, ITokenizer tok, IReadOnlyList<int[]> prompts, IReadOnlyList<int> promptIndexes,
        int k, GenerationOptions o, long seed, int step, int batchSize, (CausalLM Reference, double Coef, Func<int, bool> Sample)? mixture = null)
    {
        if (promptIndexes.Count != prompts.Count) throw new ArgumentException("one index per prompt");
        var work = Enumerable.Range(0, prompts.Count).SelectMany(p => Enumerable.Range(0, k).Select(s => (P: p, S: s))).ToList();
        var result = new List<Rollout>(work.Count);
        for (int i = 0; i < work.Count; i += batchSize)
        {
            var slice = work.Skip(i).Take(batchSize).ToList();
            var outs = TextGenerator.Generate(model, tok, slice.Select(w => prompts[w.P]).ToList(), o,
                slice.Select(w => Seeds.Row(seed, step, promptIndexes[w.P], w.S)).ToList(),
                mixture is { } mx ? new GeometricMixture(mx.Reference, mx.Coef, slice.Select(w => mx.Sample(w.S)).ToList()) : null);
            for (int j = 0; j < slice.Count; j++) result.Add(new Rollout(promptIndexes[slice[j].P], slice[j].S, prompts[slice[j].P], outs[j]));
        }
        return result;
    }

    /// <summary>The rollouts as one right-padded batch on <paramref name="device"/>.</summary>
    public static RolloutBatch ToBatch(IReadOnlyList<Rollout> rollouts, int pad, Device? device)
    {
        var sequences = Collator.PromptCompletions(rollouts.Select(r => (r.PromptIds, r.Completion.Tokens)).ToList(), pad, device);
        long t = sequences.InputIds.shape[1];
        int n = rollouts.Count;
        var sampling = new float[n * (t - 1)];
        var model = new float[n * (t - 1)];
        for (int i = 0; i < n; i++)
        {
            var r = rollouts[i];
            for (int j = 0; j < r.Completion.Tokens.Length; j++)
            {
                long at = i * (t - 1) + r.PromptIds.Length - 1 + j; // the position that predicts completion token j
                sampling[at] = r.Completion.SamplingLogProbs[j];
                model[at] = r.Completion.LogProbs[j];
            }
        }
        return new RolloutBatch(sequences, tensor(sampling, [n, t - 1], device: device), tensor(model, [n, t - 1], device: device));
    }
}
