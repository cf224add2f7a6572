using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace AlignHub.Domain;

/// <summary>
/// Graders in OpenAI's JSON shape (its fine-tuning API's <c>grader</c> objects): pure functions of a training row
/// (<c>{{item.field}}</c>) and a sample (<c>{{sample.output_text}}</c>) to a score. Validated at job creation (errors
/// name the field), run by RL trainers as reward sources and by <c>graders/run</c>. OpenAI's types:
/// <c>string_check</c>, <c>text_similarity</c>, <c>multi</c>. AlignHub's rules (OpenAI has none of these):
/// <c>numeric_match</c>, <c>regex_match</c>, <c>json_valid</c>, <c>length_penalty</c>.
/// </summary>
public abstract record Grader(string Name)
{
    public abstract double Grade(JsonElement? item, string outputText);

    public static readonly string[] Types = ["string_check", "text_similarity", "score_model", "multi", "numeric_match", "regex_match", "json_valid", "length_penalty"];

    /// <summary>
    /// The grader with every <see cref="ScoreModel"/> in it (a multi grader's too) given the way to ask its model:
    /// <paramref name="ask"/> sends the rendered messages to the grader's model and returns its answer.
    /// </summary>
    public Grader Bind(Func<ScoreModel, IReadOnlyList<Templates.ChatMessage>, string> ask) => this switch
    {
        ScoreModel s => s with { Ask = ask },
        MultiGrader m => m with { Graders = m.Graders.ToDictionary(kv => kv.Key, kv => kv.Value.Bind(ask)) },
        _ => this,
    };

