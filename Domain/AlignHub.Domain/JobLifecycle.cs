using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Query;

namespace AlignHub.Domain;

/// <summary>
/// The lifecycle of a fine-tuning job, in one place: its states, the requests people make (cancel, pause, resume),
/// what a worker observes (it claimed the job, training completed or failed, it stopped for a cancel or a pause, it
/// shut down, its lease expired), and the transitions between them. The API and the workers apply them through the
/// same code, each as a conditional update on the state it read (compare and swap), so two processes can never both
/// move a job out of a state, and a terminal state is written once, by whoever observes it.
/// <code>
/// requests:  queued | validating_files --pause--> paused      queued | validating_files | paused --cancel--> cancelled
///            running --pause--> pausing --resume--> running  running | pausing --cancel--> cancelling
///            paused --resume--> queued
/// workers:   queued --claim--> running                       running | pausing | cancelling --completed--> succeeded
///            pausing --stopped--> paused                     running | pausing | cancelling --failed--> failed
///            cancelling --stopped--> cancelled               running --stopped for a withdrawn pause--> queued
///            shutdown or expired lease: running --> queued, pausing --> paused, cancelling --> cancelled
/// </code>
/// A worker holds the job (<see cref="FineTuningJob.LeaseOwner"/>) exactly in the active states (running, pausing,
/// cancelling); a transition out of them lets go of it. OpenAI's API knows no pausing or cancelling: its
/// <c>status</c> shows them as <c>paused</c> and <c>cancelled</c> (what was asked for, as OpenAI's own cancel
/// answers), and AlignHub's <c>state</c> field, the dashboard and the events show the exact state.
/// </summary>
public static class JobLifecycle
{
    public const string Pausing = "pausing", Cancelling = "cancelling";

    /// <summary>Every state, in lifecycle order (the dashboard's filter lists them so).</summary>
    public static readonly IReadOnlyList<string> States =
    [
        JobStatus.ValidatingFiles, JobStatus.Queued, JobStatus.Running, Pausing, JobStatus.Paused, Cancelling,
        JobStatus.Succeeded, JobStatus.Failed, JobStatus.Cancelled,
    ];

    public enum Request { Cancel, Pause, Resume }

    /// <summary>What a worker (or, for an expired lease, any process) observes about a job it holds.</summary>
    public enum Observation { Claimed, Completed, Failed, StoppedForCancel, StoppedForPause, ShutDown, LeaseExpired }

    static readonly Dictionary<(string From, Request), string> OnRequest = new()
    {
        [(JobStatus.ValidatingFiles, Request.Cancel)] = JobStatus.Cancelled,
        [(JobStatus.Queued, Request.Cancel)] = JobStatus.Cancelled,
        [(JobStatus.Paused, Request.Cancel)] = JobStatus.Cancelled,
        [(JobStatus.Running, Request.Cancel)] = Cancelling,
        [(Pausing, Request.Cancel)] = Cancelling,
        [(Cancelling, Request.Cancel)] = Cancelling, // asked again: nothing changes
        [(JobStatus.ValidatingFiles, Request.Pause)] = JobStatus.Paused,
        [(JobStatus.Queued, Request.Pause)] = JobStatus.Paused,
        [(JobStatus.Running, Request.Pause)] = Pausing,
        [(JobStatus.Paused, Request.Resume)] = JobStatus.Queued,
        [(Pausing, Request.Resume)] = JobStatus.Running, // the worker has not stopped yet: it keeps training
    };

