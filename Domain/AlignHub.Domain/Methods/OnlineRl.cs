using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// What the critic-free online RL methods share (GRPO, RLOO, REINFORCE++, ReMax): each step samples
/// <c>num_generations</c> completions of each of <c>batch_size</c> prompts, scores them with the reward source (a
/// grader in OpenAI's shape on the row's fields, or a reward model), and takes a clipped policy-gradient step on the
/// method's advantages. Names follow TRL's GRPOConfig / RLOOConfig.
/// </summary>
public abstract record OnlineRlConfig : TrainingConfig
{
    [Hyperparameter("Completions sampled per prompt: the group a baseline is taken over.", Min = 2, Max = 64)]
    public virtual int NumGenerations { get; init; } = 8;

    [Hyperparameter("New tokens per completion at most.", Min = 1, Max = 8192)]
    public int MaxCompletionLength { get; init; } = 32;

    [Hyperparameter("Prompt tokens kept, from the end (none: the context less max_completion_length).", Min = 1, Max = 1_000_000)]
    public int? MaxPromptLength { get; init; }

    [Hyperparameter("Sampling temperature; the trainer's log-probs use the same (logits / temperature).", Min = 0.01, Max = 10)]
    public double Temperature { get; init; } = 1.0;

    [Hyperparameter("Nucleus sampling threshold (1: off).", Min = 1e-6, Max = 1)]
    public double TopP { get; init; } = 1.0;

    [Hyperparameter("Keep the k most likely tokens when sampling (none: all).", Min = 1, Max = 1_000_000)]
    public int? TopK { get; init; }

    [Hyperparameter("KL strength to the starting model (0: no reference model is loaded); GRPO and ReMax add beta * k3 per token to the loss, RLOO and REINFORCE++ subtract beta * k1 from the reward.", Min = 0, Max = 100)]
    public virtual double Beta { get; init; }

    [Hyperparameter("Lower clipping range: the ratio is clipped below at 1 - epsilon.", Min = 0, Max = 1)]
    public double Epsilon { get; init; } = 0.2;

    [Hyperparameter("Upper clipping range (DAPO's clip-higher): the ratio is clipped above at 1 + epsilon_high (none: epsilon).", Min = 0, Max = 10)]
    public double? EpsilonHigh { get; init; }

    [Hyperparameter("How per-token losses aggregate: grpo (mean per sequence, then over sequences), bnpo / dapo (over all tokens of the batch), dr_grpo (sum / (sequences * max_completion_length)).",
        OneOf = ["dapo", "grpo", "bnpo", "dr_grpo"])]
    public string LossType { get; init; } = "dapo";

    [Hyperparameter("Completions cut by max_completion_length carry no loss.")]
    public bool MaskTruncatedCompletions { get; init; }

    [Hyperparameter("A grader in OpenAI's shape scoring each completion against the row, e.g. {\"type\": \"string_check\", \"input\": \"{{sample.output_text}}\", \"reference\": \"{{item.answer}}\", \"operation\": \"eq\"}.")]
    public JsonElement? Grader { get; init; }

    [Hyperparameter("A reward model (or ensemble) scoring prompt + completion (used when no grader is given).")]
    public string? RewardModel { get; init; }

    [Hyperparameter("Updates per batch of rollouts (TRL's num_iterations): the batch sampled at the first step of a block trains the next N steps, so the ratio to pi_old differs from 1 after the first and clipping acts.", Min = 1, Max = 64)]
    public int NumIterations { get; init; } = 1;

    /// <summary>Optimizer steps each batch of rollouts is used for.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public virtual int UpdatesPerBatch => NumIterations;

    [Hyperparameter("Keep the sampled completions of every N-th step in the job's samples table (GET /v1/fine_tuning/jobs/{id}/samples).", Min = 1, Max = 10_000_000)]
    public int LogCompletionsSteps { get; init; } = 10;

    [Hyperparameter("At most this many completions of a logged step are kept (0: none).", Min = 0, Max = 4096)]
    public int NumCompletionsToLog { get; init; } = 64;

    [Hyperparameter("Early warning (an event, once): the mean per-token KL (k3) to the reference exceeds this.", Min = 0, Max = 1e6)]
    public double KlWarning { get; init; } = 0.5;

    [Hyperparameter("Early warning (an event, once): the entropy falls below this fraction of the first step's.", Min = 0, Max = 1)]
    public double EntropyCollapse { get; init; } = 0.2;

