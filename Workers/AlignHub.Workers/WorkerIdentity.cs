using AlignHub.Domain;
using AlignHub.Training.Engine;

namespace AlignHub.Workers;

/// <summary>
/// What this worker process is: its id (the Hangfire server name and lease owner), the device its training runs on,
/// and the queues it serves (<c>AlignHub__Worker__Queues</c>, else its device kind's and the shared one).
/// </summary>
public sealed class WorkerIdentity
{
    public string Id { get; } = TrainingJob.WorkerId;
    public required string Device { get; init; }
    public required IReadOnlyList<string> Queues { get; init; }
    public required int Slots { get; init; }
    /// <summary>When this process started serving: kept when its row is written again after being lost.</summary>
    public long StartedAtMs { get; } = Ids.NowMs();

    public static WorkerIdentity Resolve(AlignHubOptions options)
    {
        var spec = (options.Worker.Device ?? "auto").Trim().ToLowerInvariant();
        string device;
        try { device = Devices.Resolve(spec).ToString(); }
        catch (InvalidOperationException) { device = spec; } // a job started here fails saying why; the worker still reports itself
        bool cuda = device.StartsWith("cuda", StringComparison.Ordinal);
        var queues = JobResources.WorkerQueues(options.Worker.Queues, cuda);
        if (queues.FirstOrDefault(q => !JobResources.IsValidQueue(q)) is { } bad)
            throw new InvalidOperationException($"AlignHub__Worker__Queues: \"{bad}\" is not a queue name (lowercase letters, digits and underscores)");
        return new WorkerIdentity { Device = device, Queues = queues, Slots = Math.Max(1, options.WorkerCount) };
    }

    public WorkerRecord ToRecord() => new()
    {
        Id = Id, Host = Environment.MachineName, Pid = Environment.ProcessId, Queues = string.Join(',', Queues), Device = Device,
        Version = WorkerPresence.Version, Slots = Slots, StartedAtMs = StartedAtMs,
    };
}
