using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlignHub.Training.Preference;

/// <summary>What a reward-model run needs.</summary>
public sealed record RewardModelRun(
    ModelSource Model,
    IReadOnlyList<PreferencePair> Train,
    IReadOnlyList<PreferencePair>? Validation,
    RewardModelConfig Config,
    string CheckpointRoot,
    string? ResumeFrom,
    Device? Device = null);

/// <summary>
/// A Bradley-Terry reward model (<see cref="RewardLoss"/>) on the <see cref="TrainingEngine"/>: chosen and rejected
/// scored in one forward; checkpoints are sequence-classification folders (the decoder's tensors plus
/// <c>score.weight</c>, a <c>*ForSequenceClassification</c> config). With <c>ensemble_size</c> &gt; 1, members train
/// one after another (see <see cref="TrainEnsemble"/>). Metrics: <c>loss</c>, <c>accuracy</c>, <c>margin</c>.
/// </summary>
public static class RewardModelTrainer
{
    public static TrainingResult Train(RewardModelRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        if (run.Config.EnsembleSize > 1) return TrainEnsemble(run, reporter, ct);
        var c = run.Config;
        var tok = run.Model.CreateTokenizer();
        var (maxLen, maxPrompt) = c.Limits(run.Model.Architecture.MaxPositions);
        var encoder = new PromptEncoder(tok, maxPrompt);
        var train = run.Train.Select(p => PairData.Tokenize(p, encoder, maxLen)).ToList();
        var valid = (run.Validation ?? []).Select(p => PairData.Tokenize(p, encoder, maxLen)).ToList();
        torch.manual_seed(c.Seed);
        using var method = new RewardModelMethod(run.Model.CreateRewardModel(run.Device ?? CPU, LoraSettings.From(c, run.Model.Architecture), c.Seed,
            Dtypes.Resolve(c.TorchDtype, run.Device ?? CPU, run.Model, frozen: c.UsePeft)), run.Model, train, valid, tok.PadId, maxLen, c);
        return TrainingEngine.Run(method, new EngineRun(run.Model, c, run.CheckpointRoot, run.ResumeFrom), reporter, ct);
    }

    /// <summary>
    /// Members one after another, seeds seed + k, each in <c>member-k</c> under the job's checkpoint folder, steps
    /// numbered across the ensemble. A resumed job skips members whose final checkpoint exists and resumes the member
    /// its checkpoint belongs to. Ends with the ensemble folder and the ensemble's eval/ensemble metrics.
    /// </summary>
    static TrainingResult TrainEnsemble(RewardModelRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        int k = c.EnsembleSize, per = c.TotalSteps(run.Train.Count), total = k * per;
        var finals = new List<string>();
        long tokens = 0;
        for (int m = 0; m < k; m++)
        {
            var root = Path.Combine(run.CheckpointRoot, $"member-{m}");
            var final = Path.Combine(root, $"step-{per:D7}");
            if (Directory.Exists(final)) { finals.Add(final); continue; }
            var resume = run.ResumeFrom is { } r && Path.GetFullPath(r).StartsWith(Path.GetFullPath(root) + Path.DirectorySeparatorChar) ? r : null;
            var result = Train(run with { Config = c with { Seed = c.Seed + m, EnsembleSize = 1 }, CheckpointRoot = root, ResumeFrom = resume },
                new MemberReporter(reporter, m * per, total, m, k), ct);
            tokens += result.TrainedTokens;
            if (result.Outcome != TrainingOutcome.Completed) return result with { Step = result.Step + m * per };
            finals.Add(result.LastCheckpoint!);
        }
        var ensembleDir = Path.Combine(run.CheckpointRoot, "ensemble");
        RewardEnsemble.Write(ensembleDir, finals);
        if (run.Validation is { Count: > 0 } v)
        {
            var tok = run.Model.CreateTokenizer();
            var (maxLen, maxPrompt) = c.Limits(run.Model.Architecture.MaxPositions);
            var encoder = new PromptEncoder(tok, maxPrompt);
            var valid = v.Select(p => PairData.Tokenize(p, encoder, maxLen)).ToList();
            using var ensemble = RewardEnsemble.Load(run.Model with { Folder = ensembleDir }, run.Device ?? CPU);
            using var _ = no_grad();
            double correct = 0, std = 0;
            for (int i = 0; i < valid.Count; i += c.BatchSize)
            {
                using var scope = NewDisposeScope();
                var idx = Enumerable.Range(i, Math.Min(c.BatchSize, valid.Count - i)).ToList();
                var (cm, cs, rmn, rs) = ensemble.ScorePairs(valid, idx, tok.PadId, maxLen);
                correct += cm.gt(rmn).sum().item<long>();
                std += (cs + rs).sum().item<float>() / 2;
            }
            reporter.Step(new TrainingProgress(total, total, c.NEpochs, tokens, 0), new Dictionary<string, double>
            {
                ["eval/ensemble/accuracy"] = correct / valid.Count, ["eval/ensemble/reward_std"] = std / valid.Count,
            });
        }
        reporter.Event("info", $"Reward-model ensemble of {k} members written", new Dictionary<string, object> { ["members"] = k });
        return new TrainingResult(TrainingOutcome.Completed, total, ensembleDir, tokens);
    }
}

