using System.Text.Json;

namespace AlignHub.Tests;

/// <summary>Small supervised data with a learnable pattern (greetings), made from a seed.</summary>
public static class TestData
{
    static readonly string[] Names = ["Ada", "Alan", "Grace", "Linus", "Ken", "Barbara", "Edsger", "Donald", "Margaret", "John", "Frances", "Niklaus"];

    public static IEnumerable<(string Prompt, string Completion)> Greetings(int n, int seed = 1)
    {
        var rng = new Random(seed);
        for (int i = 0; i < n; i++)
        {
            var name = Names[rng.Next(Names.Length)];
            int k = rng.Next(2, 9);
            if (i % 2 == 0) yield return ($"Greet {name}.\n", $"Hello, {name}!");
            else yield return ($"Count to {k}.\n", string.Join(" ", Enumerable.Range(1, k)));
        }
    }

    public static string Jsonl(int n, int seed = 1, bool chat = false) => string.Join("\n", Greetings(n, seed).Select((g, i) =>
        chat && i % 3 == 0
            ? JsonSerializer.Serialize(new { messages = new object[] { new { role = "user", content = g.Prompt }, new { role = "assistant", content = g.Completion } } })
            : JsonSerializer.Serialize(new { prompt = g.Prompt, completion = g.Completion }))) + "\n";
}
