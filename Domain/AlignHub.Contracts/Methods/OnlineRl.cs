using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// What the online RL methods share (GRPO, RLOO, REINFORCE++, ReMax, PPO, best-of-N, online DPO, reinforcement,
/// distillation): each batch of <c>batch_size</c> prompts gets <c>num_generations</c> completions each, scored by the
/// reward source (a grader in OpenAI's shape on the row's fields, or a reward model); every batch-level statistic
/// (advantage scaling, whitening, token counts) is taken over the whole batch, whatever
/// <c>gradient_accumulation_steps</c> is; the batch then trains <see cref="UpdatesPerBatch"/> optimizer steps before
/// the next batch of prompts is sampled. Names follow TRL's GRPOConfig / RLOOConfig / PPOConfig and verl's DAPO options.
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

    [Hyperparameter("How per-token losses aggregate (TRL's names): dapo (sum over the batch's tokens / its token count, whatever the accumulation), " +
        "grpo (mean per sequence, then over the batch's sequences), dr_grpo (sum / (sequences x max_completion_length)), " +
        "bnpo (TRL's local variant: each micro-batch's token mean, averaged over micro-batches; equal to dapo with gradient_accumulation_steps 1), " +
        "cispo (CISPO, MiniMax 2025: -sg(min(rho, epsilon_high)) A log pi per token, normalised as dapo).",
        OneOf = ["dapo", "grpo", "bnpo", "dr_grpo", "cispo"])]
    public string LossType { get; init; } = "dapo";

    [Hyperparameter("Completions cut by max_completion_length carry no loss.")]
    public bool MaskTruncatedCompletions { get; init; }

    [Hyperparameter("A grader in OpenAI's shape scoring each completion against the row, e.g. {\"type\": \"string_check\", \"input\": \"{{sample.output_text}}\", \"reference\": \"{{item.answer}}\", \"operation\": \"eq\"}.")]
    public JsonElement? Grader { get; init; }

    [Hyperparameter("A reward model (or ensemble) scoring prompt + completion (used when no grader is given).")]
    public string? RewardModel { get; init; }

    [Hyperparameter("Updates per batch of rollouts (TRL's num_iterations): each batch of prompts is sampled once and trains N optimizer steps, so the ratio to pi_old differs from 1 after the first and clipping acts; an epoch is still one pass over the prompts (N steps per batch).", Min = 1, Max = 64)]
    public int NumIterations { get; init; } = 1;

    /// <summary>Optimizer steps each batch of rollouts is used for.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public override int UpdatesPerBatch => NumIterations;

    /// <summary>Shares of the batch's completions per pass over it (PPO's num_mini_batches): update u trains share u % this of pass u / this.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public virtual int MiniBatchCount => 1;

    [Hyperparameter("DAPO's dynamic sampling (Yu et al., 2025; verl's filter_groups): drop the groups whose rewards are all equal (no signal) and sample further prompts until the batch holds batch_size groups again, at most max_num_gen_batches sampling rounds per step; a step left with no group is skipped (an event).")]
    public bool DynamicSampling { get; init; }

    [Hyperparameter("With dynamic_sampling: sampling rounds per step at most, the first included (verl's max_num_gen_batches); after the last the step trains on the groups it has.", Min = 1, Max = 64)]
    public int MaxNumGenBatches { get; init; } = 4;

    [Hyperparameter("DAPO's overlong reward shaping (verl's overlong_buffer.len): a completion longer than max_completion_length - this many tokens gets the penalty -(length - (max_completion_length - len)) / len x overlong_penalty_factor added to its reward (none: off).", Min = 1, Max = 8192)]
    public int? OverlongBufferLen { get; init; }

    [Hyperparameter("The penalty of a completion that reaches max_completion_length under overlong shaping (verl's overlong_buffer.penalty_factor).", Min = 0, Max = 100)]
    public double OverlongPenaltyFactor { get; init; } = 1.0;

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

    [Hyperparameter("A gold reward source that is never trained on, a grader in OpenAI's shape: scored on every step's completions (and the greedy evaluation) and logged as gold/reward beside the proxy reward, so proxy up while gold falls (overoptimisation) shows; the built-in review task's hidden reward is PreferenceTask.TrueRewardGrader.")]
    public JsonElement? GoldGrader { get; init; }

    [Hyperparameter("A reward model as the gold source (used when no gold_grader is given).")]
    public string? GoldRewardModel { get; init; }

    [Hyperparameter("Early warning (an event, once): the gold reward's mean over the last 10 steps is this far below its best 10-step mean while the proxy reward's is above its own at that best (overoptimisation); needs a gold source.", Min = 0, Max = 1e6)]
    public double GoldDropWarning { get; init; } = 0.1;

    [Hyperparameter("Peak learning rate of AdamW before the multiplier.", Min = 1e-8, Max = 1)]
    public override double LearningRate { get; init; } = 5e-4;

    [Hyperparameter("Fraction of the total steps spent in linear warmup from 0 to the peak rate.", Min = 0, Max = 1)]
    public override double WarmupRatio { get; init; }

    /// <summary>The registered model whose log-probs of the sampled tokens the method reads besides the policy's (distillation's teacher, RTO's DPO model); null: none.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public virtual string? ScoringModel => null;

    /// <summary>A KL term or KL-shaped reward to the starting model: beta &gt; 0.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsReference => Beta > 0;

    /// <summary>
    /// True: each completion's reward is its estimated win rate against the rest of its group, from a pairwise oracle
    /// (a general preference model, or the reward source through Bradley-Terry): the self-play methods' targets.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore] public virtual bool RewardsAreGroupWinRates => false;

    /// <summary>A general preference model that is the pairwise oracle (self-play methods); null: none.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public virtual string? PairwiseOracle => null;

    /// <summary>False: the method trains without a reward source (distillation); a grader or reward model only adds reward metrics.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public virtual bool RequiresRewardSource => true;

    /// <summary>The loss_type values the method's loss reads (none: it has a loss of its own and loss_type must stay at its default).</summary>
    [System.Text.Json.Serialization.JsonIgnore] public virtual bool UsesLossType => true;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (KlTarget is not null && Beta == 0)
            err(prefix + "kl_target", "adaptive KL control needs beta > 0 (its starting value; beta 0 loads no reference model)");
        if (Grader is { } g) Domain.Grader.Parse(g, prefix + "grader", err);
        else if (RewardModel is null && RequiresRewardSource) err(prefix + "grader", "a reward source is required: a grader or a reward_model");
        if (GoldGrader is { } gold) Domain.Grader.Parse(gold, prefix + "gold_grader", err);
        if (!UsesLossType && LossType != "dapo")
            err(prefix + "loss_type", "this method has a loss of its own (see its summary); loss_type does not apply");
        if (LossType == "cispo" && EpsilonHigh is null)
            err(prefix + "epsilon_high", "cispo caps the ratio at epsilon_high itself (CISPO's epsilon_max; TRL suggests 5.0): set it");
        if (DynamicSampling && NumGenerations < 2)
            err(prefix + "dynamic_sampling", "needs num_generations >= 2 (a group of one always has equal rewards)");
        if (OverlongBufferLen is int ob && ob >= MaxCompletionLength)
            err(prefix + "overlong_buffer_len", $"must be below max_completion_length ({MaxCompletionLength})");
    }

    /// <summary>The parsed grader (the config was validated at creation).</summary>
    public Grader? ParsedGrader() => Grader is { } g ? Domain.Grader.Parse(g, "grader", (_, m) => throw new InvalidDataException(m)) : null;

    /// <summary>The parsed gold grader (the config was validated at creation).</summary>
    public Grader? ParsedGoldGrader() => GoldGrader is { } g ? Domain.Grader.Parse(g, "gold_grader", (_, m) => throw new InvalidDataException(m)) : null;
}

