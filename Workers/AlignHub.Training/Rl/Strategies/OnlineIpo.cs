using AlignHub.Domain;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// Online IPO (Calandriello et al., 2024; IPO: Azar et al., 2023): completions pair up as samples 2i and 2i + 1 of a
/// prompt and their rewards are the oracle's P(y &gt; y') and P(y' &gt; y) (<see cref="Rewards.GroupWinRateSource"/> over
/// pairs); with h = log pi(y)/pi_ref(y) - log pi(y')/pi_ref(y') (summed over each completion, raw logits), each pair's loss is
/// (h - (P(y &gt; y') - 1/2) / beta)^2, averaged over the batch's pairs. With <c>mixture_coef</c> &gt; 0, y' is drawn from
/// Nash-MD's geometric mixture of the policy and the reference (Munos et al., 2023), as TRL's NashMDTrainer draws its
/// second completion; the loss is the same.
/// </summary>
public sealed class OnlineIpo(OnlineIpoConfig c) : RlStrategy<OnlineIpoConfig>(c)
{
    const string Pairs = "ipo_pairs", Margin = "ipo_margin_sum", Residual = "ipo_residual_sum";
    public override RlNeeds Needs => new() { Reference = true, WholeGroups = true, TemperatureScaledLogProbs = false, MixtureCoef = Config.MixtureCoef };
    public override IReadOnlyList<string> StatNames => [Pairs, Margin, Residual];

    /// <summary>Each completion's target: (its P of beating the other - 1/2) / beta, the pair's regression target read off its first.</summary>
    public override RlTargets Targets(RolloutTensors b) => new((b.Rewards - 0.5) / Config.Beta);

    public override Tensor Loss(RlMicroBatch m, StatSink stats)
    {
        using var h = ((m.Logps - m.RefLogps!) * m.Mask).sum(1).view(-1, 2);
        using var margin = h[.., 0] - h[.., 1];
        using var target = m.Advantages.view(-1, 2)[.., 0];
        using var residual = margin - target;
        using (no_grad())
        {
            stats.Add(Pairs, (double)margin.shape[0]);
            stats.Add(Margin, margin.sum());
            stats.Add(Residual, residual.abs().sum());
        }
        return residual.pow(2).sum() / Math.Max(1, m.Norm.Sequences / 2);
    }

    public override void Metrics(StatSums s, Dictionary<string, double> m)
    {
        m["ipo/log_ratio_margin"] = s.Mean(Margin, Pairs);
        m["ipo/residual"] = s.Mean(Residual, Pairs);
    }
}
