using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Models;
using AlignHub.Training.Rewards;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>Reward sources: one reward per completion, as the reward model scores the sequence it was trained on.</summary>
public class RewardSourceTests
{
    static readonly string Config = ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]);
    static readonly ByteTokenizer Tok = new();

    static RewardModel Member(int seed)
    {
        torch.manual_seed(seed);
        var rm = new RewardModel(CausalLM.Create(Config));
        rm.Train(false);
        return rm;
    }

    static readonly RewardInput[] Inputs =
    [
        new("Review the film: ", "great warm fun"), new("Review the book: ", "dull bad slow"), new("Hi", ""), new("Review the film: ", "great warm fun"),
    ];

    /// <summary>The reward read off by hand: one unpadded sequence [bos] + prompt + completion + [eos], the score head at its last token.</summary>
    static double Direct(RewardModel rm, RewardInput x)
    {
        using var _ = no_grad();
        long[] ids = [Tok.BosId, .. Tok.Encode(x.Prompt).Select(i => (long)i), .. Tok.Encode(x.Completion).Select(i => (long)i), Tok.EosId];
        using var input = tensor(ids, [1, ids.Length]);
        using var h = rm.Backbone.Hidden(input, null, null);
        using var last = h[0, -1];
        return last.dot(rm.Score.weight![0]).item<float>();
    }

    [Fact]
    public void A_reward_model_source_scores_each_completion_as_its_own_sequence()
    {
        using var rm = Member(1);
        var expected = Inputs.Select(x => Direct(rm, x)).ToArray();
        using var source = new RewardModelSource(Member(1), Tok, batchSize: 3); // batches of 3 with right padding
        var got = source.Score(Inputs);
        Assert.Equal(Inputs.Length, got.Length);
        for (int i = 0; i < got.Length; i++) Assert.Equal(expected[i], got[i], 5);
        Assert.Equal(got[0], got[3], 6);
    }

    sealed class Counting(IRewardSource inner) : IRewardSource
    {
        public int Calls, Scored;
        public string Name => inner.Name;
        public double[] Score(IReadOnlyList<RewardInput> batch) { Calls++; Scored += batch.Count; return inner.Score(batch); }
        public void Dispose() => inner.Dispose();
    }

    [Fact]
    public void An_ensemble_is_the_members_mean_minus_k_times_their_standard_deviation_each_completion_scored_once()
    {
        var members = new[] { 1, 2, 3 }.Select(s => new Counting(new RewardModelSource(Member(s), Tok, 8))).ToList();
        var each = new[] { 1, 2, 3 }.Select(s => { using var m = Member(s); return Inputs.Select(x => Direct(m, x)).ToArray(); }).ToList();
        using var ensemble = new RewardEnsembleSource(members, penalty: 0.5);
        var got = ensemble.Score(Inputs);
        for (int i = 0; i < Inputs.Length; i++)
        {
            double[] xs = [each[0][i], each[1][i], each[2][i]];
            double mean = (xs[0] + xs[1] + xs[2]) / 3;
            double std = Math.Sqrt(((xs[0] - mean) * (xs[0] - mean) + (xs[1] - mean) * (xs[1] - mean) + (xs[2] - mean) * (xs[2] - mean)) / 2);
            Assert.Equal(mean - 0.5 * std, got[i], 5);
        }
        Assert.All(members, m => { Assert.Equal(1, m.Calls); Assert.Equal(Inputs.Length, m.Scored); });
    }
}