/// <summary>A method that runs as GRPO (GRPO itself, OpenAI's reinforcement): how advantages are scaled and ratios taken.</summary>
public interface IGroupAdvantages
{
    string ScaleRewards { get; }
    string ImportanceSamplingLevel { get; }
}

/// <summary>GRPO (<c>method.type = "grpo"</c>): group-relative advantages (r - mean) / std.</summary>
public sealed record GrpoConfig : OnlineRlConfig, IGroupAdvantages
{
    [Hyperparameter(ScaleRewardsHelp, OneOf = ["group", "batch", "none"])]
    public string ScaleRewards { get; init; } = "group";

    [Hyperparameter(ImportanceSamplingHelp, OneOf = ["token", "sequence"])]
    public string ImportanceSamplingLevel { get; init; } = "token";

    internal const string ScaleRewardsHelp =
        "Advantages divided by the group's reward std (group, DeepSeekMath), the whole batch's std (batch, as PPO-Lite, Liu et al. 2025 \"Tricks or Traps\"), " +
        "or not at all (none, as Dr. GRPO recommends); std unbiased, plus 1e-4.";
    internal const string ImportanceSamplingHelp =
        "token: a ratio per token (GRPO); sequence: GSPO (Zheng et al., 2025), one ratio per completion, exp(mean over its tokens of log pi - log pi_old), clipped per sequence.";
}

