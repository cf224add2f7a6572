using System.Text.Json;
using System.Text.Json.Serialization;

namespace AlignHub.Domain;

/// <summary>
/// Offline preference training config (<c>method.type</c> <c>dpo</c> or <c>reward_model</c>): the resolved
/// hyperparameters of a job, every default filled in. Stored with the job and copied into every checkpoint.
/// Names follow TRL's DPOConfig / RewardConfig; OpenAI's <c>beta</c>, <c>n_epochs</c>, <c>batch_size</c> and
/// <c>learning_rate_multiplier</c> are honoured.
/// </summary>
public sealed record PreferenceConfig
{
    /// <summary>KL strength: how far the policy may move from the reference (DPO family).</summary>
    public double Beta { get; init; } = 0.1;
    /// <summary><c>sigmoid</c> (DPO), <c>robust</c>, <c>hinge</c>, <c>ipo</c>, <c>simpo</c>, <c>orpo</c>, <c>kto</c> (unpaired rows, or pairs split into them).</summary>
    public string LossType { get; init; } = "sigmoid";
    /// <summary>Label smoothing e: cDPO with <c>sigmoid</c>, the flip rate with <c>robust</c>.</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>SimPO's target reward margin gamma.</summary>
    public double SimpoGamma { get; init; } = 0.5;
    /// <summary>ORPO's weight lambda on the odds-ratio term.</summary>
    public double OrpoLambda { get; init; } = 0.1;
    /// <summary>KTO's weight on desirable rows (w_d).</summary>
    public double DesirableWeight { get; init; } = 1.0;
    /// <summary>KTO's weight on undesirable rows (w_u).</summary>
    public double UndesirableWeight { get; init; } = 1.0;
    /// <summary>Reward model: coefficient of the centering term (r_c + r_r)^2 (0: off).</summary>
    public double CenterRewardsCoefficient { get; init; }
    /// <summary>
    /// Reward model: members of an ensemble, trained one after another with seeds seed, seed+1, ...; their mean and
    /// standard deviation give an uncertainty-penalised reward (mean - k * std) where a judge is used.
    /// </summary>
    public int EnsembleSize { get; init; } = 1;
    public int NEpochs { get; init; } = 3;
    /// <summary>Pairs per optimizer step.</summary>
    public int BatchSize { get; init; } = 8;
    /// <summary>Micro-batches per optimizer step (the batch is split; gradients add up).</summary>
    public int GradientAccumulationSteps { get; init; } = 1;
    public double LearningRate { get; init; } = 5e-4;
    public double LearningRateMultiplier { get; init; } = 1.0;
    /// <summary><c>cosine</c> (to 10% of the peak) or <c>linear</c> (to 0), after linear warmup.</summary>
    public string LrSchedulerType { get; init; } = "cosine";
    public double WarmupRatio { get; init; } = 0.1;
    public double WeightDecay { get; init; }
    public double MaxGradNorm { get; init; } = 1.0;
    public int? MaxSteps { get; init; }
    /// <summary>Write metrics every N steps (1: each step's own values, never averaged across steps).</summary>
    public int LoggingSteps { get; init; } = 1;
    /// <summary>Evaluate on the validation file every N steps (and at the end).</summary>
    public int EvalSteps { get; init; } = 50;
    public int SaveSteps { get; init; } = 50;
    /// <summary>Prompt + completion tokens kept (null: the model's context).</summary>
    public int? MaxLength { get; init; }
    /// <summary>Prompt tokens kept, from the end (null: half of max_length).</summary>
    public int? MaxPromptLength { get; init; }
    public int Seed { get; init; }

    [JsonIgnore] public double PeakLearningRate => LearningRate * LearningRateMultiplier;

    public string ToJson() => JsonSerializer.Serialize(this, SftConfig.Json);
    public static PreferenceConfig FromJson(string json) => JsonSerializer.Deserialize<PreferenceConfig>(json, SftConfig.Json)
        ?? throw new InvalidDataException("empty config");
}
