namespace AlignHub.Domain;

/// <summary>What the offline preference methods share: how pairs are cut to length, and their learning-rate defaults.</summary>
public abstract record PairConfig : TrainingConfig
{
    [Hyperparameter("Prompt + completion tokens kept (none: the model's context length).", Min = 2, Max = 1_000_000)]
    public int? MaxLength { get; init; }

    [Hyperparameter("Prompt tokens kept, from the end (none: half of max_length).", Min = 1, Max = 1_000_000)]
    public int? MaxPromptLength { get; init; }

    [Hyperparameter("Peak learning rate of AdamW before the multiplier.", Min = 1e-8, Max = 1)]
    public override double LearningRate { get; init; } = 5e-4;

    [Hyperparameter("Fraction of the total steps spent in linear warmup from 0 to the peak rate.", Min = 0, Max = 1)]
    public override double WarmupRatio { get; init; } = 0.1;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (MaxLength is int ml && MaxPromptLength is int mp && mp >= ml) err(prefix + "max_prompt_length", "must be below max_length");
    }

    /// <summary>The limits a model of <paramref name="positions"/> positions gets: (max_length, max_prompt_length).</summary>
    public (int MaxLength, int MaxPrompt) Limits(int positions)
    {
        int maxLen = Math.Min(MaxLength ?? positions, positions);
        return (maxLen, Math.Clamp(MaxPromptLength ?? maxLen / 2, 1, maxLen - 1));
    }
}

/// <summary>
/// Direct preference optimisation and its family (<c>method.type = "dpo"</c>): names follow TRL's DPOConfig; OpenAI's
/// <c>beta</c> accepts "auto".
/// </summary>
public sealed record DpoConfig : PairConfig
{
    [Hyperparameter("KL strength: how far the policy may move from the reference (OpenAI's beta).", Min = 1e-6, Max = 100, Auto = true)]
    public double Beta { get; init; } = 0.1;

    [Hyperparameter("Early warning (an event, once): likelihood displacement, when over 10 steps both the chosen and the rejected responses' log-probs fell more than this many nats (per sequence) below the reference's (needs a reference; not for kto).", Min = 0, Max = 1e6)]
    public double LikelihoodDisplacementWarning { get; init; } = 1.0;

    [Hyperparameter("sigmoid (DPO), robust, hinge, ipo, simpo, orpo, or kto (unpaired rows, or pairs split into them).",
        OneOf = ["sigmoid", "robust", "hinge", "ipo", "simpo", "orpo", "kto"])]
    public string LossType { get; init; } = "sigmoid";

    [Hyperparameter("Label smoothing e: cDPO with sigmoid, the assumed flip rate with robust.", Min = 0, Max = 0.49)]
    public double LabelSmoothing { get; init; }

    [Hyperparameter("SimPO's target reward margin gamma.", Min = 0, Max = 100)]
    public double SimpoGamma { get; init; } = 0.5;

    [Hyperparameter("ORPO's weight lambda on the odds-ratio term.", Min = 0, Max = 100)]
    public double OrpoLambda { get; init; } = 0.1;

    [Hyperparameter("KTO's weight on desirable rows (w_d).", Min = 0, Max = 100)]
    public double DesirableWeight { get; init; } = 1.0;

    [Hyperparameter("KTO's weight on undesirable rows (w_u).", Min = 0, Max = 100)]
    public double UndesirableWeight { get; init; } = 1.0;

    /// <summary>SimPO and ORPO are reference-free; every other loss compares with the reference's log-probs.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsReference => LossType is not ("simpo" or "orpo");
}

/// <summary>A Bradley-Terry reward model (<c>method.type = "reward_model"</c>), optionally an ensemble; names follow TRL's RewardConfig.</summary>
public sealed record RewardModelConfig : PairConfig
{
    [Hyperparameter("Coefficient of the centering term (r_chosen + r_rejected)^2 (0: off).", Min = 0, Max = 100)]
    public double CenterRewardsCoefficient { get; init; }

    [Hyperparameter("Members of an ensemble, trained one after another with seeds seed, seed+1, ...; their mean and standard deviation give the uncertainty-penalised reward mean - k * std.",
        Min = 1, Max = 16)]
    public int EnsembleSize { get; init; } = 1;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (EnsembleSize > 1 && UsePeft) err(prefix + "use_peft", "an ensemble's members are trained as full reward models; set ensemble_size 1 to train LoRA adapters");
    }
}

public sealed class DpoMethod : JobMethod
{
    public override int Order => 10;
    public override string Name => "dpo";
    public override string Title => "Direct preference optimisation";
    public override string Summary =>
        "DPO (Rafailov et al., 2023): L = -log sigmoid(beta * [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))]) over preference pairs; " +
        "loss_type picks a relative: robust (Chowdhury et al., 2024), hinge (SLiC), ipo (Azar et al., 2023), simpo (Meng et al., 2024, no reference), " +
        "orpo (Hong et al., 2024, no reference) or kto (Ethayarajh et al., 2024, unpaired labels). rewards/* are beta times the log-ratios.";
    public override Type ConfigType => typeof(DpoConfig);
    public override IReadOnlyList<string> FileFormats(MethodConfig config) =>
        ((DpoConfig)config).LossType == "kto" ? [JsonlRows.Preference, JsonlRows.UnpairedPreference] : [JsonlRows.Preference];
    public override string FileHint => JsonlRows.PreferenceHint;
    public override IReadOnlyList<MetricChart> Charts =>
    [
        new("Loss", "loss-chart", [MetricNames.Loss, MetricNames.Eval(MetricNames.Loss)]),
        new("Rewards", "rewards-chart", ["rewards/chosen", "rewards/rejected", "rewards/margins"]),
        new("Reward accuracy", "accuracy-chart", ["rewards/accuracies", "eval/rewards/accuracies"]),
        new("Log-probs", "logps-chart", ["logps/chosen", "logps/rejected"]),
        new("Log-prob change from the reference", "logps-change-chart", ["logps/chosen_change", "logps/rejected_change"]),
        new("Held-out next-token top-10 mass and entropy", "topk-chart", ["eval/diagnostics/top10_mass", "eval/diagnostics/top10_entropy"]),
        new("KL estimate (KTO)", "kl-chart", ["kl"]),
        .. Methods.OptimizerCharts,
    ];
    public override object Example => new
    {
        model = "ft:alignhub/tiny:sft:ftjob-abc123", training_file = "file-prefs",
        method = new { type = Name, dpo = new { hyperparameters = new { beta = 0.1, loss_type = "sigmoid", n_epochs = 1 } } },
    };

