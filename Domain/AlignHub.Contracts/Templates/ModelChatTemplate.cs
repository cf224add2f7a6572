using System.Text.Json;

namespace AlignHub.Domain.Templates;

/// <summary>A chat message as templates see it.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// A model's own chat template (the <c>chat_template</c> of its <c>tokenizer_config.json</c>, or
/// <c>chat_template.jinja</c>) with the special-token strings it refers to, rendered by <see cref="Jinja"/> as
/// transformers' <c>apply_chat_template</c> renders it: <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>,
/// <c>eos_token</c>, <c>pad_token</c>, <c>unk_token</c>.
/// </summary>
public sealed record ModelChatTemplate(string Template, string? BosToken, string? EosToken, string? PadToken = null, string? UnkToken = null) : IChatFormat
{
    SupervisedExample IChatFormat.Conversation(IReadOnlyList<ChatMessage> messages) => Segments(messages);

    public string Prompt(IReadOnlyList<ChatMessage> messages) => Render(messages, true);

    /// <summary>
    /// What rendering the prompt plus the assistant's answer adds to the prompt rendered with the generation prompt (the answer
    /// and the template's end of turn); where the template renders a finished conversation otherwise, the answer and the eos_token.
    /// </summary>
    public string Reply(IReadOnlyList<ChatMessage> prompt, string content)
    {
        var before = Render(prompt, true);
        var after = Render([.. prompt, new ChatMessage("assistant", content)], false);
        return after.StartsWith(before, StringComparison.Ordinal) && after.Length > before.Length ? after[before.Length..] : content + (EosToken ?? "");
    }

    /// <summary>Templates end a turn with a special token the tokenizer maps to an end id: generation stops there.</summary>
    public string? StopText => null;

    /// <summary>
    /// The template of a Hugging Face model folder: <c>chat_template.jinja</c> if present, else <c>tokenizer_config.json</c>'s
    /// <c>chat_template</c> (a string, or a list of <c>{name, template}</c> whose <c>default</c> is taken); null when it has none.
    /// </summary>
    public static ModelChatTemplate? FromFolder(string folder)
    {
        var configPath = Path.Combine(folder, "tokenizer_config.json");
        JsonElement config = default;
        if (File.Exists(configPath)) config = JsonDocument.Parse(File.ReadAllText(configPath)).RootElement.Clone();
        string? template = null;
        var jinjaFile = Path.Combine(folder, "chat_template.jinja");
        if (File.Exists(jinjaFile)) template = File.ReadAllText(jinjaFile);
        else if (config.ValueKind == JsonValueKind.Object && config.TryGetProperty("chat_template", out var t))
        {
            if (t.ValueKind == JsonValueKind.String) template = t.GetString();
            else if (t.ValueKind == JsonValueKind.Array)
                template = t.EnumerateArray().Where(x => x.TryGetProperty("name", out var n) && n.GetString() == "default")
                    .Select(x => x.GetProperty("template").GetString()).FirstOrDefault();
        }
        if (string.IsNullOrEmpty(template)) return null;
        string? Token(string key) => config.ValueKind == JsonValueKind.Object && config.TryGetProperty(key, out var v)
            ? v.ValueKind == JsonValueKind.String ? v.GetString() : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) ? c.GetString() : null
            : null;
        return new ModelChatTemplate(template, Token("bos_token"), Token("eos_token"), Token("pad_token"), Token("unk_token"));
    }

    /// <summary>The conversation as the model sees it; with <paramref name="addGenerationPrompt"/>, followed by the opening of the assistant's turn.</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) => Render(messages, addGenerationPrompt, out _);

    string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, out List<(int Start, int End)> spans) =>
        Jinja.Render(Template, new Dictionary<string, object?>
        {
            ["messages"] = messages.Select(m => (object?)new Jinja.Dict { new("role", m.Role), new("content", m.Content) }).ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = BosToken ?? "", ["eos_token"] = EosToken ?? "", ["pad_token"] = PadToken ?? "", ["unk_token"] = UnkToken ?? "",
        }, out spans);

    /// <summary>
    /// A conversation as a supervised example: the rendered text in segments, trainable where the assistant speaks.
    /// Which characters are the assistant's is decided as transformers' <c>return_assistant_tokens_mask</c> decides it where
    /// the template marks them with <c>{% generation %}</c>; otherwise each assistant turn i is what rendering
    /// messages[..i+1] adds to rendering messages[..i] with the generation prompt (its content and end-of-turn marker), provided
    /// every such prefix is a prefix of the whole rendering; otherwise (templates that render earlier turns differently once
    /// later ones follow, such as Qwen3's thinking blocks) each assistant content is found in order in the whole rendering
    /// and marked with the <c>eos_token</c> that follows it.
    /// </summary>
    public SupervisedExample Segments(IReadOnlyList<ChatMessage> messages)
    {
        var full = Render(messages, false, out var generation);
        List<(int Start, int End)> spans;
        if (generation.Count > 0) spans = generation;
        else spans = ByPrefixes(messages, full) ?? ByContent(messages, full);
        var segments = new List<Segment>();
        int at = 0;
        foreach (var (start, end) in spans.Where(s => s.End > s.Start).OrderBy(s => s.Start))
        {
            if (start < at) throw new TemplateException("the template's assistant spans overlap");
            if (start > at) segments.Add(new Segment(full[at..start], false));
            segments.Add(new Segment(full[start..end], true));
            at = end;
        }
        if (at < full.Length) segments.Add(new Segment(full[at..], false));
        return new SupervisedExample(segments, AppendEos: false);
    }

    List<(int, int)>? ByPrefixes(IReadOnlyList<ChatMessage> messages, string full)
    {
        var spans = new List<(int, int)>();
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i].Role != "assistant") continue;
            string before, after;
            try
            {
                before = Render(messages.Take(i).ToList(), true);
                after = Render(messages.Take(i + 1).ToList(), false);
            }
            catch (TemplateException) { return null; } // a template that refuses a partial conversation
            if (!after.StartsWith(before, StringComparison.Ordinal) || !full.StartsWith(after, StringComparison.Ordinal)) return null;
            spans.Add((before.Length, after.Length));
        }
        return spans;
    }

    List<(int, int)> ByContent(IReadOnlyList<ChatMessage> messages, string full)
    {
        var spans = new List<(int, int)>();
        int cursor = 0;
        foreach (var m in messages.Where(m => m.Role == "assistant"))
        {
            // The answer after any reasoning block, as reasoning templates keep it.
            var content = m.Content.Contains("</think>") ? m.Content[(m.Content.LastIndexOf("</think>", StringComparison.Ordinal) + 8)..] : m.Content;
            content = content.Trim();
            if (content.Length == 0) continue;
            int start = full.IndexOf(content, cursor, StringComparison.Ordinal);
            if (start < 0) throw new TemplateException($"the rendered conversation does not contain assistant message \"{Short(m.Content)}\"; mark the assistant's text with {{% generation %}} in the template");
            int end = start + content.Length;
            if (EosToken is { Length: > 0 } eos)
            {
                int k = end;
                while (k < full.Length && char.IsWhiteSpace(full[k])) k++;
                if (string.CompareOrdinal(full, k, eos, 0, eos.Length) == 0) end = k + eos.Length;
            }
            spans.Add((start, end));
            cursor = end;
        }
        return spans;
    }

    static string Short(string s) => s.Length <= 40 ? s : s[..40] + "...";
}
