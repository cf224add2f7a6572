using AlignHub.Training.Losses;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>Advantage estimators, KL estimators and the clipped policy and value losses against values worked out by hand.</summary>
public class RlLossTests
{
    static float[] V(Tensor t) => t.detach().data<float>().ToArray();
    static void Near(double[] expected, float[] got, double tol = 1e-5)
    {
        Assert.Equal(expected.Length, got.Length);
        for (int i = 0; i < got.Length; i++) Assert.True(Math.Abs(expected[i] - got[i]) <= tol, $"[{i}] expected {expected[i]}, got {got[i]}");
    }

    static readonly Tensor Rewards = tensor(new float[] { 1, 2, 3, 0, 0, 0 });

    [Fact]
    public void Group_advantages_centre_on_the_group_and_scale_as_asked()
    {
        // Group 1: mean 2, unbiased std 1. Group 2: all equal, std 0, so its advantages are 0.
        Near([-1 / 1.0001, 0, 1 / 1.0001, 0, 0, 0], V(Advantages.Group(Rewards, 3, "group")));
        Near([-1, 0, 1, 0, 0, 0], V(Advantages.Group(Rewards, 3, "none")));
        // Batch: mean 1, squared deviations 0+1+4+1+1+1 = 8, unbiased variance 1.6.
        double s = Math.Sqrt(1.6) + 1e-4;
        Near([-1 / s, 0, 1 / s, 0, 0, 0], V(Advantages.Group(Rewards, 3, "batch")));
        Assert.Equal(0.5, Advantages.ZeroStdFraction(Rewards, 3), 6);
    }

    [Fact]
    public void Leave_one_out_ReMax_and_batch_normalised_baselines()
    {
        // Baselines of group 1: (2+3)/2 = 2.5, (1+3)/2 = 2, (1+2)/2 = 1.5.
        Near([-1.5, 0, 1.5, 0, 0, 0], V(Advantages.LeaveOneOut(Rewards, 3)));
        // Greedy rewards 2 and -1 for the two prompts.
        Near([-1, 0, 1, 1, 1, 1], V(Advantages.ReMax(Rewards, tensor(new float[] { 2, -1 }), 3)));
        Near([-1, 0, 1], V(Advantages.BatchNormalized(tensor(new float[] { 1, 2, 3 }))));
        Assert.Throws<ArgumentException>(() => Advantages.LeaveOneOut(Rewards, 1));
    }

    [Fact]
    public void REINFORCE_plus_plus_returns_to_go_with_token_KL_normalised_over_the_batch()
    {
        // Rewards (1, 0); row 1's third token is padding. beta 0.1 on k1 = (0.1, 0.2, 0.3) and (0.5, 0.5, -):
        // token rewards (-0.01, -0.02, 0.97) and (-0.05, -0.05); returns-to-go (0.94, 0.95, 0.97) and (-0.1, -0.05).
        double[] g = [0.94, 0.95, 0.97, -0.1, -0.05];
        double mean = g.Average(), std = Math.Sqrt(g.Sum(x => (x - mean) * (x - mean)) / (g.Length - 1));
        var a = Advantages.ReinforcePlusPlus(tensor(new float[] { 1, 0 }), tensor(new float[] { 0.1f, 0.2f, 0.3f, 0.5f, 0.5f, 9 }, [2, 3]),
            tensor(new float[] { 1, 1, 1, 1, 1, 0 }, [2, 3]), 0.1);
        Near([.. g.Take(3).Select(x => (x - mean) / std), .. g.Skip(3).Select(x => (x - mean) / std), 0], V(a));
    }

    [Fact]
    public void GAE_on_hand_worked_trajectories()
    {
        // Row 0: r = (0, 0, 1), V = (0.5, 0.6, 0.7), gamma 1, lambda 0.9:
        //   d2 = 1 - 0.7 = 0.3, A2 = 0.3; d1 = 0.7 - 0.6 = 0.1, A1 = 0.1 + 0.9 * 0.3 = 0.37; d0 = 0.1, A0 = 0.1 + 0.9 * 0.37 = 0.433.
        // Row 1: its third token is padding (ignored whatever it holds): d1 = 1 - 0.4 = 0.6, A1 = 0.6; d0 = 0.4 - 0.2 = 0.2, A0 = 0.74.
        using var r = tensor(new float[] { 0, 0, 1, 0, 1, 5 }, [2, 3]);
        using var v = tensor(new float[] { 0.5f, 0.6f, 0.7f, 0.2f, 0.4f, 9 }, [2, 3]);
        using var m = tensor(new float[] { 1, 1, 1, 1, 1, 0 }, [2, 3]);
        var (a, ret) = Advantages.Gae(r, v, m, 1.0, 0.9);
        Near([0.433, 0.37, 0.3, 0.74, 0.6, 0], V(a));
        Near([0.933, 0.97, 1.0, 0.94, 1.0, 0], V(ret));
        // gamma 0.5, lambda 1 on row 0: d2 = 0.3, d1 = 0 + 0.35 - 0.6 = -0.25, d0 = 0.3 - 0.5 = -0.2; A1 = -0.25 + 0.15 = -0.1, A0 = -0.2 - 0.05 = -0.25.
        var (a2, _) = Advantages.Gae(r[..1], v[..1], m[..1], 0.5, 1.0);
        Near([-0.25, -0.1, 0.3], V(a2));
    }

