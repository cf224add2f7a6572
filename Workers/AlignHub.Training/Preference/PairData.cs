using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using static TorchSharp.torch;

namespace AlignHub.Training.Preference;

/// <summary>A pair as token ids: the encoded prompt, and each continuation + [eos].</summary>
public sealed record TokenizedPair(int[] Prompt, int[] Chosen, int[] Rejected, float Margin);

/// <summary>Reference log-probs of every pair (summed and averaged over completion tokens), computed once.</summary>
public sealed record ReferenceLogps(float[] Chosen, float[] Rejected, float[] ChosenMean, float[] RejectedMean);

/// <summary>What the offline preference methods (DPO family, KTO, reward models, evaluation) share about pairs.</summary>
public static class PairData
{
    /// <summary>The prompt through the one prompt encoder; each continuation cut to the room left of <paramref name="maxLength"/>.</summary>
    public static TokenizedPair Tokenize(PreferencePair p, PromptEncoder encoder, int maxLength)
    {
        var prompt = encoder.Encode(p.Prompt);
        int room = maxLength - prompt.Length;
        return new TokenizedPair(prompt, encoder.EncodeCompletion(p.Chosen, room), encoder.EncodeCompletion(p.Rejected, room), (float)p.Margin);
    }

    public static List<(int[] Prompt, int[] Completion)> Side(IReadOnlyList<TokenizedPair> data, IEnumerable<int> idx, bool chosen) =>
        idx.Select(i => (data[i].Prompt, chosen ? data[i].Chosen : data[i].Rejected)).ToList();

    /// <summary>Tokens some pairs feed the model: the prompt twice, both continuations.</summary>
    public static long Tokens(IReadOnlyList<TokenizedPair> data, IReadOnlyList<int> idx) =>
        idx.Sum(i => (long)data[i].Prompt.Length * 2 + data[i].Chosen.Length + data[i].Rejected.Length);

    /// <summary>Host values of some rows as a tensor on <paramref name="device"/>.</summary>
    public static Tensor Pick(float[] values, IReadOnlyList<int> idx, Device device) => tensor(idx.Select(i => values[i]).ToArray(), device: device);

    /// <summary>Rewards of the chosen and rejected continuations of some pairs (both sides scored in one forward).</summary>
    public static (Tensor Chosen, Tensor Rejected) ScorePairs(RewardModel model, IReadOnlyList<TokenizedPair> data, IReadOnlyList<int> idx, int pad, int maxLen)
    {
        var r = model.Rewards([.. Side(data, idx, true), .. Side(data, idx, false)], pad, maxLen);
        int b = idx.Count;
        return (r[..b], r[b..]);
    }
}
