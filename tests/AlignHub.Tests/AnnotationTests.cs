using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using AlignHub.Domain;
using Xunit;
using L = AlignHub.Domain.Agreement.Label;

namespace AlignHub.Tests;

/// <summary>Agreement figures against values worked out by hand.</summary>
public class AgreementTests
{
    static List<L> Two(string[] a, string[] b) =>
        [.. a.Select((v, i) => new L(i, "ann", v)), .. b.Select((v, i) => new L(i, "bob", v))];

    [Fact]
    public void Cohens_kappa_is_zero_at_chance_agreement_and_negative_below_it()
    {
        // p_o = 2/4; each annotator says a half the time: p_e = 0.5*0.5 + 0.5*0.5 = 0.5 => kappa = 0.
        Assert.Equal(0, Agreement.CohensKappa(Two(["a", "a", "b", "b"], ["a", "b", "a", "b"]), "ann", "bob")!.Value, 9);
        // Always disagreeing: p_o = 0, p_e = 0.5 => kappa = -1.
        Assert.Equal(-1, Agreement.CohensKappa(Two(["a", "b", "a", "b"], ["b", "a", "b", "a"]), "ann", "bob")!.Value, 9);
        // p_o = 4/5; ann: a 3/5, b 2/5; bob: a 2/5, b 3/5 => p_e = 0.24 + 0.24 = 0.48; kappa = (0.8 - 0.48) / 0.52.
        Assert.Equal(0.32 / 0.52, Agreement.CohensKappa(Two(["a", "a", "a", "b", "b"], ["a", "a", "b", "b", "b"]), "ann", "bob")!.Value, 9);
        // Both always say the same single label: p_e = 1, kappa undefined.
        Assert.Null(Agreement.CohensKappa(Two(["a", "a"], ["a", "a"]), "ann", "bob"));
    }

    [Fact]
    public void Fleiss_kappa_and_percent_agreement_of_a_small_table()
    {
        // 4 items x 3 raters: [a,a,a], [a,a,b], [b,b,b], [a,b,tie].
        string[][] votes = [["a", "a", "a"], ["a", "a", "b"], ["b", "b", "b"], ["a", "b", "tie"]];
        var labels = votes.SelectMany((v, i) => v.Select((x, r) => new L(i, $"r{r}", x))).ToList();
        // P_i = (sum n_ij^2 - 3) / 6: 1, 1/3, 1, 0 => P = 7/12. p_a = 6/12, p_b = 5/12, p_tie = 1/12 => P_e = (36 + 25 + 1) / 144.
        double pe = 62.0 / 144, expected = (7.0 / 12 - pe) / (1 - pe);
        Assert.Equal(expected, Agreement.FleissKappa(labels, 3)!.Value, 9);
        // Pairwise agreement per item: 1, 1/3, 1, 0 => mean 7/12.
        Assert.Equal(7.0 / 12, Agreement.PercentAgreement(labels)!.Value, 9);
        Assert.Equal("a", Agreement.Majority(["a", "a", "b"]));
        Assert.Null(Agreement.Majority(["a", "b"]));
    }
}

/// <summary>Campaigns through a real AlignHub process.</summary>
public class AnnotationApiTests
{
    static string Items(int n) => string.Join("\n", Enumerable.Range(0, n).Select(i =>
        JsonSerializer.Serialize(new { prompt = $"Review the item {i}: ", response_a = $"great lovely {i}", response_b = $"awful dull {i}" })));

