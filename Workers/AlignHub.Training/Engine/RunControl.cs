using System.Diagnostics;

namespace AlignHub.Training.Engine;

/// <summary>
/// The stop protocol every job loop shares (training, generation, evaluation): before each step the control channel
/// and the host's shutdown token are read once, and the step's outcome is returned as such.
/// </summary>
public static class RunControl
{
    /// <summary>Null: take the next step. Otherwise how the run stops: a user's cancel or pause, a lost lease, or a shutdown.</summary>
    public static TrainingOutcome? Check(ITrainingReporter reporter, CancellationToken ct) => reporter.Poll() switch
    {
        ControlSignal.Cancel => TrainingOutcome.Cancelled,
        ControlSignal.Pause => TrainingOutcome.Paused,
        ControlSignal.LeaseLost => TrainingOutcome.LeaseLost,
        _ => ct.IsCancellationRequested ? TrainingOutcome.Interrupted : null,
    };
}

/// <summary>Progress with a remaining-time estimate from the steps this process has run (a resumed run's earlier steps do not count).</summary>
public sealed class StepClock(int totalSteps)
{
    readonly Stopwatch clock = Stopwatch.StartNew();
    int stepsHere;

    /// <summary>Call once after each step; returns the progress to report.</summary>
    public TrainingProgress Tick(int step, int epochsCompleted, long trainedTokens)
    {
        stepsHere++;
        double perStep = clock.Elapsed.TotalSeconds / stepsHere;
        return new TrainingProgress(step, totalSteps, epochsCompleted, trainedTokens, perStep * Math.Max(0, totalSteps - step));
    }
}
