using System.Text.Json;
using System.Text.Json.Serialization;

namespace AlignHub.Domain;

/// <summary>Body of <c>POST /v1/fine_tuning/jobs</c>, as OpenAI's fine-tuning API defines it plus AlignHub's fields.</summary>
public sealed record CreateJobRequest
{
    /// <summary>A registered model, e.g. <c>alignhub/tiny</c>.</summary>
    public string? Model { get; init; }
    /// <summary>Id of an uploaded file (<c>file-...</c>).</summary>
    public string? TrainingFile { get; init; }
    public string? ValidationFile { get; init; }
    public int? Seed { get; init; }
    /// <summary>Up to 64 characters added to the fine-tuned model name.</summary>
    public string? Suffix { get; init; }
    public Dictionary<string, string>? Metadata { get; init; }
    public MethodRequest? Method { get; init; }
    /// <summary>OpenAI's older top-level form; used when <c>method</c> is absent.</summary>
    public HyperparametersRequest? Hyperparameters { get; init; }
}

public sealed record MethodRequest
{
    /// <summary><c>supervised</c> or <c>generate</c> (more method types arrive with their trainers).</summary>
    public string? Type { get; init; }
    public SupervisedMethodRequest? Supervised { get; init; }
    public GenerateMethodRequest? Generate { get; init; }
    public PreferenceMethodRequest? Dpo { get; init; }
    public PreferenceMethodRequest? RewardModel { get; init; }
    public EvaluateMethodRequest? Evaluate { get; init; }
}

public sealed record EvaluateMethodRequest
{
    public EvaluateHyperparametersRequest? Hyperparameters { get; init; }
}

/// <summary>Evaluation settings; null fields take the defaults of <see cref="EvaluateConfig"/>.</summary>
public sealed record EvaluateHyperparametersRequest
{
    public string? ReferenceModel { get; init; }
    public string? RewardModel { get; init; }
    public double? UncertaintyPenalty { get; init; }
    public int? MaxNewTokens { get; init; }
    public double? Temperature { get; init; }
    public int? BootstrapSamples { get; init; }
    public int? BatchSize { get; init; }
}

public sealed record PreferenceMethodRequest
{
    public PreferenceHyperparametersRequest? Hyperparameters { get; init; }
}

/// <summary>
/// DPO and reward-model settings: OpenAI's <c>beta</c>, <c>n_epochs</c>, <c>batch_size</c> and
/// <c>learning_rate_multiplier</c> (numbers or "auto"), then TRL's names; null fields take the defaults of
/// <see cref="PreferenceConfig"/>.
/// </summary>
public sealed record PreferenceHyperparametersRequest
{
    public JsonElement? Beta { get; init; }
    public JsonElement? NEpochs { get; init; }
    public JsonElement? BatchSize { get; init; }
    public JsonElement? LearningRateMultiplier { get; init; }
    public string? LossType { get; init; }
    public double? LabelSmoothing { get; init; }
    public double? SimpoGamma { get; init; }
    public double? OrpoLambda { get; init; }
    public int? EnsembleSize { get; init; }
    public double? DesirableWeight { get; init; }
    public double? UndesirableWeight { get; init; }
    public double? CenterRewardsCoefficient { get; init; }
    public int? GradientAccumulationSteps { get; init; }
    public double? LearningRate { get; init; }
    public string? LrSchedulerType { get; init; }
    public double? WarmupRatio { get; init; }
    public double? WeightDecay { get; init; }
    public double? MaxGradNorm { get; init; }
    public int? MaxSteps { get; init; }
    public int? LoggingSteps { get; init; }
    public int? EvalSteps { get; init; }
    public int? SaveSteps { get; init; }
    public int? MaxLength { get; init; }
    public int? MaxPromptLength { get; init; }
}

public sealed record GenerateMethodRequest
{
    public GenerateHyperparametersRequest? Hyperparameters { get; init; }
}

/// <summary>Settings of a generation job; null fields take the documented defaults of <see cref="GenerateConfig"/>.</summary>
public sealed record GenerateHyperparametersRequest
{
    public int? N { get; init; }
    public int? MaxNewTokens { get; init; }
    public double? Temperature { get; init; }
    public int? TopK { get; init; }
    public double? TopP { get; init; }
    public List<string>? Stop { get; init; }
    public int? BatchSize { get; init; }
    public int? MaxPromptLength { get; init; }
}

public sealed record SupervisedMethodRequest
{
    public HyperparametersRequest? Hyperparameters { get; init; }
}

/// <summary>
/// OpenAI's fields accept a number or <c>"auto"</c>; the rest are AlignHub's (null: the documented default of <see cref="SftConfig"/>).
/// </summary>
public sealed record HyperparametersRequest
{
    public JsonElement? NEpochs { get; init; }
    public JsonElement? BatchSize { get; init; }
    public JsonElement? LearningRateMultiplier { get; init; }
    public double? LearningRate { get; init; }
    public int? MaxSteps { get; init; }
    public double? WarmupRatio { get; init; }
    public double? WeightDecay { get; init; }
    public double? MaxGradNorm { get; init; }
    public int? LoggingSteps { get; init; }
    public int? SaveSteps { get; init; }
    public int? MaxSeqLength { get; init; }
}

public static class ApiJson
{
    /// <summary>snake_case everywhere, as OpenAI's API.</summary>
    public static readonly JsonSerializerOptions Options = Configure(new JsonSerializerOptions(JsonSerializerDefaults.Web));

    public static JsonSerializerOptions Configure(JsonSerializerOptions o)
    {
        o.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
        o.DictionaryKeyPolicy = null;
        o.DefaultIgnoreCondition = JsonIgnoreCondition.Never;
        o.MaxDepth = 32;
        o.UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip;
        return o;
    }
}
