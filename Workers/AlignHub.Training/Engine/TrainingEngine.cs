using System.Diagnostics;
using System.Text.Json.Nodes;
using AlignHub.Domain;
using AlignHub.Training.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlignHub.Training.Engine;

/// <summary>
/// One method's part of a training run: its rows, its model, and the loss of a micro-batch. Everything else (the
/// step loop, optimizer, schedule, accumulation, clipping, stop protocol, evaluation, checkpoints, resume, metrics)
/// is the <see cref="TrainingEngine"/>'s.
/// </summary>
public interface ITrainingMethod
{
    /// <summary>The decoder being trained (saved as the checkpoint's model).</summary>
    CausalLM Model { get; }
    /// <summary>Every trained parameter, in a fixed order (the optimizer state is saved in it).</summary>
    IReadOnlyList<Parameter> Parameters { get; }
    /// <summary>A parameter's learning rate relative to the schedule's (PPO's value head has its own); 1 for all by default.</summary>
    double LearningRateScale(Parameter p) => 1.0;
    /// <summary>Tensors saved beside the decoder's (a reward head's <c>score.weight</c>); null: none.</summary>
    IReadOnlyDictionary<string, Tensor>? ExtraTensors => null;
    /// <summary>The checkpoint's config.json when it is not the base model's (a sequence-classification config).</summary>
    string? ModelConfigJson => null;

    /// <summary>Rows of the training data (the epoch order permutes them) and of the validation data (0: none).</summary>
    int TrainRows { get; }
    int ValidRows { get; }
    /// <summary>The names of the statistics a micro-batch sums (the order of <see cref="Forward"/>'s vector).</summary>
    IReadOnlyList<string> StatNames { get; }

    /// <summary>Called before each optimizer step with its 0-based number (online methods seed their sampling with it).</summary>
    void BeginStep(int step) { }

    /// <summary>train() or eval() on every module the method trains.</summary>
    void SetTraining(bool on);

    /// <summary>
    /// How much a micro-batch counts in its batch's mean loss (its trainable tokens, or its rows): the engine scales
    /// each micro-batch's loss by weight(part) / weight(batch), so accumulated gradients equal the full batch's.
    /// </summary>
    double Weight(IReadOnlyList<int> rows, bool valid);

    /// <summary>Tokens the rows feed the model (throughput and trained_tokens).</summary>
    long Tokens(IReadOnlyList<int> rows);

    /// <summary>
    /// How a step's batch runs as micro-batches: the rows each <see cref="Forward"/> gets and the factor its loss is
    /// scaled by before its backward. The default cuts the batch into micro-batches of <paramref name="microRows"/>
    /// rows, each scaled by weight(part) / weight(batch). Online RL returns completions of its batch of rollouts, each
    /// micro-batch's loss already its share of the batch's (factor 1). An empty list: the step takes no update (its
    /// statistics still come from <see cref="StepStats"/>).
    /// </summary>
    IReadOnlyList<MicroBatch> MicroBatches(IReadOnlyList<int> batch, int accumulation, int microRows)
    {
        double total = Math.Max(1e-12, Weight(batch, false));
        return batch.Chunk(microRows).Select(p => new MicroBatch(p, Weight(p, false) / total)).ToList();
    }

    /// <summary>Statistics of the whole step computed on the host (in <see cref="StatNames"/> order), added once to the micro-batches' sums; null: none.</summary>
    double[]? StepStats() => null;

    /// <summary>
    /// The mean loss of some rows (with its graph when training) and a detached vector of summed statistics in
    /// <see cref="StatNames"/> order, both on the model's device.
    /// </summary>
    (Tensor Loss, Tensor Stats) Forward(IReadOnlyList<int> rows, bool valid);

    /// <summary>Metrics from summed statistics (names without the <c>eval/</c> prefix); must hold <c>loss</c>.</summary>
    Dictionary<string, double> Metrics(double[] sums);

