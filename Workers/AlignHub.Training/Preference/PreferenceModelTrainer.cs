using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Rewards;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlignHub.Training.Preference;

/// <summary>What a preference-model run needs.</summary>
public sealed record PreferenceModelRun(
    ModelSource Model,
    IReadOnlyList<PreferencePair> Train,
    IReadOnlyList<PreferencePair>? Validation,
    PreferenceModelConfig Config,
    string CheckpointRoot,
    string? ResumeFrom,
    Device? Device = null);

/// <summary>
/// A general preference model (<see cref="GeneralPreference"/>) on the <see cref="TrainingEngine"/>: the decoder and a
/// head of <c>preference_dim</c> outputs, chosen and rejected embedded in one forward, loss -log sigmoid(s(chosen,
/// rejected)). Checkpoints are sequence-classification folders with <c>num_labels</c> = the embedding size and
/// <see cref="ModelArchitecture.PreferenceModelMarker"/>. After training, <c>eval/cyclic_triples</c>: the share of
/// held-out triples of responses (three distinct responses to one prompt) it orders in a cycle.
/// </summary>
public static class PreferenceModelTrainer
{
    public static TrainingResult Train(PreferenceModelRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        var tok = run.Model.CreateTokenizer();
        var (maxLen, maxPrompt) = c.Limits(run.Model.Architecture.MaxPositions);
        var encoder = new PromptEncoder(tok, maxPrompt);
        var train = run.Train.Select(p => PairData.Tokenize(p, encoder, maxLen)).ToList();
        var valid = (run.Validation ?? []).Select(p => PairData.Tokenize(p, encoder, maxLen)).ToList();
        torch.manual_seed(c.Seed);
        var device = run.Device ?? CPU;
        using var method = new PreferenceModelMethod(run.Model.CreateRewardModel(device, LoraSettings.From(c, run.Model.Architecture), c.Seed,
            Dtypes.Resolve(c.TorchDtype, device, run.Model, frozen: c.UsePeft), labels: c.PreferenceDim), run.Model, train, valid, tok.PadId, maxLen, c);
        var result = TrainingEngine.Run(method, new EngineRun(run.Model, c, run.CheckpointRoot, run.ResumeFrom), reporter, ct);
        if (result.Outcome == TrainingOutcome.Completed && run.Validation is { Count: > 0 } v && result.LastCheckpoint is { } final)
        {
            using var pm = PreferenceModelSource.Load(run.Model with { Folder = final }, device);
            var (cyclic, triples) = CyclicShare(pm, v);
            if (triples > 0)
                reporter.Step(new TrainingProgress(result.Step, result.Step, c.NEpochs, result.TrainedTokens, 0),
                    new Dictionary<string, double> { ["eval/cyclic_triples"] = cyclic, ["eval/triples"] = triples });
        }
        return result;
    }

    /// <summary>
    /// Of the triples of distinct responses that held-out pairs give one prompt (at most 512 in all), the share the
    /// model orders in a cycle: P(a &gt; b), P(b &gt; c) and P(c &gt; a) all above 1/2, or all below.
    /// </summary>
    public static (double Share, int Triples) CyclicShare(PreferenceModelSource pm, IReadOnlyList<PreferencePair> pairs)
    {
        var responses = pairs.GroupBy(p => p.Prompt).Select(g => (Prompt: g.Key, Responses: g.SelectMany(p => new[] { p.Chosen, p.Rejected }).Distinct().Take(6).ToList()))
            .Where(x => x.Responses.Count >= 3).ToList();
        int triples = 0, cyclic = 0;
        foreach (var (prompt, rs) in responses)
        {
            if (triples >= 512) break;
            var p = pm.Matrix(prompt, rs);
            for (int a = 0; a < rs.Count; a++)
                for (int b = a + 1; b < rs.Count; b++)
                    for (int d = b + 1; d < rs.Count; d++)
                    {
                        bool ab = p[a, b] > 0.5, bd = p[b, d] > 0.5, da = p[d, a] > 0.5;
                        triples++;
                        if (ab == bd && bd == da) cyclic++;
                    }
        }
        return (triples == 0 ? 0 : cyclic / (double)triples, triples);
    }
}

