using Hangfire;

namespace AlignHub.Domain;

/// <summary>
/// The Hangfire job that runs one fine-tuning job. Enqueued with the job id only; the worker re-reads
/// everything from the database, so running it again is safe. No automatic retry: a failed training
/// job stays failed until a user retries it; an interrupted one resumes from its last checkpoint.
/// </summary>
public interface ITrainingJob
{
    public const string Queue = JobResources.TrainingQueue;

    [AutomaticRetry(Attempts = 0, OnAttemptsExceeded = AttemptsExceededAction.Fail)]
    [JobDisplayName("fine-tuning job {0}")]
    void Run(string jobId, CancellationToken cancellationToken);
}