    [Fact]
    public void KL_estimators_k1_k2_k3()
    {
        using var pol = tensor(new float[] { (float)Math.Log(0.5), (float)Math.Log(0.2) });
        using var rf = tensor(new float[] { (float)Math.Log(0.25), (float)Math.Log(0.2) });
        Near([Math.Log(2), 0], V(KlEstimators.K1(pol, rf)));
        Near([0.5 * Math.Log(0.5) * Math.Log(0.5), 0], V(KlEstimators.K2(pol, rf)));
        Near([0.5 - Math.Log(0.5) - 1, 0], V(KlEstimators.K3(pol, rf))); // r = 0.25 / 0.5
    }

    /// <summary>
    /// Two sequences, ragged (the second has one token): ratios (1.5, 0.5) with A = 1 and (0.7, -) with A = -1, epsilon
    /// 0.2, epsilon_high 0.28. Per token: -min(1.5, 1.28) = -1.28 (clipped high), -min(0.5, 0.8) = -0.5, and
    /// -min(-0.7, -0.8) = 0.8 (clipped low). Sum -0.98 over 3 tokens.
    /// </summary>
    [Theory]
    [InlineData("grpo", -0.045)]         // ((-1.28 - 0.5) / 2 + 0.8 / 1) / 2
    [InlineData("dapo", -0.98 / 3)]
    [InlineData("bnpo", -0.98 / 3)]
    [InlineData("dr_grpo", -0.98 / 8)]   // 2 sequences * max_completion_length 4
    public void The_clipped_loss_clips_at_both_bounds_and_aggregates_a_ragged_batch(string lossType, double expected)
    {
        using var old = zeros(2, 2);
        using var logps = tensor(new float[] { (float)Math.Log(1.5), (float)Math.Log(0.5), (float)Math.Log(0.7), (float)Math.Log(3) }, [2, 2]).requires_grad_();
        using var adv = tensor(new float[] { 1, -1 });
        using var mask = tensor(new float[] { 1, 1, 1, 0 }, [2, 2]);
        var o = PolicyLosses.Clipped(logps, old, adv, mask, 0.2, 0.28, lossType, LossNormalizer.Of(mask, 4));
        Assert.Equal(expected, o.Loss.item<float>(), 5);
        Near([-1.28, -0.5, 0.8, 0], V(o.PerToken));
        Assert.Equal(1, o.ClipLow.item<float>(), 5);
        Assert.Equal(1, o.ClipHigh.item<float>(), 5);
        Assert.Equal(3, o.ClipUnits.item<float>(), 5);
        o.Loss.backward();
        // Clipped tokens carry no gradient; the unclipped one d(-A r)/d log p = -A r = -0.5, times its weight in the aggregate.
        double weight = lossType switch { "grpo" => 0.5 * 0.5, "dr_grpo" => 1 / 8.0, _ => 1 / 3.0 };
        Near([0, -0.5 * weight, 0, 0], V(logps.grad!));
    }