    /// <summary>Every score_model grader in the tree (to check their models at job creation).</summary>
    public IEnumerable<ScoreModel> ScoreModels() => this switch
    {
        ScoreModel s => [s],
        MultiGrader m => m.Graders.Values.SelectMany(g => g.ScoreModels()),
        _ => [],
    };

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
        int errors = 0;
        void Err(string f, string m) { errors++; err(f, m); }
        string? Str(string name, bool required = true)
        {
            if (g.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String)
            {
                var t = v.GetString()!;
                if (Regex.Matches(t, @"\{\{").Count != Template.Matches(t).Count) Err($"{field}.{name}", "templates are {{item.<field>}} or {{sample.output_text}}");
                return t;
            }
            if (required) Err($"{field}.{name}", g.TryGetProperty(name, out _) ? "must be a string" : "is required");
            return null;
        }
        double? Num(string name, double fallback, double lo = double.MinValue, double hi = double.MaxValue)
        {
            if (!g.TryGetProperty(name, out var v)) return fallback;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var d) && double.IsFinite(d) && d >= lo && d <= hi) return d;
            Err($"{field}.{name}", lo > double.MinValue ? $"must be a number from {lo.ToString(CultureInfo.InvariantCulture)} to {hi.ToString(CultureInfo.InvariantCulture)}" : "must be a number");
            return null;
        }
        var type = Str("type");
        var name = (g.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null) ?? type ?? "grader";
        Grader? result = null;
        switch (type)
        {
            case null: return null;
            case "string_check":
            {
                var (input, reference, op) = (Str("input"), Str("reference"), Str("operation"));
                if (op is not null && op is not ("eq" or "ne" or "like" or "ilike")) Err($"{field}.operation", $"unknown operation \"{op}\"; supported: eq, ne, like, ilike");
                if (errors == 0) result = new StringCheck(name, input!, reference!, op!);
                break;
            }
            case "text_similarity":
            {
                var (input, reference, metric) = (Str("input"), Str("reference"), Str("evaluation_metric"));
                if (metric is not null && !TextSimilarity.Metrics.Contains(metric))
                    Err($"{field}.evaluation_metric", $"unknown evaluation_metric \"{metric}\"; supported: {string.Join(", ", TextSimilarity.Metrics)}");
                var threshold = Num("pass_threshold", 0, 0, 1);
                if (errors == 0) result = new TextSimilarity(name, input!, reference!, metric!, threshold!.Value);
                break;
            }
            case "score_model":
            {
                var model = Str("model");
                var messages = new List<Templates.ChatMessage>();
                if (!g.TryGetProperty("input", out var input) || input.ValueKind != JsonValueKind.Array || input.GetArrayLength() == 0)
                    Err($"{field}.input", "must be a non-empty array of {role, content} messages");
                else
                {
                    int i = 0;
                    foreach (var m in input.EnumerateArray())
                    {
                        var role = m.ValueKind == JsonValueKind.Object && m.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
                        var content = m.ValueKind == JsonValueKind.Object && m.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
                        if (role is null || !JsonlRows.IsRole(role)) Err($"{field}.input[{i}].role", "must be system, developer, user or assistant");
                        else if (content is null) Err($"{field}.input[{i}].content", "must be a string");
                        else if (Regex.Matches(content, @"\{\{").Count != Template.Matches(content).Count) Err($"{field}.input[{i}].content", "templates are {{item.<field>}} or {{sample.output_text}}");
                        else messages.Add(new Templates.ChatMessage(role == "developer" ? "system" : role, content));
                        i++;
                    }
                }
                double lo = 0, hi = 1;
                if (g.TryGetProperty("range", out var range))
                {
                    if (range.ValueKind == JsonValueKind.Array && range.GetArrayLength() == 2 && range[0].TryGetDouble(out lo) && range[1].TryGetDouble(out hi) && lo < hi) { }
                    else Err($"{field}.range", "must be [min, max] with min < max");
                }
                int maxTokens = 16;
                if (g.TryGetProperty("sampling_params", out var sp) && sp.ValueKind == JsonValueKind.Object && sp.TryGetProperty("max_completions_tokens", out var mt) && mt.TryGetInt32(out var m1)) maxTokens = m1;
                if (maxTokens is < 1 or > 4096) Err($"{field}.sampling_params.max_completions_tokens", "must be from 1 to 4096");
                if (errors == 0) result = new ScoreModel(name, model!, messages, lo, hi, maxTokens);
                break;
            }
            case "multi":
            {
                var children = new Dictionary<string, Grader>();
                if (!g.TryGetProperty("graders", out var gs) || gs.ValueKind != JsonValueKind.Object) Err($"{field}.graders", "must be an object of named graders");
                else
                    foreach (var c in gs.EnumerateObject())
                    {
                        if (!Regex.IsMatch(c.Name, "^[A-Za-z_][A-Za-z0-9_]*$")) Err($"{field}.graders.{c.Name}", "a grader's name in a formula is letters, digits and _");
                        if (Parse(c.Value, $"{field}.graders.{c.Name}", Err) is { } child) children[c.Name] = child;
                    }
                var formula = Str("calculate_output");
                Formula? parsed = null;
                if (formula is not null)
                {
                    try { parsed = Formula.Parse(formula); }
                    catch (FormatException e) { Err($"{field}.calculate_output", e.Message); }
                    if (parsed is not null)
                        foreach (var v in parsed.Variables.Where(v => !children.ContainsKey(v) && errors == 0))
                            Err($"{field}.calculate_output", $"\"{v}\" names no grader of graders");
                }
                if (errors == 0) result = new MultiGrader(name, children, parsed!);
                break;
            }
            case "numeric_match":
            {
                var (input, reference) = (Str("input"), Str("reference"));
                var tolerance = Num("tolerance", 0, 0);
                if (errors == 0) result = new NumericMatch(name, input!, reference!, tolerance!.Value);
                break;
            }
            case "regex_match":
            {
                var (input, pattern) = (Str("input"), Str("pattern"));
                Regex? regex = null;
                if (pattern is not null)
                {
                    try { regex = new Regex(pattern, RegexOptions.None, TimeSpan.FromMilliseconds(100)); }
                    catch (ArgumentException e) { Err($"{field}.pattern", "invalid regular expression: " + e.Message); }
                }
                if (errors == 0) result = new RegexMatch(name, input!, regex!);
                break;
            }
            case "json_valid":
            {
                var input = Str("input");
                JsonElement? schema = g.TryGetProperty("schema", out var s) ? s.Clone() : null;
                if (schema is { ValueKind: not JsonValueKind.Object }) Err($"{field}.schema", "must be a JSON Schema object");
                if (errors == 0) result = new JsonValid(name, input!, schema);
                break;
            }
            case "length_penalty":
            {
                var input = Str("input");
                var max = Num("max_length", double.NaN, 0);
                if (max is double.NaN) Err($"{field}.max_length", "is required");
                var per = Num("penalty_per_char", 0.01, 0);
                if (errors == 0) result = new LengthPenalty(name, input!, max!.Value, per!.Value);
                break;
            }
            default:
                Err($"{field}.type", $"unknown grader type \"{type}\"; supported: {string.Join(", ", Types)}");
                break;
        }
        return errors == 0 ? result : null;
    }
}

