namespace AlignHub.Domain;

/// <summary>
/// A built-in preference task with a hidden true preference, generated from a seed: prompts ask for a review, each
/// response is three words, and the true reward counts positive words minus negative ones. Pairs prefer the response
/// with the higher true reward (ties are never paired). Tests, the dashboard demo and the benchmarks use it: a
/// reward model should recover the hidden reward, and DPO should raise it.
/// </summary>
public static class PreferenceTask
{
    public static readonly string[] Positive = ["great", "lovely", "superb", "bright", "kind"];
    public static readonly string[] Negative = ["awful", "dull", "rude", "broken", "sad"];
    public static readonly string[] Neutral = ["very", "quite", "the", "so", "a"];
    static readonly string[] Topics = ["movie", "cafe", "book", "song", "park", "hotel", "train", "garden"];
    static readonly string[] Words = [.. Positive, .. Negative, .. Neutral];

    /// <summary>+1 for each positive word, -1 for each negative word.</summary>
    public static double TrueReward(string response) =>
        response.Split([' ', '\n', '.', ',', '!'], StringSplitOptions.RemoveEmptyEntries)
            .Sum(w => Positive.Contains(w) ? 1 : Negative.Contains(w) ? -1 : 0);

    /// <summary>
    /// The hidden reward as a grader in OpenAI's shape (a <c>multi</c> grader of six <c>regex_match</c> graders, one per
    /// word position and sign): equal to <see cref="TrueReward"/> on responses of up to three space-separated words, as
    /// the task's are; the gold reward source of the overoptimisation diagnostics.
    /// </summary>
    public static object TrueRewardGrader
    {
        get
        {
            string Word(string[] words) => "(" + string.Join("|", words) + ")";
            string At(int position, string[] words) => "^\\s*" + string.Concat(Enumerable.Repeat("\\S+\\s+", position)) + Word(words) + "(\\s|$)";
            var graders = new Dictionary<string, object>();
            for (int i = 0; i < 3; i++)
            {
                graders[$"p{i}"] = new { type = "regex_match", name = $"positive {i + 1}", input = "{{sample.output_text}}", pattern = At(i, Positive) };
                graders[$"n{i}"] = new { type = "regex_match", name = $"negative {i + 1}", input = "{{sample.output_text}}", pattern = At(i, Negative) };
            }
            return new { type = "multi", name = "true_reward", graders, calculate_output = "p0 + p1 + p2 - n0 - n1 - n2" };
        }
    }

    public static string Prompt(Random rng) => $"Review the {Topics[rng.Next(Topics.Length)]}: ";

    public static string Response(Random rng) => string.Join(' ', Enumerable.Range(0, 3).Select(_ => Words[rng.Next(Words.Length)]));

    public static List<PreferencePair> Pairs(int n, int seed)
    {
        var rng = new Random(seed);
        var pairs = new List<PreferencePair>(n);
        while (pairs.Count < n)
        {
            var prompt = Prompt(rng);
            string a = Response(rng), b = Response(rng);
            double ra = TrueReward(a), rb = TrueReward(b);
            if (ra == rb) continue;
            pairs.Add(ra > rb ? new PreferencePair(prompt, a, b) : new PreferencePair(prompt, b, a));
        }
        return pairs;
    }

    /// <summary>Supervised rows (prompt, a random response): a starting policy that speaks the task's language.</summary>
    public static List<SupervisedExample> Demonstrations(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => ChatTemplate.FromPromptCompletion(Prompt(rng), Response(rng))).ToList();
    }
}
