using AlignHub.Domain;
using AlignHub.Domain.Inference;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace AlignHub.Workers;

/// <summary>The worker's side of <see cref="ICampaignJudging"/>: a local judge is asked through this process's model server.</summary>
public sealed class CampaignJudgingJob(IDbContextFactory<AlignHubDb> dbs, IServiceProvider services) : ICampaignJudging
{
    public Task Run(string campaignId, CancellationToken cancellationToken)
    {
        var client = new JudgeClient(services.GetService<IInferenceService>(), id => { using var db = dbs.CreateDbContext(); return ModelService.Find(db, id); });
        return CampaignJudgingWork.RunAsync(dbs, client, campaignId, cancellationToken);
    }
}
