using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Evaluation;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlignHub.Training.Preference;

/// <summary>What a DPO-family run needs (KTO reads unpaired rows, or pairs split into them).</summary>
public sealed record DpoRun(
    ModelSource Model,
    IReadOnlyList<PreferencePair> Train,
    IReadOnlyList<PreferencePair>? Validation,
    DpoConfig Config,
    string CheckpointRoot,
    string? ResumeFrom,
    string ReferenceCachePath,
    IReadOnlyList<UnpairedExample>? UnpairedTrain = null,
    IReadOnlyList<UnpairedExample>? UnpairedValidation = null,
    Device? Device = null);

/// <summary>
/// DPO and its family (<see cref="PreferenceLosses"/>) on the <see cref="TrainingEngine"/>. Reference log-probs are
/// computed once before training, by a reference model that is then released, and cached on disk under a
/// fingerprint of (model, data, tokenisation) (<see cref="ReferenceCache"/>), so no reference model sits in memory
/// during the updates. Chosen and rejected go through one concatenated forward. Metrics follow TRL's DPOTrainer:
/// <c>loss</c>, <c>rewards/chosen|rejected|margins|accuracies</c>, <c>logps/chosen|rejected</c> (KTO: <c>kl</c>).
/// </summary>
public static class DpoTrainer
{
    public static TrainingResult Train(DpoRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        bool kto = c.LossType == "kto";
        var tok = run.Model.CreateTokenizer();
        var (maxLen, maxPrompt) = c.Limits(run.Model.Architecture.MaxPositions);
        var encoder = new PromptEncoder(tok, maxPrompt);
        // KTO reads unpaired rows; a paired file gives one desirable and one undesirable row per pair (as TRL does).
        List<TokenizedPair> Prepare(IReadOnlyList<PreferencePair>? pairs, IReadOnlyList<UnpairedExample>? unpaired) => kto
            ? Kto.Rows(unpaired ?? Kto.FromPairs(pairs ?? []), encoder, maxLen)
            : (pairs ?? []).Select(p => PairData.Tokenize(p, encoder, maxLen)).ToList();
        var train = Prepare(run.Train, run.UnpairedTrain);
        var valid = run.Validation is null && run.UnpairedValidation is null ? [] : Prepare(run.Validation, run.UnpairedValidation);
        if (train.Count == 0) throw new InvalidDataException("the training file has no rows");

        var device = run.Device ?? CPU;
        var lora = LoraSettings.From(c, run.Model.Architecture);
        CausalLM? policy = null;
        try
        {
            // With LoRA the reference is the policy's base (its adapters switched off): one copy of the weights, built first.
            if (lora is not null) { torch.manual_seed(c.Seed); policy = run.Model.CreateModel(device, lora, c.Seed, Dtypes.Resolve(c.TorchDtype, device, run.Model, frozen: true)); }
            var adapted = policy;
            (ReferenceLogps Train, ReferenceLogps? Valid)? reference = c.NeedsReference
                ? ReferenceCache.LoadOrCompute(run.ReferenceCachePath, adapted is null ? ReferenceCache.Separate(run.Model, c.Seed, device) : ReferenceCache.BaseOf(adapted),
                    train, valid, tok.PadId, maxLen, c.BatchSize, reporter)
                : null;
            if (policy is null) { torch.manual_seed(c.Seed); policy = run.Model.CreateModel(device); }
            using var method = new DpoMethod(policy, train, valid, reference?.Train, reference?.Valid, tok.PadId, maxLen, c);
            policy = null; // the method owns it now
            return TrainingEngine.Run(method, new EngineRun(run.Model, c, run.CheckpointRoot, run.ResumeFrom), reporter, ct);
        }
        finally { policy?.Dispose(); }
    }
}

