using AlignHub.Domain;

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

    public static async Task<IResult> List(WorkerQueries workers, AlignHubOptions options, CancellationToken ct)
    {
        long lease = options.LeaseSeconds * 1000L, now = Ids.NowMs();
        var data = (await workers.ListAsync(lease, ct)).Select(w => WorkerObject.From(w, lease, now)).ToList();
        return TypedResults.Ok(new ListObject<WorkerObject>(data, false));
    }

    public static async Task<IResult> Get(string id, WorkerQueries workers, AlignHubOptions options, CancellationToken ct) =>
        await workers.GetAsync(id, ct) is { } w
            ? TypedResults.Ok(WorkerObject.From(w, options.LeaseSeconds * 1000L, Ids.NowMs()))
            : ProblemShape.NotFound("worker", id);
}
