using static TorchSharp.torch;

namespace AlignHub.Training.Losses;

/// <summary>
/// Per-token estimators of KL(pi || ref) from samples of pi (Schulman, 2020, "Approximating KL Divergence"), with
/// log r = log ref(y_t) - log pi(y_t): k1 = -log r (unbiased, high variance), k2 = (log r)^2 / 2, and
/// k3 = (r - 1) - log r (unbiased, always &gt;= 0: GRPO's KL term).
/// </summary>
public static class KlEstimators
{
    public static Tensor K1(Tensor policyLogps, Tensor referenceLogps) => policyLogps - referenceLogps;

    public static Tensor K2(Tensor policyLogps, Tensor referenceLogps)
    {
        using var logR = referenceLogps - policyLogps;
        return logR.pow(2) * 0.5;
    }

    public static Tensor K3(Tensor policyLogps, Tensor referenceLogps)
    {
        using var logR = referenceLogps - policyLogps;
        using var r = logR.exp();
        return r - logR - 1;
    }
}