    [Hyperparameter("Early warning (an event, once): the trainer's log-probs of the sampled tokens differ from the sampler's by more than this (mean absolute; compared when top_k and top_p are off).", Min = 0, Max = 10)]
    public double LogprobMismatchTolerance { get; init; } = 1e-3;

    [Hyperparameter("Adaptive KL control (Ziegler et al., 2019): the per-sequence KL (k1 summed over a completion's tokens, mean over the batch) that beta is steered toward after each batch of rollouts; none: beta stays fixed.", Min = 1e-6, Max = 1e6)]
    public double? KlTarget { get; init; }

    [Hyperparameter("Horizon of the adaptive KL controller: after a batch of n completions, beta *= 1 + clip(kl / kl_target - 1, -0.2, 0.2) * n / kl_horizon.", Min = 1, Max = 100_000_000)]
    public int KlHorizon { get; init; } = 10_000;

    [Hyperparameter("Peak learning rate of AdamW before the multiplier.", Min = 1e-8, Max = 1)]
    public override double LearningRate { get; init; } = 5e-4;

    [Hyperparameter("Fraction of the total steps spent in linear warmup from 0 to the peak rate.", Min = 0, Max = 1)]
    public override double WarmupRatio { get; init; }

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (UpdatesPerBatch > 1 && GradientAccumulationSteps > 1)
            err(prefix + "gradient_accumulation_steps", "must be 1 when a batch of rollouts trains more than one update (num_iterations or num_ppo_epochs)");
        if (KlTarget is not null && Beta == 0)
            err(prefix + "kl_target", "adaptive KL control needs beta > 0 (its starting value; beta 0 loads no reference model)");
        if (Grader is { } g) Domain.Grader.Parse(g, prefix + "grader", err);
        else if (RewardModel is null) err(prefix + "grader", "a reward source is required: a grader or a reward_model");
    }

    /// <summary>The parsed grader (the config was validated at creation).</summary>
    public Grader? ParsedGrader() => Grader is { } g ? Domain.Grader.Parse(g, "grader", (_, m) => throw new InvalidDataException(m)) : null;
}

/// <summary>A method whose advantages are group-relative (GRPO's): how they are scaled.</summary>
public interface IGroupAdvantages
{
    string ScaleRewards { get; }
}

/// <summary>GRPO (<c>method.type = "grpo"</c>): group-relative advantages (r - mean) / std.</summary>
public sealed record GrpoConfig : OnlineRlConfig, IGroupAdvantages
{
    [Hyperparameter("Advantages divided by the group's reward std (group), the batch's (batch) or not at all (none).", OneOf = ["group", "batch", "none"])]
    public string ScaleRewards { get; init; } = "group";
}

/// <summary>RLOO (<c>method.type = "rloo"</c>): leave-one-out baselines, the KL folded into the reward (TRL's RLOOTrainer).</summary>
public sealed record RlooConfig : OnlineRlConfig
{
    [Hyperparameter("KL strength: each completion's reward becomes r - beta * sum_t k1_t against the starting model (0: no reference model).", Min = 0, Max = 100)]
    public override double Beta { get; init; } = 0.05;
}

/// <summary>REINFORCE++ (<c>method.type = "reinforce_pp"</c>): token-level KL penalties, returns-to-go normalised over the batch, no critic.</summary>
public sealed record ReinforcePpConfig : OnlineRlConfig
{
    [Hyperparameter("Completions sampled per prompt (no groups are needed: advantages are normalised over the batch).", Min = 1, Max = 64)]
    public override int NumGenerations { get; init; } = 4;

    [Hyperparameter("KL strength: each completion token's reward is -beta * k1_t, the grader's or reward model's reward comes at the last token (0: no reference model).", Min = 0, Max = 100)]
    public override double Beta { get; init; } = 0.01;
}

/// <summary>ReMax (<c>method.type = "remax"</c>): the baseline is the reward of the prompt's greedy completion.</summary>
public sealed record RemaxConfig : OnlineRlConfig
{
    [Hyperparameter("Completions sampled per prompt; each is compared with the prompt's greedy completion.", Min = 1, Max = 64)]
    public override int NumGenerations { get; init; } = 4;
}

