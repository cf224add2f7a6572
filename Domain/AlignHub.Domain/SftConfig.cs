using System.Text.Json;
using System.Text.Json.Serialization;

namespace AlignHub.Domain;

/// <summary>
/// Supervised fine-tuning config: the resolved hyperparameters of a job (every default filled in).
/// Stored with the job and copied into every checkpoint, so a run can be reproduced and resumed.
/// </summary>
public sealed record SftConfig
{
    /// <summary>Passes over the training file (OpenAI <c>n_epochs</c>; "auto" = 3).</summary>
    public int NEpochs { get; init; } = 3;
    /// <summary>Examples per optimizer step (OpenAI <c>batch_size</c>; "auto" = 8).</summary>
    public int BatchSize { get; init; } = 8;
    /// <summary>Base peak learning rate before the multiplier. 1e-3 suits the tiny presets.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>OpenAI <c>learning_rate_multiplier</c>; the peak rate is LearningRate * multiplier ("auto" = 1).</summary>
    public double LearningRateMultiplier { get; init; } = 1.0;
    /// <summary>Stop after this many optimizer steps even if epochs remain (null: run all epochs).</summary>
    public int? MaxSteps { get; init; }
    /// <summary>Fraction of total steps spent in linear warmup before cosine decay to 10% of the peak.</summary>
    public double WarmupRatio { get; init; } = 0.05;
    /// <summary>AdamW decoupled weight decay.</summary>
    public double WeightDecay { get; init; } = 0.0;
    /// <summary>Gradient clipping by global L2 norm (the pre-clip norm is reported as <c>grad_norm</c>).</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Write metrics every N steps (1: every step, each step's own values).</summary>
    public int LoggingSteps { get; init; } = 1;
    /// <summary>Write a checkpoint every N steps (and always at the end).</summary>
    public int SaveSteps { get; init; } = 50;
    /// <summary>Truncate each example to this many tokens (null: the model's context length).</summary>
    public int? MaxSeqLength { get; init; }
    /// <summary>Seeds the initialisation of preset models and the data order.</summary>
    public int Seed { get; init; }

    [JsonIgnore] public double PeakLearningRate => LearningRate * LearningRateMultiplier;

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        WriteIndented = false,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);
    public static SftConfig FromJson(string json) => JsonSerializer.Deserialize<SftConfig>(json, Json)
        ?? throw new InvalidDataException("empty config");
}
