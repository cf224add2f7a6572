using static TorchSharp.torch;

namespace AlignHub.Training.Evaluation;

/// <summary>Next-token distributions' health: a collapsing policy shows as top-k mass near 1 and top-k entropy near 0.</summary>
public static class NextTokenDiagnostics
{
    /// <summary>The k of the metrics <c>diagnostics/top10_mass</c> and <c>diagnostics/top10_entropy</c>.</summary>
    public const int K = 10;

    /// <summary>
    /// Per position of [.., V] log-probs: the probability mass of the k most likely tokens, and the entropy of those k
    /// renormalised, -sum_i q_i log q_i with q = p_topk / mass.
    /// </summary>
    public static (Tensor Mass, Tensor Entropy) TopK(Tensor logps, int k)
    {
        var top = logps.topk(Math.Min(k, (int)logps.shape[^1]), -1).values;
        var logMass = top.logsumexp(-1, keepdim: true);
        var logq = top - logMass;
        return (logMass.squeeze(-1).exp(), -(logq.exp() * logq).sum(-1));
    }
}

/// <summary>
/// Mean of the last <see cref="Window"/> values of a series, as a warning rule reads it (the first full window and
/// every one after).
/// </summary>
public sealed class RollingMean
{
    public int Window { get; init; } = 10;
    public List<double> Values { get; init; } = [];

    /// <summary>Adds a value; the mean of the last <see cref="Window"/> once that many have come, else null.</summary>
    public double? Add(double v)
    {
        Values.Add(v);
        if (Values.Count > Window) Values.RemoveAt(0);
        return Values.Count == Window ? Values.Average() : null;
    }
}

/// <summary>
/// Reward overoptimisation (Gao et al., 2023, "Scaling Laws for Reward Model Overoptimization"), as one rule on a
/// run's proxy reward (the one it trains on) and a gold reward it never sees: with 10-step means, remember the best
/// gold mean and the proxy mean at that point; warn (once) when the gold mean has fallen <c>drop</c> below its best while
/// the proxy mean is above its value at the best: the policy is learning what the proxy rewards and the gold does not.
/// </summary>
public sealed class GoldProxyMonitor
{
    public double Drop { get; init; } = 0.1;
    public RollingMean Gold { get; init; } = new();
    public RollingMean Proxy { get; init; } = new();
    public double? BestGold { get; set; }
    public double ProxyAtBest { get; set; }
    public int BestStep { get; set; }

    /// <summary>One step's proxy and gold means; the warning's text the first time the rule holds, else null.</summary>
    public string? Add(int step, double proxy, double gold)
    {
        var (g, p) = (Gold.Add(gold), Proxy.Add(proxy));
        if (g is not double gm || p is not double pm) return null;
        if (BestGold is not double best || gm > best) { (BestGold, ProxyAtBest, BestStep) = (gm, pm, step); return null; }
        if (gm < best - Drop && pm > ProxyAtBest)
            return $"Overoptimisation at step {step}: the gold reward's 10-step mean fell to {gm:G3} from its best {best:G3} (step {BestStep}) " +
                $"while the proxy reward's rose to {pm:G3} from {ProxyAtBest:G3}: the policy is learning what the proxy rewards and the gold does not; " +
                "use an earlier checkpoint, raise beta, or retrain the reward model on the policy's samples";
        return null;
    }
}

/// <summary>
/// Likelihood displacement in DPO (Razin et al., 2024; Pal et al., 2024, "Smaug"): the margin can grow while the
/// chosen responses' log-probability falls as well as the rejected ones', moving probability mass to responses in
/// neither. The rule: with 10-step means of the per-sequence log-prob change from the reference on the step's pairs,
/// log pi(y) - log ref(y), warn (once) when both the chosen's and the rejected's are below -<c>drop</c> nats.
/// </summary>
public sealed class LikelihoodMonitor
{
    public double Drop { get; init; } = 1.0;
    public RollingMean Chosen { get; init; } = new();
    public RollingMean Rejected { get; init; } = new();

    public string? Add(int step, double chosenChange, double rejectedChange)
    {
        var (c, r) = (Chosen.Add(chosenChange), Rejected.Add(rejectedChange));
        if (c is double cm && r is double rm && cm < -Drop && rm < -Drop)
            return $"Likelihood displacement at step {step}: over the last 10 steps the chosen responses' log-probability fell {-cm:G3} nats " +
                $"and the rejected's {-rm:G3} nats below the reference: the margin grows by pushing both down, so probability moves to responses in neither; " +
                "consider a smaller learning rate, fewer epochs, or a loss_type that anchors the chosen likelihood";
        return null;
    }
}