/// <summary>OpenAI's <c>string_check</c>: eq / ne compare exactly; like / ilike: the input contains the reference (ilike ignoring case). 1 or 0.</summary>
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

/// <summary>
/// OpenAI's <c>text_similarity</c>: the similarity of input and reference in [0, 1] (the reward; <c>pass_threshold</c>
/// is kept for compatibility). <c>fuzzy_match</c>: 1 - InDel distance / (|a| + |b|) on characters (rapidfuzz's
/// ratio / 100). <c>bleu</c>: sentence BLEU-4 on whitespace tokens, geometric mean of add-one-smoothed n-gram
/// precisions (Lin and Och, 2004) times the brevity penalty (Papineni et al., 2002). <c>rouge_1</c>..<c>rouge_5</c>:
/// F1 of n-gram overlap; <c>rouge_l</c>: F1 from the longest common subsequence (Lin, 2004).
/// </summary>
public sealed record TextSimilarity(string Name, string Input, string Reference, string Metric, double PassThreshold) : Grader(Name)
{
    public static readonly string[] Metrics = ["fuzzy_match", "bleu", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"];

    public override double Grade(JsonElement? item, string outputText) =>
        Similarity(Metric, Render(Input, item, outputText), Render(Reference, item, outputText));

    public static double Similarity(string metric, string a, string b)
    {
        if (metric == "fuzzy_match") return a.Length + b.Length == 0 ? 1 : 1 - (double)InDel(a, b) / (a.Length + b.Length);
        var x = a.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var y = b.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (metric == "bleu") return Bleu(x, y);
        if (metric == "rouge_l") return F1(Lcs(x, y), x.Length, y.Length);
        int n = metric[^1] - '0';
        var (cx, cy) = (NGrams(x, n), NGrams(y, n));
        int overlap = cx.Sum(kv => Math.Min(kv.Value, cy.GetValueOrDefault(kv.Key)));
        return F1(overlap, Math.Max(0, x.Length - n + 1), Math.Max(0, y.Length - n + 1));
    }

    static double F1(int overlap, int candidate, int reference) =>
        overlap == 0 || candidate == 0 || reference == 0 ? 0 : 2.0 * overlap / (candidate + reference);

    static Dictionary<string, int> NGrams(string[] t, int n)
    {
        var d = new Dictionary<string, int>();
        for (int i = 0; i + n <= t.Length; i++) { var k = string.Join("\u0001", t, i, n); d[k] = d.GetValueOrDefault(k) + 1; }
        return d;
    }

    static double Bleu(string[] candidate, string[] reference)
    {
        if (candidate.Length == 0) return 0;
        double logSum = 0;
        for (int n = 1; n <= 4; n++)
        {
            var (c, r) = (NGrams(candidate, n), NGrams(reference, n));
            int match = c.Sum(kv => Math.Min(kv.Value, r.GetValueOrDefault(kv.Key)));
            int total = Math.Max(0, candidate.Length - n + 1);
            logSum += Math.Log((match + 1.0) / (total + 1.0));
        }
        double bp = candidate.Length >= reference.Length ? 1 : Math.Exp(1 - (double)reference.Length / candidate.Length);
        return bp * Math.Exp(logSum / 4);
    }

    static int Lcs(string[] a, string[] b)
    {
        var row = new int[b.Length + 1];
        foreach (var s in a)
        {
            int prev = 0;
            for (int j = 1; j <= b.Length; j++) { int keep = row[j]; row[j] = s == b[j - 1] ? prev + 1 : Math.Max(row[j], row[j - 1]); prev = keep; }
        }
        return row[b.Length];
    }

    /// <summary>Insertions and deletions that turn a into b: |a| + |b| - 2 LCS.</summary>
    static int InDel(string a, string b)
    {
        var row = new int[b.Length + 1];
        foreach (var ch in a)
        {
            int prev = 0;
            for (int j = 1; j <= b.Length; j++) { int keep = row[j]; row[j] = ch == b[j - 1] ? prev + 1 : Math.Max(row[j], row[j - 1]); prev = keep; }
        }
        return a.Length + b.Length - 2 * row[b.Length];
    }
}

/// <summary>OpenAI's <c>multi</c>: named graders combined by the <c>calculate_output</c> formula over their scores.</summary>
public sealed record MultiGrader(string Name, IReadOnlyDictionary<string, Grader> Graders, Formula Output) : Grader(Name)
{
    public override double Grade(JsonElement? item, string outputText) =>
        Output.Evaluate(Graders.ToDictionary(g => g.Key, g => g.Value.Grade(item, outputText)));
}

/// <summary>
/// OpenAI's <c>score_model</c>: the <c>input</c> messages (templates filled from the item and the sample) go to a model,
/// whose answer's first number, clipped to <c>range</c> (default [0, 1]), is the reward; an answer without a number scores
/// the range's minimum. <c>model</c> is a registered AlignHub model (served by the worker role) or a judge's id
/// (<c>judge-...</c>: its model, local or behind an OpenAI-compatible endpoint). Asked greedily, <c>max_completions_tokens</c>
/// (default 16) at most.
/// </summary>
public sealed record ScoreModel(string Name, string Model, IReadOnlyList<Templates.ChatMessage> Input, double Min, double Max, int MaxTokens) : Grader(Name)
{
    /// <summary>How the model is asked (<see cref="Grader.Bind"/>); unbound, grading fails saying so.</summary>
    public Func<ScoreModel, IReadOnlyList<Templates.ChatMessage>, string>? Ask { get; init; }