    /// <summary>The event that opens a fresh run.</summary>
    string StartMessage(int totalSteps);

    /// <summary>
    /// After each step, with the step's metrics (every step, logged or not): where a method writes its samples and
    /// raises early warnings through the reporter.
    /// </summary>
    void AfterStep(int step, IReadOnlyDictionary<string, double> metrics, ITrainingReporter reporter) { }

    /// <summary>
    /// After a step's optimizer update (1-based <paramref name="step"/>), before its metrics are reported: where a method
    /// measures the updated model and adds to the step's metrics (self-play's win rate over the previous round).
    /// </summary>
    void AfterUpdate(int step, Dictionary<string, double> metrics, ITrainingReporter reporter) { }

    /// <summary>State the method adds to a checkpoint (RL: KL controller, sampler position, reward statistics); null: none.</summary>
    JsonObject? SaveState() => null;
    void LoadState(JsonObject? state) { }
}

/// <summary>The rows one forward/backward gets and the factor its loss is scaled by.</summary>
public sealed record MicroBatch(IReadOnlyList<int> Rows, double Share);

/// <summary>What the engine needs besides the method: the shared config, where checkpoints go, and where to resume from.</summary>
public sealed record EngineRun(ModelSource Source, TrainingConfig Config, string CheckpointRoot, string? ResumeFrom);

/// <summary>
/// The training loop every trainer runs on. Per step: read the control channel; take the epoch's next batch (the
/// order is a pure function of (seed, epoch); a batch trains <see cref="TrainingConfig.UpdatesPerBatch"/> consecutive
/// steps, so an epoch is one pass over the rows whatever that is); set the step's learning rate (<see cref="Schedules"/>,
/// a pure function of the step); run the batch as the method's micro-batches (<see cref="ITrainingMethod.MicroBatches"/>),
/// each in its own dispose scope, scaling each loss by its share of the batch; refuse a non-finite loss before the update; clip the
/// gradient (reporting the pre-clip norm); take the AdamW step; then report metrics, evaluate and save on their
/// schedules. The only randomness inside a step (LoRA's dropout) draws from a generator seeded by (seed, step), so weights +
/// optimizer state + step (+ the method's state) resume a run exactly.
/// Runs synchronously on the calling thread with no <c>await</c> inside a dispose scope.
/// </summary>
public static class TrainingEngine
{
    /// <summary>Fisher-Yates permutation of row indices for one epoch, seeded by (seed, epoch).</summary>
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

    /// <summary>The seed of the generator at the start of a step: a pure function of (seed, step).</summary>
    public static long StepSeed(int seed, int step) => (long)seed * 1_000_003L + step * 7_919L + 17;

