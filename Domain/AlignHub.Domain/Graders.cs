using System.Text.Json;
using System.Text.RegularExpressions;

namespace AlignHub.Domain;

/// <summary>
/// Graders in OpenAI's JSON shape (its fine-tuning API's <c>grader</c> objects): pure functions of a training row
/// (<c>{{item.field}}</c>) and a sample (<c>{{sample.output_text}}</c>) to a score. Validated at job creation, run by
/// RL trainers as reward sources. Implemented: <c>string_check</c> (<c>input</c>, <c>reference</c>, <c>operation</c>
/// eq | ne | like | ilike: 1 when it holds, else 0).
/// </summary>
public abstract record Grader(string Name)
{
    public abstract double Grade(JsonElement? item, string outputText);

    static readonly Regex Template = new(@"\{\{\s*(item|sample)\.([A-Za-z0-9_.]+)\s*\}\}", RegexOptions.Compiled);

    /// <summary>A template with <c>{{item.a.b}}</c> and <c>{{sample.output_text}}</c> filled in (a missing item field is empty).</summary>
    public static string Render(string template, JsonElement? item, string outputText) => Template.Replace(template, m =>
    {
        if (m.Groups[1].Value == "sample") return m.Groups[2].Value == "output_text" ? outputText : "";
        var v = item;
        foreach (var part in m.Groups[2].Value.Split('.'))
            v = v is { ValueKind: JsonValueKind.Object } o && o.TryGetProperty(part, out var next) ? next : null;
        return v switch { null => "", { ValueKind: JsonValueKind.String } s => s.GetString()!, { } other => other.GetRawText() };
    });

    /// <summary>Parses and checks a grader object; errors name the field under <paramref name="field"/> (null: invalid).</summary>
    public static Grader? Parse(JsonElement g, string field, Action<string, string> err)
    {
        if (g.ValueKind != JsonValueKind.Object) { err(field, "a grader must be an object"); return null; }
        string? Str(string name, bool required = true)
        {
            if (g.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String) return v.GetString();
            if (required) err($"{field}.{name}", g.TryGetProperty(name, out _) ? "must be a string" : "is required");
            return null;
        }
        var type = Str("type");
        var name = Str("name", required: false) ?? type ?? "grader";
        switch (type)
        {
            case null: return null;
            case "string_check":
            {
                var input = Str("input");
                var reference = Str("reference");
                var op = Str("operation");
                if (op is not null && op is not ("eq" or "ne" or "like" or "ilike"))
                    err($"{field}.operation", $"unknown operation \"{op}\"; supported: eq, ne, like, ilike");
                foreach (var (f, t) in new[] { ("input", input), ("reference", reference) })
                    if (t is not null && Regex.Matches(t, @"\{\{").Count != Template.Matches(t).Count)
                        err($"{field}.{f}", "templates are {{item.<field>}} or {{sample.output_text}}");
                return input is null || reference is null || op is not ("eq" or "ne" or "like" or "ilike") ? null : new StringCheck(name, input, reference, op);
            }
            default:
                err($"{field}.type", $"unknown grader type \"{type}\"; supported: string_check");
                return null;
        }
    }
}

/// <summary>OpenAI's <c>string_check</c>: eq / ne compare exactly; like / ilike: the input contains the reference (ilike ignoring case).</summary>
public sealed record StringCheck(string Name, string Input, string Reference, string Operation) : Grader(Name)
{
    public override double Grade(JsonElement? item, string outputText)
    {
        var a = Render(Input, item, outputText);
        var b = Render(Reference, item, outputText);
        bool ok = Operation switch
        {
            "eq" => a == b,
            "ne" => a != b,
            "like" => a.Contains(b, StringComparison.Ordinal),
            _ => a.Contains(b, StringComparison.OrdinalIgnoreCase),
        };
        return ok ? 1 : 0;
    }
}