    public override Task ValidateAsync(JobCheck check, CancellationToken ct)
    {
        check.FitsContext(((PairConfig)check.Config).MaxLength, "max_length");
        return Task.CompletedTask;
    }
}

public sealed class RewardModelMethod : JobMethod
{
    public override int Order => 20;
    public override string Name => "reward_model";
    public override string Title => "Reward model";
    public override string Summary =>
        "A Bradley-Terry reward model (Ouyang et al., 2022): the decoder's last hidden state through a scalar head, trained on " +
        "L = -log sigmoid(r(x, y_w) - r(x, y_l) - margin) + c * (r(x, y_w) + r(x, y_l))^2. An ensemble (Coste et al., 2024) trains members with seeds seed+k.";
    public override Type ConfigType => typeof(RewardModelConfig);
    public override bool AcceptsRewardModel => true;
    public override IReadOnlyList<string> FileFormats(MethodConfig config) => [JsonlRows.Preference];
    public override string FileHint => JsonlRows.PreferenceHint;
    public override IReadOnlyList<MetricChart> Charts =>
    [
        new("Loss", "loss-chart", [MetricNames.Loss, MetricNames.Eval(MetricNames.Loss)]),
        new("Accuracy", "accuracy-chart", ["accuracy", "eval/accuracy", "eval/ensemble/accuracy"]),
        new("Reward margin", "margin-chart", ["margin", "eval/margin"]),
        .. Methods.OptimizerCharts,
    ];
    public override object Example => new
    {
        model = "alignhub/tiny", training_file = "file-prefs",
        method = new { type = Name, reward_model = new { hyperparameters = new { n_epochs = 2, ensemble_size = 3 } } },
    };

    public override Task ValidateAsync(JobCheck check, CancellationToken ct)
    {
        check.FitsContext(((PairConfig)check.Config).MaxLength, "max_length");
        return Task.CompletedTask;
    }
}

/// <summary>
/// A general preference model (<c>method.type = "preference_model"</c>; Zhang et al., 2024, "General Preference
/// Modeling with Preference Representations"): each response gets an embedding v(x, y) of <c>preference_dim</c> (2k)
/// values from the decoder's last hidden state, and P(y1 &gt; y2 | x) = sigmoid(v1' R v2) with R block-diagonal of
/// [[0, 1], [-1, 0]] blocks, skew-symmetric, so P(y1 &gt; y2) = 1 - P(y2 &gt; y1) by construction and cycles are
/// representable (no single reward can order rock, paper and scissors).
/// </summary>
public sealed record PreferenceModelConfig : PairConfig
{
    [Hyperparameter("Size of the preference embedding, 2k (an even number); k = 1 already holds a cycle of three.", Min = 2, Max = 256)]
    public int PreferenceDim { get; init; } = 8;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (PreferenceDim % 2 != 0) err(prefix + "preference_dim", "must be even: the embedding pairs up into skew-symmetric blocks");
    }
}

public sealed class PreferenceModelMethod : JobMethod
{
    public override int Order => 25;
    public override string Name => "preference_model";
    public override string Title => "General preference model";
    public override string Summary =>
        "A general preference model (Zhang et al., 2024): embeddings v = W h(x, y) of 2k values and L = -log sigmoid(s(y_w, y_l)), " +
        "s(a, b) = sum_j (v_a[2j] v_b[2j+1] - v_a[2j+1] v_b[2j]), skew-symmetric, so P(a > b) = 1 - P(b > a) and intransitive (cyclic) preferences can be learned. " +
        "Evaluation: held-out accuracy and the share of held-out triples of responses it orders in a cycle.";
    public override Type ConfigType => typeof(PreferenceModelConfig);
    public override bool AcceptsRewardModel => false;
    public override IReadOnlyList<string> FileFormats(MethodConfig config) => [JsonlRows.Preference];
    public override string FileHint => JsonlRows.PreferenceHint;
    public override IReadOnlyList<MetricChart> Charts =>
    [
        new("Loss", "loss-chart", [MetricNames.Loss, MetricNames.Eval(MetricNames.Loss)]),
        new("Accuracy", "accuracy-chart", ["accuracy", "eval/accuracy"]),
        new("Cyclic triples (held out)", "cyclic-chart", ["eval/cyclic_triples"]),
        .. Methods.OptimizerCharts,
    ];
    public override object Example => new
    {
        model = "alignhub/tiny", training_file = "file-prefs",
        method = new { type = Name, preference_model = new { hyperparameters = new { n_epochs = 3, preference_dim = 8 } } },
    };

    public override Task ValidateAsync(JobCheck check, CancellationToken ct)
    {
        check.FitsContext(((PairConfig)check.Config).MaxLength, "max_length");
        return Task.CompletedTask;
    }
}
