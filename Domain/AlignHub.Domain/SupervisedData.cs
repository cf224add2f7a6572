using System.Text;
using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>A piece of an example's text and whether its tokens carry loss.</summary>
public readonly record struct Segment(string Text, bool Trainable);

/// <summary>One supervised example as text segments; the tokenizer turns it into ids and a loss mask.</summary>
public sealed record SupervisedExample(IReadOnlyList<Segment> Segments);

/// <summary>
/// A minimal chat template with role markers: each message becomes
/// <c>&lt;|role|&gt;\n{content}&lt;|end|&gt;\n</c>. Only assistant content and its end marker carry loss.
/// </summary>
public static class ChatTemplate
{
    public const string End = "<|end|>\n";
    public static string RoleMarker(string role) => $"<|{role}|>\n";

    public static SupervisedExample FromMessages(IEnumerable<(string Role, string Content)> messages)
    {
        var segs = new List<Segment>();
        foreach (var (role, content) in messages)
        {
            bool assistant = role == "assistant";
            segs.Add(new Segment(RoleMarker(role), false));
            segs.Add(new Segment(content + End, assistant));
        }
        return new SupervisedExample(segs);
    }

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
    static readonly string[] Roles = ["system", "user", "assistant", "tool", "developer"];

    /// <summary>Validates a whole file; returns the row count and its format. Throws <see cref="JsonlFormatException"/>.</summary>
    public static (int Rows, string Format) Validate(Stream stream)
    {
        int rows = 0, lineNo = 0;
        foreach (var (no, line) in ReadLines(stream))
        {
            lineNo = no;
            if (string.IsNullOrWhiteSpace(line)) continue;
            ParseSupervised(line, no);
            rows++;
        }
        if (rows == 0) throw new JsonlFormatException(Math.Max(lineNo, 1), "the file has no rows");
        return (rows, Supervised);
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

    public static IEnumerable<SupervisedExample> LoadSupervised(string path)
    {
        using var fs = File.OpenRead(path);
        foreach (var (no, line) in ReadLines(fs))
            if (!string.IsNullOrWhiteSpace(line))
                yield return ParseSupervised(line, no);
    }

    /// <summary>
    /// <c>{"prompt": str, "completion": str}</c> (loss on the completion) or OpenAI chat
    /// <c>{"messages": [{"role", "content"}, ...]}</c> (loss on assistant messages).
    /// </summary>
    public static SupervisedExample ParseSupervised(string line, int no)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line, new JsonDocumentOptions { MaxDepth = 16 }); }
        catch (JsonException e) { throw new JsonlFormatException(no, $"invalid JSON ({Short(e.Message)})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new JsonlFormatException(no, $"expected a JSON object, found {Kind(root)}");
            if (root.TryGetProperty("messages", out var messages))
                return ParseMessages(messages, no);
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

    static SupervisedExample ParseMessages(JsonElement messages, int no)
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
        return ChatTemplate.FromMessages(list);
    }

    static string Kind(JsonElement e) => e.ValueKind.ToString().ToLowerInvariant();
    static string Short(string s) => s.Length > 120 ? s[..120] + "..." : s;
}