    /// <summary>POST as <paramref name="annotator"/> (their own annotator key), or as the admin.</summary>
    static async Task<(HttpStatusCode, JsonElement)> Post(AlignHubProcess app, string path, object body, string? annotator)
    {
        var http = annotator is null ? app.Http : await app.ClientAs("annotator", annotator);
        using var req = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        var r = await http.SendAsync(req);
        var text = await r.Content.ReadAsStringAsync();
        return (r.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>POST next: the status, the item (default on 204) and the Retry-After seconds, if any.</summary>
    static async Task<(HttpStatusCode Status, JsonElement Item, int? RetryAfter)> Next(AlignHubProcess app, string campaign, string annotator)
    {
        var http = await app.ClientAs("annotator", annotator);
        using var req = new HttpRequestMessage(HttpMethod.Post, $"/v1/annotation/campaigns/{campaign}/next") { Content = JsonContent.Create(new { }) };
        var r = await http.SendAsync(req);
        var text = await r.Content.ReadAsStringAsync();
        int? retry = r.Headers.RetryAfter?.Delta is { } d ? (int)d.TotalSeconds : null;
        return (r.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone(), retry);
    }

    static async Task<string> Campaign(AlignHubProcess app, int items, int k, bool ties = true)
    {
        var (_, file) = await app.Upload(Items(items), "items.jsonl");
        var (s, c) = await app.PostJson("/v1/annotation/campaigns", new
        {
            name = "test", file = file.GetProperty("id").GetString(), annotators_per_item = k, allow_ties = ties, guidelines = "# Prefer kind words",
        });
        Assert.True(s == HttpStatusCode.OK, c.ToString());
        return c.GetProperty("id").GetString()!;
    }

    [Fact]
    public async Task Labels_skips_ties_and_undo_map_back_to_the_items_sides_and_export_trains_DPO()
    {
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-ann-").FullName);
        var id = await Campaign(app, 4, k: 1);
        var shown = new Dictionary<long, (string Left, string Right)>();
        async Task<JsonElement> Next()
        {
            var (s, item) = await Post(app, $"/v1/annotation/campaigns/{id}/next", new { }, "ann");
            Assert.Equal(HttpStatusCode.OK, s);
            shown[item.GetProperty("item_id").GetInt64()] = (item.GetProperty("left").GetString()!, item.GetProperty("right").GetString()!);
            return item;
        }
        async Task<HttpStatusCode> Label(JsonElement item, string choice) =>
            (await Post(app, $"/v1/annotation/campaigns/{id}/labels", new { assignment_id = item.GetProperty("assignment_id").GetInt64(), choice }, "ann")).Item1;

        // Item 1: pick the side showing "great": the label must be a (response_a) whatever the side.
        var i1 = await Next();
        Assert.Equal(HttpStatusCode.OK, await Label(i1, i1.GetProperty("left").GetString()!.StartsWith("great") ? "left" : "right"));
        var i2 = await Next();
        Assert.Equal(HttpStatusCode.OK, await Label(i2, "tie"));
        var i3 = await Next();
        Assert.Equal(HttpStatusCode.OK, await Label(i3, "skip"));
        // Undo the skip: the same item comes back, then label it for "awful" (response_b).
        var (us, undone) = await Post(app, $"/v1/annotation/campaigns/{id}/undo", new { }, "ann");
        Assert.Equal(HttpStatusCode.OK, us);
        Assert.Equal(i3.GetProperty("item_id").GetInt64(), undone.GetProperty("item_id").GetInt64());
        Assert.Equal(HttpStatusCode.OK, await Label(undone, undone.GetProperty("left").GetString()!.StartsWith("awful") ? "left" : "right"));
        // Labelling the same assignment twice is refused.
        Assert.Equal(HttpStatusCode.Conflict, await Label(undone, "left"));
        // A viewer may not label.
        var viewer = await app.ClientAs("viewer", "watcher");
        Assert.Equal(HttpStatusCode.Forbidden, (await viewer.PostAsJsonAsync($"/v1/annotation/campaigns/{id}/next", new { })).StatusCode);

        // A campaign that requires a rationale refuses a label without one and takes one with it; a skip needs none.
        var (_, itemsFile) = await app.Upload(Items(2), "why.jsonl");
        var (_, why) = await app.PostJson("/v1/annotation/campaigns", new { name = "why", file = itemsFile.GetProperty("id").GetString(), rationale = "required" });
        var whyId = why.GetProperty("id").GetString()!;
        var (_, w1) = await Post(app, $"/v1/annotation/campaigns/{whyId}/next", new { }, "ann");
        var (noWhy, problem) = await Post(app, $"/v1/annotation/campaigns/{whyId}/labels", new { assignment_id = w1.GetProperty("assignment_id").GetInt64(), choice = "left" }, "ann");
        Assert.Equal(HttpStatusCode.BadRequest, noWhy);
        Assert.Equal("rationale", problem.GetProperty("error").GetProperty("param").GetString());
        var (withWhy, _) = await Post(app, $"/v1/annotation/campaigns/{whyId}/labels", new { assignment_id = w1.GetProperty("assignment_id").GetInt64(), choice = "left", rationale = "kinder words" }, "ann");
        Assert.Equal(HttpStatusCode.OK, withWhy);
        var (_, w2) = await Post(app, $"/v1/annotation/campaigns/{whyId}/next", new { }, "ann");
        Assert.Equal(HttpStatusCode.OK, (await Post(app, $"/v1/annotation/campaigns/{whyId}/labels", new { assignment_id = w2.GetProperty("assignment_id").GetInt64(), choice = "skip" }, "ann")).Item1);

        var stats = await app.GetJson($"/v1/annotation/campaigns/{id}/stats");
        Assert.Equal(3, stats.GetProperty("labels").GetInt32());
        Assert.Equal(0, stats.GetProperty("skips").GetInt32());

        // Export: item 1 chosen = response_a, item 3 chosen = response_b; the tie is dropped by default.
        var (es, file) = await app.PostJson($"/v1/annotation/campaigns/{id}/export", new { include_ties = false });
        Assert.True(es == HttpStatusCode.OK, file.ToString());
        Assert.Equal("preference", file.GetProperty("format").GetString());
        var rows = (await app.Http.GetStringAsync($"/v1/files/{file.GetProperty("id").GetString()}/content")).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Equal(2, rows.Count);
        Assert.Contains(rows, r => r.GetProperty("chosen").GetString()!.StartsWith("great"));
        Assert.Contains(rows, r => r.GetProperty("chosen").GetString()!.StartsWith("awful"));

        // The exported pairs train a DPO job.
        var (js, job) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = file.GetProperty("id").GetString(), method = new { type = "dpo", dpo = new { hyperparameters = new { max_steps = 2 } } },
        });
        Assert.True(js == HttpStatusCode.OK, job.ToString());
        await app.WaitForStatus(job.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(1));
    }

