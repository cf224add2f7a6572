using System.Text.RegularExpressions;

namespace AlignHub.Domain;

/// <summary>
/// An AI judge: a model (a registered AlignHub model, served by the worker role, or a model behind any OpenAI-compatible
/// endpoint: a base URL, a model name and a key) with a prompt template. Pairwise judges say which of two responses is
/// better and are asked in both orders (a disagreement between the orders counts as a tie, so position bias cancels);
/// pointwise judges give a score in a range. The key is a secret: stored, used by workers, never returned, logged or
/// written into events.
/// </summary>
public sealed class Judge
{
    public required string Id { get; set; }
    public required string Name { get; set; }
    /// <summary><c>pairwise</c> or <c>pointwise</c>.</summary>
    public required string Mode { get; set; }
    /// <summary>A registered model (served locally); null when the judge is a remote endpoint.</summary>
    public string? Model { get; set; }
    /// <summary>An OpenAI-compatible base URL (<c>https://host/v1</c>) and the model name there.</summary>
    public string? BaseUrl { get; set; }
    public string? RemoteModel { get; set; }
    /// <summary>The endpoint's key. Never leaves the server.</summary>
    public string? ApiKeySecret { get; set; }
    public required string PromptTemplate { get; set; }
    public double RangeMin { get; set; }
    public double RangeMax { get; set; } = 10;
    public int MaxTokens { get; set; } = 8;
    public long CreatedAt { get; set; }
}

/// <summary>What a judge said about one pair: its pick in each order (<c>a</c>, <c>b</c> or <c>none</c>), their raw answers, and the verdict.</summary>
public sealed record PairVerdict(string Verdict, string FirstPick, string SecondPick, string FirstAnswer, string SecondAnswer);

/// <summary>The judge's prompt templates and how answers are read: pure functions, the same for local and remote judges.</summary>
public static class JudgePrompts
{
    public const string DefaultPairwise = """
        Compare two responses to the same prompt and say which one is better.

        Prompt:
        {{prompt}}

        Response A:
        {{response_a}}

        Response B:
        {{response_b}}

        Answer with one letter, A or B.
        """;

    public const string DefaultPointwise = """
        Rate the response to the prompt from {{min}} to {{max}} (higher is better).

        Prompt:
        {{prompt}}

        Response:
        {{response}}

        Answer with a number only.
        """;

    public static string Pairwise(string template, string prompt, string a, string b) =>
        template.Replace("{{prompt}}", prompt).Replace("{{response_a}}", a).Replace("{{response_b}}", b);

    public static string Pointwise(string template, string prompt, string response, double min, double max) =>
        template.Replace("{{prompt}}", prompt).Replace("{{response}}", response)
            .Replace("{{min}}", min.ToString(System.Globalization.CultureInfo.InvariantCulture))
            .Replace("{{max}}", max.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>The first standalone A or B (or 1 / 2) of an answer: <c>a</c>, <c>b</c>, or <c>none</c>.</summary>
    public static string Pick(string answer)
    {
        var m = Regex.Match(answer, @"(?<![A-Za-z0-9])([AB12])(?![A-Za-z0-9])");
        return !m.Success ? "none" : m.Groups[1].Value is "A" or "1" ? "a" : "b";
    }

    /// <summary>
    /// Both orders combined: asked (a, b) the judge picked <paramref name="first"/>; asked (b, a) it picked
    /// <paramref name="second"/> in its own terms. A side wins only when both orders name it; otherwise a tie.
    /// </summary>
    public static string Verdict(string first, string second)
    {
        var secondInItemTerms = second switch { "a" => "b", "b" => "a", _ => "none" };
        return first != "none" && first == secondInItemTerms ? first : "tie";
    }

    /// <summary>The first number in an answer, clipped to the range; null when there is none.</summary>
    public static double? Score(string answer, double min, double max)
    {
        var m = Regex.Match(answer, @"-?\d+(?:\.\d+)?");
        return m.Success && double.TryParse(m.Value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v)
            ? Math.Clamp(v, min, max) : null;
    }
}

/// <summary>Asks pairwise judges for verdicts (implemented in Domain by JudgeClient: the worker's model server or an endpoint).</summary>
public interface IPairwiseJudging
{
    /// <summary>Which of <paramref name="a"/> and <paramref name="b"/> answers <paramref name="prompt"/> better, asked in both orders.</summary>
    Task<PairVerdict> CompareAsync(Judge judge, string prompt, string a, string b, CancellationToken ct);
}
