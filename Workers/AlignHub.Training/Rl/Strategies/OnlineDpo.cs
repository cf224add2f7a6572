using AlignHub.Domain;
using AlignHub.Training.Losses;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>
/// Online DPO (Guo et al., 2024), as TRL's OnlineDPOTrainer: each prompt's two samples, ranked by the reward source,
/// make a pair; DPO's sigmoid loss (<see cref="PreferenceLosses.Sigmoid"/>) against the reference, on log-probs of the
/// raw logits (no temperature), averaged over the batch's ranked pairs. A tie makes no pair (TRL takes the first
/// sample as chosen on a tie; with 0/1 graders ties are common and carry no preference).
/// </summary>
public sealed class OnlineDpo(OnlineDpoConfig c) : RlStrategy<OnlineDpoConfig>(c)
{
    const string Pairs = "ranked_pairs", Margin = "margin_sum", Correct = "correct_pairs";
    public override RlNeeds Needs => new() { Reference = Config.NeedsReference, WholeGroups = true, TemperatureScaledLogProbs = false };
    public override IReadOnlyList<string> StatNames => [Pairs, Margin, Correct];

    /// <summary>Sides per completion: +1 chosen, -1 rejected, 0 for both of a tie; a tie's completions carry no loss.</summary>
    public override RlTargets Targets(RolloutTensors b)
    {
        var r = b.Rewards.to_type(ScalarType.Float64).cpu().data<double>().ToArray();
        var side = new float[r.Length];
        for (int i = 0; i + 1 < r.Length; i += 2)
            if (r[i] != r[i + 1]) (side[i], side[i + 1]) = r[i] > r[i + 1] ? (1f, -1f) : (-1f, 1f);
        var sides = tensor(side, device: b.Rewards.device);
        return new(sides, Weights: sides.abs());
    }

    public override Tensor Loss(RlMicroBatch m, StatSink stats)
    {
        using var seq = (m.Logps * m.Mask).sum(1).view(-1, 2);
        using var refSeq = (m.RefLogps! * m.Mask).sum(1).view(-1, 2);
        using var s2 = m.Advantages.view(-1, 2);
        using var chosenFirst = s2[.., 0].gt(0);
        using var paired = s2[.., 0].ne(0).to_type(ScalarType.Float32);
        using var pc = where(chosenFirst, seq[.., 0], seq[.., 1]);
        using var pr = where(chosenFirst, seq[.., 1], seq[.., 0]);
        using var rc = where(chosenFirst, refSeq[.., 0], refSeq[.., 1]);
        using var rr = where(chosenFirst, refSeq[.., 1], refSeq[.., 0]);
        var o = PreferenceLosses.Sigmoid(new PairLogps(pc, pr, rc, rr), Config.Beta);
        double batchPairs = m.Norm.Sequences / 2; // weights are 1 on both completions of each ranked pair
        using (no_grad())
        {
            using var margin = (pc - rc - (pr - rr)) * Config.Beta;
            stats.Add(Pairs, paired.sum());
            stats.Add(Margin, (margin * paired).sum());
            stats.Add(Correct, (margin.gt(0).to_type(ScalarType.Float32) * paired).sum());
        }
        return (o.Losses * paired).sum() / Math.Max(1, batchPairs);
    }

    public override void Metrics(StatSums s, Dictionary<string, double> m)
    {
        m["ranked_pairs"] = s[Pairs];
        m["rewards/margins"] = s.Mean(Margin, Pairs);
        m["rewards/accuracies"] = s.Mean(Correct, Pairs);
    }
}
