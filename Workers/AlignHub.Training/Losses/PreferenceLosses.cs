using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace AlignHub.Training.Losses;

/// <summary>Per-example losses [B] and the implicit rewards of the chosen and rejected completions [B].</summary>
public sealed record PreferenceLossOutput(Tensor Losses, Tensor ChosenRewards, Tensor RejectedRewards);

/// <summary>
/// Per-sequence log-probs of a batch of preference pairs, each [B]: summed over completion tokens (<c>*Logps</c>)
/// and averaged over them (<c>*MeanLogps</c>), for the policy and (where a loss uses one) the reference model.
/// </summary>
public sealed record PairLogps(
    Tensor PolicyChosen, Tensor PolicyRejected, Tensor? ReferenceChosen, Tensor? ReferenceRejected,
    Tensor? PolicyChosenMean = null, Tensor? PolicyRejectedMean = null, Tensor? ReferenceChosenMean = null, Tensor? ReferenceRejectedMean = null);

/// <summary>
/// The DPO family as pure functions of per-sequence log-probs. Notation: l_c = log pi(c) - log ref(c),
/// l_r = log pi(r) - log ref(r), d = l_c - l_r (sums over completion tokens), beta the KL strength, e the label
/// smoothing. Implicit rewards are beta * l (reference-based losses) or beta * mean log pi (reference-free ones).
/// </summary>
public static class PreferenceLosses
{
    /// <summary>
    /// DPO (Rafailov et al., 2023, "Direct Preference Optimization"): L = -log sigmoid(beta d); with label smoothing e
    /// this is cDPO (Mitchell, 2023): L = -(1 - e) log sigmoid(beta d) - e log sigmoid(-beta d).
    /// </summary>
    public static PreferenceLossOutput Sigmoid(PairLogps x, double beta, double labelSmoothing = 0)
    {
        var (lc, lr, d) = Ratios(x);
        var losses = -(1 - labelSmoothing) * F.logsigmoid(beta * d) - labelSmoothing * F.logsigmoid(-beta * d);
        return new(losses, beta * lc.detach(), beta * lr.detach());
    }

    /// <summary>
    /// Robust DPO (Chowdhury et al., 2024, "Provably Robust DPO"), unbiased under label-flip rate e:
    /// L = (-(1 - e) log sigmoid(beta d) + e log sigmoid(-beta d)) / (1 - 2e), e &lt; 0.5.
    /// </summary>
    public static PreferenceLossOutput Robust(PairLogps x, double beta, double labelSmoothing)
    {
        if (labelSmoothing >= 0.5) throw new ArgumentOutOfRangeException(nameof(labelSmoothing), "robust DPO needs label_smoothing < 0.5");
        var (lc, lr, d) = Ratios(x);
        var losses = (-(1 - labelSmoothing) * F.logsigmoid(beta * d) + labelSmoothing * F.logsigmoid(-beta * d)) / (1 - 2 * labelSmoothing);
        return new(losses, beta * lc.detach(), beta * lr.detach());
    }

    /// <summary>Hinge (SLiC, Zhao et al., 2023; RSO, Liu et al., 2024): L = relu(1 - beta d).</summary>
    public static PreferenceLossOutput Hinge(PairLogps x, double beta)
    {
        var (lc, lr, d) = Ratios(x);
        return new(F.relu(1 - beta * d), beta * lc.detach(), beta * lr.detach());
    }

    /// <summary>
    /// IPO (Azar et al., 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences"):
    /// L = (d' - 1/(2 beta))^2, d' computed from log-probs averaged over each completion's tokens.
    /// </summary>
    public static PreferenceLossOutput Ipo(PairLogps x, double beta)
    {
        var lc = Need(x.PolicyChosenMean, "policy mean") - Need(x.ReferenceChosenMean, "reference mean");
        var lr = Need(x.PolicyRejectedMean, "policy mean") - Need(x.ReferenceRejectedMean, "reference mean");
        var d = lc - lr;
        var losses = (d - 1 / (2 * beta)).pow(2);
        return new(losses, beta * lc.detach(), beta * lr.detach());
    }

    /// <summary>
    /// SimPO (Meng et al., 2024, "Simple Preference Optimization with a Reference-Free Reward"), no reference model:
    /// L = -log sigmoid(beta (mean log pi(c) - mean log pi(r)) - gamma).
    /// </summary>
    public static PreferenceLossOutput SimPo(PairLogps x, double beta, double gamma)
    {
        var c = Need(x.PolicyChosenMean, "policy mean");
        var r = Need(x.PolicyRejectedMean, "policy mean");
        var losses = -F.logsigmoid(beta * (c - r) - gamma);
        return new(losses, beta * c.detach(), beta * r.detach());
    }

