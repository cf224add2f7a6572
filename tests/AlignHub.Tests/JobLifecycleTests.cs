using AlignHub.Domain;
using Microsoft.EntityFrameworkCore;
using Xunit;
using static AlignHub.Domain.JobLifecycle;

namespace AlignHub.Tests;

/// <summary>The job lifecycle (<see cref="JobLifecycle"/>): every (state, request) and (state, observation) pair, and its transitions under races on PostgreSQL.</summary>
public class JobLifecycleTests(Xunit.Abstractions.ITestOutputHelper output)
{
    const string V = JobStatus.ValidatingFiles, Q = JobStatus.Queued, R = JobStatus.Running, P = JobStatus.Paused,
        S = JobStatus.Succeeded, F = JobStatus.Failed, C = JobStatus.Cancelled, PG = Pausing, CG = Cancelling;

    /// <summary>The specification, one row per state: where cancel, pause and resume take it ("-": refused).</summary>
    static readonly Dictionary<string, (string? Cancel, string? Pause, string? Resume)> RequestTable = new()
    {
        [V] = (C, P, null),
        [Q] = (C, P, null),
        [R] = (CG, PG, null),
        [PG] = (CG, null, R),
        [P] = (C, null, Q),
        [CG] = (CG, null, null),
        [S] = (null, null, null),
        [F] = (null, null, null),
        [C] = (null, null, null),
    };

    /// <summary>What each observation does, per state (absent: impossible there, nothing is written).</summary>
    static readonly Dictionary<(string, Observation), string> ObservationTable = new()
    {
        [(Q, Observation.Claimed)] = R, [(R, Observation.Claimed)] = R,
        [(R, Observation.Completed)] = S, [(PG, Observation.Completed)] = S, [(CG, Observation.Completed)] = S,
        [(R, Observation.Failed)] = F, [(PG, Observation.Failed)] = F, [(CG, Observation.Failed)] = F,
        [(CG, Observation.StoppedForCancel)] = C,
        [(PG, Observation.StoppedForPause)] = P, [(R, Observation.StoppedForPause)] = Q, [(CG, Observation.StoppedForPause)] = C,
        [(R, Observation.ShutDown)] = Q, [(PG, Observation.ShutDown)] = P, [(CG, Observation.ShutDown)] = C,
        [(R, Observation.LeaseExpired)] = Q, [(PG, Observation.LeaseExpired)] = P, [(CG, Observation.LeaseExpired)] = C,
    };

    [Fact]
    public void Every_state_and_request_pair_moves_as_the_table_says()
    {
        Assert.Equal(RequestTable.Keys.Order(), States.Order());
        foreach (var (state, (cancel, pause, resume)) in RequestTable)
        {
            Assert.Equal(cancel, Next(state, Request.Cancel));
            Assert.Equal(pause, Next(state, Request.Pause));
            Assert.Equal(resume, Next(state, Request.Resume));
        }
        foreach (var state in States)
            foreach (var o in Enum.GetValues<Observation>())
                Assert.Equal(ObservationTable.GetValueOrDefault((state, o)), Next(state, o));
    }

    [Fact]
    public void Terminal_states_are_final_workers_hold_exactly_the_active_states_and_OpenAI_sees_its_own_statuses()
    {
        foreach (var state in States.Where(IsTerminal))
        {
            Assert.All(Enum.GetValues<Request>(), r => Assert.Null(Next(state, r)));
            Assert.All(Enum.GetValues<Observation>(), o => Assert.Null(Next(state, o)));
        }
        Assert.Equal([R, PG, CG], States.Where(IsActive));
        // A request never takes a job from its worker or gives one to a worker: active stays active, inactive inactive.
        foreach (var state in States)
            foreach (var r in Enum.GetValues<Request>())
                if (Next(state, r) is { } to) Assert.Equal(IsActive(state), IsActive(to));
        // Only workers finish held jobs; only a claim makes a job active.
        foreach (var ((from, o), to) in ObservationTable)
            Assert.Equal(o == Observation.Claimed, !IsActive(from) && IsActive(to) || (from == R && to == R));
        string[] openAi = [V, Q, R, S, F, C, P];
        Assert.All(States, s => Assert.Contains(OpenAiStatus(s), openAi));
        Assert.Equal(P, OpenAiStatus(PG));
        Assert.Equal(C, OpenAiStatus(CG));
    }

    static AlignHubDb Db(string connectionString) => new(new DbContextOptionsBuilder<AlignHubDb>().UseNpgsql(connectionString).Options);

    static FineTuningJob Job(string id, string state, string? holder) => new()
    {
        Id = id, Model = "alignhub/tiny", TrainingFile = "file-x", MethodType = "supervised", ConfigJson = "{}", Status = state,
        LeaseOwner = holder, HeartbeatAtMs = holder is null ? null : Ids.NowMs(),
    };

