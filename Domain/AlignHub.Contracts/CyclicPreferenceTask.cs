using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// A built-in task whose hidden preference is a cycle, which no reward function can express: a prompt
/// <c>"Greet {name}."</c> and three reply styles, formal (<c>"Good day, {name}."</c>), warm (<c>"Hi {name}!"</c>) and
/// playful (<c>"Yo {name}~"</c>), where formal beats warm, warm beats playful and playful beats formal, as in
/// rock-paper-scissors; equal styles tie. A Bradley-Terry reward model can agree with at most two of the three relations
/// (about 2/3 of balanced pairs); a general preference model can agree with all three. Pairs: <see cref="Pairs"/> (a
/// random name, two different styles, the winner chosen); an SFT start that favours one style:
/// <see cref="Demonstrations"/>; how a reply is read: <see cref="StyleOf"/> (null: none of the three).
/// </summary>
public static class CyclicPreferenceTask
{
    public static readonly IReadOnlyList<string> Names = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kai", "Lu", "Max", "Ned", "Oz", "Pia"];
    public static readonly IReadOnlyList<string> StyleNames = ["formal", "warm", "playful"];

    public static string Prompt(string name) => $"Greet {name}.";

    public static string Reply(int style, string name) => style switch
    {
        0 => $"Good day, {name}.",
        1 => $"Hi {name}!",
        2 => $"Yo {name}~",
        _ => throw new ArgumentOutOfRangeException(nameof(style)),
    };

    /// <summary>The style of a reply to <paramref name="prompt"/> (it must greet the prompt's name exactly), or null.</summary>
    public static int? StyleOf(string prompt, string reply)
    {
        var name = prompt.StartsWith("Greet ") && prompt.EndsWith('.') ? prompt[6..^1] : null;
        if (name is null) return null;
        for (int s = 0; s < 3; s++) if (reply == Reply(s, name)) return s;
        return null;
    }

    /// <summary>The hidden preference P(a beats b): 1 when a's style beats b's (s beats s + 1 mod 3), 0 when it loses, 1/2 for equal styles; a reply of no style loses to every styled one.</summary>
    public static double Preference(string prompt, string a, string b)
    {
        int? sa = StyleOf(prompt, a), sb = StyleOf(prompt, b);
        if (sa is null || sb is null) return sa is null && sb is null ? 0.5 : sa is null ? 0 : 1;
        if (sa == sb) return 0.5;
        return (sa.Value + 1) % 3 == sb.Value ? 1 : 0;
    }

    /// <summary>
    /// <paramref name="n"/> pairs: a random name; a share <paramref name="corrupted"/> (default one in four) compare a
    /// style against a corrupted reply (<see cref="Corrupted"/>), which loses to every style by the hidden rule, so a model
    /// also learns what is no greeting at all; the rest compare two styles, each of the three (winner, loser) style pairs
    /// equally often. In random order.
    /// </summary>
    public static List<PreferencePair> Pairs(int n, int seed, double corrupted = 0.25)
    {
        if (corrupted is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(corrupted));
        var rng = new Random(seed);
        int styledPairs = 0;
        return Enumerable.Range(0, n).Select(i =>
        {
            var name = Names[rng.Next(Names.Count)];
            if (Math.Floor((i + 1) * corrupted + 1e-9) > Math.Floor(i * corrupted + 1e-9))
            {
                var styled = Reply(rng.Next(3), name);
                return new PreferencePair(Prompt(name), styled, Corrupted(rng, name));
            }
            int winner = styledPairs++ % 3; // 0 beats 1, 1 beats 2, 2 beats 0, equally often
            return new PreferencePair(Prompt(name), Reply(winner, name), Reply((winner + 1) % 3, name));
        }).ToList().OrderBy(_ => rng.Next()).ToList();
    }

    /// <summary>
    /// A reply of no style: a style's reply with one character edited, cut short, with extra characters, with a wrong
    /// name, or the head of one style joined to the tail of another (near misses, as a policy drifts into them).
    /// </summary>
    public static string Corrupted(Random rng, string name)
    {
        var styled = Reply(rng.Next(3), name);
        string result = rng.Next(6) switch
        {
            4 or 5 => Edit(rng, styled),
            0 => styled[..rng.Next(1, styled.Length - 1)],
            1 => styled + new string(Enumerable.Range(0, rng.Next(1, 4)).Select(_ => "!~. ao"[rng.Next(6)]).ToArray()),
            2 => Reply(rng.Next(3), Names[(Names.ToList().IndexOf(name) + 1 + rng.Next(Names.Count - 1)) % Names.Count]),
            _ => Reply(rng.Next(3), name) is var other && rng.Next(2) == 0 ? styled[..(styled.Length / 2)] + other[(other.Length / 2)..] : other[..(other.Length / 2)] + styled[(styled.Length / 2)..],
        };
        return StyleOf(Prompt(name), result) is null ? result : result + "~";
    }

    /// <summary>One character deleted, inserted, replaced or doubled.</summary>
    static string Edit(Random rng, string s)
    {
        int i = rng.Next(s.Length);
        char c = "abdegilnoyGHY .,!~"[rng.Next(18)];
        return rng.Next(4) switch
        {
            0 => s.Remove(i, 1),
            1 => s.Insert(i, c.ToString()),
            2 => s[..i] + c + s[(i + 1)..],
            _ => s.Insert(i, s[i].ToString()),
        };
    }

    /// <summary>SFT demonstrations drawing each style with the given weights (the start favours one, so self-play has somewhere to go).</summary>
    public static List<SupervisedExample> Demonstrations(int n, int seed, double[] weights)
    {
        var rng = new Random(seed);
        double total = weights.Sum();
        return Enumerable.Range(0, n).Select(_ =>
        {
            var name = Names[rng.Next(Names.Count)];
            double u = rng.NextDouble() * total;
            int style = u < weights[0] ? 0 : u < weights[0] + weights[1] ? 1 : 2;
            return ChatTemplate.FromPromptCompletion(Prompt(name), Reply(style, name));
        }).ToList();
    }

    /// <summary>Prompt rows (<c>{"prompt"}</c>), every name in turn.</summary>
    public static List<GenerationPrompt> Prompts(int n)
    {
        return Enumerable.Range(0, n).Select(i =>
        {
            var p = Prompt(Names[i % Names.Count]);
            var row = JsonSerializer.SerializeToElement(new { prompt = p });
            return new GenerationPrompt(p, row.GetProperty("prompt"), false, row);
        }).ToList();
    }
}
