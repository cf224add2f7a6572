namespace AlignHub.Domain.Templates;

/// <summary>
/// How a conversation becomes the text a model reads: the model's own chat template (<see cref="ModelChatTemplate"/>),
/// or AlignHub's role markers (<see cref="ChatMarkers"/>) for models that have none. Every row format that holds
/// messages goes through one of these, for training and for prompting alike.
/// </summary>
public interface IChatFormat
{
    /// <summary>A conversation as a supervised example: trainable where the assistant speaks.</summary>
    SupervisedExample Conversation(IReadOnlyList<ChatMessage> messages);

    /// <summary>Messages followed by the opening of the assistant's turn (<c>add_generation_prompt</c>).</summary>
    string Prompt(IReadOnlyList<ChatMessage> messages);

    /// <summary>The text that follows <see cref="Prompt"/> when the assistant answers <paramref name="content"/>: the answer and its end-of-turn marker.</summary>
    string Reply(IReadOnlyList<ChatMessage> prompt, string content);

    /// <summary>Text that ends an assistant turn where the end is not a token the tokenizer stops at (null: the EOS ends it).</summary>
    string? StopText { get; }
}

/// <summary>
/// AlignHub's minimal chat format for models without a template: each message is
/// <c>&lt;|role|&gt;\n{content}&lt;|end|&gt;\n</c>; only assistant content and its end marker carry loss.
/// </summary>
public sealed class ChatMarkers : IChatFormat
{
    public static readonly ChatMarkers Instance = new();

    public const string End = "<|end|>\n";
    public static string RoleMarker(string role) => $"<|{role}|>\n";

    public SupervisedExample Conversation(IReadOnlyList<ChatMessage> messages)
    {
        var segs = new List<Segment>();
        foreach (var m in messages)
        {
            segs.Add(new Segment(RoleMarker(m.Role), false));
            segs.Add(new Segment(m.Content + End, m.Role == "assistant"));
        }
        return new SupervisedExample(segs);
    }

    public string Prompt(IReadOnlyList<ChatMessage> messages) =>
        string.Concat(messages.Select(m => RoleMarker(m.Role) + m.Content + End)) + RoleMarker("assistant");

    public string Reply(IReadOnlyList<ChatMessage> prompt, string content) => content + End;

    public string? StopText => End.TrimEnd('\n');
}

/// <summary>The chat format of a model folder: its own template where it has one, else <see cref="ChatMarkers"/>.</summary>
public static class ChatFormats
{
    public static IChatFormat ForFolder(string? folder) =>
        folder is not null && Directory.Exists(folder) && ModelChatTemplate.FromFolder(folder) is { } t ? t : ChatMarkers.Instance;
}
