using System.Text;
using System.Text.Json;
using AlignHub.Domain.Templates;

namespace AlignHub.Domain;

/// <summary>A piece of an example's text and whether its tokens carry loss.</summary>
public readonly record struct Segment(string Text, bool Trainable);

/// <summary>
/// One supervised example as text segments; the tokenizer turns it into ids and a loss mask. <paramref name="AppendEos"/>:
/// the tokenizer's EOS follows the text (false where a chat template's rendering ends the turn itself).
/// </summary>
public sealed record SupervisedExample(IReadOnlyList<Segment> Segments, bool AppendEos = true);

/// <summary>Supervised examples that are not conversations.</summary>
public static class ChatTemplate
{
    /// <summary>The prompt of a prompt/completion row; the completion follows it directly.</summary>
    public static SupervisedExample FromPromptCompletion(string prompt, string completion) =>
        new([new Segment(prompt, false), new Segment(completion, true)]);
}

public sealed class JsonlFormatException(int line, string reason) : Exception($"line {line}: {reason}")
{
    public int Line { get; } = line;
    public string Reason { get; } = reason;
}

/// <summary>Row formats found in JSONL files, checked line by line with the line number in every error.</summary>
public static class JsonlRows
{
    public const string Supervised = "supervised";
    /// <summary>Rows that hold only a prompt (<c>{"prompt"}</c>, or messages not ending with an assistant turn): inputs for generation.</summary>
    public const string Prompts = "prompts";
    /// <summary>Rows a generation job writes: <c>{"prompt", "completions": [{"text", ...}]}</c>.</summary>
    public const string Generations = "generations";
    /// <summary>Preference pairs (TRL standard or conversational, OpenAI DPO).</summary>
    public const string Preference = "preference";
    /// <summary>The preference rows in words, for errors.</summary>
    public const string PreferenceHint = "preference pairs ({\"prompt\", \"chosen\", \"rejected\"} or OpenAI's DPO rows)";
    /// <summary>Unpaired examples with a true/false label (KTO).</summary>
    public const string UnpairedPreference = "unpaired_preference";

    public static bool IsRole(string role) => Array.IndexOf(Roles, role) >= 0;
    static readonly string[] Roles = ["system", "user", "assistant", "tool", "developer"];

    /// <summary>Validates a whole file; returns the row count and its format. Throws <see cref="JsonlFormatException"/>.</summary>
    public static (int Rows, string Format) Validate(Stream stream)
    {
        int rows = 0, lineNo = 0;
        string? format = null;
        foreach (var (no, line) in ReadLines(stream))
        {
            lineNo = no;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var kind = Kind(line);
            if (kind == Preference) WithRow(line, no, r => PreferenceData.ParsePair(r, no));
            else if (kind == UnpairedPreference) WithRow(line, no, r => PreferenceData.ParseUnpaired(r, no));
            else if (kind == Prompts) ParsePrompt(line, no);
            else ParseSupervised(line, no);
            if (format is not null && kind != format)
                throw new JsonlFormatException(no, $"this row holds {Describe(kind)}, but earlier rows hold {Describe(format)}: a file holds one kind of row");
            format = kind;
            rows++;
        }
        if (rows == 0) throw new JsonlFormatException(Math.Max(lineNo, 1), "the file has no rows");
        return (rows, format!);
    }

    /// <summary>Lines with 1-based numbers, decoded as strict UTF-8 (invalid bytes name their line).</summary>
    public static IEnumerable<(int No, string Line)> ReadLines(Stream stream)
    {
        var strict = new UTF8Encoding(false, throwOnInvalidBytes: true);
        using var reader = new StreamReader(stream, strict, detectEncodingFromByteOrderMarks: false, leaveOpen: true);
        int no = 0;
        while (true)
        {
            string? line;
            try { line = reader.ReadLine(); }
            catch (DecoderFallbackException) { throw new JsonlFormatException(no + 1, "invalid UTF-8"); }
            if (line is null) yield break;
            no++;
            if (no == 1 && line.Length > 0 && line[0] == '\uFEFF') line = line[1..];
            yield return (no, line);
        }
    }

    /// <summary>The non-blank rows of a stored file, each parsed with its line number.</summary>
    static IEnumerable<T> LoadRows<T>(string path, Func<string, int, T> parse)
    {
        using var fs = File.OpenRead(path);
        foreach (var (no, line) in ReadLines(fs))
            if (!string.IsNullOrWhiteSpace(line))
                yield return parse(line, no);
    }