    /// <summary>
    /// Whole-batch normalisation: the same two sequences split into two micro-batches of one each, every loss normalised
    /// by the batch's counts, add up to the whole batch's loss for dapo, grpo and dr_grpo; bnpo is TRL's local variant
    /// (each micro-batch's own token mean, averaged): (-1.78 / 2 + 0.8 / 1) / 2 = -0.045, not dapo's -0.98 / 3.
    /// </summary>
    [Theory]
    [InlineData("dapo", -0.98 / 3)]
    [InlineData("grpo", -0.045)]
    [InlineData("dr_grpo", -0.98 / 8)]
    [InlineData("bnpo", -0.045)]
    public void Micro_batch_losses_add_up_to_the_whole_batch_loss(string lossType, double expected)
    {
        using var logps = tensor(new float[] { (float)Math.Log(1.5), (float)Math.Log(0.5), (float)Math.Log(0.7), (float)Math.Log(3) }, [2, 2]);
        using var old = zeros(2, 2);
        using var adv = tensor(new float[] { 1, -1 });
        using var mask = tensor(new float[] { 1, 1, 1, 0 }, [2, 2]);
        var norm = new LossNormalizer(2, 3, 4, MicroBatches: 2);
        double sum = 0;
        for (int i = 0; i < 2; i++)
            sum += PolicyLosses.Clipped(logps[i..(i + 1)], old[i..(i + 1)], adv[i..(i + 1)], mask[i..(i + 1)], 0.2, 0.28, lossType, norm).Loss.item<float>();
        Assert.Equal(expected, sum, 5);
    }

    /// <summary>
    /// GSPO (importance_sampling_level sequence): sequence 1's log-ratios (ln 1.5, ln 0.5) average to ln sqrt(0.75), so
    /// s_1 = 0.866 (inside 1 +- 0.2: unclipped, loss -0.866 on each of its 2 tokens); sequence 2's s_2 = 0.7 with A = -1
    /// is clipped low (loss 0.8 on its token). dapo: (-0.866 * 2 + 0.8) / 3. One clipped sequence of two.
    /// </summary>
    [Fact]
    public void GSPO_takes_one_clipped_ratio_per_sequence()
    {
        using var old = zeros(2, 2);
        using var logps = tensor(new float[] { (float)Math.Log(1.5), (float)Math.Log(0.5), (float)Math.Log(0.7), (float)Math.Log(3) }, [2, 2]).requires_grad_();
        using var adv = tensor(new float[] { 1, -1 });
        using var mask = tensor(new float[] { 1, 1, 1, 0 }, [2, 2]);
        var o = PolicyLosses.Clipped(logps, old, adv, mask, 0.2, 0.2, "dapo", LossNormalizer.Of(mask, 4), level: "sequence");
        double s1 = Math.Sqrt(0.75);
        Assert.Equal((-s1 * 2 + 0.8) / 3, o.Loss.item<float>(), 5);
        Assert.Equal(1, o.ClipLow.item<float>(), 5);
        Assert.Equal(2, o.ClipUnits.item<float>(), 5);
        o.Loss.backward();
        // d/d log p_t of -s_1 * 2 / 3, s_1 = exp(mean of the two log-ratios): -s_1 * 2 / 3 * 1/2 per token; the clipped sequence has none.
        Near([-s1 / 3, -s1 / 3, 0, 0], V(logps.grad!));
    }

    /// <summary>CISPO: -sg(min(r, eps_max)) A log pi: with r = 1.5 and 0.5 (A = 1), eps_max 1.2: weights 1.2 and 0.5; the gradient is -w A / tokens.</summary>
    [Fact]
    public void CISPO_weighs_log_probs_by_the_capped_detached_ratio()
    {
        using var old = zeros(1, 2);
        using var logps = tensor(new float[] { (float)Math.Log(1.5), (float)Math.Log(0.5) }, [1, 2]).requires_grad_();
        using var mask = ones(1, 2);
        var o = PolicyLosses.Clipped(logps, old, tensor(new float[] { 1 }), mask, 0.2, 1.2, "cispo", LossNormalizer.Of(mask, 4));
        Assert.Equal(-(1.2 * Math.Log(1.5) + 0.5 * Math.Log(0.5)) / 2, o.Loss.item<float>(), 5);
        Assert.Equal(1, o.ClipHigh.item<float>(), 5);
        o.Loss.backward();
        Near([-0.6, -0.25], V(logps.grad!));
    }

    /// <summary>RLOO's loss per sequence: ratios exp(sum of log-ratios) = 0.75 (A = 1, clipped low? no: A > 0, 0.75 &lt; 0.8 only matters for A &lt; 0) and 0.7 (A = -1: clipped at 0.8).</summary>
    [Fact]
    public void The_sequence_level_surrogate_takes_one_ratio_per_completion()
    {
        using var seq = tensor(new float[] { (float)Math.Log(0.75), (float)Math.Log(0.7) }).requires_grad_();
        using var old = zeros(2);
        using var w = ones(2);
        var o = PolicyLosses.ClippedSequence(seq, old, tensor(new float[] { 1, -1 }), w, 0.2, 0.2, 2);
        Assert.Equal((-0.75 + 0.8) / 2, o.Loss.item<float>(), 5);
        Assert.Equal(1, o.ClipLow.item<float>(), 5);
        o.Loss.backward();
        Near([-0.375, 0], V(seq.grad!));
    }

