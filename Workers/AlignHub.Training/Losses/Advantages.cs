using static TorchSharp.torch;

namespace AlignHub.Training.Losses;

/// <summary>
/// Advantage estimators of online RL as pure functions of rewards (and values). Rewards of K samples per prompt are
/// laid out prompt-major: [P * K], samples of prompt p at p*K .. p*K + K - 1.
/// </summary>
public static class Advantages
{
    /// <summary>
    /// GRPO's group-relative advantages (Shao et al., 2024, "DeepSeekMath"): A_i = r_i - mean(group of i), divided by
    /// the group's standard deviation (<c>scale_rewards = "group"</c>), by the whole batch's (<c>"batch"</c>, PPO-Lite's
    /// choice, Liu et al., 2025, "Tricks or Traps", as TRL credits it), or not at all (<c>"none"</c>, Dr. GRPO's
    /// recommendation); standard deviations are unbiased (n - 1), plus 1e-4, as TRL's GRPOTrainer.
    /// </summary>
    public static Tensor Group(Tensor rewards, int k, string scaleRewards = "group")
    {
        using var grouped = rewards.view(-1, k);
        using var mean = grouped.mean([1L], keepdim: true);
        using var centred = (grouped - mean).view(-1);
        return scaleRewards switch
        {
            "group" => WithStd(centred, grouped.std(1, keepdim: true).expand(-1, k).reshape(-1)),
            "batch" => WithStd(centred, rewards.std().expand_as(rewards)),
            "none" => centred.clone(),
            _ => throw new ArgumentException($"unknown scale_rewards \"{scaleRewards}\""),
        };

        static Tensor WithStd(Tensor centred, Tensor std) { using (std) return centred / (std + 1e-4); }
    }

    /// <summary>The share of groups whose rewards are all equal (no signal: GRPO's <c>frac_reward_zero_std</c>).</summary>
    public static double ZeroStdFraction(Tensor rewards, int k)
    {
        using var std = rewards.view(-1, k).std(1);
        using var zero = std.lt(1e-8).to_type(ScalarType.Float32);
        return zero.mean().item<float>();
    }

    /// <summary>
    /// RLOO (Ahmadian et al., 2024, "Back to Basics"; Kool et al., 2019): each sample's baseline is the mean reward of
    /// the other K - 1 samples of its prompt, A_i = r_i - (sum_j r_j - r_i) / (K - 1) = K / (K - 1) * (r_i - mean).
    /// </summary>
    public static Tensor LeaveOneOut(Tensor rewards, int k)
    {
        if (k < 2) throw new ArgumentException("RLOO needs at least two samples per prompt");
        using var grouped = rewards.view(-1, k);
        using var sum = grouped.sum(1, keepdim: true);
        using var baseline = (sum - grouped) / (k - 1);
        using var a = grouped - baseline;
        return a.reshape(-1);
    }

    /// <summary>ReMax (Li et al., 2023): the baseline is the reward of the prompt's greedy completion, A_i = r_i - r_greedy(prompt of i).</summary>
    public static Tensor ReMax(Tensor rewards, Tensor greedyRewards, int k)
    {
        using var grouped = rewards.view(-1, k);
        using var a = grouped - greedyRewards.view(-1, 1);
        return a.reshape(-1);
    }

    /// <summary>Rewards normalised over the whole batch, (r - mean) * rsqrt(var + 1e-8) with the unbiased variance (<see cref="Whiten"/> of a vector).</summary>
    public static Tensor BatchNormalized(Tensor rewards)
    {
        using var mask = ones_like(rewards);
        return Whiten(rewards, mask);
    }

    /// <summary>
    /// REINFORCE++'s token advantages (Hu, 2025): per-token rewards -beta * kl_t on the completion's tokens, plus the
    /// sequence reward at its last token; returns-to-go G_t = sum_{s &gt;= t} r_s (gamma 1); then normalised over every
    /// masked token of the batch (<see cref="Whiten"/>). Masked positions are 0. Shapes: rewards [B], kl and mask [B, T].
    /// </summary>
    public static Tensor ReinforcePlusPlus(Tensor rewards, Tensor kl, Tensor mask, double beta)
    {
        using var tokenRewards = TokenRewards(rewards, kl, mask, beta);
        using var returns = tokenRewards.flip(1).cumsum(1).flip(1) * mask;
        return Whiten(returns, mask);
    }

