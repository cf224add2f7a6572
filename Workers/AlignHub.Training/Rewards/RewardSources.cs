using System.Text.Json;
using AlignHub.Training.Data;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Tokenizers;
using static TorchSharp.torch;

namespace AlignHub.Training.Rewards;

/// <summary>What a reward source scores: the prompt, a completion, and the training row's other fields (graders read them).</summary>
public sealed record RewardInput(string Prompt, string Completion, JsonElement? Row = null);

/// <summary>
/// A function from (prompt, completion, row fields) batches to scalar rewards, one per input, each completion
/// scored once. Reward models are the first implementations; rule-based graders and AI judges follow the same shape.
/// </summary>
public interface IRewardSource : IDisposable
{
    string Name { get; }
    double[] Score(IReadOnlyList<RewardInput> batch);
}

/// <summary>
/// A Bradley-Terry reward model as a reward source: prompt (through the one prompt encoder) + completion + EOS,
/// as in training, scored at the last real token, <paramref name="batchSize"/> sequences per forward under no_grad.
/// </summary>
public sealed class RewardModelSource(RewardModel model, ITokenizer tok, int batchSize, string name = "reward_model") : IRewardSource
{
    readonly int maxLen = model.Backbone.Architecture.MaxPositions;
    readonly PromptEncoder encoder = new(tok, model.Backbone.Architecture.MaxPositions / 2);
    public string Name => name;

    public double[] Score(IReadOnlyList<RewardInput> batch)
    {
        var rows = batch.Select(x => { var p = encoder.Encode(x.Prompt); return (p, encoder.EncodeCompletion(x.Completion, maxLen - p.Length)); }).ToList();
        var scores = new double[rows.Count];
        model.Train(false);
        using var _ = no_grad();
        for (int i = 0; i < rows.Count; i += batchSize)
        {
            using var scope = NewDisposeScope();
            var part = rows.Skip(i).Take(batchSize).ToList();
            using var host = model.Rewards(part, tok.PadId, maxLen).to_type(ScalarType.Float64).cpu();
            var v = host.data<double>().ToArray();
            Array.Copy(v, 0, scores, i, v.Length);
        }
        return scores;
    }

    public void Dispose() => model.Dispose();
}

/// <summary>
/// An ensemble of reward models (Coste et al., 2024) as one reward source: r = mean_k r_k - penalty * std_k r_k
/// (the sample standard deviation over members; 0 for one member), each completion scored once by each member.
/// </summary>
public sealed class RewardEnsembleSource(IReadOnlyList<IRewardSource> members, double penalty, string name = "reward_model") : IRewardSource
{
    public string Name => name;

    public double[] Score(IReadOnlyList<RewardInput> batch)
    {
        var each = members.Select(m => m.Score(batch)).ToList();
        return Enumerable.Range(0, batch.Count).Select(i =>
        {
            var xs = each.Select(s => s[i]).ToArray();
            double mean = xs.Average();
            double std = xs.Length < 2 ? 0 : Math.Sqrt(xs.Sum(x => (x - mean) * (x - mean)) / (xs.Length - 1));
            return mean - penalty * std;
        }).ToArray();
    }

    /// <summary>The source for a reward-model folder: an ensemble folder (<see cref="RewardEnsemble.MembersFile"/>) or a single reward model.</summary>
    public static IRewardSource Load(ModelSource source, double penalty, int batchSize, Device? device, string name = "reward_model")
    {
        var tok = source.CreateTokenizer();
        // Each member source owns its model from here on.
        var members = RewardEnsemble.Load(source, device).Models.Select(m => (IRewardSource)new RewardModelSource(m, tok, batchSize, name)).ToList();
        return members.Count == 1 && penalty == 0 ? members[0] : new RewardEnsembleSource(members, penalty, name);
    }

    public void Dispose() { foreach (var m in members) m.Dispose(); }
}

/// <summary>A grader (<see cref="Domain.Grader"/>, OpenAI's shape) as a reward source: each completion graded against its row.</summary>
public sealed class GraderSource(Domain.Grader grader) : IRewardSource
{
    public string Name => grader.Name;
    /// <summary>Each completion graded; graders that ask a model (score_model) ask for several completions at once, which the model server batches.</summary>
    public double[] Score(IReadOnlyList<RewardInput> batch) => grader.ScoreModels().Any()
        ? batch.AsParallel().AsOrdered().WithDegreeOfParallelism(16).Select(x => grader.Grade(x.Row, x.Completion)).ToArray()
        : batch.Select(x => grader.Grade(x.Row, x.Completion)).ToArray();
    public void Dispose() { }
}
