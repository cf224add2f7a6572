namespace AlignHub.Domain;

/// <summary>A labeling campaign: items (a prompt and two responses) each labelled by <see cref="AnnotatorsPerItem"/> people.</summary>
public sealed class AnnotationCampaign
{
    public required string Id { get; set; }
    public required string Name { get; set; }
    public required string SourceFile { get; set; }
    /// <summary>k: labels an item needs to be complete.</summary>
    public int AnnotatorsPerItem { get; set; }
    /// <summary>Markdown shown beside every item.</summary>
    public string Guidelines { get; set; } = "";
    public string Question { get; set; } = "Which response is better?";
    public bool AllowTies { get; set; }
    /// <summary><c>off</c>, <c>optional</c> or <c>required</c>.</summary>
    public string Rationale { get; set; } = "optional";
    /// <summary>How long an annotator holds an item before it returns to the pool.</summary>
    public int LeaseSeconds { get; set; } = 600;
    public int ItemCount { get; set; }
    public long CreatedAt { get; set; }
    /// <summary>The pairwise judge whose verdicts pre-label the items (null: none).</summary>
    public string? JudgeId { get; set; }
    /// <summary>What annotators see of the judge's verdict: <c>hidden</c>, <c>after</c> (once they have answered) or <c>shown</c>.</summary>
    public string JudgeVisibility { get; set; } = "hidden";
    /// <summary>Why the last judging run stopped (null: it did not fail).</summary>
    public string? JudgeError { get; set; }
}

public sealed class AnnotationItem
{
    public long Id { get; set; }
    public required string CampaignId { get; set; }
    public int Index { get; set; }
    public required string Prompt { get; set; }
    public required string ResponseA { get; set; }
    public required string ResponseB { get; set; }
    /// <summary>
    /// Slots nobody holds: k minus the item's assignments with a slot (leased or labelled). Kept in step with those
    /// rows inside the same transactions, so claiming reads one indexed row instead of counting; the unique index on
    /// (item, slot) stays the guarantee.
    /// </summary>
    public int OpenSlots { get; set; }
    /// <summary>The campaign judge's verdict in the item's terms (<c>a</c>, <c>b</c>, <c>tie</c>); null until judged.</summary>
    public string? JudgeLabel { get; set; }
    /// <summary>Both orders the judge was asked, as JSON (<see cref="PairVerdict"/>).</summary>
    public string? JudgeDetail { get; set; }
}

/// <summary>
/// An annotator's hold on one slot of an item (a lease until <see cref="LeaseUntilMs"/>), and then their label.
/// The database enforces that a slot is filled once (unique item + slot) and that nobody labels an item twice
/// (unique item + annotator). A skip keeps the annotator's row (so the item never comes back to them) but gives
/// the slot up (slot null).
/// </summary>
public sealed class AnnotationAssignment
{
    public long Id { get; set; }
    public required string CampaignId { get; set; }
    public long ItemId { get; set; }
    public int? Slot { get; set; }
    public required string Annotator { get; set; }
    /// <summary>True when response B is shown on the left for this annotator and item.</summary>
    public bool Swapped { get; set; }
    public long LeasedAtMs { get; set; }
    public long LeaseUntilMs { get; set; }
    /// <summary><c>a</c>, <c>b</c>, <c>tie</c> or <c>skip</c> (in the item's own terms, sides mapped back); null while leased.</summary>
    public string? Label { get; set; }
    public string? RationaleText { get; set; }
    public long? SubmittedAtMs { get; set; }
    public int? DurationMs { get; set; }
}

/// <summary>Agreement statistics, pure functions of (item, annotator, label) triples with labels a, b or tie.</summary>
public static class Agreement
{
    public sealed record Label(long Item, string Annotator, string Value);

    /// <summary>Mean over items with at least two labels of the share of annotator pairs that agree.</summary>
    public static double? PercentAgreement(IReadOnlyList<Label> labels)
    {
        var per = labels.GroupBy(l => l.Item).Where(g => g.Count() >= 2).Select(g =>
        {
            var v = g.Select(l => l.Value).ToList();
            int pairs = 0, agree = 0;
            for (int i = 0; i < v.Count; i++) for (int j = i + 1; j < v.Count; j++) { pairs++; if (v[i] == v[j]) agree++; }
            return (double)agree / pairs;
        }).ToList();
        return per.Count == 0 ? null : per.Average();
    }

    /// <summary>
    /// Cohen's kappa (Cohen, 1960) of two annotators over the items both labelled: (p_o - p_e) / (1 - p_e), with p_e
    /// from each annotator's own label frequencies. Null with no shared items or when p_e = 1.
    /// </summary>
    public static double? CohensKappa(IReadOnlyList<Label> labels, string a, string b)
    {
        var la = labels.Where(l => l.Annotator == a).ToDictionary(l => l.Item, l => l.Value);
        var shared = labels.Where(l => l.Annotator == b && la.ContainsKey(l.Item)).Select(l => (A: la[l.Item], B: l.Value)).ToList();
        if (shared.Count == 0) return null;
        double n = shared.Count;
        double po = shared.Count(s => s.A == s.B) / n;
        var cats = shared.Select(s => s.A).Concat(shared.Select(s => s.B)).Distinct();
        double pe = cats.Sum(c => shared.Count(s => s.A == c) / n * (shared.Count(s => s.B == c) / n));
        return pe >= 1 ? null : (po - pe) / (1 - pe);
    }

    /// <summary>
    /// Fleiss' kappa (Fleiss, 1971) over items with exactly <paramref name="raters"/> labels: P_i = (sum_j n_ij^2 - n) /
    /// (n (n - 1)), P = mean P_i, p_j = share of all labels in category j, P_e = sum p_j^2, kappa = (P - P_e) / (1 - P_e).
    /// </summary>
    public static double? FleissKappa(IReadOnlyList<Label> labels, int raters)
    {
        if (raters < 2) return null;
        var items = labels.GroupBy(l => l.Item).Where(g => g.Count() == raters).ToList();
        if (items.Count == 0) return null;
        var cats = labels.Select(l => l.Value).Distinct().ToList();
        double n = raters, N = items.Count;
        double pBar = items.Average(g => (cats.Sum(c => Math.Pow(g.Count(l => l.Value == c), 2)) - n) / (n * (n - 1)));
        double pe = cats.Sum(c => Math.Pow(items.Sum(g => g.Count(l => l.Value == c)) / (N * n), 2));
        return pe >= 1 ? null : (pBar - pe) / (1 - pe);
    }

    /// <summary>The item's majority label, or null when the top count is shared.</summary>
    public static string? Majority(IEnumerable<string> values)
    {
        var counts = values.GroupBy(v => v).Select(g => (g.Key, Count: g.Count())).OrderByDescending(x => x.Count).ToList();
        if (counts.Count == 0 || (counts.Count > 1 && counts[0].Count == counts[1].Count)) return null;
        return counts[0].Key;
    }
}
