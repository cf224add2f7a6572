using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// A generation job's resolved settings (<c>method.type = "generate"</c>): N completions per prompt of the training
/// file, sampled from the job's model into a new file. Stored with the job, so a run can be repeated exactly.
/// </summary>
public sealed record GenerateConfig
{
    /// <summary>Completions per prompt (2 for A/B labeling campaigns; more for best-of-N).</summary>
    public int N { get; init; } = 2;
    /// <summary>Upper bound on new tokens per completion (also bounded by the model's context).</summary>
    public int MaxNewTokens { get; init; } = 128;
    /// <summary>0: greedy; otherwise softmax(logits / temperature).</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep the k most likely tokens (null: all).</summary>
    public int? TopK { get; init; }
    /// <summary>Nucleus sampling threshold (1: off).</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Up to 4 strings that end a completion (chat prompts also stop at the end-of-turn marker).</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Sequences generated together.</summary>
    public int BatchSize { get; init; } = 16;
    /// <summary>Prompt tokens kept (from the end) when a prompt is longer.</summary>
    public int? MaxPromptLength { get; init; }
    public int Seed { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this, SftConfig.Json);
    public static GenerateConfig FromJson(string json) => JsonSerializer.Deserialize<GenerateConfig>(json, SftConfig.Json)
        ?? throw new InvalidDataException("empty config");
}

/// <summary>A prompt to generate from: the text fed to the model and the row's prompt as the file gave it.</summary>
public sealed record GenerationPrompt(string Text, JsonElement Prompt, bool Chat);