sealed class PreferenceModelMethod(RewardModel pm, ModelSource source, List<TokenizedPair> train, List<TokenizedPair> valid, int pad, int maxLen,
    PreferenceModelConfig c) : ITrainingMethod, IDisposable
{
    public CausalLM Model => pm.Backbone;
    public IReadOnlyList<Parameter> Parameters { get; } = pm.Parameters().ToList();
    public IReadOnlyDictionary<string, Tensor>? ExtraTensors => pm.Extra;
    public int TrainRows => train.Count;
    public int ValidRows => valid.Count;
    public IReadOnlyList<string> StatNames { get; } = ["loss", "score", "correct", "rows"];

    /// <summary>An HF sequence-classification config with num_labels = the embedding size, marked as a preference model.</summary>
    public string? ModelConfigJson
    {
        get
        {
            var node = System.Text.Json.Nodes.JsonNode.Parse(source.ConfigJson)!.AsObject();
            node["architectures"] = new System.Text.Json.Nodes.JsonArray(
                (source.Architecture.Family == DecoderFamily.Gpt2 ? "GPT2" : "Llama") + "ForSequenceClassification");
            node["num_labels"] = c.PreferenceDim;
            node[ModelArchitecture.PreferenceModelMarker] = true;
            return node.ToJsonString();
        }
    }

    public void SetTraining(bool on) => pm.Train(on);
    public double Weight(IReadOnlyList<int> rows, bool valid) => rows.Count;
    public long Tokens(IReadOnlyList<int> rows) => PairData.Tokens(train, rows);

    public (Tensor Loss, Tensor Stats) Forward(IReadOnlyList<int> idx, bool isValid)
    {
        var data = isValid ? valid : train;
        var v = pm.Outputs([.. PairData.Side(data, idx, true), .. PairData.Side(data, idx, false)], pad, maxLen);
        int b = idx.Count;
        var (vc, vr) = (v[..b], v[b..]);
        var losses = GeneralPreference.Loss(vc, vr);
        using var s = GeneralPreference.Score(vc.detach(), vr.detach());
        return (losses.mean(), stack([losses.detach().sum(), s.sum(), s.gt(0).to_type(ScalarType.Float32).sum(), ones_like(s).sum()]));
    }

    public Dictionary<string, double> Metrics(double[] s)
    {
        double n = Math.Max(1, s[3]);
        return new() { ["loss"] = s[0] / n, ["accuracy"] = s[2] / n, ["score"] = s[1] / n };
    }

    public string StartMessage(int totalSteps) => $"Training a preference model: {train.Count} pairs, {totalSteps} steps, embedding size {c.PreferenceDim}";

    public void Dispose() => pm.Dispose();
}

/// <summary>Runs a <c>preference_model</c> job.</summary>
public sealed class PreferenceModelRunner : Methods.IMethodRunner
{
    public Type ConfigType => typeof(PreferenceModelConfig);
    public bool Resumable => true;

    public Methods.MethodOutcome Run(Methods.MethodContext ctx, ITrainingReporter reporter, CancellationToken ct)
    {
        var source = ctx.Model(ctx.Job.Model);
        var chat = source.ChatFormat();
        var result = PreferenceModelTrainer.Train(new PreferenceModelRun(source, ctx.Rows(ctx.Job.TrainingFile, p => JsonlRows.LoadPreferences(p, chat)),
            ctx.ValidationRows(p => JsonlRows.LoadPreferences(p, chat)), ctx.ConfigAs<PreferenceModelConfig>(), ctx.CheckpointRoot, ctx.ResumeFrom, ctx.Device), reporter, ct);
        return new Methods.MethodOutcome(result, result.LastCheckpoint);
    }
}
