using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// A generation job (<c>method.type = "generate"</c>): N completions per prompt of the training file, sampled from the
/// job's model into a result file. Each completion's randomness is a function of (seed, prompt, sample), so a re-run
/// writes the same file whatever the batch size.
/// </summary>
public sealed record GenerateConfig : MethodConfig
{
    [Hyperparameter("Completions per prompt (2 for A/B labeling campaigns; more for best-of-N).", Min = 1, Max = 64)]
    public int N { get; init; } = 2;

    [Hyperparameter("Upper bound on new tokens per completion (also bounded by the model's context).", Min = 1, Max = 8192)]
    public int MaxNewTokens { get; init; } = 128;

    [Hyperparameter("0: greedy; otherwise sample from softmax(logits / temperature).", Min = 0, Max = 10)]
    public double Temperature { get; init; } = 1.0;

    [Hyperparameter("Keep the k most likely tokens (none or 0: all).", Min = 0, Max = 1_000_000)]
    public int? TopK { get; init; }

    [Hyperparameter("Nucleus sampling: the smallest set of tokens whose probability reaches p (1: off).", Min = 1e-6, Max = 1)]
    public double TopP { get; init; } = 1.0;

    [Hyperparameter("Up to 4 strings that end a completion (chat prompts also stop at the end-of-turn marker).")]
    public IReadOnlyList<string> Stop { get; init; } = [];

    [Hyperparameter("Sequences generated together.", Min = 1, Max = 512)]
    public int BatchSize { get; init; } = 16;

    [Hyperparameter("The dtype the weights are held and computed in: auto keeps the stored dtype where the device computes in it (bfloat16 or float16 on CUDA), float32 on the CPU.",
        OneOf = ["auto", "float32", "bfloat16", "float16"])]
    public string TorchDtype { get; init; } = "auto";

    [Hyperparameter("Prompt tokens kept (from the end) when a prompt is longer (none: the context less max_new_tokens, at least half of it).", Min = 1, Max = 1_000_000)]
    public int? MaxPromptLength { get; init; }

    public override void Validate(string prefix, Action<string, string> err)
    {
        if (Stop.Count > 4) err(prefix + "stop", "at most 4 stop strings");
        if (Stop.Any(string.IsNullOrEmpty)) err(prefix + "stop", "stop strings must not be empty");
        if (Stop.Any(x => x is { Length: > 256 })) err(prefix + "stop", "stop strings are at most 256 characters");
    }

    public override MethodConfig Normalize() => TopK is 0 ? this with { TopK = null } : this;
}

/// <summary>A prompt to generate from: the text fed to the model, the row's prompt as the file gave it, and the whole row (graders read its other fields).</summary>
public sealed record GenerationPrompt(string Text, JsonElement Prompt, bool Chat, JsonElement? Row = null);

public sealed class GenerateMethod : JobMethod
{
    public override int Order => 30;
    public override string Name => "generate";
    public override string Title => "Generation";
    public override string Summary =>
        "Samples n completions per prompt with the KV cache (temperature, top-k, top-p, stop strings) into a result file of " +
        "{\"prompt\", \"completions\": [{\"text\", \"tokens\", \"logprob\", \"finish_reason\"}], \"model\"} rows: the input of labeling campaigns and best-of-N.";
    public override Type ConfigType => typeof(GenerateConfig);
    public override bool ProducesModel => false;
    public override bool TakesValidationFile => false;
    public override IReadOnlyList<string> FileFormats(MethodConfig config) => [JsonlRows.Prompts, JsonlRows.Supervised];
    public override string FileHint => "prompt or messages rows";
    public override IReadOnlyList<MetricChart> Charts => [new("Tokens per second", "throughput-chart", [MetricNames.TokensPerSecond])];
    public override object Example => new
    {
        model = "alignhub/tiny", training_file = "file-prompts",
        method = new { type = Name, generate = new { hyperparameters = new { n = 2, max_new_tokens = 64, temperature = 0.8, top_p = 0.95 } } },
    };
    public override string CreatedMessage(string jobId) => $"Created generation job {jobId}";

    public override Task ValidateAsync(JobCheck check, CancellationToken ct)
    {
        check.FitsContext(((GenerateConfig)check.Config).MaxPromptLength, "max_prompt_length", below: true);
        return Task.CompletedTask;
    }
}
