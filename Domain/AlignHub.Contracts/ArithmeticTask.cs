using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// A built-in verifiable task for online RL: two-number addition, prompt <c>"23+45="</c>, exact answer <c>"68"</c>
/// (operands 0..49, generated from a seed). Rows carry the answer for graders (<c>{"prompt", "answer"}</c>; a
/// <c>string_check</c> of <c>{{sample.output_text}}</c> eq <c>{{item.answer}}</c> scores them). A starting point of
/// modest accuracy: SFT of <c>alignhub/tiny</c> on 4,000 demonstrations, batch 32, learning rate 3e-3, stopped after
/// 250 steps, answers about a third of held-out problems greedily (the tests and BENCHMARKS.md do this).
/// </summary>
public static class ArithmeticTask
{
    public sealed record Problem(string Prompt, string Answer);

    public static List<Problem> Problems(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => { int a = rng.Next(50), b = rng.Next(50); return new Problem($"{a}+{b}=", (a + b).ToString()); }).ToList();
    }

    public static List<SupervisedExample> Demonstrations(int n, int seed) =>
        Problems(n, seed).Select(p => ChatTemplate.FromPromptCompletion(p.Prompt, p.Answer)).ToList();

    /// <summary>Prompt rows as a training file holds them: <c>{"prompt", "answer"}</c>.</summary>
    public static List<GenerationPrompt> Prompts(int n, int seed) => Problems(n, seed).Select(p =>
    {
        var row = JsonSerializer.SerializeToElement(new { prompt = p.Prompt, answer = p.Answer });
        return new GenerationPrompt(p.Prompt, row.GetProperty("prompt"), false, row);
    }).ToList();

    public static string Jsonl(int n, int seed) =>
        string.Join("\n", Problems(n, seed).Select(p => JsonSerializer.Serialize(new { prompt = p.Prompt, answer = p.Answer }))) + "\n";

    /// <summary>The exact-match grader, in OpenAI's shape.</summary>
    public static readonly object ExactMatchGrader = new
    {
        type = "string_check", name = "exact_match", input = "{{sample.output_text}}", reference = "{{item.answer}}", operation = "eq",
    };
}