    static readonly Dictionary<(string From, Observation), string> OnObservation = new()
    {
        [(JobStatus.Queued, Observation.Claimed)] = JobStatus.Running,
        [(JobStatus.Running, Observation.Claimed)] = JobStatus.Running, // taken over: only with an expired lease
        [(JobStatus.Running, Observation.Completed)] = JobStatus.Succeeded,
        [(Pausing, Observation.Completed)] = JobStatus.Succeeded,
        [(Cancelling, Observation.Completed)] = JobStatus.Succeeded, // the last step was done before the cancel was read
        [(JobStatus.Running, Observation.Failed)] = JobStatus.Failed,
        [(Pausing, Observation.Failed)] = JobStatus.Failed,
        [(Cancelling, Observation.Failed)] = JobStatus.Failed,
        [(Cancelling, Observation.StoppedForCancel)] = JobStatus.Cancelled,
        [(Pausing, Observation.StoppedForPause)] = JobStatus.Paused,
        [(JobStatus.Running, Observation.StoppedForPause)] = JobStatus.Queued, // resumed after the worker read the pause
        [(Cancelling, Observation.StoppedForPause)] = JobStatus.Cancelled,
        [(JobStatus.Running, Observation.ShutDown)] = JobStatus.Queued,
        [(Pausing, Observation.ShutDown)] = JobStatus.Paused,
        [(Cancelling, Observation.ShutDown)] = JobStatus.Cancelled,
        [(JobStatus.Running, Observation.LeaseExpired)] = JobStatus.Queued,
        [(Pausing, Observation.LeaseExpired)] = JobStatus.Paused,
        [(Cancelling, Observation.LeaseExpired)] = JobStatus.Cancelled,
    };

    /// <summary>The state a request moves a job to from <paramref name="state"/> (null: refused there).</summary>
    public static string? Next(string state, Request r) => OnRequest.GetValueOrDefault((state, r));

    /// <summary>The state an observation moves a job to from <paramref name="state"/> (null: not possible there).</summary>
    public static string? Next(string state, Observation o) => OnObservation.GetValueOrDefault((state, o));

    /// <summary>A worker holds the job: it trains (running) or has yet to act on a request (pausing, cancelling).</summary>
    public static bool IsActive(string state) => state is JobStatus.Running or Pausing or Cancelling;

    public static bool IsTerminal(string state) => JobStatus.IsTerminal(state);

    /// <summary>The status OpenAI's API and SDKs know: pausing reads as paused, cancelling as cancelled.</summary>
    public static string OpenAiStatus(string state) => state switch { Pausing => JobStatus.Paused, Cancelling => JobStatus.Cancelled, _ => state };

    /// <summary>What a request does to a job (the transition taken, or why none was).</summary>
    public sealed record Outcome(FineTuningJob? Job, string? From, string? To)
    {
        public bool NotFound => Job is null;
        public bool Refused => Job is not null && To is null;
        /// <summary>The job moved (false for a request that found it already where it asked: cancel while cancelling).</summary>
        public bool Moved => To is not null && To != From;
    }