    public static TrainingResult Run(ITrainingMethod m, EngineRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        int rows = m.TrainRows;
        if (rows == 0) throw new InvalidDataException("the training file has no rows");
        int total = c.TotalSteps(rows), perEpoch = c.StepsPerEpoch(rows);
        int warmup = (int)Math.Round(c.WarmupRatio * total);
        var parameters = m.Parameters;
        var lora = LoraSettings.From(c, run.Source.Architecture);
        var (optimizer, lrScales) = Optimization.AdamW(parameters, c, m.LearningRateScale);
        using var _optimizer = optimizer;

        int step = 0, epochs = 0;
        long tokens = 0;
        string? lastCheckpoint = null;
        if (run.ResumeFrom is not null)
        {
            Checkpoints.LoadWeights(m.Model, run.ResumeFrom, m.ExtraTensors);
            try { optimizer.load_state_dict(Path.Combine(run.ResumeFrom, Checkpoints.Optimizer)); }
            catch (ArgumentException e)
            {
                // A checkpoint written before AdamW had two parameter groups: keep the weights and the step, start the moments afresh.
                reporter.Event("warn", $"The checkpoint's optimizer state does not fit this AlignHub ({e.Message}); training continues with fresh AdamW moments",
                    new Dictionary<string, object> { ["step"] = Checkpoints.StepOf(run.ResumeFrom) });
            }
            var st = Checkpoints.LoadState(run.ResumeFrom);
            (step, epochs, tokens) = (st.Step, st.EpochsCompleted, st.TrainedTokens);
            m.LoadState(st.Method);
            lastCheckpoint = run.ResumeFrom;
            reporter.Event("info", $"Resumed from checkpoint at step {step}", new Dictionary<string, object> { ["step"] = step });
        }
        else
            reporter.Event("info", m.StartMessage(total), new Dictionary<string, object> { ["rows"] = rows, ["total_steps"] = total });

        string Save(Dictionary<string, double> metrics)
        {
            if (lastCheckpoint is not null && Checkpoints.StepOf(lastCheckpoint) == step) return lastCheckpoint;
            var dir = Checkpoints.Save(run.CheckpointRoot, m.Model, optimizer, new TrainerState(step, epochs, tokens, total, m.SaveState()),
                run.Source, c.ToJson(), m.ExtraTensors, m.ModelConfigJson, lora, saveMerged: c.SaveMergedModel && step == total);
            reporter.Checkpoint(step, dir, new Dictionary<string, double>(metrics) { ["step"] = step });
            return dir;
        }

        m.SetTraining(true);
        var clock = new StepClock(total);
        var lastMetrics = new Dictionary<string, double>();
        int micro = Math.Max(1, (c.BatchSize + c.GradientAccumulationSteps - 1) / c.GradientAccumulationSteps);
        int[]? order = null; int orderEpoch = -1;
        while (step < total)
        {
            switch (RunControl.Check(reporter, ct))
            {
                case TrainingOutcome.Cancelled: return new TrainingResult(TrainingOutcome.Cancelled, step, lastCheckpoint, tokens);
                case TrainingOutcome.LeaseLost: return new TrainingResult(TrainingOutcome.LeaseLost, step, lastCheckpoint, tokens);
                case TrainingOutcome.Paused:
                    // Keep the progress in a checkpoint; a pause before the first step has nothing to keep.
                    return new TrainingResult(TrainingOutcome.Paused, step, step > 0 ? Save(lastMetrics) : lastCheckpoint, tokens);
                case TrainingOutcome.Interrupted:
                    return new TrainingResult(TrainingOutcome.Interrupted, step, step > 0 ? Save(lastMetrics) : lastCheckpoint, tokens);
            }

            int epoch = step / perEpoch, inEpoch = step % perEpoch;
            if (epoch != orderEpoch) { order = EpochOrder(rows, c.Seed, epoch); orderEpoch = epoch; }
            var batch = order!.Skip(inEpoch / c.UpdatesPerBatch * c.BatchSize).Take(c.BatchSize).ToList();

            var sw = Stopwatch.StartNew();
            torch.manual_seed(StepSeed(c.Seed, step)); // LoRA dropout draws the same masks in a resumed run
            m.BeginStep(step);
            double lr = Schedules.LearningRate(c.LrSchedulerType, step, total, warmup, c.PeakLearningRate);
            var sums = new double[m.StatNames.Count];
            double gradNorm;
            Dictionary<string, double> stepMetrics;
            using (var scope = NewDisposeScope())
            {
                optimizer.zero_grad();
                bool update = AccumulateGradients(m, batch, c.GradientAccumulationSteps, micro, sums);
                stepMetrics = m.Metrics(sums);
                // Refuse the update: the last checkpoint stays the state of a finite run.
                if (!double.IsFinite(stepMetrics[MetricNames.Loss]))
                    throw new InvalidOperationException($"loss became {stepMetrics[MetricNames.Loss]} at step {step + 1}; lower the learning rate");
                gradNorm = 0;
                if (update)
                {
                    gradNorm = nn.utils.clip_grad_norm_(parameters, c.MaxGradNorm);
                    foreach (var (g, scale) in optimizer.ParamGroups.Zip(lrScales)) g.LearningRate = lr * scale;
                    optimizer.step();
                }
            }
            long batchTokens = m.Tokens(batch);
            m.AfterUpdate(step + 1, stepMetrics, reporter);
            step++;
            tokens += batchTokens;
            if (step % perEpoch == 0 || step == total)
            {
                epochs = (step + perEpoch - 1) / perEpoch;
                if (step % perEpoch == 0)
                    reporter.Event("info", $"Epoch {epochs} of {c.NEpochs} completed", new Dictionary<string, object> { ["epoch"] = epochs, ["step"] = step });
            }

            Dictionary<string, double>? metrics = null;
            if (step % c.LoggingSteps == 0 || step == total)
            {
                metrics = stepMetrics;
                metrics[MetricNames.GradNorm] = gradNorm;
                metrics[MetricNames.LearningRate] = lr;
                metrics[MetricNames.Epoch] = (double)step / perEpoch;
                metrics[MetricNames.TokensPerSecond] = batchTokens / Math.Max(1e-9, sw.Elapsed.TotalSeconds);
                lastMetrics = new Dictionary<string, double>(metrics);
            }
            var progress = clock.Tick(step, epochs, tokens);
            reporter.Step(progress, metrics);
            m.AfterStep(step, stepMetrics, reporter);

            if (m.ValidRows > 0 && (step % c.EvalSteps == 0 || step == total))
            {
                var eval = Evaluate(m, c.BatchSize);
                foreach (var (k, v) in eval) lastMetrics[k] = v;
                reporter.Step(progress, eval);
            }
            if (step % c.SaveSteps == 0 || step == total) lastCheckpoint = Save(lastMetrics);
        }
        return new TrainingResult(TrainingOutcome.Completed, step, lastCheckpoint, tokens);
    }

