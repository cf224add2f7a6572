using AlignHub.Domain;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlignHub.Training.Engine;

/// <summary>Learning-rate schedules: pure functions of the step, so a resumed run needs no scheduler state.</summary>
public static class Schedules
{
    /// <summary>
    /// The rate for the optimizer step that produces step + 1 (<paramref name="step"/> is 0-based): linear warmup from
    /// peak / warmup to the peak over <paramref name="warmupSteps"/> steps, then <c>cosine</c> decay to
    /// <paramref name="minRatio"/> * peak at <paramref name="totalSteps"/>, <c>linear</c> decay to 0, or <c>constant</c>.
    /// </summary>
    public static double LearningRate(string type, int step, int totalSteps, int warmupSteps, double peak, double minRatio = 0.1)
    {
        if (warmupSteps > 0 && step < warmupSteps) return peak * (step + 1) / warmupSteps;
        int decay = Math.Max(1, totalSteps - warmupSteps);
        return type switch
        {
            "constant" => peak,
            "linear" => peak * Math.Max(0, totalSteps - step) / decay,
            "cosine" => peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.Cos(Math.PI * Math.Clamp((double)(step - warmupSteps) / decay, 0, 1)))),
            _ => throw new ArgumentException($"unknown lr_scheduler_type \"{type}\""),
        };
    }
}

public static class Optimization
{
    /// <summary>
    /// Weight decay applies to weight matrices and embeddings only: a parameter with fewer than two dimensions (a
    /// bias, a norm's weight) is never decayed, as nanoGPT and TRL group them.
    /// </summary>
    public static bool Decays(Parameter p) => p.dim() >= 2;

    /// <summary>
    /// AdamW over groups by (decayed or not, learning-rate scale), in the parameters' order within each; the scale of each
    /// group comes back beside it, for the engine to set each step's rate as schedule x scale. Methods without scaled
    /// parameters (all but PPO's value head) get the same two groups as always.
    /// </summary>
    public static (AdamW Optimizer, double[] Scales) AdamW(IReadOnlyList<Parameter> parameters, TrainingConfig c, Func<Parameter, double>? scale = null)
    {
        scale ??= _ => 1.0;
        var groups = new List<AdamW.ParamGroup>();
        var scales = new List<double>();
        foreach (var s in parameters.Select(scale).Distinct().ToList())
            foreach (bool decays in new[] { true, false })
            {
                var members = parameters.Where(p => Decays(p) == decays && scale(p) == s).ToList();
                if (members.Count == 0) continue;
                groups.Add(new AdamW.ParamGroup(members, lr: c.PeakLearningRate * s, weight_decay: decays ? c.WeightDecay : 0));
                scales.Add(s);
            }
        return (optim.AdamW(groups, lr: c.PeakLearningRate, weight_decay: c.WeightDecay), [.. scales]);
    }
}