/// <summary>What the online RL methods' definitions share: prompt files, reward-source checks, charts.</summary>
public abstract class OnlineRlMethod<TConfig> : JobMethod where TConfig : OnlineRlConfig
{
    public override Type ConfigType => typeof(TConfig);
    public override IReadOnlyList<string> FileFormats(MethodConfig config) => [JsonlRows.Prompts, JsonlRows.Supervised];
    public override string FileHint => "prompt or messages rows (their other fields are the graders' {{item.*}})";
    public override IReadOnlyList<MetricChart> Charts =>
    [
        new("Reward", "reward-chart", ["reward", "eval/reward"]),
        new("Reward spread", "reward-std-chart", ["reward_std", "frac_reward_zero_std"]),
        new("Loss", "loss-chart", [MetricNames.Loss]),
        new("KL to the reference", "kl-chart", ["kl"]),
        new("Entropy", "entropy-chart", ["entropy"]),
        new("Clip ratios", "clip-chart", ["clip_ratio/region_mean", "clip_ratio/low_mean", "clip_ratio/high_mean"]),
        new("Completion length", "length-chart", ["completions/mean_length", "completions/clipped_ratio"]),
        new("Time per step (s)", "timing-chart", ["timing/generate", "timing/reward"]),
        .. Methods.OptimizerCharts,
    ];

    /// <summary>An example with the arithmetic task's exact-match grader.</summary>
    protected object ExampleWith(object hyperparameters) => new Dictionary<string, object>
    {
        ["model"] = "ft:alignhub/tiny:sft:ftjob-abc123", ["training_file"] = "file-problems",
        ["method"] = new Dictionary<string, object> { ["type"] = Name, [Name] = new { hyperparameters } },
    };

    public override async Task ValidateAsync(JobCheck check, CancellationToken ct)
    {
        var c = (OnlineRlConfig)check.Config;
        check.FitsContext(c.MaxPromptLength, "max_prompt_length", below: true);
        check.FitsContext(c.MaxCompletionLength, "max_completion_length", below: true);
        if (c.Grader is null) await check.RewardModelAsync(c.RewardModel, ct);
        else await check.GraderModelsAsync(c.ParsedGrader(), "grader", ct);
    }
}

