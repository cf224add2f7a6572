using System.Text.Json;
using AlignHub.Domain.Templates;

namespace AlignHub.Domain;

/// <summary>One preference pair as text: the prompt the model sees and two continuations; <c>Margin</c> (default 0) widens the reward gap asked for.</summary>
public sealed record PreferencePair(string Prompt, string Chosen, string Rejected, double Margin = 0);

/// <summary>One unpaired (KTO) example: a prompt, a continuation, and whether it is desirable.</summary>
public sealed record UnpairedExample(string Prompt, string Completion, bool Desirable);

/// <summary>
/// Preference rows, in the formats users bring: TRL's standard <c>{"prompt", "chosen", "rejected"}</c> (strings) or
/// conversational (prompt a list of messages, chosen/rejected lists holding the assistant's reply), with an optional
/// numeric <c>margin</c>; OpenAI's DPO rows <c>{"input": {"messages"}, "preferred_output": [...],
/// "non_preferred_output": [...]}</c>; and unpaired <c>{"prompt", "completion", "label": true|false}</c> for KTO.
/// Chat rows go through the model's chat format (<see cref="IChatFormat"/>; AlignHub's role markers when it has no
/// template): the prompt ends with the opening of the assistant's turn and each continuation with the end of the turn.
/// Every error names its line.
/// </summary>
public static class PreferenceData
{
    public static bool IsPreferenceRow(JsonElement r) =>
        r.TryGetProperty("chosen", out _) || r.TryGetProperty("rejected", out _) || r.TryGetProperty("preferred_output", out _);

    public static bool IsUnpairedRow(JsonElement r) => r.TryGetProperty("label", out _);

    public static PreferencePair ParsePair(JsonElement r, int no, IChatFormat? chat = null)
    {
        chat ??= ChatMarkers.Instance;
        if (r.TryGetProperty("preferred_output", out var preferred))
        {
            if (!r.TryGetProperty("input", out var input) || input.ValueKind != JsonValueKind.Object || !input.TryGetProperty("messages", out var msgs))
                throw new JsonlFormatException(no, "\"input\" must be an object with \"messages\"");
            if (!r.TryGetProperty("non_preferred_output", out var nonPreferred))
                throw new JsonlFormatException(no, "\"non_preferred_output\" is missing");
            var m0 = ChatMessages(msgs, no, "input.messages");
            return new PreferencePair(Prompt(chat, m0, no), Reply(chat, m0, preferred, no, "preferred_output"),
                Reply(chat, m0, nonPreferred, no, "non_preferred_output"));
        }
        if (!r.TryGetProperty("prompt", out var prompt)) throw new JsonlFormatException(no, "\"prompt\" is missing");
        if (!r.TryGetProperty("chosen", out var chosen)) throw new JsonlFormatException(no, "\"chosen\" is missing");
        if (!r.TryGetProperty("rejected", out var rejected)) throw new JsonlFormatException(no, "\"rejected\" is missing");
        double margin = 0;
        if (r.TryGetProperty("margin", out var m) && m.ValueKind != JsonValueKind.Null)
        {
            if (m.ValueKind != JsonValueKind.Number || !m.TryGetDouble(out margin) || !double.IsFinite(margin) || Math.Abs(margin) > 1e6)
                throw new JsonlFormatException(no, "\"margin\" must be a finite number");
        }
        if (prompt.ValueKind == JsonValueKind.String)
        {
            var c = Text(chosen, no, "chosen");
            var rej = Text(rejected, no, "rejected");
            return new PreferencePair(prompt.GetString()!, c, rej, margin);
        }
        if (prompt.ValueKind == JsonValueKind.Array)
        {
            var m1 = ChatMessages(prompt, no, "prompt");
            return new PreferencePair(Prompt(chat, m1, no), Reply(chat, m1, chosen, no, "chosen"), Reply(chat, m1, rejected, no, "rejected"), margin);
        }
        throw new JsonlFormatException(no, "\"prompt\" must be a string or a list of messages");
    }

    public static UnpairedExample ParseUnpaired(JsonElement r, int no, IChatFormat? chat = null)
    {
        chat ??= ChatMarkers.Instance;
        if (!r.TryGetProperty("label", out var label) || label.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            throw new JsonlFormatException(no, "\"label\" must be true or false");
        if (!r.TryGetProperty("prompt", out var prompt)) throw new JsonlFormatException(no, "\"prompt\" is missing");
        if (!r.TryGetProperty("completion", out var completion)) throw new JsonlFormatException(no, "\"completion\" is missing");
        if (prompt.ValueKind == JsonValueKind.String)
            return new UnpairedExample(prompt.GetString()!, Text(completion, no, "completion"), label.GetBoolean());
        if (prompt.ValueKind == JsonValueKind.Array)
        {
            var m = ChatMessages(prompt, no, "prompt");
            return new UnpairedExample(Prompt(chat, m, no), Reply(chat, m, completion, no, "completion"), label.GetBoolean());
        }
        throw new JsonlFormatException(no, "\"prompt\" must be a string or a list of messages");
    }

    static string Text(JsonElement e, int no, string field)
    {
        if (e.ValueKind != JsonValueKind.String) throw new JsonlFormatException(no, $"\"{field}\" must be a string here (the prompt is a string)");
        if (e.GetString()!.Length == 0) throw new JsonlFormatException(no, $"\"{field}\" is empty");
        return e.GetString()!;
    }

    /// <summary>A prompt's messages (at least one).</summary>
    static List<ChatMessage> ChatMessages(JsonElement messages, int no, string field)
    {
        var list = Messages(messages, no, field);
        if (list.Count == 0) throw new JsonlFormatException(no, $"\"{field}\" is empty");
        return list.Select(m => new ChatMessage(m.Role, m.Content)).ToList();
    }

    /// <summary>Messages rendered by the chat format, then the opening of the assistant's turn.</summary>
    static string Prompt(IChatFormat chat, List<ChatMessage> messages, int no) => JsonlRows.Templated(no, () => chat.Prompt(messages));

    /// <summary>A reply: a list holding one assistant message (or a string); its content and the end of the assistant's turn.</summary>
    static string Reply(IChatFormat chat, List<ChatMessage> prompt, JsonElement e, int no, string field)
    {
        string content;
        if (e.ValueKind == JsonValueKind.String) content = Text(e, no, field);
        else
        {
            var list = Messages(e, no, field);
            if (list.Count != 1 || list[0].Role != "assistant")
                throw new JsonlFormatException(no, $"\"{field}\" must hold exactly one assistant message");
            if (list[0].Content.Length == 0) throw new JsonlFormatException(no, $"\"{field}\" is empty");
            content = list[0].Content;
        }
        return JsonlRows.Templated(no, () => chat.Reply(prompt, content));
    }

    static List<(string Role, string Content)> Messages(JsonElement e, int no, string field)
    {
        if (e.ValueKind != JsonValueKind.Array) throw new JsonlFormatException(no, $"\"{field}\" must be a list of messages");
        var list = new List<(string, string)>();
        int i = 0;
        foreach (var m in e.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                || !JsonlRows.IsRole(role.GetString()!))
                throw new JsonlFormatException(no, $"{field}[{i}].role must be one of system, user, assistant, tool, developer");
            if (!m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw new JsonlFormatException(no, $"{field}[{i}].content must be a string");
            list.Add((role.GetString()!, content.GetString()!));
            i++;
        }
        return list;
    }
}
