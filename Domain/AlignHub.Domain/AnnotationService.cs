using System.Collections.Concurrent;
using System.Data.Common;
using System.Text;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;

namespace AlignHub.Domain;

/// <summary>Body of <c>POST /v1/annotation/campaigns</c>.</summary>
public sealed record CreateCampaignRequest
{
    public string? Name { get; init; }
    /// <summary>A file of items: a generation job's rows (<c>{"prompt", "completions": [a, b, ...]}</c>, the first two) or <c>{"prompt", "response_a", "response_b"}</c>.</summary>
    public string? File { get; init; }
    public int? AnnotatorsPerItem { get; init; }
    public string? Guidelines { get; init; }
    public string? Question { get; init; }
    public bool? AllowTies { get; init; }
    public string? Rationale { get; init; }
    public int? LeaseSeconds { get; init; }
}

/// <summary>
/// Labeling campaigns: creation from a file, assignment that holds under concurrency (leases on item slots, enforced
/// by unique indexes), labels with sides mapped back, undo, agreement statistics and export to a preference file.
/// </summary>
public sealed class AnnotationService(IDbContextFactory<AlignHubDb> dbs, FileService files, AlignHubOptions options)
{
    public abstract record Result;
    public sealed record Ok<T>(T Value) : Result;
    public sealed record Invalid(string Field, string Message) : Result;
    public sealed record NotFound(string What) : Result;
    public sealed record Conflict(string Message) : Result;
    /// <summary>
    /// Nothing for this annotator at this instant, but items they have not seen are leased by others, and a skip or an
    /// expired lease can give a slot back: ask again after <paramref name="RetryAfterSeconds"/> (HTTP: 204 with Retry-After).
    /// </summary>
    public sealed record Waiting(int RetryAfterSeconds) : Result;