    /// <summary>
    /// Applies a request to a job: reads its state, finds the transition, and writes it with an update conditional on
    /// that state; if another process moved the job in between, reads again and retries.
    /// </summary>
    public static async Task<Outcome> RequestAsync(AlignHubDb db, string id, Request r, CancellationToken ct)
    {
        while (true)
        {
            var job = await db.Jobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, ct);
            if (job is null) return new Outcome(null, null, null);
            var to = Next(job.Status, r);
            if (to is null || to == job.Status) return new Outcome(job, job.Status, to);
            var from = job.Status;
            // A request never takes a job from a worker: it moves a held job only to another active state.
            if (IsActive(from) != IsActive(to)) throw new InvalidOperationException($"request {r} would move {from} to {to}");
            if (await Move(db, id, from, holder: null).ExecuteUpdateAsync(Setters(from, to, null), ct) > 0)
                return new Outcome(await db.Jobs.AsNoTracking().FirstAsync(j => j.Id == id, ct), from, to);
        }
    }

    /// <summary>
    /// Applies what worker <paramref name="holder"/> observed about a job it holds: the transition from the state the
    /// job is in now (a request may have moved it since), written only while that worker still holds it. Returns
    /// (from, to), or null when the job is not this worker's any more or the observation fits none of its states.
    /// <paramref name="extra"/> adds fields to the same update (the fine-tuned model, an error).
    /// </summary>
    public static (string From, string To)? Observe(AlignHubDb db, string id, string holder, Observation o, Action<UpdateSettersBuilder<FineTuningJob>>? extra = null)
    {
        while (true)
        {
            var state = db.Jobs.AsNoTracking().Where(j => j.Id == id && j.LeaseOwner == holder).Select(j => j.Status).FirstOrDefault();
            if (state is null || Next(state, o) is not { } to) return null;
            if (Move(db, id, state, holder).ExecuteUpdate(Setters(state, to, extra)) > 0) return (state, to);
        }
    }

    /// <summary>
    /// Claims a job for worker <paramref name="holder"/>: queued, or running with a lease older than
    /// <paramref name="staleBeforeMs"/> (its worker is gone). Exactly one claimant wins.
    /// </summary>
    public static bool Claim(AlignHubDb db, string id, string holder, long nowMs, long staleBeforeMs)
    {
        foreach (var from in new[] { JobStatus.Queued, JobStatus.Running })
        {
            var q = db.Jobs.Where(j => j.Id == id && j.Status == from);
            if (from == JobStatus.Running) q = q.Where(j => j.HeartbeatAtMs < staleBeforeMs);
            int n = q.ExecuteUpdate(s =>
            {
                Setters(from, Next(from, Observation.Claimed)!, null)(s);
                s.SetProperty(j => j.LeaseOwner, holder).SetProperty(j => j.HeartbeatAtMs, nowMs)
                    .SetProperty(j => j.Attempts, j => j.Attempts + 1).SetProperty(j => j.StartedAt, j => j.StartedAt ?? nowMs / 1000);
            });
            if (n > 0) return true;
        }
        return false;
    }

    /// <summary>
    /// Jobs whose worker is gone (lease older than <paramref name="staleBeforeMs"/>; with <paramref name="all"/>, every
    /// active one: the embedded default at start-up, where no other process can hold a job) move on as the lease's
    /// expiry says: running ones back to the queue, pausing ones to paused, cancelling ones to cancelled. Returns the
    /// moves made (each by exactly one process).
    /// </summary>
    public static async Task<List<(string Id, string From, string To)>> ExpireLeasesAsync(AlignHubDb db, bool all, long staleBeforeMs, CancellationToken ct)
    {
        var moved = new List<(string, string, string)>();
        var candidates = await db.Jobs.AsNoTracking()
            .Where(j => (j.Status == JobStatus.Running || j.Status == Pausing || j.Status == Cancelling) && (all || j.HeartbeatAtMs < staleBeforeMs))
            .Select(j => new { j.Id, j.Status }).ToListAsync(ct);
        foreach (var c in candidates)
        {
            var to = Next(c.Status, Observation.LeaseExpired)!;
            var q = Move(db, c.Id, c.Status, holder: null);
            if (!all) q = q.Where(j => j.HeartbeatAtMs < staleBeforeMs);
            if (await q.ExecuteUpdateAsync(Setters(c.Status, to, null), ct) > 0) moved.Add((c.Id, c.Status, to));
        }
        return moved;
    }

    /// <summary>The job, if it is still in <paramref name="from"/> (and, with a holder, still held by it): the condition of every transition's update.</summary>
    static IQueryable<FineTuningJob> Move(AlignHubDb db, string id, string from, string? holder) =>
        holder is null ? db.Jobs.Where(j => j.Id == id && j.Status == from) : db.Jobs.Where(j => j.Id == id && j.Status == from && j.LeaseOwner == holder);

    /// <summary>The fields a transition writes: the state; the finish time entering a terminal state; the lease let go of leaving the active ones; the hand-over to Hangfire reset entering the queue.</summary>
    static Action<UpdateSettersBuilder<FineTuningJob>> Setters(string from, string to, Action<UpdateSettersBuilder<FineTuningJob>>? extra) => s =>
    {
        s.SetProperty(j => j.Status, to);
        if (IsTerminal(to)) s.SetProperty(j => j.FinishedAt, Ids.Now()).SetProperty(j => j.EstimatedFinish, (long?)null);
        if (IsActive(from) && !IsActive(to)) s.SetProperty(j => j.LeaseOwner, (string?)null);
        if (to == JobStatus.Queued) s.SetProperty(j => j.EnqueuedAtMs, (long?)null);
        extra?.Invoke(s);
    };
}
