namespace AlignHub.Training;

public static class Schedules
{
    /// <summary>
    /// Linear warmup from 0 to <paramref name="peak"/> over <paramref name="warmupSteps"/>, then cosine decay to
    /// <paramref name="minRatio"/> * peak at <paramref name="totalSteps"/>. <paramref name="step"/> is 0-based:
    /// the rate used by the optimizer step that produces step + 1. A pure function of the step, so resuming needs no state.
    /// </summary>
    public static double WarmupCosine(int step, int totalSteps, int warmupSteps, double peak, double minRatio = 0.1)
    {
        if (warmupSteps > 0 && step < warmupSteps) return peak * (step + 1) / warmupSteps;
        int decay = Math.Max(1, totalSteps - warmupSteps);
        double progress = Math.Clamp((double)(step - warmupSteps) / decay, 0, 1);
        return peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }
}
