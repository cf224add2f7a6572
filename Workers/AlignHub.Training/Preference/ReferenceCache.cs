using System.Diagnostics;
using System.Text.Json;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Preference;

/// <summary>
/// Reference log-probs on disk, one JSON file per fingerprint of (reference model, data, tokenisation): every job
/// that shares them reads them instead of running the reference model again. The reference model is built,
/// used under <c>no_grad</c> and <c>eval()</c>, and released before the policy is built; for a LoRA policy it is the
/// policy itself with its adapters switched off (<see cref="BaseOf"/>).
/// </summary>
public static class ReferenceCache
{
    sealed record Stored(int TrainPairs, int ValidPairs, ReferenceLogps Train, ReferenceLogps? Valid);

    /// <summary>A reference model of its own: built from the source (seeded as the policy is) and released after use.</summary>
    public static Func<(CausalLM Model, IDisposable Release)> Separate(ModelSource source, int seed, Device device) => () =>
    {
        torch.manual_seed(seed); // the same initialisation as the policy's, for random-init models
        var m = source.CreateModel(device);
        return (m, m);
    };

    /// <summary>The base of a LoRA policy: the policy itself with its adapters switched off until released.</summary>
    public static Func<(CausalLM Model, IDisposable Release)> BaseOf(CausalLM adapted) => () => (adapted, Lora.Disabled(adapted));

    public static (ReferenceLogps Train, ReferenceLogps? Valid) LoadOrCompute(string path, Func<(CausalLM Model, IDisposable Release)> referenceModel,
        IReadOnlyList<TokenizedPair> train, IReadOnlyList<TokenizedPair>? valid, int pad, int maxLen, int batchSize, ITrainingReporter reporter)
    {
        if (File.Exists(path))
        {
            try
            {
                var s = JsonSerializer.Deserialize<Stored>(File.ReadAllText(path));
                if (s is not null && s.TrainPairs == train.Count && s.ValidPairs == (valid?.Count ?? 0))
                {
                    reporter.Event("info", $"Reference log-probs reused from the cache ({Path.GetFileNameWithoutExtension(path)})",
                        new Dictionary<string, object> { ["reference_cache"] = Path.GetFileNameWithoutExtension(path) });
                    return (s.Train, s.Valid);
                }
            }
            catch (JsonException) { /* a damaged cache is recomputed */ }
        }
        var sw = Stopwatch.StartNew();
        ReferenceLogps trainRef;
        ReferenceLogps? validRef;
        var (reference, release) = referenceModel();
        using (release)
        {
            bool wasTraining = reference.training;
            reference.eval();
            trainRef = Compute(reference, train, pad, maxLen, batchSize);
            validRef = valid is { Count: > 0 } ? Compute(reference, valid, pad, maxLen, batchSize) : null;
            if (wasTraining) reference.train();
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var tmp = path + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(tmp, JsonSerializer.Serialize(new Stored(train.Count, valid?.Count ?? 0, trainRef, validRef)));
        File.Move(tmp, path, overwrite: true);
        reporter.Event("info", $"Reference log-probs computed for {train.Count + (valid?.Count ?? 0)} pairs in {sw.Elapsed.TotalSeconds:F1} s and cached",
            new Dictionary<string, object> { ["reference_cache"] = Path.GetFileNameWithoutExtension(path) });
        return (trainRef, validRef);
    }

    /// <summary>Summed and mean completion log-probs of both sides of every pair under <paramref name="model"/> (no_grad).</summary>
    public static ReferenceLogps Compute(CausalLM model, IReadOnlyList<TokenizedPair> data, int pad, int maxLen, int batchSize)
    {
        using var _ = no_grad();
        int n = data.Count;
        var (c, r, cm, rm) = (new float[n], new float[n], new float[n], new float[n]);
        for (int i = 0; i < n; i += batchSize)
        {
            using var scope = NewDisposeScope();
            var idx = Enumerable.Range(i, Math.Min(batchSize, n - i)).ToList();
            var (pc, pr) = CompletionLogProbs.Concatenated(model, PairData.Side(data, idx, true), PairData.Side(data, idx, false), pad, maxLen);
            using var host = stack([pc.Sum, pr.Sum, pc.Mean(), pr.Mean()]).cpu(); // [4, B]: one copy to the host
            var v = host.data<float>().ToArray();
            int b = idx.Count;
            for (int k = 0; k < b; k++) (c[i + k], r[i + k], cm[i + k], rm[i + k]) = (v[k], v[b + k], v[2 * b + k], v[3 * b + k]);
        }
        return new ReferenceLogps(c, r, cm, rm);
    }
}
