using System.Diagnostics;
using AlignHub.Domain;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Sft;

/// <summary>What one supervised run needs; everything comes from the job row and its files.</summary>
public sealed record SftRun(
    ModelSource Model,
    IReadOnlyList<SupervisedExample> Train,
    IReadOnlyList<SupervisedExample>? Validation,
    SftConfig Config,
    string CheckpointRoot,
    string? ResumeFrom);

/// <summary>
/// Supervised fine-tuning: AdamW on the masked next-token loss (<see cref="SupervisedLoss.MaskedNll"/>), warmup then
/// cosine decay, gradient clipping, a checkpoint every <c>save_steps</c> and at the end. The data order is a pure
/// function of (seed, epoch), so a run resumed from a checkpoint sees the same batches. Runs synchronously on the
/// calling thread with one dispose scope per step.
/// </summary>
public static class SftTrainer
{
    public static int TotalSteps(int examples, SftConfig c)
    {
        int perEpoch = StepsPerEpoch(examples, c);
        long total = (long)perEpoch * c.NEpochs;
        return (int)Math.Min(total, c.MaxSteps ?? int.MaxValue);
    }

    static int StepsPerEpoch(int examples, SftConfig c) => Math.Max(1, (examples + c.BatchSize - 1) / c.BatchSize);