/// <summary>RLOO (<c>method.type = "rloo"</c>): leave-one-out baselines, the KL folded into the reward, a loss per sequence (TRL's RLOOTrainer).</summary>
public sealed record RlooConfig : OnlineRlConfig
{
    [System.Text.Json.Serialization.JsonIgnore] public override bool UsesLossType => false;

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
        new("Proxy and gold reward", "gold-chart", ["reward", "gold/reward", "eval/reward", "eval/gold/reward"]),
        new("Proxy and gold reward against KL", "gold-kl-chart", ["reward", "gold/reward"], Against: "kl"),
        new("Next-token top-10 mass and entropy", "topk-chart", ["diagnostics/top10_mass", "diagnostics/top10_entropy"]),
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
        if (c.GoldGrader is null) await check.RewardModelAsync(c.GoldRewardModel, ct, "gold_reward_model");
        else await check.GraderModelsAsync(c.ParsedGoldGrader(), "gold_grader", ct);
        if (c.ScoringModel is { } scorer) await ScoringModelAsync(check, scorer, ScoringModelField, ct);
    }

    /// <summary>The hyperparameter that names <see cref="OnlineRlConfig.ScoringModel"/> (errors are reported at it).</summary>
    protected virtual string ScoringModelField => "teacher_model";

    /// <summary>A model whose log-probs are compared token by token with the policy's: registered, a language model, with the policy's tokenizer.</summary>
    static async Task ScoringModelAsync(JobCheck check, string id, string field, CancellationToken ct)
    {
        var scorer = await check.FindModelAsync(id, ct);
        if (scorer is null) { check.Error(field, $"model \"{id}\" is not registered"); return; }
        var a = ModelArchitecture.Parse(scorer.ConfigJson);
        if (a.IsRewardModel) check.Error(field, $"model \"{id}\" is a reward model, not a language model");
        else if (check.Architecture is { } policy && (a.VocabSize != policy.VocabSize || (check.Model!.Tokenizer == ModelPresets.ByteTokenizer) != (scorer.Tokenizer == ModelPresets.ByteTokenizer)))
            check.Error(field, $"its tokenizer differs from the policy's (vocabulary {a.VocabSize} vs {policy.VocabSize}): its log-probs are compared with the policy's token by token");
    }
}