    [PostgresFact]
    public async Task Twenty_annotators_in_parallel_fill_every_item_exactly_k_times()
    {
        var db = await Postgres.CreateDatabaseAsync();
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-ann-pg-").FullName, postgres: db);
        var id = await Campaign(app, 50, k: 3, ties: false);
        var accepted = new ConcurrentBag<(string Annotator, long Item)>();
        // Task.Run: real parallel clients, not continuations queued on the test framework's synchronization context.
        await Task.WhenAll(Enumerable.Range(0, 20).Select(a => Task.Run(async () =>
        {
            var who = $"annotator-{a:D2}";
            var rng = new Random(a);
            while (true)
            {
                var (s, item, retry) = await Next(app, id, who);
                // 204 with Retry-After: others hold the last slots this annotator could take, and a skip may return one.
                if (s == HttpStatusCode.NoContent && retry is int seconds) { await Task.Delay(TimeSpan.FromSeconds(seconds) / 4); continue; }
                if (s == HttpStatusCode.NoContent) break;
                Assert.True(s == HttpStatusCode.OK, $"{s} {item}");
                // One in ten is skipped: the slot goes back to the pool for someone else.
                var choice = rng.Next(10) == 0 ? "skip" : rng.Next(2) == 0 ? "left" : "right";
                var (ls, body) = await Post(app, $"/v1/annotation/campaigns/{id}/labels",
                    new { assignment_id = item.GetProperty("assignment_id").GetInt64(), choice }, who);
                Assert.True(ls == HttpStatusCode.OK, $"{ls} {body}");
                if (choice != "skip") accepted.Add((who, item.GetProperty("item_id").GetInt64()));
            }
        })));
        Assert.Equal(150, accepted.Count);
        Assert.Equal(accepted.Count, accepted.Distinct().Count()); // nobody labelled an item twice
        Assert.All(accepted.GroupBy(x => x.Item), g => Assert.Equal(3, g.Count()));
        Assert.Equal(50, accepted.Select(x => x.Item).Distinct().Count());
        var rows = await Postgres.QueryAsync(db, "SELECT \"ItemId\", COUNT(*) FROM annotation_assignments WHERE \"Label\" IS NOT NULL AND \"Label\" <> 'skip' GROUP BY \"ItemId\"");
        Assert.Equal(50, rows.Count);
        Assert.All(rows, r => Assert.Equal(3L, Convert.ToInt64(r[1])));
        var stats = await app.GetJson($"/v1/annotation/campaigns/{id}/stats");
        Assert.Equal(50, stats.GetProperty("complete_items").GetInt32());
        // The denormalised open-slot counts agree with the rows: all full.
        var open = await Postgres.QueryAsync(db, "SELECT i.\"OpenSlots\", (SELECT COUNT(*) FROM annotation_assignments a WHERE a.\"ItemId\" = i.\"Id\" AND a.\"Slot\" IS NOT NULL) FROM annotation_items i");
        Assert.All(open, r => Assert.Equal((0, 3L), (Convert.ToInt32(r[0]), Convert.ToInt64(r[1]))));
    }

    /// <summary>
    /// PostgreSQL's text cannot hold U+0000, which a byte-level model samples like any byte (found by the fault drill, in
    /// a GRPO job's samples): an item holding one is stored with U+FFFD in its place, not refused with a 500.
    /// </summary>
    [PostgresFact]
    public async Task Text_with_a_NUL_character_is_stored_on_PostgreSQL_with_a_replacement_character()
    {
        var db = await Postgres.CreateDatabaseAsync();
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-ann-nul-").FullName, roles: "api,web", postgres: db);
        var id = await Campaign(app, 1, k: 1, ties: false);
        var (s, body) = await app.PostJson($"/v1/annotation/campaigns/{id}/items", new { prompt = "p\0q", response_a = "a\0", response_b = "b" });
        Assert.True(s == HttpStatusCode.OK, body.ToString());
        var rows = await Postgres.QueryAsync(db, "SELECT \"Prompt\", \"ResponseA\" FROM annotation_items ORDER BY \"Index\" DESC LIMIT 1");
        Assert.Equal(("p\uFFFDq", "a\uFFFD"), ((string)rows[0][0]!, (string)rows[0][1]!));
    }

