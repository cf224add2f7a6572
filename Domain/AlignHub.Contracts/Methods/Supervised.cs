namespace AlignHub.Domain;

/// <summary>Supervised fine-tuning (<c>method.type = "supervised"</c>, OpenAI's shape): the resolved hyperparameters of a job.</summary>
public sealed record SftConfig : TrainingConfig
{
    [Hyperparameter("Truncate each example to this many tokens (none: the model's context length).", Min = 2, Max = 1_000_000)]
    public int? MaxSeqLength { get; init; }

    [Hyperparameter("Peak learning rate of AdamW before the multiplier; 1e-3 suits the tiny presets.", Min = 1e-8, Max = 1)]
    public override double LearningRate { get; init; } = 1e-3;
}

public sealed class SupervisedMethod : JobMethod
{
    public override int Order => 0;
    public override string Name => "supervised";
    public override string Title => "Supervised fine-tuning";
    public override string Summary =>
        "Minimises the negative log-likelihood of the completion (or assistant) tokens given the rest: " +
        "L = -(1/|M|) sum over t in M of log pi(y_t | y_<t), where M holds the trainable tokens; prompt and padding tokens carry no loss.";
    public override Type ConfigType => typeof(SftConfig);
    public override IReadOnlyList<string> FileFormats(MethodConfig config) => [JsonlRows.Supervised];
    public override string FileHint => "prompt/completion or messages rows with an assistant turn";
    public override IReadOnlyList<MetricChart> Charts =>
    [
        new("Loss", "loss-chart", [MetricNames.Loss, MetricNames.Eval(MetricNames.Loss)]),
        new("Mean token accuracy", "accuracy-chart", [MetricNames.MeanTokenAccuracy, MetricNames.Eval(MetricNames.MeanTokenAccuracy)]),
        .. Methods.OptimizerCharts,
    ];
    public override object Example => new
    {
        model = "alignhub/tiny", training_file = "file-abc123", seed = 1,
        method = new { type = Name, supervised = new { hyperparameters = new { n_epochs = 3, batch_size = 8, learning_rate_multiplier = "auto" } } },
    };

    public override Task ValidateAsync(JobCheck check, CancellationToken ct)
    {
        check.FitsContext(((SftConfig)check.Config).MaxSeqLength, "max_seq_length");
        return Task.CompletedTask;
    }
}