    public override double Grade(JsonElement? item, string outputText)
    {
        if (Ask is null) throw new InvalidOperationException($"score_model grader \"{Name}\" needs a model server here (the worker role)");
        var messages = Input.Select(m => new Templates.ChatMessage(m.Role, Render(m.Content, item, outputText))).ToList();
        return JudgePrompts.Score(Ask(this, messages), Min, Max) is { } s ? s : Min;
    }
}

/// <summary>AlignHub's <c>numeric_match</c>: 1 when both parse as numbers within <c>tolerance</c> (absolute), else 0.</summary>
public sealed record NumericMatch(string Name, string Input, string Reference, double Tolerance) : Grader(Name)
{
    public override double Grade(JsonElement? item, string outputText) =>
        double.TryParse(Render(Input, item, outputText).Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var a)
        && double.TryParse(Render(Reference, item, outputText).Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var b)
        && Math.Abs(a - b) <= Tolerance ? 1 : 0;
}

/// <summary>AlignHub's <c>regex_match</c>: 1 when the pattern matches somewhere in the input (100 ms limit; a timeout scores 0).</summary>
public sealed record RegexMatch(string Name, string Input, Regex Pattern) : Grader(Name)
{
    public override double Grade(JsonElement? item, string outputText)
    {
        try { return Pattern.IsMatch(Render(Input, item, outputText)) ? 1 : 0; }
        catch (RegexMatchTimeoutException) { return 0; }
    }
}

/// <summary>
/// AlignHub's <c>json_valid</c>: 1 when the input is JSON (and, with <c>schema</c>, satisfies it), else 0. Schema
/// keywords checked: type, enum, const, required, properties, additionalProperties (false), items, minimum, maximum,
/// minLength, maxLength, minItems, maxItems; others are ignored.
/// </summary>
public sealed record JsonValid(string Name, string Input, JsonElement? Schema) : Grader(Name)
{
    public override double Grade(JsonElement? item, string outputText)
    {
        try
        {
            using var doc = JsonDocument.Parse(Render(Input, item, outputText));
            return Schema is not { } s || Satisfies(doc.RootElement, s) ? 1 : 0;
        }
        catch (JsonException) { return 0; }
    }

