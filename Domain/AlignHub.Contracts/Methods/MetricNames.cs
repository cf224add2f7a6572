namespace AlignHub.Domain;

/// <summary>
/// One naming scheme for every method's metrics (README, "Metrics"): TRL's names where TRL has them
/// (<c>loss</c>, <c>mean_token_accuracy</c>, <c>rewards/chosen</c>, <c>logps/rejected</c>, <c>grad_norm</c>,
/// <c>learning_rate</c>, <c>epoch</c>), evaluation on the validation file under <c>eval/</c>. OpenAI's names are
/// aliases written only where OpenAI's SDK and dashboard read them: a checkpoint's <c>metrics</c> and a metrics
/// event's <c>data</c>.
/// </summary>
public static class MetricNames
{
    public const string Loss = "loss", EvalPrefix = "eval/", LearningRate = "learning_rate", GradNorm = "grad_norm",
        Epoch = "epoch", TokensPerSecond = "tokens_per_second", MeanTokenAccuracy = "mean_token_accuracy";

    public static string Eval(string name) => EvalPrefix + name;

    /// <summary>OpenAI's name for each metric it knows (its fine-tuning checkpoints' and events' fields).</summary>
    public static readonly IReadOnlyDictionary<string, string> OpenAiAliases = new Dictionary<string, string>
    {
        [Loss] = "train_loss",
        [MeanTokenAccuracy] = "train_mean_token_accuracy",
        [Eval(Loss)] = "valid_loss",
        [Eval(MeanTokenAccuracy)] = "valid_mean_token_accuracy",
    };

    /// <summary>The metrics plus OpenAI's aliases of those it names.</summary>
    public static Dictionary<string, double> WithOpenAiAliases(IReadOnlyDictionary<string, double> metrics)
    {
        var all = new Dictionary<string, double>(metrics);
        foreach (var (name, alias) in OpenAiAliases)
            if (metrics.TryGetValue(name, out var v)) all.TryAdd(alias, v);
        return all;
    }
}
