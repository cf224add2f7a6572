namespace AlignHub.Domain;

/// <summary>
/// LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): a frozen weight W gains a trainable
/// low-rank update, y = W x + (alpha / r) B A x, with A [r, in] (Kaiming-uniform) and B [out, r] (zeros, so training
/// starts from the base model exactly). Settings named as TRL's <c>ModelConfig</c> (<c>use_peft</c>, <c>lora_r</c>,
/// <c>lora_alpha</c>, <c>lora_dropout</c>, <c>lora_target_modules</c>, <c>use_rslora</c>) and stored as PEFT's
/// <c>adapter_config.json</c> (<c>r</c>, <c>lora_alpha</c>, <c>target_modules</c>, ...).
/// </summary>
public sealed record LoraSettings(int R, int Alpha, double Dropout, IReadOnlyList<string> TargetModules, bool UseRslora)
{
    /// <summary>The update's scale: alpha / r, or alpha / sqrt(r) for rank-stabilised LoRA (Kalajdzievski, 2023).</summary>
    public double Scaling => UseRslora ? Alpha / Math.Sqrt(R) : (double)Alpha / R;

    /// <summary>PEFT's name for every linear layer but the output layer.</summary>
    public const string AllLinear = "all-linear";

    /// <summary>The linear layers of each family, by their Hugging Face names (the LM head is never a target).</summary>
    public static IReadOnlyList<string> LinearModules(DecoderFamily family) => family == DecoderFamily.Gpt2
        ? ["c_attn", "c_proj", "c_fc"]
        : ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>PEFT's default targets when none are named (its TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING): the query and value projections.</summary>
    public static IReadOnlyList<string> DefaultTargets(DecoderFamily family) => family == DecoderFamily.Gpt2 ? ["c_attn"] : ["q_proj", "v_proj"];

    /// <summary>A training config's LoRA settings for a model (null: full fine-tuning), target modules resolved.</summary>
    public static LoraSettings? From(TrainingConfig c, ModelArchitecture arch)
    {
        if (!c.UsePeft) return null;
        var targets = c.LoraTargetModules is { Count: > 0 } t
            ? t.Contains(AllLinear) ? LinearModules(arch.Family) : t.Distinct().ToList()
            : DefaultTargets(arch.Family);
        return new LoraSettings(c.LoraR, c.LoraAlpha, c.LoraDropout, targets, c.UseRslora);
    }

    /// <summary>The error for target modules the model does not have (null: all fit).</summary>
    public static string? TargetError(IReadOnlyList<string>? targets, ModelArchitecture arch)
    {
        if (targets is null) return null;
        var known = LinearModules(arch.Family);
        var unknown = targets.Where(t => t != AllLinear && !known.Contains(t)).ToList();
        return unknown.Count == 0 ? null
            : $"the {arch.ModelType} model has no linear layer named {string.Join(", ", unknown.Select(u => $"\"{u}\""))}; its targets are {string.Join(", ", known)} or \"{AllLinear}\"";
    }
}
