using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// The KL-reward frontier (<c>method.type = "frontier"</c>): every checkpoint of an RL run (and any other models named)
/// evaluated on held-out prompts, each one point (KL to the reference, mean reward). The job's <c>model</c> is the
/// reference, the policy the run started from, and also the point at KL 0. Per point: <c>num_samples</c> completions of
/// each prompt sampled from the policy, scored by the reward source, and the KL estimated from those samples as
/// E_y~pi[sum_t log pi(y_t) - log ref(y_t)] (k1 per completion, unbiased; Schulman, 2020), the quantity reward-model
/// overoptimisation is measured against (Gao et al., 2023, "Scaling Laws for Reward Model Overoptimization").
/// </summary>
public sealed record FrontierConfig : MethodConfig
{
    [Hyperparameter("A job whose checkpoints are the frontier's points (ftjob-...); the job's model should be the one it started from.")]
    public string? Run { get; init; }

    [Hyperparameter("Models or checkpoint names (ft:...:ckpt-step-N) evaluated besides the run's checkpoints.")]
    public IReadOnlyList<string> Models { get; init; } = [];

    [Hyperparameter("A grader in OpenAI's shape scoring each completion against its row (as for the online RL methods).")]
    public JsonElement? Grader { get; init; }

    [Hyperparameter("A reward model (or ensemble) scoring prompt + completion (used when no grader is given).")]
    public string? RewardModel { get; init; }

    [Hyperparameter("A gold reward source, a grader in OpenAI's shape, scored on the same samples (gold_reward per point): proxy and gold reward against KL show overoptimisation (Gao et al., 2023).")]
    public JsonElement? GoldGrader { get; init; }

    [Hyperparameter("A reward model as the gold source (used when no gold_grader is given).")]
    public string? GoldRewardModel { get; init; }

    [Hyperparameter("Completions sampled per prompt and point.", Min = 1, Max = 256)]
    public int NumSamples { get; init; } = 4;

    [Hyperparameter("New tokens per completion at most.", Min = 1, Max = 8192)]
    public int MaxNewTokens { get; init; } = 32;

    [Hyperparameter("Sampling temperature; KL is that between the policy's and the reference's distributions at it (1: the models' own).", Min = 0.01, Max = 10)]
    public double Temperature { get; init; } = 1.0;

    [Hyperparameter("Sequences sampled or scored together.", Min = 1, Max = 4096)]
    public int BatchSize { get; init; } = 64;

    [Hyperparameter("Bootstrap resamples of the prompts for each point's 95% intervals.", Min = 100, Max = 100_000)]
    public int BootstrapSamples { get; init; } = 1000;

    public override void Validate(string prefix, Action<string, string> err)
    {
        if (Run is null && Models.Count == 0) err(prefix + "run", "name a run (a job id) or models: the frontier needs points");
        if (Models.Count > 100) err(prefix + "models", "at most 100 models");
        if (Grader is { } g) Domain.Grader.Parse(g, prefix + "grader", err);
        else if (RewardModel is null) err(prefix + "grader", "a reward source is required: a grader or a reward_model");
        if (GoldGrader is { } gold) Domain.Grader.Parse(gold, prefix + "gold_grader", err);
    }

    /// <summary>The parsed grader (the config was validated at creation).</summary>
    public Grader? ParsedGrader() => Grader is { } g ? Domain.Grader.Parse(g, "grader", (_, m) => throw new InvalidDataException(m)) : null;

    /// <summary>The parsed gold grader.</summary>
    public Grader? ParsedGoldGrader() => GoldGrader is { } g ? Domain.Grader.Parse(g, "gold_grader", (_, m) => throw new InvalidDataException(m)) : null;
}

public sealed class FrontierMethod : JobMethod
{
    public override int Order => 70;
    public override string Name => "frontier";
    public override string Title => "KL-reward frontier";
    public override string Summary =>
        "For the reference (the job's model, KL 0) and each checkpoint of a run: num_samples completions per held-out prompt, their mean reward, " +
        "and KL(pi || ref) = E_y~pi[sum_t log pi(y_t) - log ref(y_t)] per completion (k1; Schulman, 2020), with bootstrap 95% intervals. " +
        "Reward against KL is the frontier on which runs and reward-model overoptimisation are compared (Gao et al., 2023).";
    public override Type ConfigType => typeof(FrontierConfig);
    public override bool ProducesModel => false;
    public override bool TakesValidationFile => false;
    public override IReadOnlyList<string> FileFormats(MethodConfig config) => [JsonlRows.Prompts, JsonlRows.Supervised];
    public override string FileHint => "held-out prompt or messages rows (their other fields are the graders' {{item.*}})";
    public override IReadOnlyList<MetricChart> Charts =>
    [
        new("Reward by checkpoint step", "frontier-reward-chart", ["reward"]),
        new("KL to the reference by checkpoint step", "frontier-kl-chart", ["kl", "kl_per_token"]),
        new("Proxy and gold reward by checkpoint step", "frontier-gold-chart", ["reward", "gold_reward"]),
    ];
    public override object Example => new
    {
        model = "ft:alignhub/tiny:sft:ftjob-abc123", training_file = "file-heldout-problems",
        method = new { type = Name, frontier = new { hyperparameters = new { run = "ftjob-def456", num_samples = 4, max_new_tokens = 8, grader = ArithmeticTask.ExactMatchGrader } } },
    };
    public override string CreatedMessage(string jobId) => $"Created frontier evaluation job {jobId}";

    public override async Task ValidateAsync(JobCheck check, CancellationToken ct)
    {
        var c = (FrontierConfig)check.Config;
        check.FitsContext(c.MaxNewTokens, "max_new_tokens", below: true);
        if (c.Run is { } run)
        {
            var job = await check.Lookup.FindJobAsync(run, ct);
            if (job is null) check.Error("run", $"job \"{run}\" does not exist");
            else if (!await check.Lookup.HasCheckpointsAsync(run, ct) && JobStatus.IsTerminal(job.Status))
                check.Error("run", $"job \"{run}\" ended without checkpoints");
        }
        foreach (var (id, i) in c.Models.Select((m, i) => (m, i)))
        {
            var m = await check.FindModelAsync(id, ct);
            if (m is null) check.Error($"models[{i}]", $"model \"{id}\" is not registered");
            else if (ModelArchitecture.Parse(m.ConfigJson).IsRewardModel) check.Error($"models[{i}]", $"model \"{id}\" is a reward model, not a policy");
        }
        if (c.Grader is null) await check.RewardModelAsync(c.RewardModel, ct);
        else await check.GraderModelsAsync(c.ParsedGrader(), "grader", ct);
        if (c.GoldGrader is null) await check.RewardModelAsync(c.GoldRewardModel, ct, "gold_reward_model");
        else await check.GraderModelsAsync(c.ParsedGoldGrader(), "gold_grader", ct);
    }
}