    /// <summary>
    /// ORPO (Hong et al., 2024, "Monolithic Preference Optimization without Reference Model"):
    /// L = NLL(c) + lambda * -log sigmoid(log odds(c) - log odds(r)), with NLL(c) = -mean log pi(c) and
    /// log odds(y) = mean log pi(y) - log(1 - exp(mean log pi(y))).
    /// </summary>
    public static PreferenceLossOutput Orpo(PairLogps x, double lambda, double beta = 1)
    {
        var c = Need(x.PolicyChosenMean, "policy mean");
        var r = Need(x.PolicyRejectedMean, "policy mean");
        var logOdds = (c - r) - (Log1mExp(c) - Log1mExp(r));
        var losses = -c - lambda * F.logsigmoid(logOdds);
        return new(losses, beta * c.detach(), beta * r.detach());
    }

    /// <summary>log(1 - exp(x)) for x &lt; 0, stable near 0 (clamped just below it).</summary>
    static Tensor Log1mExp(Tensor x)
    {
        var xc = x.clamp_max(-1e-6);
        return (-xc.exp()).log1p();
    }

    /// <summary>
    /// KTO (Ethayarajh et al., 2024, "Model Alignment as Prospect Theoretic Optimization"), unpaired: for a
    /// desirable completion L = w_d (1 - sigmoid(beta (l_y - z))), for an undesirable one
    /// L = w_u (1 - sigmoid(beta (z - l_y))), with l_y = log pi(y) - log ref(y) and z the batch estimate of
    /// KL(pi || ref): the mean of <paramref name="klPolicy"/> - <paramref name="klReference"/> (log-probs of
    /// mismatched prompt/completion pairs), clamped at 0 and not back-propagated. Rewards: beta * l_y (desirable rows
    /// in <c>ChosenRewards</c>, undesirable in <c>RejectedRewards</c>, zero elsewhere).
    /// </summary>
    public static PreferenceLossOutput Kto(Tensor policy, Tensor reference, Tensor desirable, Tensor klPolicy, Tensor klReference,
        double beta, double desirableWeight = 1, double undesirableWeight = 1)
    {
        var z = (klPolicy - klReference).mean().clamp_min(0).detach();
        var l = policy - reference;
        var want = desirable.to_type(l.dtype);
        var losses = want * desirableWeight * (1 - F.sigmoid(beta * (l - z)))
                   + (1 - want) * undesirableWeight * (1 - F.sigmoid(beta * (z - l)));
        var rewards = beta * l.detach();
        return new(losses, rewards * want, rewards * (1 - want));
    }

    /// <summary>Dispatches on TRL's <c>loss_type</c> names.</summary>
    public static PreferenceLossOutput Compute(string lossType, PairLogps x, double beta, double labelSmoothing, double simpoGamma, double orpoLambda) =>
        lossType switch
        {
            "sigmoid" => Sigmoid(x, beta, labelSmoothing),
            "robust" => Robust(x, beta, labelSmoothing),
            "hinge" => Hinge(x, beta),
            "ipo" => Ipo(x, beta),
            "simpo" => SimPo(x, beta, simpoGamma),
            "orpo" => Orpo(x, orpoLambda, beta),
            _ => throw new ArgumentException($"unknown loss_type \"{lossType}\""),
        };

    static (Tensor Lc, Tensor Lr, Tensor D) Ratios(PairLogps x)
    {
        var lc = x.PolicyChosen - Need(x.ReferenceChosen, "reference");
        var lr = x.PolicyRejected - Need(x.ReferenceRejected, "reference");
        return (lc, lr, lc - lr);
    }

    static Tensor Need(Tensor? t, string what) => t ?? throw new ArgumentException($"this loss needs the {what} log-probs");
}

/// <summary>
/// Reward-model loss (Bradley and Terry, 1952; Ouyang et al., 2022): L = -log sigmoid(r_c - r_r - margin), plus the
/// centering term coefficient * (r_c + r_r)^2 (Eisenstein et al., 2023) that keeps rewards near zero.
/// </summary>
public static class RewardLoss
{
    public static Tensor BradleyTerry(Tensor chosen, Tensor rejected, Tensor? margin = null, double centeringCoefficient = 0)
    {
        var diff = margin is null ? chosen - rejected : chosen - rejected - margin;
        var losses = -F.logsigmoid(diff);
        if (centeringCoefficient > 0) losses = losses + centeringCoefficient * (chosen + rejected).pow(2);
        return losses;
    }
}
