using System.Text.Json;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>
/// Creates, cancels, pauses and re-queues fine-tuning jobs. The row is written first; every hand-over to Hangfire goes
/// through <see cref="JobDispatcher"/> (a queued row with no <see cref="FineTuningJob.EnqueuedAtMs"/>).
/// </summary>
public sealed class JobService(IDbContextFactory<AlignHubDb> dbs, JobDispatcher dispatcher)
{
    public static readonly string[] MethodTypes = ["supervised", "generate", "dpo", "reward_model", "evaluate"];

    public abstract record CreateResult;
    public sealed record Created(FineTuningJob Job) : CreateResult;
    public sealed record Invalid(Dictionary<string, string[]> Errors) : CreateResult;

    public async Task<CreateResult> CreateAsync(CreateJobRequest req, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        void Err(string field, string message) =>
            errors[field] = errors.TryGetValue(field, out var m) ? [.. m, message] : [message];

        var methodType = req.Method?.Type ?? "supervised";
        if (!MethodTypes.Contains(methodType))
            Err("method.type", $"unknown method type \"{methodType}\"; supported: {string.Join(", ", MethodTypes)}");
        SftConfig? sft = null;
        GenerateConfig? gen = null;
        PreferenceConfig? pref = null;
        EvaluateConfig? eval = null;
        if (methodType == "evaluate") eval = ResolveEvaluate(req.Method?.Evaluate?.Hyperparameters, req.Seed, Err);
        else if (methodType == "generate") gen = ResolveGenerate(req.Method?.Generate?.Hyperparameters, req.Seed, Err);
        else if (methodType is "dpo" or "reward_model")
            pref = ResolvePreference(methodType == "dpo" ? req.Method?.Dpo?.Hyperparameters : req.Method?.RewardModel?.Hyperparameters, methodType, req.Seed, Err);
        else sft = ResolveSft(req.Method?.Supervised?.Hyperparameters ?? req.Hyperparameters, req.Seed, Err);
        int seed = sft?.Seed ?? gen?.Seed ?? pref?.Seed ?? eval!.Seed;

        if (req.Seed is < 0) Err("seed", "seed must be >= 0");
        if (req.Suffix is { Length: > 64 }) Err("suffix", "suffix must be at most 64 characters");
        if (req.Suffix is { } s && s.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
            Err("suffix", "suffix may hold only letters, digits, '-', '_' and '.'");
        if (req.Metadata is { Count: > 16 }) Err("metadata", "at most 16 metadata keys");

        await using var db = await dbs.CreateDbContextAsync(ct);
        ModelRecord? model = null;
        if (string.IsNullOrWhiteSpace(req.Model)) Err("model", "model is required");
        else if ((model = await ModelService.FindAsync(db, req.Model, ct)) is null)
            Err("model", $"model \"{req.Model}\" is not registered (GET /v1/models lists them)");
        if (string.IsNullOrWhiteSpace(req.TrainingFile)) Err("training_file", "training_file is required");
        else await CheckFile(db, req.TrainingFile, "training_file", methodType, pref?.LossType == "kto", Err, ct);
        if (req.ValidationFile is not null)
        {
            if (methodType == "generate") Err("validation_file", "a generate job reads only training_file (its prompts)");
            else await CheckFile(db, req.ValidationFile, "validation_file", methodType, pref?.LossType == "kto", Err, ct);
        }
        if (model is not null)
        {
            var arch = ModelArchitecture.Parse(model.ConfigJson);
            if (arch.IsRewardModel && methodType is not ("reward_model" or "evaluate"))
                Err("model", $"model \"{model.Id}\" is a reward model; {methodType} needs a language model");
            var positions = arch.MaxPositions;
            if (sft?.MaxSeqLength is int msl && msl > positions)
                Err("method.supervised.hyperparameters.max_seq_length", $"must be at most the model's context length {positions}");
            if (gen?.MaxPromptLength is int mpl && mpl >= positions)
                Err("method.generate.hyperparameters.max_prompt_length", $"must be below the model's context length {positions}");
            if (pref?.MaxLength is int ml && ml > positions)
                Err($"method.{methodType}.hyperparameters.max_length", $"must be at most the model's context length {positions}");
        }
        if (eval is not null)
        {
            const string P = "method.evaluate.hyperparameters.";
            bool policy = model is not null && !ModelArchitecture.Parse(model.ConfigJson).IsRewardModel;
            if (eval.ReferenceModel is { } refId && await ModelService.FindAsync(db, refId, ct) is null) Err(P + "reference_model", $"model \"{refId}\" is not registered");
            if (policy && eval.ReferenceModel is null && model!.ParentJobId is null)
                Err(P + "reference_model", "a policy's implicit reward needs a reference model: name one (the model was not trained here)");
            if (eval.RewardModel is { } rmId)
            {
                var judge = await ModelService.FindAsync(db, rmId, ct);
                if (judge is null) Err(P + "reward_model", $"model \"{rmId}\" is not registered");
                else if (!ModelArchitecture.Parse(judge.ConfigJson).IsRewardModel) Err(P + "reward_model", $"model \"{rmId}\" is not a reward model");
                if (!policy && model is not null) Err(P + "reward_model", "a win rate compares a policy's samples; the evaluated model is a reward model");
            }
        }
        if (errors.Count > 0) return new Invalid(errors);

        var now = Ids.NowMs();
        var job = new FineTuningJob
        {
            Id = Ids.New("ftjob-"),
            Model = req.Model!,
            TrainingFile = req.TrainingFile!,
            ValidationFile = req.ValidationFile,
            Seed = seed,
            Suffix = req.Suffix,
            MetadataJson = req.Metadata is null ? null : JsonSerializer.Serialize(req.Metadata),
            MethodType = methodType,
            ConfigJson = sft?.ToJson() ?? gen?.ToJson() ?? pref?.ToJson() ?? eval!.ToJson(),
            Status = JobStatus.Queued,
            CreatedAt = now / 1000,
            CreatedAtMs = now,
        };
        db.Jobs.Add(job);
        db.Events.Add(new JobEvent { JobId = job.Id, CreatedAt = job.CreatedAt, Level = "info", Type = "message",
            Message = methodType switch { "generate" => $"Created generation job {job.Id}", "evaluate" => $"Created evaluation job {job.Id}", _ => $"Created fine-tuning job {job.Id}" } });
        await db.SaveChangesAsync(ct);
        dispatcher.Signal(); // hands the id to Hangfire off the request path
        return new Created(job);
    }

    static async Task CheckFile(AlignHubDb db, string id, string field, string methodType, bool unpairedOk, Action<string, string> err, CancellationToken ct)
    {
        var f = await db.Files.FindAsync([id], ct);
        if (f is null) err(field, $"file \"{id}\" does not exist");
        else if (f.Purpose != "fine-tune") err(field, $"file \"{id}\" has purpose \"{f.Purpose}\", not \"fine-tune\"");
        else if (methodType == "generate" && f.Format is not (JsonlRows.Prompts or JsonlRows.Supervised))
            err(field, $"file \"{id}\" holds {f.Format} rows; generate needs prompt or messages rows");
        else if (unpairedOk && f.Format is JsonlRows.Preference or JsonlRows.UnpairedPreference) { }
        else if (methodType is "dpo" or "reward_model" or "evaluate" && f.Format != JsonlRows.Preference)
            err(field, $"file \"{id}\" holds {f.Format} rows; {methodType} needs preference pairs ({{\"prompt\", \"chosen\", \"rejected\"}} or OpenAI's DPO rows)");
        else if (methodType == "supervised" && f.Format != JsonlRows.Supervised)
            err(field, $"file \"{id}\" holds {f.Format} rows; supervised needs prompt/completion or messages rows with an assistant turn");
    }

    /// <summary>Fills every default of <see cref="PreferenceConfig"/> and checks ranges; errors name the field.</summary>
    public static PreferenceConfig ResolvePreference(PreferenceHyperparametersRequest? hp, string methodType, int? seed, Action<string, string> err)
    {
        string P = $"method.{methodType}.hyperparameters.";
        var c = new PreferenceConfig { Seed = seed ?? Random.Shared.Next(0, int.MaxValue) };
        if (hp is null) return c;
        double? beta = AutoDouble(hp.Beta, P + "beta", 1e-6, 100, err);
        int? nEpochs = AutoInt(hp.NEpochs, P + "n_epochs", 1, 100, err);
        int? batch = AutoInt(hp.BatchSize, P + "batch_size", 1, 1024, err);
        double? mult = AutoDouble(hp.LearningRateMultiplier, P + "learning_rate_multiplier", 1e-6, 100, err);
        var Range = RangeCheck(P, err);
        if (hp.LossType is { } lt && !new[] { "sigmoid", "robust", "hinge", "ipo", "simpo", "orpo", "kto" }.Contains(lt))
            err(P + "loss_type", $"unknown loss_type \"{lt}\"; supported: sigmoid, robust, hinge, ipo, simpo, orpo, kto");
        Range(hp.DesirableWeight, "desirable_weight", 0, 100);
        Range(hp.EnsembleSize, "ensemble_size", 1, 16);
        if (methodType == "dpo" && hp.EnsembleSize is not null) err(P + "ensemble_size", "ensembles are of reward models");
        Range(hp.UndesirableWeight, "undesirable_weight", 0, 100);
        if (methodType == "reward_model" && hp.LossType is not null) err(P + "loss_type", "a reward model has no loss_type (Bradley-Terry)");
        if (hp.LrSchedulerType is { } st && st is not ("cosine" or "linear")) err(P + "lr_scheduler_type", "must be cosine or linear");
        Range(hp.LabelSmoothing, "label_smoothing", 0, 0.49);
        Range(hp.SimpoGamma, "simpo_gamma", 0, 100);
        Range(hp.OrpoLambda, "orpo_lambda", 0, 100);
        Range(hp.CenterRewardsCoefficient, "center_rewards_coefficient", 0, 100);
        Range(hp.GradientAccumulationSteps, "gradient_accumulation_steps", 1, 1024);
        Range(hp.LearningRate, "learning_rate", 1e-8, 1);
        Range(hp.WarmupRatio, "warmup_ratio", 0, 1);
        Range(hp.WeightDecay, "weight_decay", 0, 10);
        Range(hp.MaxGradNorm, "max_grad_norm", 1e-6, 1e6);
        Range(hp.MaxSteps, "max_steps", 1, 10_000_000);
        Range(hp.LoggingSteps, "logging_steps", 1, 1_000_000);
        Range(hp.EvalSteps, "eval_steps", 1, 10_000_000);
        Range(hp.SaveSteps, "save_steps", 1, 10_000_000);
        Range(hp.MaxLength, "max_length", 2, 1_000_000);
        Range(hp.MaxPromptLength, "max_prompt_length", 1, 1_000_000);
        if (hp.MaxLength is int ml && hp.MaxPromptLength is int mp && mp >= ml) err(P + "max_prompt_length", "must be below max_length");
        return c with
        {
            Beta = beta ?? c.Beta,
            NEpochs = nEpochs ?? c.NEpochs,
            BatchSize = batch ?? c.BatchSize,
            LearningRateMultiplier = mult ?? c.LearningRateMultiplier,
            LossType = hp.LossType ?? c.LossType,
            LabelSmoothing = hp.LabelSmoothing ?? c.LabelSmoothing,
            SimpoGamma = hp.SimpoGamma ?? c.SimpoGamma,
            OrpoLambda = hp.OrpoLambda ?? c.OrpoLambda,
            DesirableWeight = hp.DesirableWeight ?? c.DesirableWeight,
            EnsembleSize = hp.EnsembleSize ?? c.EnsembleSize,
            UndesirableWeight = hp.UndesirableWeight ?? c.UndesirableWeight,
            CenterRewardsCoefficient = hp.CenterRewardsCoefficient ?? c.CenterRewardsCoefficient,
            GradientAccumulationSteps = hp.GradientAccumulationSteps ?? c.GradientAccumulationSteps,
            LearningRate = hp.LearningRate ?? c.LearningRate,
            LrSchedulerType = hp.LrSchedulerType ?? c.LrSchedulerType,
            WarmupRatio = hp.WarmupRatio ?? c.WarmupRatio,
            WeightDecay = hp.WeightDecay ?? c.WeightDecay,
            MaxGradNorm = hp.MaxGradNorm ?? c.MaxGradNorm,
            MaxSteps = hp.MaxSteps ?? c.MaxSteps,
            LoggingSteps = hp.LoggingSteps ?? c.LoggingSteps,
            EvalSteps = hp.EvalSteps ?? c.EvalSteps,
            SaveSteps = hp.SaveSteps ?? c.SaveSteps,
            MaxLength = hp.MaxLength ?? c.MaxLength,
            MaxPromptLength = hp.MaxPromptLength ?? c.MaxPromptLength,
        };
    }

    public static EvaluateConfig ResolveEvaluate(EvaluateHyperparametersRequest? hp, int? seed, Action<string, string> err)
    {
        const string P = "method.evaluate.hyperparameters.";
        var c = new EvaluateConfig { Seed = seed ?? Random.Shared.Next(0, int.MaxValue) };
        if (hp is null) return c;
        var Range = RangeCheck(P, err);
        Range(hp.MaxNewTokens, "max_new_tokens", 1, 8192);
        Range(hp.Temperature, "temperature", 0, 10);
        Range(hp.BootstrapSamples, "bootstrap_samples", 100, 100_000);
        Range(hp.UncertaintyPenalty, "uncertainty_penalty", 0, 100);
        Range(hp.BatchSize, "batch_size", 1, 512);
        return c with
        {
            ReferenceModel = hp.ReferenceModel, RewardModel = hp.RewardModel, UncertaintyPenalty = hp.UncertaintyPenalty ?? 0,
            MaxNewTokens = hp.MaxNewTokens ?? c.MaxNewTokens, Temperature = hp.Temperature ?? c.Temperature,
            BootstrapSamples = hp.BootstrapSamples ?? c.BootstrapSamples, BatchSize = hp.BatchSize ?? c.BatchSize,
        };
    }

    /// <summary>Fills every default of <see cref="GenerateConfig"/> and checks ranges; errors name the field.</summary>
    public static GenerateConfig ResolveGenerate(GenerateHyperparametersRequest? hp, int? seed, Action<string, string> err)
    {
        const string P = "method.generate.hyperparameters.";
        var c = new GenerateConfig { Seed = seed ?? Random.Shared.Next(0, int.MaxValue) };
        if (hp is null) return c;
        var Range = RangeCheck(P, err);
        Range(hp.N, "n", 1, 64);
        Range(hp.MaxNewTokens, "max_new_tokens", 1, 8192);
        Range(hp.Temperature, "temperature", 0, 10);
        Range(hp.TopK, "top_k", 0, 1_000_000);
        Range(hp.TopP, "top_p", 1e-6, 1);
        Range(hp.BatchSize, "batch_size", 1, 512);
        Range(hp.MaxPromptLength, "max_prompt_length", 1, 1_000_000);
        if (hp.Stop is { } stop)
        {
            if (stop.Count > 4) err(P + "stop", "at most 4 stop strings");
            if (stop.Any(string.IsNullOrEmpty)) err(P + "stop", "stop strings must not be empty");
            if (stop.Any(x => x is { Length: > 256 })) err(P + "stop", "stop strings are at most 256 characters");
        }
        return c with
        {
            N = hp.N ?? c.N,
            MaxNewTokens = hp.MaxNewTokens ?? c.MaxNewTokens,
            Temperature = hp.Temperature ?? c.Temperature,
            TopK = hp.TopK is 0 ? null : hp.TopK,
            TopP = hp.TopP ?? c.TopP,
            Stop = hp.Stop ?? c.Stop,
            BatchSize = hp.BatchSize ?? c.BatchSize,
            MaxPromptLength = hp.MaxPromptLength,
        };
    }

    /// <summary>Fills every default of <see cref="SftConfig"/> and checks ranges; errors name the field.</summary>
    public static SftConfig ResolveSft(HyperparametersRequest? hp, int? seed, Action<string, string> err)
    {
        const string P = "method.supervised.hyperparameters.";
        var c = new SftConfig { Seed = seed ?? Random.Shared.Next(0, int.MaxValue) };
        if (hp is null) return c;
        int? nEpochs = AutoInt(hp.NEpochs, P + "n_epochs", 1, 100, err);
        int? batch = AutoInt(hp.BatchSize, P + "batch_size", 1, 1024, err);
        double? mult = AutoDouble(hp.LearningRateMultiplier, P + "learning_rate_multiplier", 1e-6, 100, err);
        var Range = RangeCheck(P, err);
        Range(hp.LearningRate, "learning_rate", 1e-8, 1);
        Range(hp.MaxSteps, "max_steps", 1, 10_000_000);
        Range(hp.WarmupRatio, "warmup_ratio", 0, 1);
        Range(hp.WeightDecay, "weight_decay", 0, 10);
        Range(hp.MaxGradNorm, "max_grad_norm", 1e-6, 1e6);
        Range(hp.LoggingSteps, "logging_steps", 1, 1_000_000);
        Range(hp.SaveSteps, "save_steps", 1, 10_000_000);
        Range(hp.MaxSeqLength, "max_seq_length", 2, 1_000_000);
        return c with
        {
            NEpochs = nEpochs ?? c.NEpochs,
            BatchSize = batch ?? c.BatchSize,
            LearningRateMultiplier = mult ?? c.LearningRateMultiplier,
            LearningRate = hp.LearningRate ?? c.LearningRate,
            MaxSteps = hp.MaxSteps ?? c.MaxSteps,
            WarmupRatio = hp.WarmupRatio ?? c.WarmupRatio,
            WeightDecay = hp.WeightDecay ?? c.WeightDecay,
            MaxGradNorm = hp.MaxGradNorm ?? c.MaxGradNorm,
            LoggingSteps = hp.LoggingSteps ?? c.LoggingSteps,
            SaveSteps = hp.SaveSteps ?? c.SaveSteps,
            MaxSeqLength = hp.MaxSeqLength ?? c.MaxSeqLength,
        };
    }

    /// <summary>A check that a value, when given, is finite and within [lo, hi]; its errors name the field under <paramref name="prefix"/>.</summary>
    static Action<double?, string, double, double> RangeCheck(string prefix, Action<string, string> err) => (v, name, lo, hi) =>
    {
        if (v is double x && (!double.IsFinite(x) || x < lo || x > hi)) err(prefix + name, $"must be between {lo} and {hi}");
    };

    static int? AutoInt(JsonElement? v, string field, int lo, int hi, Action<string, string> err)
    {
        if (v is not JsonElement e || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind == JsonValueKind.String && e.GetString() == "auto") return null;
        if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var i) && i >= lo && i <= hi) return i;
        err(field, $"must be \"auto\" or an integer from {lo} to {hi}");
        return null;
    }

    static double? AutoDouble(JsonElement? v, string field, double lo, double hi, Action<string, string> err)
    {
        if (v is not JsonElement e || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind == JsonValueKind.String && e.GetString() == "auto") return null;
        if (e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out var d) && double.IsFinite(d) && d >= lo && d <= hi) return d;
        err(field, $"must be \"auto\" or a number from {lo} to {hi}");
        return null;
    }

    public enum CancelOutcome { Cancelled, NotFound, AlreadyFinished }

    /// <summary>Marks a queued or running job cancelled; its worker sees that within one step and stops.</summary>
    public async Task<(CancelOutcome, FineTuningJob?)> CancelAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var now = Ids.Now();
        var n = await db.Jobs
            .Where(j => j.Id == id && (j.Status == JobStatus.Queued || j.Status == JobStatus.Running || j.Status == JobStatus.ValidatingFiles || j.Status == JobStatus.Paused))
            .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, JobStatus.Cancelled).SetProperty(j => j.FinishedAt, now), ct);
        var job = await db.Jobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, ct);
        if (job is null) return (CancelOutcome.NotFound, null);
        if (n == 0) return (CancelOutcome.AlreadyFinished, job);
        db.Events.Add(new JobEvent { JobId = id, CreatedAt = now, Level = "info", Type = "message", Message = "Job cancelled by request" });
        await db.SaveChangesAsync(ct);
        return (CancelOutcome.Cancelled, job);
    }

    public enum PauseOutcome { Done, NotFound, WrongState }

    /// <summary>Pauses a queued or running job: its worker saves a checkpoint at the next step and stops.</summary>
    public async Task<(PauseOutcome, FineTuningJob?)> PauseAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var n = await db.Jobs.Where(j => j.Id == id && (j.Status == JobStatus.Queued || j.Status == JobStatus.Running || j.Status == JobStatus.ValidatingFiles))
            .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, JobStatus.Paused), ct);
        var job = await db.Jobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, ct);
        if (job is null) return (PauseOutcome.NotFound, null);
        if (n == 0) return (PauseOutcome.WrongState, job);
        db.Events.Add(new JobEvent { JobId = id, CreatedAt = Ids.Now(), Level = "info", Type = "message", Message = "Job paused by request" });
        await db.SaveChangesAsync(ct);
        return (PauseOutcome.Done, job);
    }

    /// <summary>Queues a paused job again; a worker resumes it from its last checkpoint.</summary>
    public async Task<(PauseOutcome, FineTuningJob?)> ResumeAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var n = await db.Jobs.Where(j => j.Id == id && j.Status == JobStatus.Paused)
            .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, JobStatus.Queued).SetProperty(j => j.EnqueuedAtMs, (long?)null), ct);
        var job = await db.Jobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == id, ct);
        if (job is null) return (PauseOutcome.NotFound, null);
        if (n == 0) return (PauseOutcome.WrongState, job);
        db.Events.Add(new JobEvent { JobId = id, CreatedAt = Ids.Now(), Level = "info", Type = "message", Message = "Job resumed by request" });
        await db.SaveChangesAsync(ct);
        dispatcher.Signal();
        return (PauseOutcome.Done, job);
    }

    /// <summary>
    /// Puts jobs back on the queue that a dead process left behind. <paramref name="all"/> (the embedded default at
    /// start-up, where no other process can hold a job): every queued or running job. Otherwise: running jobs whose
    /// lease has expired. The conditional update makes exactly one process re-queue each job.
    /// </summary>
    public async Task<int> RequeueOrphansAsync(bool all, TimeSpan lease, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var staleBefore = Ids.NowMs() - (long)lease.TotalMilliseconds;
        System.Linq.Expressions.Expression<Func<FineTuningJob, bool>> orphan = all
            ? j => j.Status == JobStatus.Queued || j.Status == JobStatus.Running
            : j => j.Status == JobStatus.Running && j.HeartbeatAtMs < staleBefore;
        var candidates = await db.Jobs.Where(orphan).Select(j => j.Id).ToListAsync(ct);
        int count = 0;
        foreach (var id in candidates)
        {
            int n = await db.Jobs.Where(j => j.Id == id).Where(orphan)
                .ExecuteUpdateAsync(s => s.SetProperty(j => j.Status, JobStatus.Queued).SetProperty(j => j.LeaseOwner, (string?)null)
                    .SetProperty(j => j.EnqueuedAtMs, (long?)null), ct);
            if (n == 0) continue;
            db.Events.Add(new JobEvent { JobId = id, CreatedAt = Ids.Now(), Level = "warn", Type = "message", Message = "Worker lost; job re-queued to resume from its last checkpoint" });
            await db.SaveChangesAsync(ct);
            count++;
        }
        if (count > 0) dispatcher.Signal();
        return count;
    }
}
