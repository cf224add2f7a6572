namespace AlignHub.Domain;

/// <summary>
/// An evaluation job (<c>method.type = "evaluate"</c>) of the job's <c>model</c> on the preference pairs of its
/// <c>training_file</c> (held-out pairs): a reward model's preference accuracy, or a policy's implicit-reward
/// accuracy against <c>reference_model</c>; with a <c>reward_model</c>, also the win rate of the policy's samples
/// against the reference model's samples, judged by it, with a bootstrap confidence interval.
/// </summary>
public sealed record EvaluateConfig : MethodConfig
{
    [Hyperparameter("The reference of a policy's implicit reward and of the win rate (none: the base model of the job that trained the policy).")]
    public string? ReferenceModel { get; init; }

    [Hyperparameter("A reward model (or ensemble) that judges policy samples against reference samples (none: no win rate).")]
    public string? RewardModel { get; init; }

    [Hyperparameter("An AI judge (a pairwise judge's id, /v1/judges) that compares the policy's sample with the reference's for each prompt, asked in both orders (a disagreement is a tie); instead of reward_model.")]
    public string? Judge { get; init; }

    [Hyperparameter("With an ensemble judge: the reward is mean - k * std over its members (0: the mean).", Min = 0, Max = 100)]
    public double UncertaintyPenalty { get; init; }

    [Hyperparameter("New tokens per sample for the win rate.", Min = 1, Max = 8192)]
    public int MaxNewTokens { get; init; } = 64;

    [Hyperparameter("0: greedy samples.", Min = 0, Max = 10)]
    public double Temperature { get; init; }

    [Hyperparameter("Bootstrap resamples of the prompts for the 95% interval of the win rate.", Min = 100, Max = 100_000)]
    public int BootstrapSamples { get; init; } = 1000;

    [Hyperparameter("Sequences scored or generated together.", Min = 1, Max = 512)]
    public int BatchSize { get; init; } = 16;
}

public sealed class EvaluateMethod : JobMethod
{
    public override int Order => 40;
    public override string Name => "evaluate";
    public override string Title => "Evaluation";
    public override string Summary =>
        "A reward model: accuracy = share of pairs with r(chosen) > r(rejected). A policy: implicit-reward accuracy = share of pairs with " +
        "(log pi(c) - log ref(c)) - (log pi(r) - log ref(r)) > 0. With a judge: the win rate of the policy's samples over the reference's, " +
        "with a percentile-bootstrap 95% interval (Efron, 1979).";
    public override Type ConfigType => typeof(EvaluateConfig);
    public override bool ProducesModel => false;
    public override bool AcceptsRewardModel => true;
    public override IReadOnlyList<string> FileFormats(MethodConfig config) => [JsonlRows.Preference];
    public override string FileHint => JsonlRows.PreferenceHint;
    public override IReadOnlyList<MetricChart> Charts => [];
    public override object Example => new
    {
        model = "ft:alignhub/tiny:dpo:ftjob-abc123", training_file = "file-heldout",
        method = new { type = Name, evaluate = new { hyperparameters = new { reward_model = "ft:alignhub/tiny:rm:ftjob-def456", bootstrap_samples = 1000 } } },
    };
    public override string CreatedMessage(string jobId) => $"Created evaluation job {jobId}";

    public override async Task ValidateAsync(JobCheck check, CancellationToken ct)
    {
        var c = (EvaluateConfig)check.Config;
        bool policy = check.Architecture is { IsRewardModel: false };
        if (c.ReferenceModel is { } refId && await check.FindModelAsync(refId, ct) is null) check.Error("reference_model", $"model \"{refId}\" is not registered");
        if (policy && c.ReferenceModel is null && check.Model!.ParentJobId is null)
            check.Error("reference_model", "a policy's implicit reward needs a reference model: name one (the model was not trained here)");
        if (c.Judge is { } judgeId)
        {
            var j = await check.Lookup.FindJudgeAsync(judgeId, ct);
            if (j is null) check.Error("judge", $"judge \"{judgeId}\" does not exist");
            else if (j.Mode != "pairwise") check.Error("judge", "a win rate needs a pairwise judge");
            if (c.RewardModel is not null) check.Error("judge", "name reward_model or judge, not both");
            if (!policy && check.Model is not null) check.Error("judge", "a win rate compares a policy's samples; the evaluated model is a reward model");
        }
        if (c.RewardModel is { } rmId)
        {
            var judge = await check.FindModelAsync(rmId, ct);
            if (judge is null) check.Error("reward_model", $"model \"{rmId}\" is not registered");
            else if (!ModelArchitecture.Parse(judge.ConfigJson).IsRewardModel) check.Error("reward_model", $"model \"{rmId}\" is not a reward model");
            if (!policy && check.Model is not null) check.Error("reward_model", "a win rate compares a policy's samples; the evaluated model is a reward model");
        }
    }
}
