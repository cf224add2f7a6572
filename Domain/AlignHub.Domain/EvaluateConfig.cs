using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// An evaluation job (<c>method.type = "evaluate"</c>) of the job's <c>model</c> on the preference pairs of its
/// <c>training_file</c> (held-out pairs): a reward model's preference accuracy, or a policy's implicit-reward
/// accuracy against <c>reference_model</c>; with a <c>reward_model</c>, also the win rate of the policy's samples
/// against the reference model's samples, judged by it, with a bootstrap confidence interval.
/// </summary>
public sealed record EvaluateConfig
{
    /// <summary>The reference of a policy's implicit reward and of the win rate (null: the base model of the job that trained the policy).</summary>
    public string? ReferenceModel { get; init; }
    /// <summary>A reward model that judges policy samples against reference samples (null: no win rate).</summary>
    public string? RewardModel { get; init; }
    /// <summary>With an ensemble judge: the reward is mean - k * std over its members (0: the mean).</summary>
    public double UncertaintyPenalty { get; init; }
    public int MaxNewTokens { get; init; } = 64;
    /// <summary>0: greedy samples.</summary>
    public double Temperature { get; init; } = 0;
    /// <summary>Bootstrap resamples of the prompts for the 95% interval of the win rate.</summary>
    public int BootstrapSamples { get; init; } = 1000;
    public int BatchSize { get; init; } = 16;
    public int Seed { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this, SftConfig.Json);
    public static EvaluateConfig FromJson(string json) => JsonSerializer.Deserialize<EvaluateConfig>(json, SftConfig.Json)
        ?? throw new InvalidDataException("empty config");
}
