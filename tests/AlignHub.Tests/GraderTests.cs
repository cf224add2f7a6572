using System.Text.Json;
using AlignHub.Domain;
using Xunit;

namespace AlignHub.Tests;

/// <summary>Graders (OpenAI's shapes and AlignHub's rules) against values worked out by hand.</summary>
public class GraderTests
{
    static Grader G(object spec) => Grader.Parse(JsonSerializer.SerializeToElement(spec), "g", (f, m) => throw new Exception($"{f}: {m}"))!;
    static Dictionary<string, string> Errors(object spec)
    {
        var e = new Dictionary<string, string>();
        Grader.Parse(JsonSerializer.SerializeToElement(spec), "g", (f, m) => e[f] = m);
        return e;
    }
    static double Sim(string metric, string a, string b) => G(new { type = "text_similarity", input = a, reference = b, evaluation_metric = metric }).Grade(null, "");

    [Fact]
    public void Text_similarity_metrics()
    {
        // kitten -> sitting: LCS "ittn" (4), InDel distance 6 + 7 - 8 = 5, ratio 1 - 5/13 (rapidfuzz: 61.538).
        Assert.Equal(1 - 5 / 13.0, Sim("fuzzy_match", "kitten", "sitting"), 9);
        Assert.Equal(2 * 2 / 6.0, Sim("rouge_1", "the cat sat", "the cat ran"), 9);   // 2 of 3 unigrams shared
        Assert.Equal(2 * 1 / 4.0, Sim("rouge_2", "the cat sat", "the cat ran"), 9);   // "the cat" of 2 bigrams each
        Assert.Equal(2 * 3 / 8.0, Sim("rouge_l", "a b c d", "a c d e"), 9);           // LCS a c d
        Assert.Equal(1, Sim("bleu", "a b c d", "a b c d"), 9);
        // Smoothed precisions (3+1)/(4+1), (2+1)/(3+1), (1+1)/(2+1), (0+1)/(1+1): product 0.2, brevity 1.
        Assert.Equal(Math.Pow(0.2, 0.25), Sim("bleu", "a b c d", "a b c e"), 9);
        // A shorter candidate pays the brevity penalty exp(1 - 4/2).
        Assert.Equal(Math.Exp(1 - 4 / 2.0) * Math.Pow(1.0 * 1 * 1 * 1, 0.25), Sim("bleu", "a b", "a b c d"), 9);
        Assert.Contains("supported: fuzzy_match", Errors(new { type = "text_similarity", input = "x", reference = "y", evaluation_metric = "meteor" })["g.evaluation_metric"]);
    }

    [Fact]
    public void Multi_graders_combine_named_scores_with_a_formula()
    {
        var multi = G(new
        {
            type = "multi", name = "combo",
            graders = new Dictionary<string, object>
            {
                ["exact"] = new { type = "string_check", input = "{{sample.output_text}}", reference = "{{item.answer}}", operation = "eq" },
                ["close"] = new { type = "text_similarity", input = "{{sample.output_text}}", reference = "{{item.answer}}", evaluation_metric = "fuzzy_match" },
            },
            calculate_output = "0.5 * exact + max(close, 0.2) ^ 2",
        });
        var item = JsonSerializer.SerializeToElement(new { answer = "kitten" });
        Assert.Equal(0.5 + 1, multi.Grade(item, "kitten"), 9);
        Assert.Equal(Math.Pow(1 - 5 / 13.0, 2), multi.Grade(item, "sitting"), 9);
        Assert.Equal(7, Formula.Parse("min(1, 2, 3) + abs(-4) * floor(2.7) - sqrt(9) / exp(0) + log(1) + ceil(0.2)").Evaluate(new Dictionary<string, double>()), 9);
        Assert.Equal(512, Formula.Parse("2 ^ 3 ^ 2").Evaluate(new Dictionary<string, double>()), 9); // right-associative
        foreach (var bad in new[] { "a +", "nope(1)", "max(1)", "(1", "1 1" }) Assert.Throws<FormatException>(() => Formula.Parse(bad));
        var e = Errors(new { type = "multi", graders = new { a = new { type = "string_check", input = "x", reference = "y", operation = "eq" } }, calculate_output = "a + b" });
        Assert.Contains("\"b\" names no grader", e["g.calculate_output"]);
        Assert.True(Errors(new { type = "multi", graders = new { a = new { type = "string_check" } }, calculate_output = "a" }).ContainsKey("g.graders.a.input"));
    }

    [Fact]
    public void AlignHub_rules_numeric_regex_json_and_length()
    {
        Assert.Equal(1, G(new { type = "numeric_match", input = "{{sample.output_text}}", reference = "3.1416", tolerance = 0.01 }).Grade(null, " 3.14 "));
        Assert.Equal(0, G(new { type = "numeric_match", input = "{{sample.output_text}}", reference = "3.1416", tolerance = 1e-4 }).Grade(null, "3.14"));
        Assert.Equal(0, G(new { type = "numeric_match", input = "{{sample.output_text}}", reference = "3" }).Grade(null, "three"));
        var digits = G(new { type = "regex_match", input = "{{sample.output_text}}", pattern = "^\\d+$" });
        Assert.Equal((1.0, 0.0), (digits.Grade(null, "123"), digits.Grade(null, "12a")));
        Assert.StartsWith("invalid regular expression", Errors(new { type = "regex_match", input = "x", pattern = "(" })["g.pattern"]);
        var json = G(new
        {
            type = "json_valid", input = "{{sample.output_text}}",
            schema = new { type = "object", required = new[] { "a" }, properties = new { a = new { type = "integer", minimum = 1 } }, additionalProperties = false },
        });
        Assert.Equal([1.0, 0, 0, 0, 0], new[] { "{\"a\": 2}", "{\"a\": 0}", "{\"a\": 2, \"b\": 1}", "{\"a\": 2.5}", "not json" }.Select(x => json.Grade(null, x)));
        Assert.Equal(1, G(new { type = "json_valid", input = "{{sample.output_text}}" }).Grade(null, "[1, 2]"));
        Assert.Equal(-0.3, G(new { type = "length_penalty", input = "{{sample.output_text}}", max_length = 5, penalty_per_char = 0.1 }).Grade(null, "abcdefgh"), 9);
        Assert.Equal(0, G(new { type = "length_penalty", input = "{{sample.output_text}}", max_length = 5 }).Grade(null, "abc"));
        Assert.Equal("is required", Errors(new { type = "length_penalty", input = "x" })["g.max_length"]);
    }
}