    /// <summary>Supervised rows; messages rendered with <paramref name="chat"/> (null: AlignHub's markers).</summary>
    public static IEnumerable<SupervisedExample> LoadSupervised(string path, IChatFormat? chat = null) => LoadRows(path, (l, n) => ParseSupervised(l, n, chat));

    static string Describe(string kind) => kind switch
    {
        Supervised => "a training example (a completion or an assistant message last)",
        Prompts => "a prompt only",
        Preference => "a preference pair",
        UnpairedPreference => "a labelled completion",
        _ => kind,
    };

    /// <summary>The kind of a row: preference pair, unpaired (labelled), prompt only, or supervised.</summary>
    static string Kind(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line, new JsonDocumentOptions { MaxDepth = 16 });
            var r = doc.RootElement;
            if (r.ValueKind == JsonValueKind.Object)
            {
                if (PreferenceData.IsPreferenceRow(r)) return Preference;
                if (PreferenceData.IsUnpairedRow(r)) return UnpairedPreference;
            }
        }
        catch (JsonException) { return Supervised; } // ParseSupervised reports the JSON error with its line
        return IsPromptOnly(line) ? Prompts : Supervised;
    }

    static T WithRow<T>(string line, int no, Func<JsonElement, T> parse)
    {
        using var doc = JsonDocument.Parse(line, new JsonDocumentOptions { MaxDepth = 16 });
        return parse(doc.RootElement);
    }

    public static IEnumerable<PreferencePair> LoadPreferences(string path, IChatFormat? chat = null) =>
        LoadRows(path, (line, no) => WithRow(line, no, r => PreferenceData.ParsePair(r, no, chat)));

    public static IEnumerable<UnpairedExample> LoadUnpaired(string path, IChatFormat? chat = null) =>
        LoadRows(path, (line, no) => WithRow(line, no, r => PreferenceData.ParseUnpaired(r, no, chat)));

    /// <summary>True for a row with a prompt and no completion, or messages whose last turn is not the assistant's.</summary>
    static bool IsPromptOnly(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line, new JsonDocumentOptions { MaxDepth = 16 });
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) return false;
            if (r.TryGetProperty("messages", out var m))
                return m.ValueKind == JsonValueKind.Array && m.GetArrayLength() > 0 && m[m.GetArrayLength() - 1] is { ValueKind: JsonValueKind.Object } last
                       && last.TryGetProperty("role", out var role) && role.ValueKind == JsonValueKind.String && role.GetString() != "assistant";
            return r.TryGetProperty("prompt", out _) && !r.TryGetProperty("completion", out _);
        }
        catch (JsonException) { return false; }
    }

    /// <summary>A line as a JSON object, or an error naming the line: invalid JSON, or another kind of value.</summary>
    static JsonDocument ParseObject(string line, int no)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line, new JsonDocumentOptions { MaxDepth = 16 }); }
        catch (JsonException e) { throw new JsonlFormatException(no, $"invalid JSON ({Short(e.Message)})"); }
        if (doc.RootElement.ValueKind == JsonValueKind.Object) return doc;
        var kind = Kind(doc.RootElement);
        doc.Dispose();
        throw new JsonlFormatException(no, $"expected a JSON object, found {kind}");
    }

    /// <summary>
    /// A generation prompt: <c>{"prompt": str}</c> (fed as it is), or <c>{"messages": [...]}</c> rendered with the
    /// chat template plus the assistant's role marker. Supervised rows also serve: their prompt, or their messages
    /// before the last assistant turn.
    /// </summary>
    public static GenerationPrompt ParsePrompt(string line, int no) => ParsePrompt(line, no, null);

    public static GenerationPrompt ParsePrompt(string line, int no, IChatFormat? chat)
    {
        using var doc = ParseObject(line, no);
        {
            var root = doc.RootElement;
            if (root.TryGetProperty("messages", out var messages))
            {
                if (messages.ValueKind != JsonValueKind.Array)
                    throw new JsonlFormatException(no, $"\"messages\" must be an array, found {Kind(messages)}");
                var all = messages.EnumerateArray().ToList();
                int end = all.Count;
                if (end > 0 && all[end - 1].ValueKind == JsonValueKind.Object && all[end - 1].TryGetProperty("role", out var lr)
                    && lr.ValueKind == JsonValueKind.String && lr.GetString() == "assistant") end--;
                var list = new List<(string, string)>();
                for (int i = 0; i < end; i++)
                {
                    var m = all[i];
                    if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                        || Array.IndexOf(Roles, role.GetString()) < 0)
                        throw new JsonlFormatException(no, $"messages[{i}].role must be one of {string.Join(", ", Roles)}");
                    if (!m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                        throw new JsonlFormatException(no, $"messages[{i}].content must be a string");
                    list.Add((role.GetString()!, content.GetString()!));
                }
                if (list.Count == 0) throw new JsonlFormatException(no, "no message before the assistant's turn to prompt with");
                var text = Templated(no, () => (chat ?? ChatMarkers.Instance).Prompt(list.Select(m => new ChatMessage(m.Item1, m.Item2)).ToList()));
                var prompt = JsonSerializer.SerializeToElement(list.Select(m => new { role = m.Item1, content = m.Item2 }));
                return new GenerationPrompt(text, prompt, true, root.Clone());
            }
            if (root.TryGetProperty("prompt", out var p))
            {
                if (p.ValueKind != JsonValueKind.String) throw new JsonlFormatException(no, $"\"prompt\" must be a string, found {Kind(p)}");
                if (p.GetString()!.Length == 0) throw new JsonlFormatException(no, "\"prompt\" is empty");
                return new GenerationPrompt(p.GetString()!, p.Clone(), false, root.Clone());
            }
            throw new JsonlFormatException(no, "expected {\"prompt\": ...} or {\"messages\": [...]}");
        }
    }

    public static IEnumerable<GenerationPrompt> LoadPrompts(string path, IChatFormat? chat = null) => LoadRows(path, (l, n) => ParsePrompt(l, n, chat));

    /// <summary>A chat template's own error (roles that do not alternate, a raise_exception) as the row's error.</summary>
    internal static T Templated<T>(int no, Func<T> render)
    {
        try { return render(); }
        catch (TemplateException e) { throw new JsonlFormatException(no, $"the model's chat template: {e.Message}"); }
    }

    /// <summary>
    /// <c>{"prompt": str, "completion": str}</c> (loss on the completion) or OpenAI chat
    /// <c>{"messages": [{"role", "content"}, ...]}</c> (loss on assistant messages).
    /// </summary>
    public static SupervisedExample ParseSupervised(string line, int no) => ParseSupervised(line, no, null);

    public static SupervisedExample ParseSupervised(string line, int no, IChatFormat? chat)
    {
        using var doc = ParseObject(line, no);
        {
            var root = doc.RootElement;
            if (root.TryGetProperty("messages", out var messages))
                return ParseMessages(messages, no, chat);
            if (root.TryGetProperty("prompt", out var prompt))
            {
                if (prompt.ValueKind != JsonValueKind.String)
                    throw new JsonlFormatException(no, $"\"prompt\" must be a string, found {Kind(prompt)}");
                if (!root.TryGetProperty("completion", out var completion))
                    throw new JsonlFormatException(no, "\"completion\" is missing");
                if (completion.ValueKind != JsonValueKind.String)
                    throw new JsonlFormatException(no, $"\"completion\" must be a string, found {Kind(completion)}");
                if (completion.GetString()!.Length == 0)
                    throw new JsonlFormatException(no, "\"completion\" is empty: nothing to train on");
                return ChatTemplate.FromPromptCompletion(prompt.GetString()!, completion.GetString()!);
            }
            throw new JsonlFormatException(no,
                "expected {\"prompt\": ..., \"completion\": ...} or {\"messages\": [...]}");
        }
    }

    static SupervisedExample ParseMessages(JsonElement messages, int no, IChatFormat? chat)
    {
        if (messages.ValueKind != JsonValueKind.Array)
            throw new JsonlFormatException(no, $"\"messages\" must be an array, found {Kind(messages)}");
        var list = new List<(string, string)>();
        int i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object)
                throw new JsonlFormatException(no, $"messages[{i}] must be an object");
            if (!m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                throw new JsonlFormatException(no, $"messages[{i}].role must be a string");
            var r = role.GetString()!;
            if (Array.IndexOf(Roles, r) < 0)
                throw new JsonlFormatException(no, $"messages[{i}].role \"{Short(r)}\" is not one of {string.Join(", ", Roles)}");
            if (!m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw new JsonlFormatException(no, $"messages[{i}].content must be a string");
            list.Add((r, content.GetString()!));
            i++;
        }
        if (list.Count == 0) throw new JsonlFormatException(no, "\"messages\" is empty");
        if (!list.Any(m => m.Item1 == "assistant"))
            throw new JsonlFormatException(no, "no assistant message: nothing to train on");
        return Templated(no, () => (chat ?? ChatMarkers.Instance).Conversation(list.Select(m => new ChatMessage(m.Item1, m.Item2)).ToList()));
    }

    static string Kind(JsonElement e) => e.ValueKind.ToString().ToLowerInvariant();
    static string Short(string s) => s.Length > 120 ? s[..120] + "..." : s;
}