    /// <summary>
    /// Cancel and finish at the same instant, 60 times, each from its own connection: whichever lands first, the job
    /// ends with one terminal state written once (succeeded: a cancel that lands first only asks, and the worker's
    /// finish then still ends it), its lease let go and its finish time set. And cancel against a claim of a queued
    /// job: either the cancel wins (cancelled, the claim finds nothing) or the claim does (the cancel then asks the
    /// worker: cancelling), never both.
    /// </summary>
    [PostgresFact]
    public async Task Racing_requests_and_workers_leave_one_terminal_state()
    {
        var cs = await Postgres.CreateDatabaseAsync();
        await using (var db = Db(cs)) await db.Database.EnsureCreatedAsync();
        const int n = 60;
        await using (var db = Db(cs))
        {
            for (int i = 0; i < n; i++) { db.Jobs.Add(Job($"ftjob-finish{i}", R, "w1")); db.Jobs.Add(Job($"ftjob-claim{i}", Q, null)); }
            await db.SaveChangesAsync();
        }
        int cancelFirst = 0, claimWon = 0;
        for (int i = 0; i < n; i++)
        {
            string id = $"ftjob-finish{i}";
            using var go = new Barrier(2);
            var cancel = Task.Run(async () => { go.SignalAndWait(); await using var db = Db(cs); return await RequestAsync(db, id, Request.Cancel, default); });
            var finish = Task.Run(() => { go.SignalAndWait(); using var db = Db(cs); return Observe(db, id, "w1", Observation.Completed); });
            var (c, f) = (await cancel, await finish);
            Assert.NotNull(f); // the worker's finish always lands: from running, or from cancelling
            int terminalWrites = (c.To is { } t && IsTerminal(t) && c.Moved ? 1 : 0) + (IsTerminal(f.Value.To) ? 1 : 0);
            Assert.Equal(1, terminalWrites);
            if (c.Moved) { cancelFirst++; Assert.Equal(CG, f.Value.From); } else Assert.True(c.Refused);
            await using var check = Db(cs);
            var row = await check.Jobs.AsNoTracking().SingleAsync(j => j.Id == id);
            Assert.Equal(S, row.Status);
            Assert.Null(row.LeaseOwner);
            Assert.NotNull(row.FinishedAt);

            string q = $"ftjob-claim{i}";
            using var go2 = new Barrier(2);
            var cancel2 = Task.Run(async () => { go2.SignalAndWait(); await using var db = Db(cs); return await RequestAsync(db, q, Request.Cancel, default); });
            var claim = Task.Run(() => { go2.SignalAndWait(); using var db = Db(cs); return Claim(db, q, "w2", Ids.NowMs(), Ids.NowMs() - 60_000); });
            var (c2, claimed) = (await cancel2, await claim);
            await using var check2 = Db(cs);
            var row2 = await check2.Jobs.AsNoTracking().SingleAsync(j => j.Id == q);
            if (claimed)
            {
                claimWon++;
                Assert.Equal(CG, c2.To);
                Assert.Equal((CG, "w2"), (row2.Status, row2.LeaseOwner));
                Assert.Null(row2.FinishedAt);
            }
            else
            {
                Assert.Equal(C, c2.To);
                Assert.Equal((C, (string?)null), (row2.Status, row2.LeaseOwner));
                Assert.NotNull(row2.FinishedAt);
            }
        }
        output.WriteLine($"the cancel landed first in {cancelFirst} of {n} finish races; the claim won {claimWon} of {n} claim races");
    }

    /// <summary>Expired leases move on as the lease's expiry says, each job once even when two processes look at the same instant.</summary>
    [PostgresFact]
    public async Task Expired_leases_move_each_job_once()
    {
        var cs = await Postgres.CreateDatabaseAsync();
        await using (var db = Db(cs))
        {
            await db.Database.EnsureCreatedAsync();
            foreach (var (id, state) in new[] { ("ftjob-r", R), ("ftjob-p", PG), ("ftjob-c", CG) })
            {
                var j = Job(id, state, "gone");
                j.HeartbeatAtMs = Ids.NowMs() - 120_000;
                db.Jobs.Add(j);
            }
            db.Jobs.Add(Job("ftjob-live", R, "alive"));
            await db.SaveChangesAsync();
        }
        var stale = Ids.NowMs() - 60_000;
        var runs = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(async () => { await using var db = Db(cs); return await ExpireLeasesAsync(db, false, stale, default); })));
        var moves = runs.SelectMany(x => x).ToList();
        Assert.Equal(["ftjob-c", "ftjob-p", "ftjob-r"], moves.Select(m => m.Id).Order());
        await using var check = Db(cs);
        var rows = await check.Jobs.AsNoTracking().ToDictionaryAsync(j => j.Id, j => (j.Status, j.LeaseOwner));
        Assert.Equal((Q, (string?)null), rows["ftjob-r"]);
        Assert.Equal((P, (string?)null), rows["ftjob-p"]);
        Assert.Equal((C, (string?)null), rows["ftjob-c"]);
        Assert.Equal((R, "alive"), rows["ftjob-live"]);
    }
}