public sealed class GrpoMethod : OnlineRlMethod<GrpoConfig>
{
    public override int Order => 50;
    public override string Name => "grpo";
    public override string Title => "Group relative policy optimisation";
    public override string Summary =>
        "GRPO (Shao et al., 2024): L = agg_t[-min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps_high) A_i) + beta k3_t], A_i = (r_i - mean(r_group)) / (std + 1e-4), " +
        "rho_t = pi(y_t) / pi_old(y_t) (importance_sampling_level sequence: GSPO's rho_i = exp(mean_t log pi/pi_old)), agg per loss_type over the whole batch. " +
        "No value model; the reward comes from a grader or a reward model.";
    public override object Example => ExampleWith(new
    {
        num_generations = 8, max_completion_length = 8, beta = 0.0, loss_type = "dapo",
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

public sealed class RlooMethod : OnlineRlMethod<RlooConfig>
{
    public override int Order => 51;
    public override string Name => "rloo";
    public override string Title => "REINFORCE leave-one-out";
    public override string Summary =>
        "RLOO (Ahmadian et al., 2024; Kool et al., 2019), per sequence as TRL's RLOOTrainer: L = mean_i[-min(rho_i A_i, clip(rho_i, 1 - eps, 1 + eps_high) A_i)], " +
        "rho_i = pi(y_i) / pi_old(y_i) over the whole completion, A_i = R_i - mean of the prompt's other K - 1 R_j, R = r - beta sum_t k1_t. No value model.";
    public override object Example => ExampleWith(new
    {
        num_generations = 4, max_completion_length = 8, beta = 0.05,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

public sealed class ReinforcePpMethod : OnlineRlMethod<ReinforcePpConfig>
{
    public override int Order => 52;
    public override string Name => "reinforce_pp";
    public override string Title => "REINFORCE++";
    public override string Summary =>
        "REINFORCE++ (Hu, 2025): L = agg_t[-min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps_high) A_t)], A = whiten(G) over every completion token of the batch, " +
        "G_t = sum_{s>=t} (r [s = last] - beta k1_s), whiten(x) = (x - mean) / sqrt(var + 1e-8). No critic and no groups.";
    public override object Example => ExampleWith(new
    {
        num_generations = 4, max_completion_length = 8, beta = 0.01,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

public sealed class RemaxMethod : OnlineRlMethod<RemaxConfig>
{
    public override int Order => 53;
    public override string Name => "remax";
    public override string Title => "ReMax";
    public override string Summary =>
        "ReMax (Li et al., 2023): L = agg_t[-min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps_high) A_i) + beta k3_t], A_i = r_i - r(greedy completion of the prompt), " +
        "the greedy completion sampled and scored with each batch. No value model.";
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
public record PpoConfig : OnlineRlConfig
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

    [System.Text.Json.Serialization.JsonIgnore] public override int UpdatesPerBatch => NumPpoEpochs * NumMiniBatches;
    [System.Text.Json.Serialization.JsonIgnore] public override int MiniBatchCount => NumMiniBatches;
    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsValueModel => true;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (NumMiniBatches > BatchSize * NumGenerations)
            err(prefix + "num_mini_batches", $"must be at most the completions per batch (batch_size x num_generations = {BatchSize * NumGenerations})");
        else if (BatchSize * NumGenerations / NumMiniBatches < GradientAccumulationSteps)
            err(prefix + "gradient_accumulation_steps", $"must be at most the completions per minibatch (batch_size x num_generations / num_mini_batches = {BatchSize * NumGenerations / NumMiniBatches})");
    }
}

public sealed class PpoMethod : OnlineRlMethod<PpoConfig>
{
    public override int Order => 55;
    public override string Name => "ppo";
    public override string Title => "Proximal policy optimisation";
    public override string Summary =>
        "PPO (Schulman et al., 2017) as in InstructGPT (Ouyang et al., 2022): L = agg_t[-min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps_high) A_t)] + " +
        "vf_coef mean_t 0.5 max((V_t - R_t)^2, (V_clip,t - R_t)^2), A = whiten(GAE(gamma, lambda)) of the token rewards -beta k1_t + r at the last token, " +
        "R = GAE + V_old, values from a head on the policy; num_ppo_epochs x num_mini_batches updates per batch of rollouts.";
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

    [System.Text.Json.Serialization.JsonIgnore] public override bool UsesLossType => false;
    /// <summary>A supervised step on the kept samples: beta has no term to weigh, so no reference is loaded.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsReference => false;

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

    [System.Text.Json.Serialization.JsonIgnore] public override bool UsesLossType => false;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (NumIterations > 1) err(prefix + "num_iterations", "online_dpo trains on each batch once");
    }
}

public sealed class BestOfNMethod : OnlineRlMethod<BestOfNConfig>
{
    public override int Order => 56;
    public override string Name => "best_of_n";
    public override string Title => "Best-of-N fine-tuning";
    public override string Summary =>
        "Rejection sampling (RAFT, Dong et al., 2023): of N samples per prompt keep the best keep_top by reward and minimise their negative " +
        "log-likelihood, L = -(1/|K|) sum over the batch's kept tokens of log pi(y_t | y_<t) (the logged loss).";
    public override object Example => ExampleWith(new
    {
        num_generations = 8, keep_top = 1, max_completion_length = 8,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

public sealed class OnlineDpoMethod : OnlineRlMethod<OnlineDpoConfig>
{
    public override int Order => 57;
    public override string Name => "online_dpo";
    public override string Title => "Online DPO";
    public override string Summary =>
        "Online DPO (Guo et al., 2024): two samples per prompt, the one the reward source scores higher is chosen; " +
        "L = mean over ranked pairs of -log sigmoid(beta [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))]), log-probs from the raw logits as TRL's " +
        "OnlineDPOTrainer, the starting model as ref. A tie makes no pair (TRL would take the first sample as chosen).";
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

    [Hyperparameter(GrpoConfig.ScaleRewardsHelp, OneOf = ["group", "batch", "none"])]
    public string ScaleRewards { get; init; } = "group";

    [Hyperparameter(GrpoConfig.ImportanceSamplingHelp, OneOf = ["token", "sequence"])]
    public string ImportanceSamplingLevel { get; init; } = "token";

    public override MethodConfig Normalize() => this with
    {
        EvalSteps = EvalInterval ?? EvalSteps,
        NumGenerations = Math.Max(2, (int)Math.Round(NumGenerations * ComputeMultiplier)),
        ComputeMultiplier = 1.0, // applied once
    };
}

public sealed class ReinforcementMethod : OnlineRlMethod<ReinforcementConfig>
{
    public override int Order => 54;
    public override string Name => "reinforcement";
    public override string Title => "Reinforcement fine-tuning (OpenAI's shape)";
    public override string Summary =>
        "OpenAI's reinforcement method, run as GRPO (Shao et al., 2024): each prompt's completions are graded by method.reinforcement.grader " +
        "against the row ({{item.*}}); L = agg_t[-min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps_high) A_i) + beta k3_t], A_i = (r_i - mean(r_group)) / (std + 1e-4).";
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

/// <summary>
/// On-policy distillation (<c>method.type = "distill"</c>; Agarwal et al., 2024, GKD; Lu et al., 2025, Thinking Machines'
/// "On-Policy Distillation"): the student samples its own completions, a teacher model scores every sampled token,
/// and each token's advantage is minus the per-token reverse KL, log pi_teacher(y_t) - log pi_old(y_t), in the clipped
/// policy loss (no discounting: each token answers for itself). The teacher must share the student's tokenizer. A
/// grader or reward model is optional: it only adds reward metrics and <c>eval/reward</c>.
/// </summary>
public sealed record DistillConfig : OnlineRlConfig
{
    [Hyperparameter("The teacher: a registered language model with the student's tokenizer (its log-probs of the student's tokens are the reward).")]
    public string? TeacherModel { get; init; }

    [Hyperparameter("Completions the student samples per prompt (distillation needs no groups).", Min = 1, Max = 64)]
    public override int NumGenerations { get; init; } = 4;

    [System.Text.Json.Serialization.JsonIgnore] public override bool RequiresRewardSource => false;
    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsTeacher => true;
    [System.Text.Json.Serialization.JsonIgnore] public override string? ScoringModel => TeacherModel;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (string.IsNullOrWhiteSpace(TeacherModel)) err(prefix + "teacher_model", "a teacher model is required");
    }
}

public sealed class DistillMethod : OnlineRlMethod<DistillConfig>
{
    public override int Order => 58;
    public override string Name => "distill";
    public override string Title => "On-policy distillation";
    public override string Summary =>
        "On-policy distillation (Agarwal et al., 2024; Lu et al., 2025): the student samples, the teacher scores each sampled token; " +
        "L = agg_t[-min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps_high) A_t)] with A_t = log pi_teacher(y_t) - log pi_old(y_t), minus the per-token reverse KL " +
        "(student sampling distribution against the teacher's raw distribution). Same tokenizer required.";
    public override IReadOnlyList<MetricChart> Charts =>
    [
        new("Reverse KL to the teacher (per token)", "reverse-kl-chart", ["reverse_kl"]),
        .. base.Charts,
    ];
    public override object Example => ExampleWith(new
    {
        teacher_model = "ft:alignhub/tiny:grpo:ftjob-def456", num_generations = 4, max_completion_length = 8,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

/// <summary>
/// RTO (<c>method.type = "rto"</c>; Zhong et al., 2024, "DPO Meets PPO: Reinforced Token Optimization"): PPO whose
/// token rewards are read off a DPO-trained model, dpo_beta x (log pi_dpo(y_t) - log pi_ref(y_t)) on every sampled
/// token, plus the grader's or reward model's score at the last token when one is given, minus beta x k1 to the
/// reference (the starting model, which should be the DPO model's reference). Everything else is PPO's.
/// </summary>
public sealed record RtoConfig : PpoConfig
{
    [Hyperparameter("The DPO-trained model (registered, the policy's tokenizer) whose log-ratio to the reference is each token's reward.")]
    public string? DpoModel { get; init; }

    [Hyperparameter("Scale of the DPO token reward (RTO's beta_1; the DPO run's beta recovers its implicit reward).", Min = 0, Max = 100)]
    public double DpoBeta { get; init; } = 0.1;

    [System.Text.Json.Serialization.JsonIgnore] public override bool RequiresRewardSource => false;
    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsReference => true;
    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsTeacher => true;
    [System.Text.Json.Serialization.JsonIgnore] public override string? ScoringModel => DpoModel;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (string.IsNullOrWhiteSpace(DpoModel)) err(prefix + "dpo_model", "a DPO-trained model is required");
        if (Temperature != 1) err(prefix + "temperature", "must be 1: the DPO reward compares the two models' own distributions");
    }
}

public sealed class RtoMethod : OnlineRlMethod<RtoConfig>
{
    public override int Order => 59;
    public override string Name => "rto";
    public override string Title => "Reinforced token optimisation (DPO rewards in PPO)";
    protected override string ScoringModelField => "dpo_model";
    public override string Summary =>
        "RTO (Zhong et al., 2024): PPO on token rewards r_t = dpo_beta (log pi_dpo(y_t) - log pi_ref(y_t)) - beta k1_t, plus the sequence score at the last token " +
        "when a grader or reward model is given; L = agg_t[-min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps_high) A_t)] + vf_coef x PPO's clipped value loss, " +
        "A = whiten(GAE(gamma, lambda)).";
    public override object Example => ExampleWith(new
    {
        dpo_model = "ft:alignhub/tiny:dpo:ftjob-ghi789", dpo_beta = 0.1, num_generations = 4, max_completion_length = 8, num_ppo_epochs = 4,
    });
}

/// <summary>
/// REBEL (<c>method.type = "rebel"</c>; Gao et al., 2024, "REBEL: Reinforcement Learning via Regressing Relative
/// Rewards"): completions come in pairs (samples 2i and 2i + 1 of a prompt), and the update regresses the difference
/// of their log-ratios to the sampling policy, scaled by 1/eta, onto the difference of their rewards with a squared
/// loss. Only reward differences enter, so adding a constant to every reward changes nothing. No reference, no critic.
/// </summary>
public sealed record RebelConfig : OnlineRlConfig
{
    [Hyperparameter("Completions per prompt, taken as consecutive pairs (an even number).", Min = 2, Max = 64)]
    public override int NumGenerations { get; init; } = 2;

    [Hyperparameter("REBEL's eta: the log-ratio difference is regressed onto eta x the reward difference (its fixed point); one update's size grows as 1/eta.", Min = 1e-6, Max = 1e6)]
    public double Eta { get; init; } = 1.0;

    [System.Text.Json.Serialization.JsonIgnore] public override bool UsesLossType => false;
    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsReference => false;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (NumGenerations % 2 != 0) err(prefix + "num_generations", "must be even: REBEL compares completions in pairs");
        if (Beta != 0) err(prefix + "beta", "REBEL has no KL term (its regression to the sampling policy keeps steps small); leave beta at 0");
    }
}

public sealed class RebelMethod : OnlineRlMethod<RebelConfig>
{
    public override int Order => 60;
    public override string Name => "rebel";
    public override string Title => "REBEL (regressing relative rewards)";
    public override string Summary =>
        "REBEL (Gao et al., 2024): for each pair (y, y') of a prompt's samples, L = mean over pairs of ((1/eta) [log pi(y)/pi_old(y) - log pi(y')/pi_old(y')] - (r(y) - r(y')))^2, " +
        "log-probs summed over each completion, pi_old the sampling policy. Invariant to a constant added to every reward.";
    public override object Example => ExampleWith(new
    {
        num_generations = 4, eta = 1.0, max_completion_length = 8,
        grader = ArithmeticTask.ExactMatchGrader,
    });
}

/// <summary>
/// What the self-play methods share (SPPO, DNO, online IPO): a prompt's samples play each other, judged by a pairwise
/// oracle (a general preference model named as <c>preference_model</c>, or the grader or reward model through
/// Bradley-Terry, sigmoid(r_a - r_b)); each completion's reward is its estimated win rate within its group. A round is
/// one batch of rollouts (its <c>num_iterations</c> updates); at its end the new policy's sample of each of the round's
/// prompts is judged against the previous policy's, in both orders: the win rate over the previous round with a 95%
/// interval (metrics <c>round/*</c> and an event per round).
/// </summary>
public abstract record SelfPlayConfig : OnlineRlConfig
{
    [Hyperparameter("Samples per prompt that play against each other (the group whose win rates are estimated).", Min = 2, Max = 64)]
    public override int NumGenerations { get; init; } = 4;

    [Hyperparameter("A general preference model (a preference_model job's model) as the pairwise oracle; none: the grader or reward model through Bradley-Terry, sigmoid(r_a - r_b).")]
    public string? PreferenceModel { get; init; }

    [Hyperparameter("At the end of each round, judge one new sample of each of the round's prompts against the previous policy's (both orders): the round's win rate and its 95% interval (costs one sample per prompt).")]
    public bool RoundWinRate { get; init; } = true;

    /// <summary>Completions compared with each other for a win rate: the whole group (SPPO, DNO) or consecutive pairs (online IPO).</summary>
    [System.Text.Json.Serialization.JsonIgnore] public virtual int WinRateGroupSize => NumGenerations;
    [System.Text.Json.Serialization.JsonIgnore] public override bool UsesLossType => false;
    [System.Text.Json.Serialization.JsonIgnore] public override bool RewardsAreGroupWinRates => true;
    [System.Text.Json.Serialization.JsonIgnore] public override bool RequiresRewardSource => PreferenceModel is null;
    [System.Text.Json.Serialization.JsonIgnore] public override string? PairwiseOracle => PreferenceModel;
}

/// <summary>The API side of a self-play method: the preference model, when one is named, must be a general preference model.</summary>
public abstract class SelfPlayMethod<TConfig> : OnlineRlMethod<TConfig> where TConfig : SelfPlayConfig
{
    public override IReadOnlyList<MetricChart> Charts =>
    [
        new("Win rate over the previous round", "round-win-rate-chart", ["round/win_rate", "round/win_rate_low", "round/win_rate_high"]),
        .. base.Charts,
    ];

    public override async Task ValidateAsync(JobCheck check, CancellationToken ct)
    {
        await base.ValidateAsync(check, ct);
        if (((SelfPlayConfig)check.Config).PreferenceModel is { } id)
        {
            var m = await check.FindModelAsync(id, ct);
            if (m is null) check.Error("preference_model", $"model \"{id}\" is not registered");
            else if (!ModelArchitecture.Parse(m.ConfigJson).IsPreferenceModel) check.Error("preference_model", $"model \"{id}\" is not a general preference model (train one with method preference_model)");
        }
    }
}

/// <summary>
/// SPPO (<c>method.type = "sppo"</c>; Wu et al., 2024, "Self-Play Preference Optimization for Language Model
/// Alignment"): each prompt's K samples play against each other; each sample's estimated win rate against the rest of
/// its group, P(y &gt; pi), is the target of its log-ratio to the sampling policy, eta (P(y &gt; pi) - 1/2). Iterated, this
/// approaches the Nash equilibrium of the preference, which need not be any reward's maximiser.
/// </summary>
public sealed record SppoConfig : SelfPlayConfig
{
    [Hyperparameter("SPPO's eta: the target of a sample's log-ratio is eta x (its win rate - 1/2); one update's size grows with it.", Min = 1e-6, Max = 1e6)]
    public double Eta { get; init; } = 1.0;

    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsReference => false;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (Beta != 0) err(prefix + "beta", "SPPO has no KL term (its regression to the sampling policy keeps steps small); leave beta at 0");
    }
}

public sealed class SppoMethod : SelfPlayMethod<SppoConfig>
{
    public override int Order => 61;
    public override string Name => "sppo";
    public override string Title => "Self-play preference optimisation";
    public override string Summary =>
        "SPPO (Wu et al., 2024): K samples of a prompt play each other; with P_i = mean_{j != i} P(y_i > y_j) from the pairwise oracle, " +
        "L = mean_i (log pi(y_i)/pi_old(y_i) - eta (P_i - 1/2))^2, log-probs summed over each completion, pi_old the sampling policy.";
    public override object Example => ExampleWith(new { num_generations = 4, eta = 1.0, preference_model = "ft:alignhub/tiny:pm:ftjob-jkl012", max_completion_length = 8 });
}

/// <summary>
/// DNO (<c>method.type = "dno"</c>; Rosset et al., 2024, "Direct Nash Optimization"), its batched on-policy form: per
/// round, K samples per prompt from the current policy, each sample's win rate against the others from the oracle, and a
/// contrastive DPO update of the best sample against the worst (when their win rates differ by at least
/// <c>min_win_rate_gap</c>), the round's sampling policy (the previous round's result) as the reference. A round is
/// one batch of rollouts trained <c>num_iterations</c> times.
/// </summary>
public sealed record DnoConfig : SelfPlayConfig
{
    [Hyperparameter("DPO's beta against the previous round's policy (the round's sampling policy is the reference).", Min = 1e-6, Max = 100)]
    public override double Beta { get; init; } = 0.1;

    [Hyperparameter("A group trains only when its best and worst samples' win rates differ by at least this (DNO's margin filter); 0: whenever they differ.", Min = 0, Max = 1)]
    public double MinWinRateGap { get; init; }

    /// <summary>The reference is the round's sampling policy (pi_old), not the starting model: no reference model is loaded.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsReference => false;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (KlTarget is not null) err(prefix + "kl_target", "DNO's beta is DPO's against the previous round's policy; adaptive KL control does not apply");
    }
}

public sealed class DnoMethod : SelfPlayMethod<DnoConfig>
{
    public override int Order => 62;
    public override string Name => "dno";
    public override string Title => "Direct Nash optimisation (self-play rounds)";
    public override string Summary =>
        "DNO (Rosset et al., 2024): per round, K samples of each prompt from pi_t; with P_i = mean_{j != i} P(y_i > y_j) from the pairwise oracle, y+ = argmax P_i and y- = argmin P_i " +
        "(a group trains when P+ - P- >= min_win_rate_gap); L = mean over groups of -log sigmoid(beta [log pi(y+)/pi_t(y+) - log pi(y-)/pi_t(y-)]), pi_t the round's sampling policy, trained num_iterations times.";
    public override object Example => ExampleWith(new { num_generations = 4, beta = 0.1, num_iterations = 2, preference_model = "ft:alignhub/tiny:pm:ftjob-jkl012", max_completion_length = 8 });
}

/// <summary>
/// Online IPO (<c>method.type = "online_ipo"</c>; Calandriello et al., 2024, "Human Alignment of Large Language Models
/// through Online Preference Optimisation"; IPO: Azar et al., 2023): pairs of samples from the current policy (samples
/// 2i and 2i + 1 of a prompt), the oracle's P(y &gt; y') as a soft label, and IPO's squared loss on the pair's log-ratio
/// difference to the reference (the starting model): (h - (P(y &gt; y') - 1/2) / beta)^2, which for a sure preference is
/// IPO's (h - 1/(2 beta))^2.
/// </summary>
public sealed record OnlineIpoConfig : SelfPlayConfig
{
    [Hyperparameter("Completions per prompt, taken as consecutive pairs (an even number).", Min = 2, Max = 64)]
    public override int NumGenerations { get; init; } = 2;

    [Hyperparameter("IPO's beta (tau): a sure preference's log-ratio margin to the reference is regressed onto 1/(2 beta).", Min = 1e-6, Max = 100)]
    public override double Beta { get; init; } = 0.1;

    [Hyperparameter("Nash-MD's mixture (TRL's NashMDConfig.mixture_coef): the second completion of each pair is drawn token by token from pi^(1-coef) pi_ref^coef, renormalised (Munos et al., 2023); 0: both from the policy (online IPO). TRL's default is 0.5.", Min = 0, Max = 1)]
    public double MixtureCoef { get; init; }

    [System.Text.Json.Serialization.JsonIgnore] public override int WinRateGroupSize => 2;
    [System.Text.Json.Serialization.JsonIgnore] public override bool NeedsReference => true;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (NumGenerations % 2 != 0) err(prefix + "num_generations", "must be even: online IPO compares completions in pairs");
        if (MixtureCoef > 0 && UsePeft) err(prefix + "mixture_coef", "the geometric mixture samples from a separate reference model; with use_peft the reference is the policy with its adapters off, which this sampler does not mix");
        if (KlTarget is not null) err(prefix + "kl_target", "IPO's beta is its regression target's scale; adaptive KL control does not apply");
    }
}

public sealed class OnlineIpoMethod : SelfPlayMethod<OnlineIpoConfig>
{
    public override int Order => 63;
    public override string Name => "online_ipo";
    public override string Title => "Online IPO (self-play pairs)";
    public override string Summary =>
        "Online IPO (Calandriello et al., 2024): pairs (y, y') of each prompt's samples from the current policy, p = P(y > y') from the pairwise oracle; " +
        "L = mean over pairs of (log pi(y)/pi_ref(y) - log pi(y')/pi_ref(y') - (p - 1/2)/beta)^2, log-probs summed over each completion. " +
        "With mixture_coef, y' is drawn from Nash-MD's geometric mixture pi^(1-coef) pi_ref^coef (Munos et al., 2023).";
    public override object Example => ExampleWith(new { num_generations = 2, beta = 0.1, preference_model = "ft:alignhub/tiny:pm:ftjob-jkl012", max_completion_length = 8 });
}

/// <summary>
/// P3O (<c>method.type = "p3o"</c>; Wu et al., 2023, "Pairwise Proximal Policy Optimization: Harnessing Relative
/// Feedback for LLM Alignment"), its joint-clipping form: completions pair up as samples 2i and 2i + 1 of a prompt; the
/// pair's relative ratio rho = [pi(y)/pi_old(y)] / [pi(y')/pi_old(y')] and reward difference D = r(y) - r(y') (each reward
/// less beta x its completion's k1 to the reference when beta &gt; 0) give L = -(1/2) min(rho D, clip(rho, 1 - eps,
/// 1 + eps_high) D), averaged over pairs: the clipped form of the pairwise policy gradient (1/2) D grad[log pi(y) - log pi(y')].
/// Only reward differences enter, so a constant added to every reward changes nothing. No critic.
/// </summary>
public sealed record P3oConfig : OnlineRlConfig
{
    [Hyperparameter("Completions per prompt, taken as consecutive pairs (an even number).", Min = 2, Max = 64)]
    public override int NumGenerations { get; init; } = 2;

    [System.Text.Json.Serialization.JsonIgnore] public override bool UsesLossType => false;

    public override void Validate(string prefix, Action<string, string> err)
    {
        base.Validate(prefix, err);
        if (NumGenerations % 2 != 0) err(prefix + "num_generations", "must be even: P3O compares completions in pairs");
    }
}

public sealed class P3oMethod : OnlineRlMethod<P3oConfig>
{
    public override int Order => 64;
    public override string Name => "p3o";
    public override string Title => "P3O (pairwise proximal policy optimisation)";
    public override string Summary =>
        "P3O (Wu et al., 2023), joint clipping: for each pair (y, y') of a prompt's samples, rho = exp(sum_t [log pi - log pi_old](y) - sum_t [log pi - log pi_old](y')), " +
        "D = (r(y) - beta KL(y)) - (r(y') - beta KL(y')); L = mean over pairs of -(1/2) min(rho D, clip(rho, 1 - eps, 1 + eps_high) D).";
    public override object Example => ExampleWith(new { num_generations = 4, max_completion_length = 8, grader = ArithmeticTask.ExactMatchGrader });
}
