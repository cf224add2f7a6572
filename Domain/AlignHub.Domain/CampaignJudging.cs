using System.Text.Json;
using AlignHub.Domain.Inference;
using Hangfire;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>Pre-labels a campaign's items with its judge; a Hangfire job carrying the campaign id alone.</summary>
public interface ICampaignJudging
{
    public const string Queue = "default";

    [AutomaticRetry(Attempts = 0, OnAttemptsExceeded = AttemptsExceededAction.Fail)]
    [JobDisplayName("judge campaign {0}")]
    Task Run(string campaignId, CancellationToken cancellationToken);
}

/// <summary>
/// The work of <see cref="ICampaignJudging"/>: every item without a verdict, in order, asked of the campaign's pairwise
/// judge in both orders (<see cref="JudgeClient.CompareAsync"/>); each verdict is saved as it comes, so the count of judged
/// items is the progress and a re-run picks up where it stopped. A failure is written to the campaign (never the judge's key).
/// </summary>
public static class CampaignJudgingWork
{
    public static async Task RunAsync(IDbContextFactory<AlignHubDb> dbs, JudgeClient client, string campaignId, CancellationToken ct)
    {
        Judge judge;
        await using (var db = await dbs.CreateDbContextAsync(ct))
        {
            var c = await db.Campaigns.AsNoTracking().FirstOrDefaultAsync(x => x.Id == campaignId, ct);
            if (c?.JudgeId is null) return;
            var j = await db.Judges.AsNoTracking().FirstOrDefaultAsync(x => x.Id == c.JudgeId, ct);
            if (j is null) { await Fail(dbs, campaignId, $"judge \"{c.JudgeId}\" no longer exists", ct); return; }
            judge = j;
            await db.Campaigns.Where(x => x.Id == campaignId).ExecuteUpdateAsync(u => u.SetProperty(x => x.JudgeError, (string?)null), ct);
        }
        while (!ct.IsCancellationRequested)
        {
            List<AnnotationItem> batch;
            await using (var db = await dbs.CreateDbContextAsync(ct))
                batch = await db.AnnotationItems.AsNoTracking().Where(i => i.CampaignId == campaignId && i.JudgeLabel == null)
                    .OrderBy(i => i.Index).Take(16).ToListAsync(ct);
            if (batch.Count == 0) return;
            foreach (var item in batch)
            {
                PairVerdict v;
                try { v = await client.CompareAsync(judge, item.Prompt, item.ResponseA, item.ResponseB, ct); }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    await Fail(dbs, campaignId, e is InvalidDataException or InvalidOperationException or InferenceException or HttpRequestException
                        ? e.Message : $"{e.GetType().Name}: the judge could not be asked", ct);
                    return;
                }
                await using var db = await dbs.CreateDbContextAsync(ct);
                var detail = JsonSerializer.Serialize(new
                {
                    first = new { order = "a,b", pick = v.FirstPick, answer = v.FirstAnswer },
                    second = new { order = "b,a", pick = v.SecondPick, answer = v.SecondAnswer },
                });
                await db.AnnotationItems.Where(i => i.Id == item.Id)
                    .ExecuteUpdateAsync(u => u.SetProperty(i => i.JudgeLabel, v.Verdict).SetProperty(i => i.JudgeDetail, detail), ct);
            }
        }
    }

    static async Task Fail(IDbContextFactory<AlignHubDb> dbs, string campaignId, string message, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        await db.Campaigns.Where(x => x.Id == campaignId).ExecuteUpdateAsync(u => u.SetProperty(x => x.JudgeError, message), ct);
    }
}
