using AlignHub.Training.Losses;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>Each loss against values worked out by hand in double precision from its formula.</summary>
public class PreferenceLossTests
{
    static double LogSigmoid(double x) => -Math.Log(1 + Math.Exp(-x));
    static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    // Two pairs. Row 0: policy c=-5, r=-7; reference c=-6, r=-6 => l_c = 1, l_r = -1, d = 2.
    //           Row 1: policy c=-9, r=-4; reference c=-8, r=-5 => l_c = -1, l_r = 1, d = -2.
    static PairLogps Pairs() => new(
        tensor(new[] { -5f, -9f }), tensor(new[] { -7f, -4f }), tensor(new[] { -6f, -8f }), tensor(new[] { -6f, -5f }),
        // means over completions of 2 and 4 tokens (chosen) and 4 and 2 tokens (rejected)
        tensor(new[] { -2.5f, -2.25f }), tensor(new[] { -1.75f, -2f }), tensor(new[] { -3f, -2f }), tensor(new[] { -1.5f, -2.5f }));

    static double[] D(Tensor t) => t.data<float>().ToArray().Select(x => (double)x).ToArray();

    static void Close(double[] expected, Tensor actual, double tol = 1e-5)
    {
        var a = D(actual);
        Assert.Equal(expected.Length, a.Length);
        for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(expected[i] - a[i]) < tol, $"[{i}] expected {expected[i]}, got {a[i]}");
    }

    [Fact]
    public void Sigmoid_DPO_and_its_rewards()
    {
        var o = PreferenceLosses.Sigmoid(Pairs(), beta: 0.1);
        Close([-LogSigmoid(0.2), -LogSigmoid(-0.2)], o.Losses);
        Close([0.1, -0.1], o.ChosenRewards);
        Close([-0.1, 0.1], o.RejectedRewards);
    }

    [Fact]
    public void Sigmoid_tends_to_log_2_as_beta_tends_to_0()
    {
        Close([Math.Log(2), Math.Log(2)], PreferenceLosses.Sigmoid(Pairs(), beta: 1e-7).Losses);
    }

    [Fact]
    public void cDPO_label_smoothing_and_its_e_0_limit()
    {
        const double e = 0.2, b = 0.5;
        Close([-(1 - e) * LogSigmoid(1) - e * LogSigmoid(-1), -(1 - e) * LogSigmoid(-1) - e * LogSigmoid(1)],
            PreferenceLosses.Sigmoid(Pairs(), b, labelSmoothing: e).Losses);
        Close(D(PreferenceLosses.Sigmoid(Pairs(), b).Losses), PreferenceLosses.Sigmoid(Pairs(), b, labelSmoothing: 0).Losses);
    }

    [Fact]
    public void Robust_DPO_is_unbiased_and_equals_DPO_at_e_0()
    {
        const double e = 0.1, b = 0.5;
        Close([(-(1 - e) * LogSigmoid(1) + e * LogSigmoid(-1)) / (1 - 2 * e), (-(1 - e) * LogSigmoid(-1) + e * LogSigmoid(1)) / (1 - 2 * e)],
            PreferenceLosses.Robust(Pairs(), b, e).Losses);
        Close(D(PreferenceLosses.Sigmoid(Pairs(), b).Losses), PreferenceLosses.Robust(Pairs(), b, 0).Losses);
        Assert.Throws<ArgumentOutOfRangeException>(() => PreferenceLosses.Robust(Pairs(), b, 0.5));
    }

    [Fact]
    public void Hinge_is_zero_past_the_margin()
    {
        Close([0, 3], PreferenceLosses.Hinge(Pairs(), beta: 1)); // relu(1 - 2), relu(1 + 2)
        Close([0.8, 1.2], PreferenceLosses.Hinge(Pairs(), beta: 0.1));
    }

    static void Close(double[] expected, PreferenceLossOutput o) => Close(expected, o.Losses);

    [Fact]
    public void IPO_uses_length_averaged_log_probs_and_is_zero_at_its_target()
    {
        // d' row 0: (-2.5 + 3) - (-1.75 + 1.5) = 0.75; row 1: (-2.25 + 2) - (-2 + 2.5) = -0.75.
        const double b = 0.5;
        Close([Math.Pow(0.75 - 1, 2), Math.Pow(-0.75 - 1, 2)], PreferenceLosses.Ipo(Pairs(), b).Losses);
        var target = new PairLogps(tensor(new[] { 0f }), tensor(new[] { 0f }), tensor(new[] { 0f }), tensor(new[] { 0f }),
            tensor(new[] { -1f }), tensor(new[] { -2f }), tensor(new[] { -1f }), tensor(new[] { -2f + 1 / (2 * 0.5f) })); // d' = 0 - (-1) = 1/(2 beta)
        Close([0], PreferenceLosses.Ipo(target, b).Losses);
    }

    [Fact]
    public void SimPO_needs_no_reference()
    {
        var x = Pairs() with { ReferenceChosen = null, ReferenceRejected = null, ReferenceChosenMean = null, ReferenceRejectedMean = null };
        const double b = 2, g = 0.5;
        var o = PreferenceLosses.SimPo(x, b, g);
        Close([-LogSigmoid(b * (-2.5 + 1.75) - g), -LogSigmoid(b * (-2.25 + 2) - g)], o.Losses);
        Close([b * -2.5, b * -2.25], o.ChosenRewards);
    }

    [Fact]
    public void ORPO_adds_the_odds_ratio_term_to_the_chosen_NLL()
    {
        double LogOdds(double m) => m - Math.Log(1 - Math.Exp(m));
        const double lambda = 0.1;
        var o = PreferenceLosses.Orpo(Pairs(), lambda);
        Close([2.5 - lambda * LogSigmoid(LogOdds(-2.5) - LogOdds(-1.75)), 2.25 - lambda * LogSigmoid(LogOdds(-2.25) - LogOdds(-2))], o.Losses, 1e-4);
    }

    [Fact]
    public void KTO_weights_desirable_and_undesirable_rows_around_a_clamped_KL_estimate()
    {
        var policy = tensor(new[] { -3f, -6f, -4f });
        var reference = tensor(new[] { -4f, -5f, -4f });
        var desirable = tensor(new[] { true, false, true });
        // KL estimate: mean(policy - ref) over mismatched pairs = mean(0.5, 1.5) = 1.
        var klPolicy = tensor(new[] { -2f, -1f });
        var klRef = tensor(new[] { -2.5f, -2.5f });
        const double b = 0.5, wd = 1.0, wu = 1.5;
        var o = PreferenceLosses.Kto(policy, reference, desirable, klPolicy, klRef, b, wd, wu);
        // l = [1, -1, 0], z = 1.
        Close([wd * (1 - Sigmoid(b * (1 - 1))), wu * (1 - Sigmoid(b * (1 - -1))), wd * (1 - Sigmoid(b * (0 - 1)))], o.Losses);
        Close([0.5, 0, 0], o.ChosenRewards);
        Close([0, -0.5, 0], o.RejectedRewards);
        // A negative KL estimate is clamped to 0.
        var clamped = PreferenceLosses.Kto(policy, reference, desirable, klRef, klPolicy, b, wd, wu);
        Close([wd * (1 - Sigmoid(b * 1)), wu * (1 - Sigmoid(b * (0 - -1))), wd * (1 - Sigmoid(0))], clamped.Losses);
    }

    [Fact]
    public void KL_estimate_is_not_back_propagated()
    {
        var policy = tensor(new[] { -3f }, requires_grad: true);
        var klPolicy = tensor(new[] { -1f }, requires_grad: true);
        var o = PreferenceLosses.Kto(policy, tensor(new[] { -4f }), tensor(new[] { true }), klPolicy, tensor(new[] { -2f }), 0.5);
        o.Losses.sum().backward();
        Assert.NotNull(policy.grad);
        Assert.True(klPolicy.grad is null || klPolicy.grad.abs().sum().item<float>() == 0);
    }

    [Fact]
    public void Reward_model_loss_with_margin_and_centering()
    {
        var c = tensor(new[] { 1.0f, -0.5f });
        var r = tensor(new[] { 0.0f, 0.5f });
        Close([-LogSigmoid(1), -LogSigmoid(-1)], RewardLoss.BradleyTerry(c, r));
        Close([-LogSigmoid(0.5), -LogSigmoid(-1.5)], RewardLoss.BradleyTerry(c, r, tensor(new[] { 0.5f, 0.5f })));
        Close([-LogSigmoid(1) + 0.01 * 1, -LogSigmoid(-1) + 0.01 * 0], RewardLoss.BradleyTerry(c, r, centeringCoefficient: 0.01));
    }

    /// <summary>Padding in a batch changes nothing: IPO from a padded batch's mean log-probs equals row-by-row IPO.</summary>
    [Fact]
    public void A_batch_with_padding_gives_the_losses_of_its_rows()
    {
        using var model = TinyConfigs.Create(TinyConfigs.Llama(2), 5);
        var chosen = new List<(int[], int[])> { ([256, 1], [2, 3, 257]), ([256, 4, 5, 6, 7], [8, 257]) };
        var rejected = new List<(int[], int[])> { ([256, 1], [9, 257]), ([256, 4, 5, 6, 7], [10, 11, 12, 13, 257]) };
        using var _ = no_grad();
        PreferenceLossOutput Ipo(IReadOnlyList<(int[], int[])> c, IReadOnlyList<(int[], int[])> r)
        {
            var (pc, pr) = CompletionLogProbs.Concatenated(model, c, r, 258);
            // A uniform reference (log-prob 0): d' = mean log pi(c) - mean log pi(r), which padding would distort.
            var x = new PairLogps(pc.Sum, pr.Sum, zeros_like(pc.Sum), zeros_like(pr.Sum),
                pc.Mean(), pr.Mean(), zeros_like(pc.Sum), zeros_like(pr.Sum));
            return PreferenceLosses.Ipo(x, 0.5);
        }
        var batched = D(Ipo(chosen, rejected).Losses);
        for (int i = 0; i < 2; i++)
        {
            var single = D(Ipo([chosen[i]], [rejected[i]]).Losses)[0];
            Assert.True(Math.Abs(single - batched[i]) < 1e-4, $"row {i}: {batched[i]} in the batch, {single} alone");
        }
    }

    [Fact]
    public void The_bootstrap_interval_brackets_the_mean_and_is_reproducible()
    {
        var outcomes = Enumerable.Range(0, 200).Select(i => i % 4 == 0 ? 0.0 : 1.0).ToArray(); // mean 0.75
        var (lo, hi) = AlignHub.Training.Evaluation.EvaluateRunner.Bootstrap(outcomes, 2000, 7);
        Assert.InRange(0.75, lo, hi);
        Assert.True(hi - lo is > 0.05 and < 0.2, $"[{lo}, {hi}]"); // about +-1.96 * sqrt(0.75 * 0.25 / 200) = +-0.06
        Assert.Equal((lo, hi), AlignHub.Training.Evaluation.EvaluateRunner.Bootstrap(outcomes, 2000, 7));
        Assert.Equal((1.0, 1.0), AlignHub.Training.Evaluation.EvaluateRunner.Bootstrap([1.0, 1.0, 1.0], 500, 1));
    }
}
