using AlignHub.Training.Data;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using static TorchSharp.torch;

namespace AlignHub.Training.Rewards;

/// <summary>
/// A pairwise oracle: P(a &gt; b | x) for the responses to one prompt. A general preference model is one
/// (<see cref="PreferenceModelSource"/>); a reward source is one through Bradley-Terry, sigmoid(r_a - r_b)
/// (<see cref="BradleyTerryPreference"/>).
/// </summary>
public interface IPairwisePreference : IDisposable
{
    string Name { get; }
    /// <summary>P [n, n] with P[i, j] = P(response i &gt; response j | prompt) and P[i, j] + P[j, i] = 1.</summary>
    double[,] Matrix(RewardInput prompt, IReadOnlyList<string> responses);
}

/// <summary>
/// A general preference model's folder as a pairwise oracle: prompt (through the one prompt encoder) + response + EOS
/// embedded at the last token, as in training; P = sigmoid of the skew-symmetric score (<see cref="GeneralPreference"/>).
/// </summary>
public sealed class PreferenceModelSource(RewardModel model, ITokenizer tok, string name = "preference_model") : IPairwisePreference
{
    readonly int maxLen = model.Backbone.Architecture.MaxPositions;
    readonly PromptEncoder encoder = new(tok, model.Backbone.Architecture.MaxPositions / 2);
    public string Name => name;

    /// <summary>The oracle of a preference model's folder (its own config.json, when it has one, says the head's size).</summary>
    public static PreferenceModelSource Load(ModelSource source, Device? device, string name = "preference_model")
    {
        if (source.Folder is { } f && File.Exists(Path.Combine(f, "config.json"))) source = source with { ConfigJson = File.ReadAllText(Path.Combine(f, "config.json")) };
        if (!source.Architecture.IsPreferenceModel) throw new InvalidDataException("this model is not a general preference model (its config.json lacks the preference model marker)");
        return new PreferenceModelSource(source.CreateRewardModel(device), source.CreateTokenizer(), name);
    }

    public double[,] Matrix(RewardInput prompt, IReadOnlyList<string> responses)
    {
        var p = encoder.Encode(prompt.Prompt);
        var rows = responses.Select(r => (p, encoder.EncodeCompletion(r, maxLen - p.Length))).ToList();
        model.Train(false);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var v = model.Outputs(rows, tok.PadId, maxLen);
        using var m = GeneralPreference.Matrix(v).to_type(ScalarType.Float64).cpu();
        var flat = m.data<double>().ToArray();
        int n = responses.Count;
        var result = new double[n, n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) result[i, j] = i == j ? 0.5 : flat[i * n + j];
        return result;
    }

    /// <summary>Every pair of <paramref name="responses"/> to a text prompt (tests and evaluation).</summary>
    public double[,] Matrix(string prompt, IReadOnlyList<string> responses) => Matrix(new RewardInput(prompt, ""), responses);

    public void Dispose() => model.Dispose();
}

/// <summary>A pointwise reward source as a pairwise oracle through Bradley-Terry: P(a &gt; b) = sigmoid(r_a - r_b).</summary>
public sealed class BradleyTerryPreference(IRewardSource rewards) : IPairwisePreference
{
    public string Name => rewards.Name;

    public double[,] Matrix(RewardInput prompt, IReadOnlyList<string> responses)
    {
        var r = rewards.Score(responses.Select(x => prompt with { Completion = x }).ToList());
        int n = r.Length;
        var m = new double[n, n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) m[i, j] = i == j ? 0.5 : 1 / (1 + Math.Exp(-(r[i] - r[j])));
        return m;
    }

    public void Dispose() => rewards.Dispose();
}

/// <summary>
/// A pairwise oracle as a reward source for groups of <paramref name="k"/> consecutive completions of one prompt: each
/// completion's reward is its estimated win rate against the rest of its group, mean_{j != i} P(i &gt; j) (SPPO's and DNO's
/// estimate of P(y &gt; pi | x), the group standing in for the current policy).
/// </summary>
public sealed class GroupWinRateSource(IPairwisePreference oracle, int k) : IRewardSource
{
    public string Name => oracle.Name + "/win_rate";
    /// <summary>The pairwise oracle behind the win rates (self-play's round evaluation asks it directly).</summary>
    public IPairwisePreference Oracle => oracle;

    public double[] Score(IReadOnlyList<RewardInput> batch)
    {
        if (k < 2) throw new InvalidDataException("a win rate within a group needs at least two completions per prompt");
        if (batch.Count % k != 0) throw new InvalidDataException($"completions come in groups of {k}; got {batch.Count}");
        var rates = new double[batch.Count];
        for (int g = 0; g < batch.Count; g += k)
        {
            var p = oracle.Matrix(batch[g], Enumerable.Range(g, k).Select(i => batch[i].Completion).ToList());
            for (int i = 0; i < k; i++)
                rates[g + i] = Enumerable.Range(0, k).Where(j => j != i).Average(j => p[i, j]);
        }
        return rates;
    }

    public void Dispose() => oracle.Dispose();
}