sealed class DpoMethod(CausalLM policy, List<TokenizedPair> train, List<TokenizedPair> valid, ReferenceLogps? refTrain, ReferenceLogps? refValid,
    int pad, int maxLen, DpoConfig c) : ITrainingMethod, IDisposable
{
    readonly bool kto = c.LossType == "kto";
    public CausalLM Model => policy;
    public IReadOnlyList<Parameter> Parameters { get; } = Lora.Trainable(policy);
    public int TrainRows => train.Count;
    public int ValidRows => valid.Count;
    public IReadOnlyList<string> StatNames { get; } = c.LossType == "kto"
        ? ["loss", "rewards_chosen", "rewards_rejected", "logps_chosen", "logps_rejected", "kl", "desirable", "rows"]
        : ["loss", "rewards_chosen", "rewards_rejected", "correct", "logps_chosen", "logps_rejected", "rows",
            "chosen_change", "rejected_change", "top_mass", "top_entropy", "top_tokens"];
    LikelihoodMonitor likelihood = new() { Drop = c.LikelihoodDisplacementWarning };
    bool warned;

    public void SetTraining(bool on) { if (on) policy.train(); else policy.eval(); }
    public double Weight(IReadOnlyList<int> rows, bool valid) => rows.Count;
    public long Tokens(IReadOnlyList<int> rows) => PairData.Tokens(train, rows);

    public (Tensor Loss, Tensor Stats) Forward(IReadOnlyList<int> idx, bool isValid)
    {
        var data = isValid ? valid : train;
        var reference = isValid ? refValid : refTrain;
        var device = policy.Device;
        var (pc, pr) = CompletionLogProbs.Concatenated(policy, PairData.Side(data, idx, true), PairData.Side(data, idx, false), pad, maxLen);
        if (kto)
        {
            // Chosen holds the row's completion, Rejected the mismatched one of the KL estimate, Margin 1 when desirable.
            var desirable = tensor(idx.Select(i => data[i].Margin > 0.5f).ToArray(), device: device);
            var refMatched = PairData.Pick(reference!.Chosen, idx, device);
            var refMismatched = PairData.Pick(reference.Rejected, idx, device);
            var k = PreferenceLosses.Kto(pc.Sum, refMatched, desirable, pr.Sum, refMismatched, c.Beta, c.DesirableWeight, c.UndesirableWeight);
            var want = desirable.to_type(ScalarType.Float32);
            var matched = pc.Sum.detach();
            var kl = (pr.Sum.detach() - refMismatched).mean().clamp_min(0) * idx.Count;
            return (k.Losses.mean(), stack([k.Losses.detach().sum(), k.ChosenRewards.sum(), k.RejectedRewards.sum(), (matched * want).sum(),
                (matched * (1 - want)).sum(), kl, want.sum(), ones_like(want).sum()]));
        }
        var x = new PairLogps(pc.Sum, pr.Sum,
            reference is null ? null : PairData.Pick(reference.Chosen, idx, device), reference is null ? null : PairData.Pick(reference.Rejected, idx, device),
            pc.Mean(), pr.Mean(),
            reference is null ? null : PairData.Pick(reference.ChosenMean, idx, device), reference is null ? null : PairData.Pick(reference.RejectedMean, idx, device));
        var o = PreferenceLosses.Compute(c.LossType, x, c.Beta, c.LabelSmoothing, c.SimpoGamma, c.OrpoLambda);
        var (rc, rr) = (o.ChosenRewards.detach(), o.RejectedRewards.detach());
        var zero = zeros_like(rc).sum();
        // The change of each side's log-prob from the reference on these pairs (likelihood displacement when both fall).
        var (cc, rcng) = x.ReferenceChosen is null ? (zero, zero) : ((pc.Sum.detach() - x.ReferenceChosen).sum(), (pr.Sum.detach() - x.ReferenceRejected!).sum());
        var (mass, entropy, tokens) = isValid ? TopK(data, idx) : (zero, zero, zero);
        return (o.Losses.mean(), stack([o.Losses.detach().sum(), rc.sum(), rr.sum(), rc.gt(rr).to_type(ScalarType.Float32).sum(),
            pc.Sum.detach().sum(), pr.Sum.detach().sum(), ones_like(rc).sum(), cc, rcng, mass, entropy, tokens]));
    }

    /// <summary>Held-out next-token health: top-10 mass and entropy at every chosen-response position (teacher-forced), summed, and the positions.</summary>
    (Tensor Mass, Tensor Entropy, Tensor Tokens) TopK(List<TokenizedPair> data, IReadOnlyList<int> idx)
    {
        using var batch = Collator.PromptCompletions(PairData.Side(data, idx, true), pad, policy.Device, maxLen);
        using var logits = policy.forward(batch.InputIds);
        using var logp = logits[.., ..^1, ..].log_softmax(-1);
        var (m, h) = NextTokenDiagnostics.TopK(logp, NextTokenDiagnostics.K);
        var mask = batch.CompletionMask[.., 1..].to_type(ScalarType.Float32);
        return ((m * mask).sum(), (h * mask).sum(), mask.sum());
    }

    public Dictionary<string, double> Metrics(double[] s)
    {
        if (kto)
        {
            double n = Math.Max(1, s[7]), d = Math.Max(1, s[6]), u = Math.Max(1, s[7] - s[6]);
            return new()
            {
                ["loss"] = s[0] / n,
                ["rewards/chosen"] = s[1] / d, ["rewards/rejected"] = s[2] / u, ["rewards/margins"] = s[1] / d - s[2] / u,
                ["logps/chosen"] = s[3] / d, ["logps/rejected"] = s[4] / u,
                ["kl"] = s[5] / n,
            };
        }
        double rows = Math.Max(1, s[6]);
        var m = new Dictionary<string, double>
        {
            ["loss"] = s[0] / rows, ["rewards/chosen"] = s[1] / rows, ["rewards/rejected"] = s[2] / rows,
            ["rewards/accuracies"] = s[3] / rows, ["rewards/margins"] = (s[1] - s[2]) / rows,
            ["logps/chosen"] = s[4] / rows, ["logps/rejected"] = s[5] / rows,
        };
        if (refTrain is not null) { m["logps/chosen_change"] = s[7] / rows; m["logps/rejected_change"] = s[8] / rows; }
        if (s[11] > 0) { m["diagnostics/top10_mass"] = s[9] / s[11]; m["diagnostics/top10_entropy"] = s[10] / s[11]; }
        return m;
    }

    /// <summary>The likelihood displacement warning (an event, once a run), from the step's change of both sides' log-probs.</summary>
    public void AfterStep(int step, IReadOnlyDictionary<string, double> metrics, ITrainingReporter reporter)
    {
        if (warned || !metrics.TryGetValue("logps/chosen_change", out var chosen) || !metrics.TryGetValue("logps/rejected_change", out var rejected)) return;
        if (likelihood.Add(step, chosen, rejected) is { } message)
        {
            warned = true;
            reporter.Event("warn", message, new Dictionary<string, object> { ["warning"] = "likelihood_displacement", ["step"] = step });
        }
    }

    public System.Text.Json.Nodes.JsonObject? SaveState() => kto ? null : new()
    {
        ["likelihood"] = System.Text.Json.JsonSerializer.SerializeToNode(likelihood), ["likelihood_warned"] = warned,
    };

    public void LoadState(System.Text.Json.Nodes.JsonObject? state)
    {
        if (state?["likelihood"] is { } l) likelihood = System.Text.Json.JsonSerializer.Deserialize<LikelihoodMonitor>(l)!;
        warned = state?["likelihood_warned"]?.GetValue<bool>() ?? warned;
    }

    public string StartMessage(int totalSteps) =>
        $"Training DPO ({c.LossType}): {train.Count} {(kto ? "rows" : "pairs")}, {totalSteps} steps, batch size {c.BatchSize}";

    public void Dispose() => policy.Dispose();
}