    /// <summary>Fisher-Yates permutation of example indices for one epoch, seeded by (seed, epoch).</summary>
    public static int[] EpochOrder(int count, int seed, int epoch)
    {
        var order = Enumerable.Range(0, count).ToArray();
        // Not HashCode.Combine: it is randomised per process, and a job resumed in another process must see the same order.
        var rng = new Random((int)(((long)seed * 1_000_003L + epoch * 7_919L + 0x5f7) % int.MaxValue));
        for (int i = count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    public static TrainingResult Train(SftRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        var tok = run.Model.CreateTokenizer();
        var arch = run.Model.Architecture;
        int maxLen = Math.Min(c.MaxSeqLength ?? arch.MaxPositions, arch.MaxPositions);
        var train = run.Train.Select(e => SupervisedTokenization.Tokenize(e, tok, maxLen)).Where(e => e.TrainableCount > 0).ToList();
        if (train.Count == 0) throw new InvalidDataException("no training example keeps a trainable token after truncation to " + maxLen + " tokens");
        var valid = run.Validation?.Select(e => SupervisedTokenization.Tokenize(e, tok, maxLen)).Where(e => e.TrainableCount > 0).ToList();

        int total = TotalSteps(train.Count, c), perEpoch = StepsPerEpoch(train.Count, c);
        int warmup = (int)Math.Round(c.WarmupRatio * total);

        torch.manual_seed(c.Seed);
        using var model = run.Model.CreateModel();
        using var optimizer = optim.AdamW(model.parameters(), lr: c.PeakLearningRate, weight_decay: c.WeightDecay);

        int step = 0, epochsCompleted = 0;
        long tokens = 0;
        string? lastCheckpoint = null;
        if (run.ResumeFrom is not null)
        {
            Checkpoints.LoadWeights(model, run.ResumeFrom);
            optimizer.load_state_dict(Path.Combine(run.ResumeFrom, Checkpoints.Optimizer));
            var st = Checkpoints.LoadState(run.ResumeFrom);
            (step, epochsCompleted, tokens) = (st.Step, st.EpochsCompleted, st.TrainedTokens);
            lastCheckpoint = run.ResumeFrom;
            reporter.Event("info", $"Resumed from checkpoint at step {step}", new Dictionary<string, object> { ["step"] = step });
        }
        else
        {
            reporter.Event("info", $"Training started: {train.Count} examples, {total} steps, {c.NEpochs} epochs, batch size {c.BatchSize}",
                new Dictionary<string, object> { ["examples"] = train.Count, ["total_steps"] = total });
        }
        model.train();

        int[]? order = null; int orderEpoch = -1;
        var sinceStart = Stopwatch.StartNew();
        int stepsThisRun = 0;
        var lastMetrics = new Dictionary<string, double>();
        while (step < total)
        {
            if (reporter.CancelRequested())
            {
                if (reporter.PauseRequested && step > 0)
                    lastCheckpoint = SaveCheckpoint(run, model, optimizer, step, epochsCompleted, tokens, total, lastMetrics, reporter);
                return new TrainingResult(TrainingOutcome.Cancelled, step, lastCheckpoint, tokens);
            }
            if (ct.IsCancellationRequested)
            {
                // Shutting down: keep the progress in a checkpoint so the job resumes here.
                lastCheckpoint = SaveCheckpoint(run, model, optimizer, step, epochsCompleted, tokens, total, lastMetrics, reporter);
                return new TrainingResult(TrainingOutcome.Interrupted, step, lastCheckpoint, tokens);
            }

            int epoch = step / perEpoch, inEpoch = step % perEpoch;
            if (epoch != orderEpoch) { order = EpochOrder(train.Count, c.Seed, epoch); orderEpoch = epoch; }
            var batch = order!.Skip(inEpoch * c.BatchSize).Take(c.BatchSize).Select(i => train[i]).ToList();

            var sw = Stopwatch.StartNew();
            double lr = Schedules.WarmupCosine(step, total, warmup, c.PeakLearningRate);
            double loss, gradNorm, accuracy;
            long batchTokens;
            using (var scope = NewDisposeScope())
            {
                var (ids, trainable, n) = Collate(batch, tok.PadId);
                batchTokens = n;
                var logits = model.forward(ids);
                var (lossT, correct, count) = SupervisedLoss.MaskedNll(logits, ids, trainable);
                optimizer.zero_grad();
                lossT.backward();
                gradNorm = nn.utils.clip_grad_norm_(model.parameters(), c.MaxGradNorm);
                foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
                optimizer.step();
                loss = lossT.item<float>();
                accuracy = correct.item<float>() / Math.Max(1f, count.item<float>());
            }
            if (!double.IsFinite(loss)) throw new InvalidOperationException($"loss became {loss} at step {step + 1}; lower the learning rate");
            step++; stepsThisRun++;
            tokens += batchTokens;
            if (step % perEpoch == 0 || step == total)
            {
                epochsCompleted = (step + perEpoch - 1) / perEpoch;
                if (step % perEpoch == 0)
                    reporter.Event("info", $"Epoch {epochsCompleted} of {c.NEpochs} completed", new Dictionary<string, object> { ["epoch"] = epochsCompleted, ["step"] = step });
            }

            Dictionary<string, double>? metrics = null;
            if (step % c.LoggingSteps == 0 || step == total)
            {
                metrics = new Dictionary<string, double>
                {
                    ["train_loss"] = loss,
                    ["train_mean_token_accuracy"] = accuracy,
                    ["learning_rate"] = lr,
                    ["grad_norm"] = gradNorm,
                    ["tokens_per_second"] = batchTokens / Math.Max(1e-9, sw.Elapsed.TotalSeconds),
                };
                lastMetrics = new Dictionary<string, double>(metrics);
            }
            double perStep = sinceStart.Elapsed.TotalSeconds / stepsThisRun;
            reporter.Step(new TrainingProgress(step, total, epochsCompleted, tokens, perStep * (total - step)), metrics);

            if (step % c.SaveSteps == 0 || step == total)
            {
                if (valid is { Count: > 0 })
                {
                    var validLoss = Evaluate(model, valid, tok.PadId, c.BatchSize);
                    lastMetrics["valid_loss"] = validLoss;
                    reporter.Step(new TrainingProgress(step, total, epochsCompleted, tokens, perStep * (total - step)),
                        new Dictionary<string, double> { ["valid_loss"] = validLoss });
                }
                lastCheckpoint = SaveCheckpoint(run, model, optimizer, step, epochsCompleted, tokens, total, lastMetrics, reporter);
            }
        }
        return new TrainingResult(TrainingOutcome.Completed, step, lastCheckpoint, tokens);
    }

    static string SaveCheckpoint(SftRun run, CausalLM model, TorchSharp.Modules.OptimizerHelper optimizer, int step, int epochs, long tokens, int total,
        Dictionary<string, double> metrics, ITrainingReporter reporter)
    {
        var dir = Checkpoints.Save(run.CheckpointRoot, model, optimizer, new TrainerState(step, epochs, tokens, total),
            run.Model, run.Config.ToJson());
        var m = new Dictionary<string, double>(metrics) { ["step"] = step };
        reporter.Checkpoint(step, dir, m);
        return dir;
    }

    /// <summary>Mean masked NLL over the validation examples, with <c>no_grad</c> and <c>eval()</c>.</summary>
    public static double Evaluate(CausalLM model, IReadOnlyList<TokenizedExample> examples, int padId, int batchSize)
    {
        model.eval();
        try
        {
            using var _ = no_grad();
            double sum = 0, count = 0;
            for (int i = 0; i < examples.Count; i += batchSize)
            {
                using var scope = NewDisposeScope();
                var (ids, trainable, _) = Collate(examples.Skip(i).Take(batchSize).ToList(), padId);
                var logits = model.forward(ids);
                var (loss, _, n) = SupervisedLoss.MaskedNll(logits, ids, trainable);
                var cnt = n.item<float>();
                sum += loss.item<float>() * cnt;
                count += cnt;
            }
            return sum / Math.Max(1, count);
        }
        finally { model.train(); }
    }

    /// <summary>Right-pads a batch: ids [B, T] (pad id), trainable [B, T] (false on padding); also the real token count.</summary>
    public static (Tensor Ids, Tensor Trainable, long Tokens) Collate(IReadOnlyList<TokenizedExample> batch, int padId)
    {
        int t = batch.Max(e => e.Ids.Length), b = batch.Count;
        var ids = new long[b * t];
        var mask = new bool[b * t];
        long n = 0;
        for (int i = 0; i < b; i++)
        {
            var e = batch[i];
            for (int j = 0; j < t; j++)
            {
                ids[i * t + j] = j < e.Ids.Length ? e.Ids[j] : padId;
                mask[i * t + j] = j < e.Ids.Length && e.Trainable[j];
            }
            n += e.Ids.Length;
        }
        return (tensor(ids, [b, t]), tensor(mask, [b, t]), n);
    }
}