public sealed class GrpoMethod : OnlineRlMethod<GrpoConfig>
{
    public override string Name => "grpo";
    public override string Title => "Group relative policy optimisation";
    public override string Summary =>
        "GRPO (Shao et al., 2024): for G samples y_i of each prompt, A_i = (r_i - mean(r)) / std(r); the loss is the clipped surrogate " +
        "-min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps_high) A_i) + beta k3(pi, ref) per token, rho_t = pi(y_t) / pi_old(y_t), aggregated per loss_type. " +
        "No value model; the reward comes from a grader or a reward model.";
    public override object Example => ExampleWith(new
    {
        num_generations = 8, max_completion_length = 8, beta = 0.0, loss_type = "dapo",
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

public sealed class RlooMethod : OnlineRlMethod<RlooConfig>
{
    public override string Name => "rloo";
    public override string Title => "REINFORCE leave-one-out";
    public override string Summary =>
        "RLOO (Ahmadian et al., 2024; Kool et al., 2019): the reward r_i - beta * KL_i (k1 summed over the completion) minus the mean of the " +
        "prompt's other K - 1 samples is each completion's advantage, in the clipped policy loss. No value model.";
    public override object Example => ExampleWith(new
    {
        num_generations = 4, max_completion_length = 8, beta = 0.05,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

public sealed class ReinforcePpMethod : OnlineRlMethod<ReinforcePpConfig>
{
    public override string Name => "reinforce_pp";
    public override string Title => "REINFORCE++";
    public override string Summary =>
        "REINFORCE++ (Hu, 2025): per-token rewards -beta * k1_t with the sequence reward at the last token, returns-to-go, normalised over all " +
        "completion tokens of the batch, in the clipped policy loss. No critic and no groups.";
    public override object Example => ExampleWith(new
    {
        num_generations = 4, max_completion_length = 8, beta = 0.01,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

public sealed class RemaxMethod : OnlineRlMethod<RemaxConfig>
{
    public override string Name => "remax";
    public override string Title => "ReMax";
    public override string Summary =>
        "ReMax (Li et al., 2023): A_i = r_i - r(greedy completion of the prompt), the greedy completion sampled and scored each step; " +
        "the clipped policy loss with an optional beta k3 KL term. No value model.";
    public override object Example => ExampleWith(new
    {
        num_generations = 4, max_completion_length = 8,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

/// <summary>
/// PPO (<c>method.type = "ppo"</c>; Schulman et al., 2017, as InstructGPT and TRL's PPOTrainer use it): a value head
/// on the policy's last hidden states, per-token rewards -beta * k1 plus the score at the last token, GAE advantages
/// (whitened), <c>num_ppo_epochs</c> clipped updates per batch of rollouts, and a clipped value loss.
/// </summary>
public sealed record PpoConfig : OnlineRlConfig
{
    [Hyperparameter("Completions sampled per prompt (PPO needs no groups).", Min = 1, Max = 64)]
    public override int NumGenerations { get; init; } = 1;

    [Hyperparameter("KL coefficient: each completion token's reward is -beta * k1_t against the starting model (TRL's kl_coef).", Min = 0, Max = 100)]
    public override double Beta { get; init; } = 0.05;

    [Hyperparameter("Optimizer steps per batch of rollouts: the clipped updates of one PPO iteration.", Min = 1, Max = 64)]
    public int NumPpoEpochs { get; init; } = 4;

    [Hyperparameter("Weight of the value loss in the total loss.", Min = 0, Max = 100)]
    public double VfCoef { get; init; } = 0.1;

    [Hyperparameter("Clipping range of the value loss around the values at sampling time.", Min = 0, Max = 100)]
    public double CliprangeValue { get; init; } = 0.2;

    [Hyperparameter("Discount factor of GAE.", Min = 0, Max = 1)]
    public double Gamma { get; init; } = 1.0;

    [Hyperparameter("GAE's lambda.", Min = 0, Max = 1)]
    public double Lam { get; init; } = 0.95;

    [Hyperparameter("Minibatches each PPO epoch splits the batch of rollouts into (TRL's num_mini_batches): num_ppo_epochs x num_mini_batches optimizer steps per batch, each on a shuffled share of its completions.", Min = 1, Max = 4096)]
    public int NumMiniBatches { get; init; } = 1;

    [Hyperparameter("Peak learning rate of the value head (none: learning_rate); it follows the same schedule.", Min = 1e-8, Max = 1)]
    public double? ValueLearningRate { get; init; }

    [Hyperparameter("Whiten the advantages over the batch's completion tokens.")]
    public bool WhitenAdvantages { get; init; } = true;

    public override int UpdatesPerBatch => NumPpoEpochs * NumMiniBatches;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (NumMiniBatches > BatchSize * NumGenerations)
            err(prefix + "num_mini_batches", $"must be at most the completions per batch (batch_size x num_generations = {BatchSize * NumGenerations})");
    }
}

public sealed class PpoMethod : OnlineRlMethod<PpoConfig>
{
    public override string Name => "ppo";
    public override string Title => "Proximal policy optimisation";
    public override string Summary =>
        "PPO (Schulman et al., 2017) as in InstructGPT (Ouyang et al., 2022): token rewards -beta * k1_t + r at the last token, GAE(gamma, lambda) " +
        "advantages from a value head on the policy (Schulman et al., 2016), num_ppo_epochs updates of the clipped surrogate " +
        "-min(rho A, clip(rho, 1 - eps, 1 + eps_high) A) plus vf_coef * the clipped value loss 0.5 max((V - R)^2, (V_clip - R)^2).";
    public override object Example => ExampleWith(new
    {
        num_generations = 1, max_completion_length = 8, num_ppo_epochs = 4, num_mini_batches = 1, beta = 0.05, kl_target = 6.0, vf_coef = 0.1,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

/// <summary>
/// Best-of-N rejection-sampling fine-tuning (<c>method.type = "best_of_n"</c>; RAFT, Dong et al., 2023): each step
/// samples N completions of each prompt, keeps the top <c>keep_top</c> by reward (optionally only those reaching
/// <c>min_reward</c>), and takes a supervised step on them; every epoch over the prompts is a round.
/// </summary>
public sealed record BestOfNConfig : OnlineRlConfig
{
    [Hyperparameter("Completions kept per prompt, the best by reward.", Min = 1, Max = 64)]
    public int KeepTop { get; init; } = 1;

    [Hyperparameter("Keep a completion only when its reward reaches this (none: always keep the top).")]
    public double? MinReward { get; init; }

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (KeepTop > NumGenerations) err(prefix + "keep_top", $"must be at most num_generations ({NumGenerations})");
        if (NumIterations > 1) err(prefix + "num_iterations", "best_of_n trains on each batch once");
    }
}

/// <summary>
/// Online DPO (<c>method.type = "online_dpo"</c>; Guo et al., 2024): two completions of each prompt, ranked by the
/// reward source, make a preference pair (ties are skipped) for a DPO step against the starting model.
/// </summary>
public sealed record OnlineDpoConfig : OnlineRlConfig
{
    [Hyperparameter("Completions per prompt: the two a pair is made of.", Min = 2, Max = 2)]
    public override int NumGenerations { get; init; } = 2;

    [Hyperparameter("DPO's beta: how far the policy may move from the starting model (its reference).", Min = 1e-6, Max = 100)]
    public override double Beta { get; init; } = 0.1;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (NumIterations > 1) err(prefix + "num_iterations", "online_dpo trains on each batch once");
    }
}

public sealed class BestOfNMethod : OnlineRlMethod<BestOfNConfig>
{
    public override string Name => "best_of_n";
    public override string Title => "Best-of-N fine-tuning";
    public override string Summary =>
        "Rejection sampling (RAFT, Dong et al., 2023): of N samples per prompt keep the best keep_top by reward and minimise their negative " +
        "log-likelihood, L = -(1/|K|) sum over kept tokens of log pi(y_t | y_<t).";
    public override object Example => ExampleWith(new
    {
        num_generations = 8, keep_top = 1, max_completion_length = 8,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

public sealed class OnlineDpoMethod : OnlineRlMethod<OnlineDpoConfig>
{
    public override string Name => "online_dpo";
    public override string Title => "Online DPO";
    public override string Summary =>
        "Online DPO (Guo et al., 2024): two samples per prompt, the one the reward source scores higher is chosen; " +
        "L = -log sigmoid(beta [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))]) with the starting model as ref.";
    public override object Example => ExampleWith(new
    {
        beta = 0.1, max_completion_length = 8,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

/// <summary>
/// OpenAI's reinforcement fine-tuning (<c>method.type = "reinforcement"</c>): <c>method.reinforcement.grader</c> and
/// OpenAI's hyperparameters (each a value or "auto"), run as GRPO. <c>eval_interval</c> sets how often the validation
/// file is graded, <c>eval_samples</c> how many of its prompts, <c>compute_multiplier</c> scales the completions per
/// prompt; <c>reasoning_effort</c> is accepted and has no effect (the models here have no reasoning modes). Every
/// GRPO hyperparameter is accepted as well.
/// </summary>
public sealed record ReinforcementConfig : OnlineRlConfig, IGroupAdvantages
{
    [Hyperparameter("Steps between evaluations on the validation file (OpenAI's eval_interval; none: eval_steps).", Min = 1, Max = 10_000_000, Auto = true)]
    public int? EvalInterval { get; init; }

    [Hyperparameter("Validation prompts graded per evaluation (OpenAI's eval_samples; none: all of them).", Min = 1, Max = 1_000_000, Auto = true)]
    public int? EvalSamples { get; init; }

    [Hyperparameter("OpenAI's compute_multiplier: num_generations is multiplied by it (rounded, at least 2).", Min = 0.01, Max = 100, Auto = true)]
    public double ComputeMultiplier { get; init; } = 1.0;

    [Hyperparameter("OpenAI's reasoning_effort: accepted for compatibility; no effect here.", OneOf = ["low", "medium", "high"], Auto = true)]
    public string? ReasoningEffort { get; init; }

    [Hyperparameter("Advantages divided by the group's reward std (group), the batch's (batch) or not at all (none).", OneOf = ["group", "batch", "none"])]
    public string ScaleRewards { get; init; } = "group";

    public override MethodConfig Normalize() => this with
    {
        EvalSteps = EvalInterval ?? EvalSteps,
        NumGenerations = Math.Max(2, (int)Math.Round(NumGenerations * ComputeMultiplier)),
        ComputeMultiplier = 1.0, // applied once
    };
}

public sealed class ReinforcementMethod : OnlineRlMethod<ReinforcementConfig>
{
    public override string Name => "reinforcement";
    public override string Title => "Reinforcement fine-tuning (OpenAI's shape)";
    public override string Summary =>
        "OpenAI's reinforcement method, run as GRPO (Shao et al., 2024): each prompt's completions are graded by method.reinforcement.grader " +
        "against the row ({{item.*}}), advantages are group-relative, the loss is the clipped policy surrogate.";
    public override IReadOnlyList<string> SettingsFields => ["grader"];
    public override object Example => new
    {
        model = "ft:alignhub/tiny:sft:ftjob-abc123", training_file = "file-problems",
        method = new
        {
            type = Name,
            reinforcement = new
            {
                grader = ArithmeticTask.ExactMatchGrader,
                hyperparameters = new { n_epochs = "auto", batch_size = "auto", eval_interval = 10, reasoning_effort = "medium" },
            },
        },
    };
}