/// <summary>
/// KTO's data path. Each unpaired row becomes a <see cref="TokenizedPair"/> whose <c>Chosen</c> is its completion,
/// whose <c>Rejected</c> is the completion of the row half the file away (a mismatched prompt/completion pair for the
/// KL estimate, fixed per row so its reference log-prob can be cached), and whose <c>Margin</c> is 1 when desirable.
/// </summary>
static class Kto
{
    public static List<UnpairedExample> FromPairs(IReadOnlyList<PreferencePair> pairs) =>
        pairs.SelectMany(p => new[] { new UnpairedExample(p.Prompt, p.Chosen, true), new UnpairedExample(p.Prompt, p.Rejected, false) }).ToList();

    public static List<TokenizedPair> Rows(IReadOnlyList<UnpairedExample> rows, PromptEncoder encoder, int maxLen)
    {
        int n = rows.Count, shift = Math.Max(1, n / 2);
        return rows.Select((r, i) => PairData.Tokenize(
            new PreferencePair(r.Prompt, r.Completion, rows[(i + shift) % n].Completion, r.Desirable ? 1 : 0), encoder, maxLen)).ToList();
    }
}

/// <summary>Runs a <c>dpo</c> job; reference log-probs are cached under a fingerprint of (reference model, data, tokenisation).</summary>
public sealed class DpoRunner : Methods.IMethodRunner
{
    public Type ConfigType => typeof(DpoConfig);
    public bool Resumable => true;

    public Methods.MethodOutcome Run(Methods.MethodContext ctx, ITrainingReporter reporter, CancellationToken ct)
    {
        var job = ctx.Job;
        var c = ctx.ConfigAs<DpoConfig>();
        var model = ctx.FindModel(job.Model);
        var chat = ctx.Source(model).ChatFormat();
        (List<PreferencePair>? Pairs, List<UnpairedExample>? Unpaired) Load(string fileId)
        {
            var file = ctx.FindFile(fileId);
            var path = ctx.Resolve(file.StoragePath);
            return file.Format == JsonlRows.UnpairedPreference ? (null, JsonlRows.LoadUnpaired(path, chat).ToList()) : (JsonlRows.LoadPreferences(path, chat).ToList(), null);
        }
        var train = Load(job.TrainingFile);
        var valid = job.ValidationFile is null ? (null, null) : Load(job.ValidationFile);
        // Reference log-probs depend on the reference model (its weights, or its seed when initialised at random),
        // the data and the tokenisation: jobs that share all of them share the cache.
        var fingerprint = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Join("\n",
            model.Id, model.WeightsPath ?? $"seed:{c.Seed}", model.ConfigJson, model.Tokenizer, job.TrainingFile, job.ValidationFile ?? "",
            c.MaxLength?.ToString() ?? "", c.MaxPromptLength?.ToString() ?? "", c.BatchSize.ToString(), c.LossType == "kto" ? "kto" : "pairs", "prompt-encoder-v2"))))[..32].ToLowerInvariant();
        var result = DpoTrainer.Train(new DpoRun(ctx.Source(model), train.Pairs ?? [], valid.Item1, c, ctx.CheckpointRoot, ctx.ResumeFrom,
            ctx.Resolve(Path.Combine("refcache", fingerprint + ".json")), train.Unpaired, valid.Item2, ctx.Device), reporter, ct);
        return new Methods.MethodOutcome(result, result.LastCheckpoint);
    }
}