    /// <summary>
    /// Per-token rewards of completions [B, T]: -beta * kl_t on every masked token, plus the sequence reward [B] at each
    /// row's last masked token (InstructGPT's KL-penalised reward; REINFORCE++ and PPO use it).
    /// </summary>
    public static Tensor TokenRewards(Tensor rewards, Tensor kl, Tensor mask, double beta)
    {
        using var positions = arange(mask.shape[1], device: mask.device).unsqueeze(0).to_type(mask.dtype);
        using var lastIndex = (mask * positions).argmax(1, keepdim: true);
        using var atLast = zeros_like(mask).scatter(1, lastIndex, ones_like(lastIndex, dtype: mask.dtype)) * mask;
        return (-beta * kl + rewards.unsqueeze(1) * atLast) * mask;
    }

    /// <summary>
    /// (x - mean) * rsqrt(var + 1e-8) over the masked entries, the variance unbiased (n / (n - 1)), as verl's and TRL's
    /// <c>masked_whiten</c> and OpenRLHF compute it; masked-out entries are 0. When every entry is equal the result is
    /// about (rounding noise) / 1e-4, not an O(1) value, as it would be with (std + eps) in the denominator.
    /// </summary>
    public static Tensor Whiten(Tensor x, Tensor mask)
    {
        using var n = mask.sum().clamp_min(1);
        using var mean = (x * mask).sum() / n;
        using var centred = (x - mean) * mask;
        using var variance = centred.pow(2).sum() / (n - 1).clamp_min(1);
        using var scale = (variance + 1e-8).rsqrt();
        return centred * scale * mask;
    }

    /// <summary>
    /// DAPO's overlong reward shaping (Yu et al., 2025, as verl's <c>overlong_buffer</c>): with L_max the completion
    /// limit and a buffer of B tokens, a completion of length l gets min(0, -(l - (L_max - B)) / B * factor) added:
    /// 0 up to L_max - B, falling linearly to -factor at L_max.
    /// </summary>
    public static double OverlongPenalty(int length, int maxCompletionLength, int buffer, double factor) =>
        Math.Min(0, -(length - (maxCompletionLength - buffer)) / (double)buffer * factor);

    /// <summary>
    /// On-policy distillation's per-token advantages (Lu et al., 2025): minus the per-token reverse KL estimate,
    /// A_t = log pi_teacher(y_t) - log pi_old(y_t), on the sampled tokens; masked positions are 0.
    /// </summary>
    public static Tensor Distillation(Tensor studentLogps, Tensor teacherLogps, Tensor mask) => (teacherLogps - studentLogps) * mask;

    /// <summary>
    /// Generalised advantage estimation (Schulman et al., 2016) over token sequences [B, T] with a mask of real tokens:
    /// delta_t = r_t + gamma V_{t+1} - V_t (V past the last real token is 0), A_t = delta_t + gamma lambda A_{t+1};
    /// returns = A + V. Masked positions get 0.
    /// </summary>
    public static (Tensor Advantages, Tensor Returns) Gae(Tensor rewards, Tensor values, Tensor mask, double gamma, double lambda)
    {
        long t = rewards.shape[1];
        using var r = rewards * mask;
        using var v = values * mask;
        var columns = new Tensor[t];
        Tensor? next = null;
        for (long i = t - 1; i >= 0; i--)
        {
            using var vNext = i + 1 < t ? v[.., i + 1] : zeros_like(v[.., 0]);
            using var m = mask[.., i];
            using var delta = r[.., i] + gamma * vNext - v[.., i];
            var a = next is null ? delta * m : (delta + gamma * lambda * next) * m;
            columns[i] = a;
            next = a;
        }
        var adv = stack(columns, 1);
        foreach (var c in columns) c.Dispose();
        return (adv, (adv + v) * mask);
    }
}
