namespace AlignHub.Training;

/// <summary>What a job's worker was asked to do, read once per step (<see cref="ITrainingReporter.Poll"/>).</summary>
public enum ControlSignal
{
    Continue,
    /// <summary>The user cancelled the job: stop without a checkpoint.</summary>
    Cancel,
    /// <summary>The user paused the job: save a checkpoint of the current step and stop.</summary>
    Pause,
    /// <summary>Another worker holds the job now (this one's lease expired): stop and write nothing more.</summary>
    LeaseLost,
}

/// <summary>Where a trainer sends what the user watches, and where it learns what it was asked to do. Called on the training thread; implementations must be synchronous.</summary>
public interface ITrainingReporter
{
    void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null);
    /// <summary>After every optimizer step; <paramref name="metrics"/> is non-null on logging steps.</summary>
    void Step(TrainingProgress progress, IReadOnlyDictionary<string, double>? metrics);
    /// <summary>A complete checkpoint folder now exists for <paramref name="step"/>.</summary>
    void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics);
    /// <summary>The control channel, read before every step: continue, or stop for a cancel, a pause or a lost lease.</summary>
    ControlSignal Poll();
    /// <summary>Completions an online method sampled at <paramref name="step"/>, kept with the job (the samples table).</summary>
    void Samples(int step, IReadOnlyList<SampleRecord> samples) { }
}

/// <summary>A sampled completion as the samples table keeps it.</summary>
public sealed record SampleRecord(string Prompt, string Completion, double Reward, IReadOnlyDictionary<string, double> Rewards, double Advantage, string FinishReason);

public sealed record TrainingProgress(int Step, int TotalSteps, int EpochsCompleted, long TrainedTokens, double? SecondsRemaining);

/// <summary>How a run ended, as the run knows it (never inferred afterwards from the job's row).</summary>
public enum TrainingOutcome
{
    Completed,
    /// <summary>Stopped for a user's cancel; no checkpoint written for it.</summary>
    Cancelled,
    /// <summary>Stopped for a user's pause, with a checkpoint of the step it stopped at (when it trained at all).</summary>
    Paused,
    /// <summary>The worker is shutting down: a checkpoint of the current step is written, and the job goes back on the queue.</summary>
    Interrupted,
    /// <summary>Another worker took the job over; this one stopped.</summary>
    LeaseLost,
}

public sealed record TrainingResult(TrainingOutcome Outcome, int Step, string? LastCheckpoint, long TrainedTokens);