    public static bool Satisfies(JsonElement v, JsonElement s)
    {
        if (s.ValueKind != JsonValueKind.Object) return true;
        if (s.TryGetProperty("type", out var t))
        {
            var types = t.ValueKind == JsonValueKind.Array ? t.EnumerateArray().Select(x => x.GetString()).ToList() : [t.GetString()];
            if (!types.Any(x => IsType(v, x))) return false;
        }
        if (s.TryGetProperty("enum", out var e) && e.ValueKind == JsonValueKind.Array && !e.EnumerateArray().Any(x => JsonElement.DeepEquals(x, v))) return false;
        if (s.TryGetProperty("const", out var c) && !JsonElement.DeepEquals(c, v)) return false;
        if (v.ValueKind == JsonValueKind.Number)
        {
            var d = v.GetDouble();
            if (s.TryGetProperty("minimum", out var min) && min.ValueKind == JsonValueKind.Number && d < min.GetDouble()) return false;
            if (s.TryGetProperty("maximum", out var max) && max.ValueKind == JsonValueKind.Number && d > max.GetDouble()) return false;
        }
        if (v.ValueKind == JsonValueKind.String)
        {
            int len = v.GetString()!.Length;
            if (s.TryGetProperty("minLength", out var a) && a.ValueKind == JsonValueKind.Number && len < a.GetInt32()) return false;
            if (s.TryGetProperty("maxLength", out var b) && b.ValueKind == JsonValueKind.Number && len > b.GetInt32()) return false;
        }
        if (v.ValueKind == JsonValueKind.Array)
        {
            int len = v.GetArrayLength();
            if (s.TryGetProperty("minItems", out var a) && a.ValueKind == JsonValueKind.Number && len < a.GetInt32()) return false;
            if (s.TryGetProperty("maxItems", out var b) && b.ValueKind == JsonValueKind.Number && len > b.GetInt32()) return false;
            if (s.TryGetProperty("items", out var items) && !v.EnumerateArray().All(x => Satisfies(x, items))) return false;
        }
        if (v.ValueKind == JsonValueKind.Object)
        {
            if (s.TryGetProperty("required", out var req) && req.ValueKind == JsonValueKind.Array
                && !req.EnumerateArray().All(r => r.ValueKind == JsonValueKind.String && v.TryGetProperty(r.GetString()!, out _))) return false;
            var props = s.TryGetProperty("properties", out var p) && p.ValueKind == JsonValueKind.Object ? p : (JsonElement?)null;
            foreach (var field in v.EnumerateObject())
            {
                if (props is { } ps && ps.TryGetProperty(field.Name, out var fs)) { if (!Satisfies(field.Value, fs)) return false; }
                else if (s.TryGetProperty("additionalProperties", out var ap) && ap.ValueKind == JsonValueKind.False) return false;
            }
        }
        return true;
    }

    static bool IsType(JsonElement v, string? type) => type switch
    {
        "object" => v.ValueKind == JsonValueKind.Object,
        "array" => v.ValueKind == JsonValueKind.Array,
        "string" => v.ValueKind == JsonValueKind.String,
        "number" => v.ValueKind == JsonValueKind.Number,
        "integer" => v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out _),
        "boolean" => v.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => v.ValueKind == JsonValueKind.Null,
        _ => false,
    };
}

/// <summary>AlignHub's <c>length_penalty</c>: -penalty_per_char * max(0, length - max_length) (characters); 0 within the limit.</summary>
public sealed record LengthPenalty(string Name, string Input, double MaxLength, double PenaltyPerChar) : Grader(Name)
{
    public override double Grade(JsonElement? item, string outputText) =>
        -PenaltyPerChar * Math.Max(0, Render(Input, item, outputText).Length - MaxLength);
}

