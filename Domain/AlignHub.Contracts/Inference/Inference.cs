using AlignHub.Domain.Templates;

namespace AlignHub.Domain.Inference;

/// <summary>
/// One completion request as the serving side needs it (the API has checked every value): the model, the prompt (chat
/// messages, rendered by the model's chat template, or raw text), and the sampling settings of OpenAI's request.
/// </summary>
public sealed record InferenceRequest
{
    public required ModelRecord Model { get; init; }
    /// <summary>Chat messages (<c>/v1/chat/completions</c>); null for a text prompt.</summary>
    public IReadOnlyList<ChatMessage>? Messages { get; init; }
    /// <summary>The prompt text (<c>/v1/completions</c>); null for chat.</summary>
    public string? Prompt { get; init; }
    public int MaxTokens { get; init; } = 16;
    public double Temperature { get; init; } = 1;
    public double TopP { get; init; } = 1;
    public int N { get; init; } = 1;
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Makes sampling repeatable (choice i is seeded by (seed, i)); null: a fresh seed per request.</summary>
    public long? Seed { get; init; }
    public bool Logprobs { get; init; }
    /// <summary>Alternatives listed per token with <see cref="Logprobs"/> (0 to 20).</summary>
    public int TopLogprobs { get; init; }
}

/// <summary>A token's log-probability under the model, with the most likely alternatives when asked for.</summary>
public sealed record TokenLogprob(string Token, double Logprob, IReadOnlyList<byte> Bytes, IReadOnlyList<TokenLogprob>? Top = null);

/// <summary>
/// What a request's generation produces, in order: text deltas of each choice (with their tokens' log-probs), each
/// choice's end, and last the token counts.
/// </summary>
public abstract record InferenceEvent;
public sealed record TextDelta(int Index, string Text, IReadOnlyList<TokenLogprob>? Logprobs) : InferenceEvent;
public sealed record ChoiceFinished(int Index, string FinishReason) : InferenceEvent;
public sealed record UsageReport(int PromptTokens, int CompletionTokens) : InferenceEvent;

/// <summary>
/// Serves completions from registered models. Implemented by the worker role (it loads models and holds tensors); a
/// process without it has none registered, and the API answers 503 there.
/// </summary>
public interface IInferenceService
{
    /// <summary>Starts a request and yields its events; cancelling <paramref name="ct"/> (the client went away) ends its generation.</summary>
    IAsyncEnumerable<InferenceEvent> GenerateAsync(InferenceRequest request, CancellationToken ct);

    /// <summary>
    /// P(<paramref name="a"/> &gt; <paramref name="b"/> | <paramref name="prompt"/>) from a general preference model
    /// (method <c>preference_model</c>), the prompt as text the way its training rows gave it; antisymmetric by
    /// construction, so P(b &gt; a) = 1 - P(a &gt; b).
    /// </summary>
    Task<double> PreferenceAsync(ModelRecord model, string prompt, string a, string b, CancellationToken ct);
}

/// <summary>A request the serving side refuses (a prompt longer than the model's context, a model it cannot load).</summary>
public sealed class InferenceException(string message, string? param = null) : Exception(message)
{
    public string? Param { get; } = param;
}