    /// <summary>
    /// One step's forward and backward passes: the method's micro-batches of <paramref name="batch"/>, each in its own
    /// dispose scope, gradients added up in the parameters' <c>.grad</c>; their statistics (and the step's host
    /// statistics) added to <paramref name="sums"/>. False: the method chose no update for this step (no micro-batch).
    /// </summary>
    public static bool AccumulateGradients(ITrainingMethod m, IReadOnlyList<int> batch, int accumulation, int microRows, double[] sums)
    {
        var parts = m.MicroBatches(batch, accumulation, microRows);
        foreach (var part in parts)
        {
            using var inner = NewDisposeScope();
            var (loss, stats) = m.Forward(part.Rows, false);
            (part.Share == 1 ? loss : loss * part.Share).backward();
            Add(sums, stats);
        }
        if (m.StepStats() is { } host)
            for (int i = 0; i < sums.Length; i++) sums[i] += host[i];
        return parts.Count > 0;
    }

    /// <summary>The method's metrics over its validation rows, prefixed <c>eval/</c>, under <c>no_grad</c> and <c>eval()</c>.</summary>
    public static Dictionary<string, double> Evaluate(ITrainingMethod m, int batchSize)
    {
        m.SetTraining(false);
        try
        {
            using var _ = no_grad();
            var sums = new double[m.StatNames.Count];
            for (int i = 0; i < m.ValidRows; i += batchSize)
            {
                using var scope = NewDisposeScope();
                var (_, stats) = m.Forward(Enumerable.Range(i, Math.Min(batchSize, m.ValidRows - i)).ToList(), true);
                Add(sums, stats);
            }
            return m.Metrics(sums).ToDictionary(kv => MetricNames.Eval(kv.Key), kv => kv.Value);
        }
        finally { m.SetTraining(true); }
    }

    /// <summary>Adds a statistics vector to the host-side sums: one device-to-host copy per micro-batch, after its backward.</summary>
    static void Add(double[] sums, Tensor stats)
    {
        using var host = stats.detach().to(ScalarType.Float64).cpu();
        var v = host.data<double>();
        for (int i = 0; i < sums.Length; i++) sums[i] += v[i];
    }
}
