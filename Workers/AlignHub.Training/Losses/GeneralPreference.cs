using static TorchSharp.torch;

namespace AlignHub.Training.Losses;

/// <summary>
/// The general preference model's score (Zhang et al., 2024, "General Preference Modeling with Preference
/// Representations"): for embeddings v_a, v_b of 2k values, s(a, b) = v_a' R v_b with R block-diagonal of k blocks
/// [[0, 1], [-1, 0]], that is s = sum_j (v_a[2j] v_b[2j+1] - v_a[2j+1] v_b[2j]). R is skew-symmetric, so
/// s(a, b) = -s(b, a) and P(a &gt; b) = sigmoid(s(a, b)) = 1 - P(b &gt; a) for any embeddings; three embeddings 120 degrees
/// apart in one block order themselves in a cycle, which no scalar reward can.
/// </summary>
public static class GeneralPreference
{
    /// <summary>s(a, b) [...] for embeddings [..., 2k].</summary>
    public static Tensor Score(Tensor va, Tensor vb)
    {
        long k = va.shape[^1] / 2;
        using var a = va.view([.. va.shape[..^1], k, 2]);
        using var b = vb.view([.. vb.shape[..^1], k, 2]);
        using var cross = a[TensorIndex.Ellipsis, 0] * b[TensorIndex.Ellipsis, 1] - a[TensorIndex.Ellipsis, 1] * b[TensorIndex.Ellipsis, 0];
        return cross.sum(-1);
    }

    /// <summary>The pairwise loss -log sigmoid(s(chosen, rejected)) [B].</summary>
    public static Tensor Loss(Tensor chosen, Tensor rejected)
    {
        using var s = Score(chosen, rejected);
        return -nn.functional.logsigmoid(s);
    }

    /// <summary>P(i &gt; j) [n, n] among n responses' embeddings [n, 2k] (the diagonal is 1/2).</summary>
    public static Tensor Matrix(Tensor v)
    {
        long n = v.shape[0];
        using var a = v.unsqueeze(1).expand(n, n, v.shape[1]);
        using var b = v.unsqueeze(0).expand(n, n, v.shape[1]);
        using var s = Score(a.contiguous(), b.contiguous());
        return s.sigmoid();
    }
}
