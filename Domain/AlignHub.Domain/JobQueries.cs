using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>
/// Reads of jobs and what they recorded, shared by the REST endpoints and the dashboard's pages, so both show the
/// same rows in the same order and a page needs no EF queries of its own.
/// </summary>
public sealed class JobQueries(IDbContextFactory<AlignHubDb> dbs)
{
    /// <summary>Which jobs a list shows: by status and method, a search over id, model, suffix and file, and an order.</summary>
    public sealed record JobFilter
    {
        public string? Status { get; init; }
        public string? Method { get; init; }
        public string? Search { get; init; }
        /// <summary><c>created</c> (newest first, the default), <c>created_asc</c>, <c>status</c>, <c>method</c>, <c>duration</c> (longest first).</summary>
        public string Sort { get; init; } = "created";
    }

    /// <summary>A page of jobs after the cursor job (null: the cursor does not exist), and whether more follow.</summary>
    public async Task<(List<FineTuningJob> Jobs, bool HasMore)?> ListAsync(string? after, int take, CancellationToken ct, JobFilter? filter = null)
    {
        filter ??= new JobFilter();
        await using var db = await dbs.CreateDbContextAsync(ct);
        var q = db.Jobs.AsNoTracking();
        if (!string.IsNullOrEmpty(filter.Status)) q = q.Where(j => j.Status == filter.Status);
        if (!string.IsNullOrEmpty(filter.Method)) q = q.Where(j => j.MethodType == filter.Method);
        if (!string.IsNullOrWhiteSpace(filter.Search))
        {
            var s = filter.Search.Trim().ToLowerInvariant();
            q = q.Where(j => j.Id.ToLower().Contains(s) || j.Model.ToLower().Contains(s) || (j.Suffix != null && j.Suffix.ToLower().Contains(s))
                || j.TrainingFile.ToLower().Contains(s) || (j.FineTunedModel != null && j.FineTunedModel.ToLower().Contains(s)));
        }
        if (!string.IsNullOrEmpty(after))
        {
            var cursor = await db.Jobs.AsNoTracking().Where(j => j.Id == after).Select(j => new { j.CreatedAtMs, j.Id }).FirstOrDefaultAsync(ct);
            if (cursor is null) return null;
            q = q.Where(j => j.CreatedAtMs < cursor.CreatedAtMs || (j.CreatedAtMs == cursor.CreatedAtMs && string.Compare(j.Id, cursor.Id) < 0));
        }
        var now = Ids.NowMs() / 1000;
        q = filter.Sort switch
        {
            "created_asc" => q.OrderBy(j => j.CreatedAtMs).ThenBy(j => j.Id),
            "status" => q.OrderBy(j => j.Status).ThenByDescending(j => j.CreatedAtMs).ThenByDescending(j => j.Id),
            "method" => q.OrderBy(j => j.MethodType).ThenByDescending(j => j.CreatedAtMs).ThenByDescending(j => j.Id),
            "duration" => q.OrderByDescending(j => (j.FinishedAt ?? now) - j.CreatedAt).ThenByDescending(j => j.Id),
            _ => q.OrderByDescending(j => j.CreatedAtMs).ThenByDescending(j => j.Id),
        };
        var page = await q.Take(take + 1).ToListAsync(ct);
        return (page.Take(take).ToList(), page.Count > take);
    }

    /// <summary>How many jobs have <paramref name="status"/>.</summary>
    public async Task<int> CountAsync(string status, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Jobs.CountAsync(j => j.Status == status, ct);
    }

    public async Task<FineTuningJob?> GetAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Jobs.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, ct);
    }

    public async Task<List<FineTuningJob>> GetManyAsync(IReadOnlyCollection<string> ids, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Jobs.AsNoTracking().Where(j => ids.Contains(j.Id)).ToListAsync(ct);
    }

    public async Task<bool> ExistsAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Jobs.AnyAsync(j => j.Id == id, ct);
    }

    /// <summary>Events newest first, before the event id <paramref name="before"/>; <paramref name="levels"/> and <paramref name="types"/> filter when given.</summary>
    public async Task<(List<JobEvent> Events, bool HasMore)> EventsAsync(string id, long? before, int take, CancellationToken ct,
        IReadOnlyCollection<string>? levels = null, IReadOnlyCollection<string>? types = null)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var q = db.Events.AsNoTracking().Where(e => e.JobId == id);
        if (before is long b) q = q.Where(e => e.Id < b);
        if (levels is { Count: > 0 }) q = q.Where(e => levels.Contains(e.Level));
        if (types is { Count: > 0 }) q = q.Where(e => types.Contains(e.Type));
        var page = await q.OrderByDescending(e => e.Id).Take(take + 1).ToListAsync(ct);
        return (page.Take(take).ToList(), page.Count > take);
    }

    public async Task<List<JobCheckpoint>> CheckpointsAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Checkpoints.AsNoTracking().Where(c => c.JobId == id).OrderByDescending(c => c.Step).ToListAsync(ct);
    }

    public async Task<JobCheckpoint?> CheckpointAsync(string id, string checkpointId, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Checkpoints.AsNoTracking().FirstOrDefaultAsync(x => x.JobId == id && x.Id == checkpointId, ct);
    }

    /// <summary>Metric rows by step then name; only <paramref name="names"/> when given, only steps after <paramref name="afterStep"/>.</summary>
    public async Task<List<JobMetric>> MetricsAsync(string id, IReadOnlyCollection<string>? names, int? afterStep, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var q = db.Metrics.AsNoTracking().Where(m => m.JobId == id);
        if (names is { Count: > 0 }) q = q.Where(m => names.Contains(m.Name));
        if (afterStep is int s) q = q.Where(m => m.Step > s);
        return await q.OrderBy(m => m.Step).ThenBy(m => m.Name).ToListAsync(ct);
    }

    /// <summary>Sampled completions by id; one step, after a sample id, and a text search over prompt and completion when given.</summary>
    public async Task<(List<JobSample> Samples, bool HasMore)> SamplesAsync(string id, int? step, long? after, int take, CancellationToken ct, string? search = null)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var q = db.Samples.AsNoTracking().Where(x => x.JobId == id);
        if (step is int st) q = q.Where(x => x.Step == st);
        if (after is long a) q = q.Where(x => x.Id > a);
        if (!string.IsNullOrWhiteSpace(search))
        {
            var s = search.Trim().ToLowerInvariant();
            q = q.Where(x => x.Prompt.ToLower().Contains(s) || x.Completion.ToLower().Contains(s));
        }
        var rows = await q.OrderBy(x => x.Id).Take(take + 1).ToListAsync(ct);
        return (rows.Take(take).ToList(), rows.Count > take);
    }

    /// <summary>The steps at which samples were logged, newest first.</summary>
    public async Task<List<int>> SampleStepsAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Samples.AsNoTracking().Where(x => x.JobId == id).Select(x => x.Step).Distinct().OrderByDescending(s => s).ToListAsync(ct);
    }
}
