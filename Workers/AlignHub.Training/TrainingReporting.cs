namespace AlignHub.Training;

/// <summary>Where a trainer sends what the user watches. Called on the training thread; implementations must be synchronous.</summary>
public interface ITrainingReporter
{
    void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null);
    /// <summary>After every optimizer step; <paramref name="metrics"/> is non-null on logging steps.</summary>
    void Step(TrainingProgress progress, IReadOnlyDictionary<string, double>? metrics);
    /// <summary>A complete checkpoint folder now exists for <paramref name="step"/>.</summary>
    void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics);
    /// <summary>Asked before every step: true stops training (user cancellation).</summary>
    bool CancelRequested();
    /// <summary>After <see cref="CancelRequested"/> said stop: true when the job is paused, so the trainer keeps a checkpoint first.</summary>
    bool PauseRequested => false;
}

public sealed record TrainingProgress(int Step, int TotalSteps, int EpochsCompleted, long TrainedTokens, double? SecondsRemaining);

public enum TrainingOutcome { Completed, Cancelled, Interrupted }

public sealed record TrainingResult(TrainingOutcome Outcome, int Step, string? LastCheckpoint, long TrainedTokens);