sealed class RewardModelMethod(RewardModel rm, ModelSource source, List<TokenizedPair> train, List<TokenizedPair> valid, int pad, int maxLen,
    RewardModelConfig c) : ITrainingMethod, IDisposable
{
    public CausalLM Model => rm.Backbone;
    public IReadOnlyList<Parameter> Parameters { get; } = rm.Parameters().ToList();
    public IReadOnlyDictionary<string, Tensor>? ExtraTensors => rm.Extra;
    public int TrainRows => train.Count;
    public int ValidRows => valid.Count;
    public IReadOnlyList<string> StatNames { get; } = ["loss", "rewards_chosen", "rewards_rejected", "correct", "rows"];

    /// <summary>An HF sequence-classification config: transformers loads the folder as a reward model.</summary>
    public string? ModelConfigJson
    {
        get
        {
            var node = System.Text.Json.Nodes.JsonNode.Parse(source.ConfigJson)!.AsObject();
            node["architectures"] = new System.Text.Json.Nodes.JsonArray(
                (source.Architecture.Family == DecoderFamily.Gpt2 ? "GPT2" : "Llama") + "ForSequenceClassification");
            node["num_labels"] = 1;
            return node.ToJsonString();
        }
    }

    public void SetTraining(bool on) => rm.Train(on);
    public double Weight(IReadOnlyList<int> rows, bool valid) => rows.Count;
    public long Tokens(IReadOnlyList<int> rows) => PairData.Tokens(train, rows);

    public (Tensor Loss, Tensor Stats) Forward(IReadOnlyList<int> idx, bool isValid)
    {
        var data = isValid ? valid : train;
        var (rc, rr) = PairData.ScorePairs(rm, data, idx, pad, maxLen);
        var margin = tensor(idx.Select(i => data[i].Margin).ToArray(), device: rc.device);
        var losses = RewardLoss.BradleyTerry(rc, rr, margin, c.CenterRewardsCoefficient);
        var (dc, dr) = (rc.detach(), rr.detach());
        return (losses.mean(), stack([losses.detach().sum(), dc.sum(), dr.sum(), dc.gt(dr).to_type(ScalarType.Float32).sum(), ones_like(dc).sum()]));
    }

    public Dictionary<string, double> Metrics(double[] s)
    {
        double n = Math.Max(1, s[4]);
        return new() { ["loss"] = s[0] / n, ["accuracy"] = s[3] / n, ["margin"] = (s[1] - s[2]) / n };
    }

    public string StartMessage(int totalSteps) => $"Training a reward model: {train.Count} pairs, {totalSteps} steps, batch size {c.BatchSize}";

    public void Dispose() => rm.Dispose();
}

/// <summary>Runs a <c>reward_model</c> job (one model or an ensemble folder).</summary>
public sealed class RewardModelRunner : Methods.IMethodRunner
{
    public Type ConfigType => typeof(RewardModelConfig);
    public bool Resumable => true;

    public Methods.MethodOutcome Run(Methods.MethodContext ctx, ITrainingReporter reporter, CancellationToken ct)
    {
        var source = ctx.Model(ctx.Job.Model);
        var chat = source.ChatFormat();
        var result = RewardModelTrainer.Train(new RewardModelRun(source, ctx.Rows(ctx.Job.TrainingFile, p => JsonlRows.LoadPreferences(p, chat)),
            ctx.ValidationRows(p => JsonlRows.LoadPreferences(p, chat)), ctx.ConfigAs<RewardModelConfig>(), ctx.CheckpointRoot, ctx.ResumeFrom, ctx.Device), reporter, ct);
        return new Methods.MethodOutcome(result, result.LastCheckpoint);
    }
}