    /// <summary>A campaign by id (null: none).</summary>
    public async Task<AnnotationCampaign?> CampaignAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Campaigns.AsNoTracking().FirstOrDefaultAsync(c => c.Id == id, ct);
    }

    /// <summary>The newest campaigns (at most <paramref name="limit"/>) with how many labels each holds (skips not counted).</summary>
    public async Task<List<(AnnotationCampaign Campaign, int Labels)>> CampaignsAsync(int limit, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var campaigns = await db.Campaigns.AsNoTracking().OrderByDescending(c => c.CreatedAt).Take(limit).ToListAsync(ct);
        var counts = await db.Assignments.AsNoTracking().Where(a => a.Label != null && a.Label != "skip")
            .GroupBy(a => a.CampaignId).Select(g => new { g.Key, Count = g.Count() }).ToDictionaryAsync(x => x.Key, x => x.Count, ct);
        return campaigns.Select(c => (c, counts.GetValueOrDefault(c.Id))).ToList();
    }

    /// <summary>The AI judge's verdict on an item, in the item's terms (null: not judged).</summary>
    public async Task<string?> JudgeLabelAsync(long itemId, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.AnnotationItems.AsNoTracking().Where(i => i.Id == itemId).Select(i => i.JudgeLabel).FirstOrDefaultAsync(ct);
    }

    public async Task<Result> CreateAsync(CreateCampaignRequest req, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(req.Name) || req.Name.Length > 200) return new Invalid("name", "name is required (at most 200 characters)");
        int k = req.AnnotatorsPerItem ?? 1;
        if (k is < 1 or > 50) return new Invalid("annotators_per_item", "must be from 1 to 50");
        var rationale = req.Rationale ?? "optional";
        if (rationale is not ("off" or "optional" or "required")) return new Invalid("rationale", "must be off, optional or required");
        int lease = req.LeaseSeconds ?? 600;
        if (lease is < 10 or > 86400) return new Invalid("lease_seconds", "must be from 10 to 86400");
        if (req.Guidelines is { Length: > 100_000 }) return new Invalid("guidelines", "at most 100,000 characters");
        if (req.Question is { Length: > 500 }) return new Invalid("question", "at most 500 characters");
        await using var db = await dbs.CreateDbContextAsync(ct);
        var file = req.File is null ? null : await db.Files.FindAsync([req.File], ct);
        if (file is null) return new Invalid("file", req.File is null ? "file is required" : $"file \"{req.File}\" does not exist");
        List<(string Prompt, string A, string B)> items;
        try { items = ReadItems(options.Resolve(file.StoragePath)); }
        catch (JsonlFormatException e) { return new Invalid("file", $"line {e.Line}: {e.Reason}"); }
        if (items.Count == 0) return new Invalid("file", "the file has no items");

        var c = new AnnotationCampaign
        {
            Id = Ids.New("camp-"), Name = req.Name, SourceFile = file.Id, AnnotatorsPerItem = k, Guidelines = req.Guidelines ?? "",
            Question = req.Question ?? "Which response is better?", AllowTies = req.AllowTies ?? false, Rationale = rationale,
            LeaseSeconds = lease, ItemCount = items.Count, CreatedAt = Ids.Now(),
        };
        db.Campaigns.Add(c);
        db.AnnotationItems.AddRange(items.Select((it, i) => new AnnotationItem { CampaignId = c.Id, Index = i, Prompt = DbText.Clean(it.Prompt), ResponseA = DbText.Clean(it.A), ResponseB = DbText.Clean(it.B), OpenSlots = k }));
        await db.SaveChangesAsync(ct);
        return new Ok<AnnotationCampaign>(c);
    }

    /// <summary>
    /// Adds one item (a prompt and two responses) to a campaign: the playground's "send to campaign", or any client's. Its
    /// index is the campaign's next; the count moves in the same transaction.
    /// </summary>
    public async Task<Result> AddItemAsync(string campaignId, string? prompt, string? responseA, string? responseB, CancellationToken ct)
    {
        if (string.IsNullOrEmpty(prompt)) return new Invalid("prompt", "prompt is required");
        if (string.IsNullOrEmpty(responseA)) return new Invalid("response_a", "response_a is required");
        if (string.IsNullOrEmpty(responseB)) return new Invalid("response_b", "response_b is required");
        if (prompt.Length + responseA.Length + responseB.Length > 1_000_000) return new Invalid("prompt", "the item is larger than 1,000,000 characters");
        await using var db = await dbs.CreateDbContextAsync(ct);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var k = await db.Campaigns.Where(c => c.Id == campaignId).Select(c => (int?)c.AnnotatorsPerItem).FirstOrDefaultAsync(ct);
        if (k is null) return new NotFound("campaign");
        await db.Campaigns.Where(c => c.Id == campaignId).ExecuteUpdateAsync(u => u.SetProperty(c => c.ItemCount, c => c.ItemCount + 1), ct);
        var count = await db.Campaigns.Where(c => c.Id == campaignId).Select(c => c.ItemCount).FirstAsync(ct);
        var item = new AnnotationItem { CampaignId = campaignId, Index = count - 1, Prompt = DbText.Clean(prompt), ResponseA = DbText.Clean(responseA), ResponseB = DbText.Clean(responseB), OpenSlots = k.Value };
        db.AnnotationItems.Add(item);
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        return new Ok<AnnotationItem>(item);
    }

    /// <summary>Items from generation rows (first two completions) or <c>{"prompt", "response_a", "response_b"}</c> rows.</summary>
    static List<(string, string, string)> ReadItems(string path)
    {
        var list = new List<(string, string, string)>();
        using var fs = File.OpenRead(path);
        foreach (var (no, line) in JsonlRows.ReadLines(fs))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            string PromptText() => r.TryGetProperty("prompt", out var p)
                ? p.ValueKind == JsonValueKind.String ? p.GetString()! : string.Join("\n", p.EnumerateArray().Select(m => $"{m.GetProperty("role").GetString()}: {m.GetProperty("content").GetString()}"))
                : throw new JsonlFormatException(no, "\"prompt\" is missing");
            if (r.TryGetProperty("completions", out var comps) && comps.ValueKind == JsonValueKind.Array)
            {
                if (comps.GetArrayLength() < 2) throw new JsonlFormatException(no, "an item needs two completions");
                string Text(JsonElement e) => e.ValueKind == JsonValueKind.String ? e.GetString()! : e.GetProperty("text").GetString()!;
                list.Add((PromptText(), Text(comps[0]), Text(comps[1])));
            }
            else if (r.TryGetProperty("response_a", out var a) && r.TryGetProperty("response_b", out var b) && a.ValueKind == JsonValueKind.String && b.ValueKind == JsonValueKind.String)
                list.Add((PromptText(), a.GetString()!, b.GetString()!));
            else throw new JsonlFormatException(no, "expected {\"prompt\", \"completions\": [a, b]} or {\"prompt\", \"response_a\", \"response_b\"}");
        }
        return list;
    }

    /// <summary>What an annotator sees: the item with sides as shown to them, and their progress.</summary>
    /// <param name="Judge">The campaign judge's verdict as shown to this annotator (left, right, tie) when the campaign shows it; else null.</param>
    public sealed record NextItem(long AssignmentId, long ItemId, string Prompt, string Left, string Right, long LeaseUntilMs, int Done, int Total, string? Judge = null);

    /// <summary>A verdict in the item's terms (a, b, tie) as an annotator with <paramref name="swapped"/> sides sees it.</summary>
    public static string? Shown(string? verdict, bool swapped) => verdict switch
    {
        "a" => swapped ? "right" : "left",
        "b" => swapped ? "left" : "right",
        "tie" => "tie",
        _ => null,
    };

    // Campaign settings read on the hot paths (next, submit) come from memory; only the judge's visibility can change
    // (POST .../judge), so an entry is read again after 10 s.
    readonly ConcurrentDictionary<string, (AnnotationCampaign Campaign, long AtMs)> campaigns = new();
    // When each campaign's expired leases were last returned by this process.
    readonly ConcurrentDictionary<string, long> lastExpirySweepMs = new();

    async Task<AnnotationCampaign?> Campaign(AlignHubDb db, string id, CancellationToken ct)
    {
        var now = Ids.NowMs();
        if (campaigns.TryGetValue(id, out var hit) && now - hit.AtMs < 10_000) return hit.Campaign;
        var c = await db.Campaigns.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, ct);
        if (c is not null) campaigns[id] = (c, now);
        return c;
    }

    /// <summary>Drops this process's copy of a campaign's settings (after its judge settings changed).</summary>
    public void Forget(string id) => campaigns.TryRemove(id, out _);

    /// <summary>
    /// The caller's current item: their unexpired lease, or a new lease on a free slot of an item they have not seen.
    /// A claim is one transaction of two statements: take one of the first free item's
    /// <see cref="AnnotationItem.OpenSlots"/> (<see cref="TakeOpenSlot"/>), then insert the row for a free slot number.
    /// The unique indexes on (item, slot) and (item, annotator) remain the guarantee: a claim that hits one rolls back
    /// and tries again. Null when nothing is left for the caller; <see cref="Waiting"/> when others hold what is left.
    /// </summary>
    public async Task<Result> NextAsync(string campaignId, string annotator, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var c = await Campaign(db, campaignId, ct);
        if (c is null) return new NotFound("campaign");
        var now = Ids.NowMs();
        var mine = await db.Assignments.AsNoTracking()
            .Where(a => a.CampaignId == campaignId && a.Annotator == annotator && a.Label == null && a.LeaseUntilMs >= now)
            .OrderBy(a => a.Id).FirstOrDefaultAsync(ct);
        if (mine is not null)
            return new Ok<NextItem?>(await Show(db, c, mine, await db.AnnotationItems.AsNoTracking().SingleAsync(i => i.Id == mine.ItemId, ct), ct));
        await ReturnExpiredLeases(db, campaignId, now, ct);

        // The slot numbers 0..k-1 as a derived table, for the INSERT that picks the lowest free one.
        var slotNumbers = string.Join(" UNION ALL ", Enumerable.Range(0, c.AnnotatorsPerItem).Select(n => $"SELECT {n} AS n"));
        for (int attempt = 0; attempt < 50; attempt++)
        {
            now = Ids.NowMs();
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            try
            {
                var item = await TakeOpenSlot(db, campaignId, annotator, ct);
                if (item is null)
                {
                    await tx.RollbackAsync(ct);
                    // Nothing left for this annotator, or what is left is being claimed this instant.
                    bool any = await db.AnnotationItems.AnyAsync(i => i.CampaignId == campaignId && i.OpenSlots > 0
                        && !db.Assignments.Any(a => a.ItemId == i.Id && a.Annotator == annotator), ct);
                    if (!any) return await Held(db, c, annotator, ct) is { } wait ? wait : new Ok<NextItem?>(null);
                    await Task.Delay(Random.Shared.Next(1, 5), ct);
                    continue;
                }
                var row = new AnnotationAssignment
                {
                    CampaignId = campaignId, ItemId = item.Id, Annotator = annotator, Swapped = SideSwap(annotator, item.Id),
                    LeasedAtMs = now, LeaseUntilMs = now + c.LeaseSeconds * 1000L,
                };
                var inserted = await Sql(db, $"""
                    INSERT INTO annotation_assignments ("CampaignId", "ItemId", "Slot", "Annotator", "Swapped", "LeasedAtMs", "LeaseUntilMs")
                    SELECT @campaign, @item, s.n, @annotator, @swapped, @leased, @until FROM ({slotNumbers}) AS s
                    WHERE s.n NOT IN (SELECT a."Slot" FROM annotation_assignments a WHERE a."ItemId" = @item AND a."Slot" IS NOT NULL)
                    ORDER BY s.n LIMIT 1
                    RETURNING "Id", "Slot"
                    """, ct, ("campaign", campaignId), ("item", item.Id), ("annotator", annotator), ("swapped", row.Swapped),
                    ("leased", row.LeasedAtMs), ("until", row.LeaseUntilMs));
                if (inserted.Count == 0) { await tx.RollbackAsync(ct); continue; } // OpenSlots out of step with the rows: try another item
                (row.Id, row.Slot) = (Convert.ToInt64(inserted[0][0]), Convert.ToInt32(inserted[0][1]));
                await tx.CommitAsync(ct);
                return new Ok<NextItem?>(await Show(db, c, row, item, ct));
            }
            catch (DbException)
            {
                await tx.RollbackAsync(CancellationToken.None); // this slot or item was taken first: try again
            }
        }
        return new Conflict("too many concurrent claims; try again");
    }

    /// <summary>
    /// When no slot is open for the annotator: whether one may still open for them, because an item they have not seen
    /// has slots leased (not labelled) by others. A skip returns its slot at once and an expired lease within a second of
    /// the next sweep, so the wait is until the earliest lease runs out, at most 5 seconds, at least 1.
    /// </summary>
    static async Task<Waiting?> Held(AlignHubDb db, AnnotationCampaign c, string annotator, CancellationToken ct)
    {
        var leases = db.Assignments.Where(a => a.CampaignId == c.Id && a.Label == null && a.Slot != null && a.Annotator != annotator
            && !db.Assignments.Any(b => b.ItemId == a.ItemId && b.Annotator == annotator));
        // One statement: a lease labelled between two queries must not turn "some" into "none" halfway.
        if (await leases.MinAsync(a => (long?)a.LeaseUntilMs, ct) is not long earliest) return null;
        return new Waiting((int)Math.Clamp((earliest - Ids.NowMs() + 999) / 1000, 1, 5));
    }

    /// <summary>
    /// In the caller's transaction: takes one open slot of the first item (by index) the annotator has not seen, and
    /// returns that item, or null. One statement; on PostgreSQL the item is chosen with <c>FOR UPDATE SKIP LOCKED</c>,
    /// so concurrent claims never queue on one row (each takes the next free item); SQLite has one writer at a time.
    /// </summary>
    static async Task<AnnotationItem?> TakeOpenSlot(AlignHubDb db, string campaignId, string annotator, CancellationToken ct)
    {
        var rows = await Sql(db, $"""
            UPDATE annotation_items SET "OpenSlots" = "OpenSlots" - 1
            WHERE "Id" = (SELECT i."Id" FROM annotation_items i
                          WHERE i."CampaignId" = @campaign AND i."OpenSlots" > 0
                            AND NOT EXISTS (SELECT 1 FROM annotation_assignments a WHERE a."ItemId" = i."Id" AND a."Annotator" = @annotator)
                          ORDER BY i."Index" LIMIT 1{(IsPostgres(db) ? " FOR UPDATE SKIP LOCKED" : "")})
              AND "OpenSlots" > 0
            RETURNING "Id", "Index", "Prompt", "ResponseA", "ResponseB"
            """, ct, ("campaign", campaignId), ("annotator", annotator));
        return rows.Count == 0 ? null : new AnnotationItem
        {
            Id = Convert.ToInt64(rows[0][0]), CampaignId = campaignId, Index = Convert.ToInt32(rows[0][1]),
            Prompt = (string)rows[0][2]!, ResponseA = (string)rows[0][3]!, ResponseB = (string)rows[0][4]!,
        };
    }

    static bool IsPostgres(AlignHubDb db) => db.Database.ProviderName?.Contains("Npgsql") == true;

    /// <summary>
    /// One SQL statement on the context's connection, in its transaction if one is open, with named parameters (the same
    /// text runs on PostgreSQL and SQLite). For the hot labeling paths, which need what EF Core cannot say in one
    /// statement (UPDATE ... RETURNING, SKIP LOCKED, INSERT ... SELECT).
    /// </summary>
    static async Task<List<object?[]>> Sql(AlignHubDb db, string sql, CancellationToken ct, params (string Name, object? Value)[] parameters)
    {
        await db.Database.OpenConnectionAsync(ct);
        await using var cmd = db.Database.GetDbConnection().CreateCommand();
        cmd.Transaction = db.Database.CurrentTransaction?.GetDbTransaction();
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            var p = cmd.CreateParameter();
            p.ParameterName = name;
            p.Value = value ?? DBNull.Value;
            cmd.Parameters.Add(p);
        }
        var rows = new List<object?[]>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
        {
            var row = new object?[r.FieldCount];
            for (int i = 0; i < row.Length; i++) row[i] = r.IsDBNull(i) ? null : r.GetValue(i);
            rows.Add(row);
        }
        return rows;
    }

    /// <summary>
    /// Deletes the campaign's unlabelled rows whose lease ran out and gives their slots back (at most once a second per
    /// campaign and process; a row is given back by whoever deletes it).
    /// </summary>
    async Task ReturnExpiredLeases(AlignHubDb db, string campaignId, long now, CancellationToken ct)
    {
        if (lastExpirySweepMs.TryGetValue(campaignId, out var last) && now - last < 1000) return;
        lastExpirySweepMs[campaignId] = now;
        var expired = await db.Assignments.AsNoTracking()
            .Where(a => a.CampaignId == campaignId && a.Label == null && a.LeaseUntilMs < now)
            .Select(a => new { a.Id, a.ItemId, a.Slot }).Take(1000).ToListAsync(ct);
        foreach (var e in expired)
        {
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            int n = await db.Assignments.Where(a => a.Id == e.Id && a.Label == null && a.LeaseUntilMs < now).ExecuteDeleteAsync(ct);
            if (n == 1 && e.Slot is not null)
                await ReturnSlot(db, e.ItemId, ct);
            await tx.CommitAsync(ct);
        }
    }

    /// <summary>In the caller's transaction, after deleting or skipping a row that held a slot: the item has one more open slot.</summary>
    static Task<int> ReturnSlot(AlignHubDb db, long itemId, CancellationToken ct) =>
        db.AnnotationItems.Where(i => i.Id == itemId).ExecuteUpdateAsync(s => s.SetProperty(i => i.OpenSlots, i => i.OpenSlots + 1), ct);

    /// <summary>Left/right per annotator and item, stable and recorded: a hash of both, so the order does not favour a side.</summary>
    public static bool SideSwap(string annotator, long itemId)
    {
        ulong h = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes($"{annotator}\n{itemId}")) { h ^= b; h *= 1099511628211UL; }
        return (h & 1) == 1;
    }

    /// <summary>
    /// The item as shown to the annotator, with progress: done (their labels and skips) of done plus the items still
    /// within their reach (their current one and every item with an open slot they have not seen). One query: open items
    /// minus the open items the annotator has a row for, both indexed counts.
    /// </summary>
    static async Task<NextItem> Show(AlignHubDb db, AnnotationCampaign c, AnnotationAssignment a, AnnotationItem item, CancellationToken ct)
    {
        var counts = (await Sql(db, """
            SELECT (SELECT COUNT(*) FROM annotation_assignments WHERE "CampaignId" = @campaign AND "Annotator" = @annotator AND "Label" IS NOT NULL),
                   (SELECT COUNT(*) FROM annotation_items WHERE "CampaignId" = @campaign AND "OpenSlots" > 0),
                   (SELECT COUNT(*) FROM annotation_assignments x JOIN annotation_items i ON i."Id" = x."ItemId"
                     WHERE x."CampaignId" = @campaign AND x."Annotator" = @annotator AND i."OpenSlots" > 0)
            """, ct, ("campaign", c.Id), ("annotator", a.Annotator)))[0].Select(Convert.ToInt32).ToArray();
        int done = counts[0], open = counts[1], seenOpen = counts[2];
        return new NextItem(a.Id, item.Id, item.Prompt, a.Swapped ? item.ResponseB : item.ResponseA, a.Swapped ? item.ResponseA : item.ResponseB,
            a.LeaseUntilMs, done, done + 1 + open - seenOpen, c.JudgeVisibility == "shown" ? Shown(item.JudgeLabel, a.Swapped) : null);
    }

    /// <summary>
    /// Records the caller's label for their leased item; <paramref name="choice"/> is as shown: left, right, tie or
    /// skip. A label is one conditional update (sides mapped back in SQL); a skip also gives the slot back.
    /// </summary>
    public async Task<Result> SubmitAsync(string campaignId, string annotator, long assignmentId, string? choice, string? rationale, int? durationMs, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var c = await Campaign(db, campaignId, ct);
        if (c is null) return new NotFound("campaign");
        if (choice is not ("left" or "right" or "tie" or "skip")) return new Invalid("choice", "must be left, right, tie or skip");
        if (choice == "tie" && !c.AllowTies) return new Invalid("choice", "this campaign does not allow ties");
        if (choice != "skip" && c.Rationale == "required" && string.IsNullOrWhiteSpace(rationale)) return new Invalid("rationale", "this campaign requires a rationale");
        if (rationale is { Length: > 5000 }) return new Invalid("rationale", "at most 5,000 characters");
        if (durationMs is < 0) return new Invalid("duration_ms", "must be >= 0");
        var now = Ids.NowMs();
        var text = c.Rationale == "off" ? null : rationale;
        // Only the caller's own unlabelled row: a lease that expired and was given back no longer exists.
        var target = db.Assignments.Where(x => x.Id == assignmentId && x.CampaignId == campaignId && x.Annotator == annotator && x.Label == null);
        if (choice == "skip")
        {
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            var row = await target.Select(x => new { x.ItemId, x.Slot }).FirstOrDefaultAsync(ct);
            int n = row is null ? 0 : await target.ExecuteUpdateAsync(s => s
                .SetProperty(x => x.Label, "skip").SetProperty(x => x.Slot, (int?)null).SetProperty(x => x.RationaleText, (string?)null)
                .SetProperty(x => x.SubmittedAtMs, now)
                .SetProperty(x => x.DurationMs, x => durationMs ?? (int)(now - x.LeasedAtMs)), ct);
            if (n == 1 && row!.Slot is not null) await ReturnSlot(db, row.ItemId, ct);
            await tx.CommitAsync(ct);
            if (n == 1) return new Ok<string>(choice);
        }
        else
        {
            // One statement: the label in the item's terms (sides mapped back), returned.
            var written = await Sql(db, """
                UPDATE annotation_assignments
                SET "Label" = CASE WHEN @tie THEN 'tie' WHEN @left <> "Swapped" THEN 'a' ELSE 'b' END,
                    "RationaleText" = @text, "SubmittedAtMs" = @now, "DurationMs" = COALESCE(@duration, @now - "LeasedAtMs")
                WHERE "Id" = @id AND "CampaignId" = @campaign AND "Annotator" = @annotator AND "Label" IS NULL
                RETURNING "Label"
                """, ct, ("tie", choice == "tie"), ("left", choice == "left"), ("text", text), ("now", now), ("duration", durationMs),
                ("id", assignmentId), ("campaign", campaignId), ("annotator", annotator));
            if (written.Count == 1) return new Ok<string>((string)written[0][0]!);
        }
        // Nothing written: say why.
        var a = await db.Assignments.AsNoTracking().FirstOrDefaultAsync(x => x.Id == assignmentId && x.CampaignId == campaignId && x.Annotator == annotator, ct);
        return a is null ? new Conflict("no lease on this item (it expired and was given back, or it is not yours)")
            : new Conflict("this item is already labelled; undo it first");
    }

    /// <summary>Takes back the caller's last label: the item becomes their current item again.</summary>
    public async Task<Result> UndoAsync(string campaignId, string annotator, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var c = await Campaign(db, campaignId, ct);
        if (c is null) return new NotFound("campaign");
        var last = await db.Assignments.AsNoTracking().Where(x => x.CampaignId == campaignId && x.Annotator == annotator && x.Label != null)
            .OrderByDescending(x => x.SubmittedAtMs).ThenByDescending(x => x.Id).FirstOrDefaultAsync(ct);
        if (last is null) return new Conflict("nothing to undo");
        var now = Ids.NowMs();
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            // Release any other lease the caller holds, so the undone item is the one shown next.
            var held = await db.Assignments.Where(x => x.CampaignId == campaignId && x.Annotator == annotator && x.Label == null)
                .Select(x => new { x.Id, x.ItemId, x.Slot }).ToListAsync(ct);
            foreach (var h in held)
                if (await db.Assignments.Where(x => x.Id == h.Id && x.Label == null).ExecuteDeleteAsync(ct) == 1 && h.Slot is not null)
                    await ReturnSlot(db, h.ItemId, ct);
            int? slot = last.Slot;
            if (slot is null)
            {
                // A skipped item: take a slot again, if one is open.
                bool open = await db.AnnotationItems.Where(i => i.Id == last.ItemId && i.OpenSlots > 0)
                    .ExecuteUpdateAsync(s => s.SetProperty(i => i.OpenSlots, i => i.OpenSlots - 1), ct) == 1;
                var used = await db.Assignments.Where(a => a.ItemId == last.ItemId && a.Slot != null).Select(a => a.Slot!.Value).ToListAsync(ct);
                slot = open ? Enumerable.Range(0, c.AnnotatorsPerItem).Where(s => !used.Contains(s)).Cast<int?>().FirstOrDefault() : null;
                if (slot is null)
                {
                    await tx.RollbackAsync(ct);
                    return new Conflict("the item you skipped has meanwhile been labelled by enough annotators");
                }
            }
            try
            {
                await db.Assignments.Where(x => x.Id == last.Id).ExecuteUpdateAsync(s => s
                    .SetProperty(x => x.Label, (string?)null).SetProperty(x => x.RationaleText, (string?)null)
                    .SetProperty(x => x.SubmittedAtMs, (long?)null).SetProperty(x => x.DurationMs, (int?)null)
                    .SetProperty(x => x.Slot, slot).SetProperty(x => x.LeasedAtMs, now)
                    .SetProperty(x => x.LeaseUntilMs, now + c.LeaseSeconds * 1000L), ct);
                await tx.CommitAsync(ct);
            }
            catch (Exception e) when (e is DbException or DbUpdateException)
            {
                await tx.RollbackAsync(CancellationToken.None);
                return new Conflict("the item's slots filled up meanwhile");
            }
        }
        var row = await db.Assignments.AsNoTracking().SingleAsync(x => x.Id == last.Id, ct);
        return new Ok<NextItem?>(await Show(db, c, row, await db.AnnotationItems.AsNoTracking().SingleAsync(i => i.Id == row.ItemId, ct), ct));
    }

    public sealed record AnnotatorStats(string Annotator, int Labels, double? MedianSeconds, double? AgreementWithMajority);
    public sealed record PairKappa(string A, string B, double? Kappa, int SharedItems);
    public sealed record ContestedItem(long ItemId, int Index, string Prompt, IReadOnlyDictionary<string, int> Votes, double Agreement);
    /// <summary>The campaign judge against the annotators: on items with a human majority and a verdict, how often they agree, and Cohen's kappa.</summary>
    public sealed record JudgeAgreement(string Judge, int JudgedItems, int Compared, double? Percent, double? Kappa);
    public sealed record CampaignStats(int Items, int CompleteItems, int Labels, int Skips, double? PercentAgreement, double? FleissKappa,
        IReadOnlyList<PairKappa> CohensKappa, IReadOnlyList<AnnotatorStats> Annotators, IReadOnlyList<ContestedItem> MostContested,
        JudgeAgreement? Judge = null);

    public async Task<Result> StatsAsync(string campaignId, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var c = await db.Campaigns.AsNoTracking().FirstOrDefaultAsync(x => x.Id == campaignId, ct);
        if (c is null) return new NotFound("campaign");
        var rows = await db.Assignments.AsNoTracking().Where(a => a.CampaignId == campaignId && a.Label != null).ToListAsync(ct);
        var labels = rows.Where(r => r.Label != "skip").Select(r => new Agreement.Label(r.ItemId, r.Annotator, r.Label!)).ToList();
        var byItem = labels.GroupBy(l => l.Item).ToDictionary(g => g.Key, g => g.ToList());
        var annotators = labels.Select(l => l.Annotator).Distinct().Order().ToList();
        var pairs = new List<PairKappa>();
        for (int i = 0; i < annotators.Count; i++)
            for (int j = i + 1; j < annotators.Count; j++)
            {
                var shared = labels.Where(l => l.Annotator == annotators[i]).Select(l => l.Item).Intersect(labels.Where(l => l.Annotator == annotators[j]).Select(l => l.Item)).Count();
                if (shared > 0) pairs.Add(new PairKappa(annotators[i], annotators[j], Agreement.CohensKappa(labels, annotators[i], annotators[j]), shared));
            }
        var majority = byItem.ToDictionary(kv => kv.Key, kv => Agreement.Majority(kv.Value.Select(l => l.Value)));
        var perAnnotator = annotators.Select(a =>
        {
            var mine = rows.Where(r => r.Annotator == a && r.Label != "skip").ToList();
            var times = mine.Where(r => r.DurationMs is not null).Select(r => r.DurationMs!.Value / 1000.0).Order().ToList();
            double? median = times.Count == 0 ? null : times.Count % 2 == 1 ? times[times.Count / 2] : (times[times.Count / 2 - 1] + times[times.Count / 2]) / 2;
            var judged = mine.Where(r => byItem[r.ItemId].Count >= 2 && majority[r.ItemId] is not null).ToList();
            return new AnnotatorStats(a, mine.Count, median, judged.Count == 0 ? null : judged.Count(r => r.Label == majority[r.ItemId]) / (double)judged.Count);
        }).ToList();
        var items = await db.AnnotationItems.AsNoTracking().Where(i => i.CampaignId == campaignId).ToDictionaryAsync(i => i.Id, ct);
        var contested = byItem.Where(kv => kv.Value.Count >= 2)
            .Select(kv => (kv.Key, Votes: kv.Value.GroupBy(l => l.Value).ToDictionary(g => g.Key, g => g.Count()), Agree: Agreement.PercentAgreement(kv.Value) ?? 1))
            .OrderBy(x => x.Agree).ThenBy(x => items[x.Key].Index).Take(10)
            .Select(x => new ContestedItem(x.Key, items[x.Key].Index, items[x.Key].Prompt, x.Votes, x.Agree)).ToList();
        JudgeAgreement? judge = null;
        if (c.JudgeId is { } judgeId)
        {
            // The judge as one more annotator beside the majority: percent agreement and Cohen's kappa over the items both labelled.
            var compared = items.Values.Where(i => i.JudgeLabel is not null && majority.TryGetValue(i.Id, out var mj) && mj is not null).ToList();
            var pairLabels = compared.SelectMany(i => new[] { new Agreement.Label(i.Id, "judge", i.JudgeLabel!), new Agreement.Label(i.Id, "majority", majority[i.Id]!) }).ToList();
            judge = new JudgeAgreement(judgeId, items.Values.Count(i => i.JudgeLabel is not null), compared.Count,
                compared.Count == 0 ? null : compared.Count(i => i.JudgeLabel == majority[i.Id]) / (double)compared.Count,
                compared.Count == 0 ? null : Agreement.CohensKappa(pairLabels, "judge", "majority"));
        }
        return new Ok<CampaignStats>(new CampaignStats(c.ItemCount, byItem.Count(kv => kv.Value.Count >= c.AnnotatorsPerItem), labels.Count,
            rows.Count(r => r.Label == "skip"), Agreement.PercentAgreement(labels), Agreement.FleissKappa(labels, c.AnnotatorsPerItem),
            pairs, perAnnotator, contested, judge));
    }

    /// <summary>
    /// The campaign as a preference file (TRL's rows): per item, the majority label decides chosen and rejected;
    /// items without a majority are dropped, majority ties are dropped or kept with margin 0; <c>agreement</c> is the
    /// item's pairwise agreement (a weight or label-smoothing hint). The file appears under /v1/files.
    /// </summary>
    /// <param name="source">
    /// <c>humans</c> (the default): the annotators' majority; <c>judge</c>: the campaign judge's verdicts alone;
    /// <c>humans_then_judge</c>: the majority where there is one, else the judge's verdict.
    /// </param>
    public async Task<Result> ExportAsync(string campaignId, bool includeTies, CancellationToken ct, string source = "humans")
    {
        if (source is not ("humans" or "judge" or "humans_then_judge")) return new Invalid("source", "must be humans, judge or humans_then_judge");
        await using var db = await dbs.CreateDbContextAsync(ct);
        var c = await db.Campaigns.AsNoTracking().FirstOrDefaultAsync(x => x.Id == campaignId, ct);
        if (c is null) return new NotFound("campaign");
        var rows = await db.Assignments.AsNoTracking().Where(a => a.CampaignId == campaignId && a.Label != null && a.Label != "skip").ToListAsync(ct);
        var items = await db.AnnotationItems.AsNoTracking().Where(i => i.CampaignId == campaignId).OrderBy(i => i.Index).ToListAsync(ct);
        var lines = new List<string>();
        foreach (var item in items)
        {
            var votes = rows.Where(r => r.ItemId == item.Id).Select(r => new Agreement.Label(item.Id, r.Annotator, r.Label!)).ToList();
            var m = source == "judge" ? null : Agreement.Majority(votes.Select(v => v.Value));
            bool byJudge = false;
            if (m is null && source != "humans" && item.JudgeLabel is { } verdict) { m = verdict; byJudge = true; votes = []; }
            if (m is null || (m == "tie" && !includeTies)) continue;
            var agreement = votes.Count >= 2 ? Agreement.PercentAgreement(votes)!.Value : 1.0;
            var (chosen, rejected) = m == "b" ? (item.ResponseB, item.ResponseA) : (item.ResponseA, item.ResponseB);
            var row = new Dictionary<string, object> { ["prompt"] = item.Prompt, ["chosen"] = chosen, ["rejected"] = rejected, ["agreement"] = Math.Round(agreement, 6), ["votes"] = votes.Count };
            if (byJudge) row["labelled_by"] = "judge";
            if (m == "tie") row["margin"] = 0;
            lines.Add(JsonSerializer.Serialize(row));
        }
        if (lines.Count == 0) return new Conflict(source == "judge" ? "no item has a judge's verdict that is not a tie" : "no item has a majority label yet");
        var tmp = Path.Combine(options.FullDataDir, "files", $"export-{Guid.NewGuid():N}.jsonl");
        Directory.CreateDirectory(Path.GetDirectoryName(tmp)!);
        await File.WriteAllLinesAsync(tmp, lines, ct);
        var file = files.AddProduced(tmp, $"{c.Id}-preferences.jsonl", "fine-tune", JsonlRows.Preference, lines.Count);
        return new Ok<FileRecord>(file);
    }
}