/// <summary>
/// <c>calculate_output</c> of a multi grader: numbers, grader names, + - * / ^ (right-associative), unary minus,
/// parentheses, and min, max (two or more arguments), abs, floor, ceil, exp, sqrt, log.
/// </summary>
public sealed class Formula
{
    readonly Func<IReadOnlyDictionary<string, double>, double> eval;
    public IReadOnlySet<string> Variables { get; }
    Formula(Func<IReadOnlyDictionary<string, double>, double> eval, IReadOnlySet<string> vars) { this.eval = eval; Variables = vars; }

    public double Evaluate(IReadOnlyDictionary<string, double> values) => eval(values);

    static readonly string[] Functions = ["min", "max", "abs", "floor", "ceil", "exp", "sqrt", "log"];

    public static Formula Parse(string text)
    {
        var tokens = Regex.Matches(text, @"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|[A-Za-z_][A-Za-z0-9_]*|[-+*/^(),]|\S)").Select(m => m.Groups[1].Value).ToList();
        int pos = 0;
        var vars = new HashSet<string>();
        string? Peek() => pos < tokens.Count ? tokens[pos] : null;
        string Next() => pos < tokens.Count ? tokens[pos++] : throw new FormatException("the formula ends too early");
        void Expect(string t) { if (Next() != t) throw new FormatException($"expected \"{t}\" at token {pos}"); }
        Func<IReadOnlyDictionary<string, double>, double> Sum()
        {
            var left = Product();
            while (Peek() is "+" or "-")
            {
                var op = Next(); var l = left; var r = Product();
                left = op == "+" ? v => l(v) + r(v) : v => l(v) - r(v);
            }
            return left;
        }
        Func<IReadOnlyDictionary<string, double>, double> Product()
        {
            var left = Power();
            while (Peek() is "*" or "/")
            {
                var op = Next(); var l = left; var r = Power();
                left = op == "*" ? v => l(v) * r(v) : v => l(v) / r(v);
            }
            return left;
        }
        Func<IReadOnlyDictionary<string, double>, double> Power()
        {
            var b = Unary();
            if (Peek() != "^") return b;
            Next();
            var e = Power();
            return v => Math.Pow(b(v), e(v));
        }
        Func<IReadOnlyDictionary<string, double>, double> Unary()
        {
            if (Peek() == "-") { Next(); var x = Unary(); return v => -x(v); }
            if (Peek() == "+") { Next(); return Unary(); }
            return Atom();
        }
        Func<IReadOnlyDictionary<string, double>, double> Atom()
        {
            var t = Next();
            if (t == "(") { var inner = Sum(); Expect(")"); return inner; }
            if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var num)) return _ => num;
            if (Regex.IsMatch(t, "^[A-Za-z_]"))
            {
                if (Peek() == "(" && Functions.Contains(t))
                {
                    Next();
                    var args = new List<Func<IReadOnlyDictionary<string, double>, double>> { Sum() };
                    while (Peek() == ",") { Next(); args.Add(Sum()); }
                    Expect(")");
                    if (t is not ("min" or "max") && args.Count != 1) throw new FormatException($"{t} takes one argument");
                    if (t is "min" or "max" && args.Count < 2) throw new FormatException($"{t} takes two or more arguments");
                    var a0 = args[0];
                    return t switch
                    {
                        "min" => v => args.Min(f => f(v)),
                        "max" => v => args.Max(f => f(v)),
                        "abs" => v => Math.Abs(a0(v)),
                        "floor" => v => Math.Floor(a0(v)),
                        "ceil" => v => Math.Ceiling(a0(v)),
                        "exp" => v => Math.Exp(a0(v)),
                        "sqrt" => v => Math.Sqrt(a0(v)),
                        _ => v => Math.Log(a0(v)),
                    };
                }
                vars.Add(t);
                return v => v[t];
            }
            throw new FormatException($"unexpected \"{t}\" at token {pos}");
        }
        var f = Sum();
        if (pos != tokens.Count) throw new FormatException($"unexpected \"{tokens[pos]}\" at token {pos + 1}");
        return new Formula(f, vars);
    }
}
