using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlignHub.Training.Sft;

/// <summary>What one supervised run needs; everything comes from the job row and its files.</summary>
public sealed record SftRun(
    ModelSource Model,
    IReadOnlyList<SupervisedExample> Train,
    IReadOnlyList<SupervisedExample>? Validation,
    SftConfig Config,
    string CheckpointRoot,
    string? ResumeFrom,
    Device? Device = null);

/// <summary>
/// Supervised fine-tuning on the <see cref="TrainingEngine"/>: the masked next-token loss
/// (<see cref="SupervisedLoss.MaskedNll"/>) over completion or assistant tokens. A batch's loss is the mean over
/// its trainable tokens; with gradient accumulation each micro-batch counts by its trainable tokens, so the
/// accumulated gradient is the full batch's. Metrics: <c>loss</c>, <c>mean_token_accuracy</c> (and <c>eval/</c> ones).
/// </summary>
public static class SftTrainer
{
    public static TrainingResult Train(SftRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        var tok = run.Model.CreateTokenizer();
        var arch = run.Model.Architecture;
        int maxLen = Math.Min(c.MaxSeqLength ?? arch.MaxPositions, arch.MaxPositions);
        var train = run.Train.Select(e => SupervisedTokenization.Tokenize(e, tok, maxLen)).Where(e => e.TrainableCount > 0).ToList();
        if (train.Count == 0) throw new InvalidDataException("no training example keeps a trainable token after truncation to " + maxLen + " tokens");
        var valid = run.Validation?.Select(e => SupervisedTokenization.Tokenize(e, tok, maxLen)).Where(e => e.TrainableCount > 0).ToList() ?? [];

        torch.manual_seed(c.Seed);
        var lora = LoraSettings.From(c, run.Model.Architecture);
        using var method = new SftMethod(run.Model.CreateModel(run.Device ?? CPU, lora, c.Seed, Dtypes.Resolve(c.TorchDtype, run.Device ?? CPU, run.Model, lora is not null)), train, valid, tok.PadId, c);
        return TrainingEngine.Run(method, new EngineRun(run.Model, c, run.CheckpointRoot, run.ResumeFrom), reporter, ct);
    }
}

sealed class SftMethod(CausalLM model, List<TokenizedExample> train, List<TokenizedExample> valid, int pad, SftConfig c) : ITrainingMethod, IDisposable
{
    public CausalLM Model => model;
    public IReadOnlyList<Parameter> Parameters { get; } = Lora.Trainable(model);
    public int TrainRows => train.Count;
    public int ValidRows => valid.Count;
    public IReadOnlyList<string> StatNames { get; } = ["nll", "correct", "tokens"];

    public void SetTraining(bool on) { if (on) model.train(); else model.eval(); }

    List<TokenizedExample> Rows(bool isValid) => isValid ? valid : train;

    public double Weight(IReadOnlyList<int> rows, bool isValid) => rows.Sum(i => (double)Rows(isValid)[i].TrainableCount);

    public long Tokens(IReadOnlyList<int> rows) => rows.Sum(i => (long)train[i].Ids.Length);

    public (Tensor Loss, Tensor Stats) Forward(IReadOnlyList<int> rows, bool isValid)
    {
        var data = Rows(isValid);
        using var batch = Collator.Sequences(rows.Select(i => (data[i].Ids, data[i].Trainable)).ToList(), pad, model.Device);
        var logits = model.forward(batch.InputIds);
        var (loss, correct, count) = SupervisedLoss.MaskedNll(logits, batch.InputIds, batch.CompletionMask);
        return (loss, stack([loss.detach() * count, correct, count]));
    }

    public Dictionary<string, double> Metrics(double[] s) => new()
    {
        [MetricNames.Loss] = s[0] / Math.Max(1, s[2]),
        [MetricNames.MeanTokenAccuracy] = s[1] / Math.Max(1, s[2]),
    };

    public string StartMessage(int totalSteps) =>
        $"Training started: {train.Count} examples, {totalSteps} steps, {c.NEpochs} epochs, batch size {c.BatchSize}";

    public void Dispose() => model.Dispose();
}

/// <summary>Runs a <c>supervised</c> job: its training and validation files, and a fine-tuned model at the end.</summary>
public sealed class SftRunner : Methods.IMethodRunner
{
    public Type ConfigType => typeof(SftConfig);
    public bool Resumable => true;

    public Methods.MethodOutcome Run(Methods.MethodContext ctx, ITrainingReporter reporter, CancellationToken ct)
    {
        var source = ctx.Model(ctx.Job.Model);
        var chat = source.ChatFormat();
        var result = SftTrainer.Train(new SftRun(source, ctx.Rows(ctx.Job.TrainingFile, p => JsonlRows.LoadSupervised(p, chat)),
            ctx.ValidationRows(p => JsonlRows.LoadSupervised(p, chat)), ctx.ConfigAs<SftConfig>(), ctx.CheckpointRoot, ctx.ResumeFrom, ctx.Device), reporter, ct);
        return new Methods.MethodOutcome(result, result.LastCheckpoint);
    }
}
