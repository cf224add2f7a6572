namespace AlignHub.Training.Losses;

/// <summary>
/// The adaptive KL controller of Ziegler et al., 2019 ("Fine-Tuning Language Models from Human Preferences", section
/// 2.2), as in TRL's <c>AdaptiveKLController</c>: after a batch of <c>n</c> completions whose KL to the reference was
/// <c>kl</c>, beta &lt;- beta * (1 + clip(kl / target - 1, -0.2, 0.2) * n / horizon). A KL above target raises beta, below
/// lowers it, by at most 20% per horizon's worth of samples.
/// </summary>
public static class KlControl
{
    public static double Adaptive(double beta, double kl, double target, int horizon, int n)
    {
        double error = Math.Clamp(kl / target - 1, -0.2, 0.2);
        return beta * (1 + error * n / horizon);
    }
}