    /// <summary>
    /// Whitening as verl's masked_whiten: (x - mean) * rsqrt(var + 1e-8). 37 equal float32 rewards of 0.1 carry only
    /// rounding noise: their whitened values stay about 1e-3 or less (verl: -0.0009), where (std + 1e-8) made them O(1).
    /// </summary>
    [Fact]
    public void Whitening_equal_values_gives_near_zero_not_rounding_noise_amplified()
    {
        using var x = full(37, 0.1f);
        using var m = ones(37);
        var w = V(Advantages.Whiten(x, m));
        Assert.All(w, v => Assert.True(Math.Abs(v) < 1e-2, $"whitened equal value {v}"));
        using var y = tensor(new float[] { 1, 2, 3 });
        Near([-1, 0, 1], V(Advantages.Whiten(y, ones(3))), 1e-6);
    }

    [Fact]
    public void Overlong_shaping_and_distillation_advantages()
    {
        // max 20, buffer 4: no penalty up to 16, -0.5 at 18, -1 at 20 (factor 1); factor 2 doubles it.
        Assert.Equal(0, Advantages.OverlongPenalty(16, 20, 4, 1.0));
        Assert.Equal(-0.5, Advantages.OverlongPenalty(18, 20, 4, 1.0), 12);
        Assert.Equal(-1.0, Advantages.OverlongPenalty(20, 20, 4, 1.0), 12);
        Assert.Equal(-1.0, Advantages.OverlongPenalty(18, 20, 4, 2.0), 12);
        using var student = tensor(new float[] { -1, -2, -3 }, [1, 3]);
        using var teacher = tensor(new float[] { -0.5f, -2.5f, -9 }, [1, 3]);
        Near([0.5, -0.5, 0], V(Advantages.Distillation(student, teacher, tensor(new float[] { 1, 1, 0 }, [1, 3]))));
    }

    [Fact]
    public void The_KL_term_adds_beta_k3_per_token()
    {
        using var old = zeros(1, 2);
        using var logps = zeros(1, 2);
        using var reference = full(1, 2, (float)Math.Log(0.5)); // k3 = 0.5 - ln 0.5 - 1 per token
        using var mask = ones(1, 2);
        var o = PolicyLosses.Clipped(logps, old, tensor(new float[] { 0 }), mask, 0.2, 0.2, "grpo", LossNormalizer.Of(mask, 2), reference, beta: 0.1);
        Assert.Equal(0.1 * (0.5 - Math.Log(0.5) - 1), o.Loss.item<float>(), 5);
    }

    [Fact]
    public void The_clipped_value_loss_takes_the_worse_of_clipped_and_unclipped()
    {
        // V = (1, 2), V_old = (0.5, 2), R = (0, 2.5), clip 0.2: (1 - 0)^2 = 1 beats (0.7 - 0)^2; (2 - 2.5)^2 = 0.25 twice.
        var loss = PolicyLosses.ClippedValue(tensor(new float[] { 1, 2 }), tensor(new float[] { 0.5f, 2 }), tensor(new float[] { 0, 2.5f }), ones(2), 0.2, 2);
        Assert.Equal(0.5 * (1 + 0.25) / 2, loss.item<float>(), 6);
    }

    [Fact]
    public void Adaptive_KL_controller_moves_beta_proportionally_and_clips_the_error_at_20_percent()
    {
        // Worked by hand from Ziegler et al. (2019), eq. in section 2.2: e = clip(KL / target - 1, -0.2, 0.2), beta *= 1 + e n / horizon.
        Assert.Equal(0.1 * (1 + 0.2 * 256 / 10000.0), KlControl.Adaptive(0.1, 9.0, 6.0, 10000, 256), 15);   // e = 0.5, clipped to 0.2
        Assert.Equal(0.1 * (1 - 0.1 * 256 / 10000.0), KlControl.Adaptive(0.1, 5.4, 6.0, 10000, 256), 15);   // e = -0.1
        Assert.Equal(0.2 * (1 - 0.2 * 64 / 1000.0), KlControl.Adaptive(0.2, 0.0, 6.0, 1000, 64), 15);       // e = -1, clipped to -0.2
        Assert.Equal(0.3, KlControl.Adaptive(0.3, 6.0, 6.0, 10000, 256), 15);                               // on target: unchanged
    }
}
