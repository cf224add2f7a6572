using AlignHub.Domain;
using AlignHub.Training.Losses;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// On-policy distillation (Agarwal et al., 2024, GKD; Lu et al., 2025): the teacher's log-probs of the student's own
/// sampled tokens against pi_old's give each token its advantage, minus the per-token reverse KL
/// (<see cref="Advantages.Distillation"/>), in the clipped token-level surrogate (plus beta k3 to the reference when
/// beta &gt; 0). Logged: <c>reverse_kl</c>, the mean per-token k1 of pi_old against the teacher.
/// </summary>
public sealed class Distill(DistillConfig c) : ClippedStrategy<DistillConfig>(c)
{
    const string ReverseKl = "reverse_kl_sum", KlTokens = "reverse_kl_tokens";
    public override RlNeeds Needs => new() { Reference = Config.NeedsReference, PolicyLogProbs = true, Teacher = Config.NeedsTeacher };
    public override IReadOnlyList<string> StatNames => [.. ClipStats.Names, ReverseKl, KlTokens];

    public override RlTargets Targets(RolloutTensors b) => new(Advantages.Distillation(b.OldLogps!, b.TeacherLogps!, b.Mask));

    public override Tensor Loss(RlMicroBatch m, StatSink stats)
    {
        stats.Add(ReverseKl, -(m.Advantages * m.Mask).sum());
        stats.Add(KlTokens, m.Mask.sum());
        return ClippedLoss(m, stats, m.Beta);
    }

    public override void Metrics(StatSums s, Dictionary<string, double> m)
    {
        base.Metrics(s, m);
        m["reverse_kl"] = s.Mean(ReverseKl, KlTokens);
    }
}