    [PostgresFact]
    public async Task Next_says_wait_while_others_hold_a_slot_that_may_come_back_and_done_when_none_can()
    {
        var db = await Postgres.CreateDatabaseAsync();
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-ann-wait-").FullName, postgres: db);
        var id = await Campaign(app, 1, k: 1, ties: false);
        var (s1, first, r1) = await Next(app, id, "a");
        Assert.Equal((HttpStatusCode.OK, (int?)null), (s1, r1));
        // b has nothing now, but a may skip: not finished.
        var (s2, _, r2) = await Next(app, id, "b");
        Assert.Equal(HttpStatusCode.NoContent, s2);
        Assert.NotNull(r2);
        Assert.InRange(r2!.Value, 1, 5);
        var (ls, body) = await Post(app, $"/v1/annotation/campaigns/{id}/labels", new { assignment_id = first.GetProperty("assignment_id").GetInt64(), choice = "skip" }, "a");
        Assert.True(ls == HttpStatusCode.OK, body.ToString());
        // The skipped slot is b's now; a has seen the item, and nothing can come back to a: done, no Retry-After.
        var (s3, second, _) = await Next(app, id, "b");
        Assert.Equal(HttpStatusCode.OK, s3);
        Assert.Equal(first.GetProperty("item_id").GetInt64(), second.GetProperty("item_id").GetInt64());
        var (s4, _, r4) = await Next(app, id, "a");
        Assert.Equal((HttpStatusCode.NoContent, (int?)null), (s4, r4));
        var (ls2, _) = await Post(app, $"/v1/annotation/campaigns/{id}/labels", new { assignment_id = second.GetProperty("assignment_id").GetInt64(), choice = "left" }, "b");
        Assert.Equal(HttpStatusCode.OK, ls2);
        var (s5, _, r5) = await Next(app, id, "c");
        Assert.Equal((HttpStatusCode.NoContent, (int?)null), (s5, r5));
    }

    [PostgresFact]
    public async Task An_expired_lease_returns_its_slot_and_the_late_label_is_refused()
    {
        var db = await Postgres.CreateDatabaseAsync();
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-ann-lease-").FullName, postgres: db);
        var id = await Campaign(app, 1, k: 1, ties: false);
        var (s1, first) = await Post(app, $"/v1/annotation/campaigns/{id}/next", new { }, "slow");
        Assert.Equal(HttpStatusCode.OK, s1);
        var (s2, _) = await Post(app, $"/v1/annotation/campaigns/{id}/next", new { }, "fast");
        Assert.Equal(HttpStatusCode.NoContent, s2); // the only slot is leased
        // Time passes: the lease runs out.
        await Postgres.QueryAsync(db, "UPDATE annotation_assignments SET \"LeaseUntilMs\" = 0");
        await Task.Delay(1100); // expired leases are swept at most once a second per campaign
        var (s3, second) = await Post(app, $"/v1/annotation/campaigns/{id}/next", new { }, "fast");
        Assert.True(s3 == HttpStatusCode.OK, $"{s3} {second}");
        Assert.Equal(first.GetProperty("item_id").GetInt64(), second.GetProperty("item_id").GetInt64());
        var (late, problem) = await Post(app, $"/v1/annotation/campaigns/{id}/labels", new { assignment_id = first.GetProperty("assignment_id").GetInt64(), choice = "left" }, "slow");
        Assert.Equal(HttpStatusCode.Conflict, late);
        Assert.Contains("expired", problem.GetProperty("detail").GetString());
        var (ok, _) = await Post(app, $"/v1/annotation/campaigns/{id}/labels", new { assignment_id = second.GetProperty("assignment_id").GetInt64(), choice = "left" }, "fast");
        Assert.Equal(HttpStatusCode.OK, ok);
        var rows = await Postgres.QueryAsync(db, "SELECT \"Annotator\", \"Label\" FROM annotation_assignments");
        Assert.Equal("fast", rows.Single()[0]);
        Assert.Contains(rows.Single()[1], new object[] { "a", "b" });
        var items = await Postgres.QueryAsync(db, "SELECT \"OpenSlots\" FROM annotation_items");
        Assert.Equal(0, Convert.ToInt32(items.Single()[0]));
    }
}
