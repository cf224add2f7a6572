using AlignHub.Domain;
using AlignHub.Training.Losses;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// Best-of-N rejection-sampling fine-tuning (RAFT, Dong et al., 2023): of each prompt's N samples the top keep_top by
/// reward (ties by sample order) that reach min_reward carry loss; the loss is their negative log-likelihood over the
/// batch's kept tokens (<see cref="PolicyLosses.Nll"/>), which is also what is logged as <c>loss</c>.
/// </summary>
public sealed class BestOfN(BestOfNConfig c) : RlStrategy<BestOfNConfig>(c)
{
    const string Kept = "kept_completions";
    public override RlNeeds Needs => new() { Reference = Config.NeedsReference };
    public override IReadOnlyList<string> StatNames => [Kept];

    public override RlTargets Targets(RolloutTensors b)
    {
        var rewards = b.Rewards.to_type(ScalarType.Float64).cpu().data<double>().ToArray();
        var keep = new float[rewards.Length];
        for (int p = 0; p < rewards.Length / b.K; p++)
            foreach (var i in Enumerable.Range(p * b.K, b.K).OrderByDescending(i => rewards[i]).ThenBy(i => i).Take(Config.KeepTop))
                if (Config.MinReward is not double min || rewards[i] >= min) keep[i] = 1;
        var w = tensor(keep, device: b.Rewards.device);
        return new(w, Weights: w.clone());
    }

    public override Tensor Loss(RlMicroBatch m, StatSink stats)
    {
        stats.Add(Kept, m.Weights.sum());
        return PolicyLosses.Nll(m.Logps, m.Mask, m.Norm.Tokens);
    }

    public override void Metrics(StatSums s, Dictionary<string, double> m) => m["kept_completions"] = s[Kept];
}
