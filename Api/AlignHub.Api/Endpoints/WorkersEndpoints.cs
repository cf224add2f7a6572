using AlignHub.Domain;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api.Endpoints;

/// <summary>Worker processes as data (<c>/v1/workers</c>): each one's queues, device, version, heartbeat and current job.</summary>
public static class WorkersEndpoints
{
    public static void MapWorkers(this RouteGroupBuilder v1)
    {
        var g = v1.MapGroup("/workers").WithTags("Workers");
        g.MapGet("/", List).WithSummary("List worker processes, online first: queues, device, version, last heartbeat, current job; " +
            "status online (heartbeat within the lease), lost (none since: its job is re-queued when the lease runs out) or stopped. Role: viewer")
            .RequireAuthorization(Auth.Read);
        g.MapGet("/{id}", Get).WithSummary("Retrieve one worker process. Role: viewer").RequireAuthorization(Auth.Read);
    }

    public static async Task<IResult> List(IDbContextFactory<AlignHubDb> dbs, AlignHubOptions options, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var rows = await db.Workers.AsNoTracking().OrderByDescending(w => w.HeartbeatAtMs).Take(1000).ToListAsync(ct);
        long now = Ids.NowMs(), lease = options.LeaseSeconds * 1000L;
        var data = rows.Select(w => WorkerObject.From(w, lease, now))
            .OrderBy(w => w.Status switch { WorkerPresence.Online => 0, WorkerPresence.Lost => 1, _ => 2 }).ThenBy(w => w.Id).ToList();
        return TypedResults.Ok(new ListObject<WorkerObject>(data, false));
    }

    public static async Task<IResult> Get(string id, IDbContextFactory<AlignHubDb> dbs, AlignHubOptions options, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var w = await db.Workers.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, ct);
        return w is null ? ProblemShape.NotFound("worker", id) : TypedResults.Ok(WorkerObject.From(w, options.LeaseSeconds * 1000L, Ids.NowMs()));
    }
}
