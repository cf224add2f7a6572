using System.Text.Json.Serialization;

namespace AlignHub.Domain;

/// <summary>
/// What every trainer shares, read by the training engine: epochs or steps, batch and micro-batches, AdamW, the
/// learning-rate schedule, clipping, and how often to log, evaluate and save. Names follow TRL's / transformers'
/// TrainingArguments; OpenAI's <c>n_epochs</c>, <c>batch_size</c> and <c>learning_rate_multiplier</c> accept "auto".
/// </summary>
public abstract record TrainingConfig : MethodConfig
{
    [Hyperparameter("Passes over the training file (OpenAI's n_epochs).", Min = 1, Max = 100, Auto = true)]
    public int NEpochs { get; init; } = 3;

    [Hyperparameter("Rows per optimizer step (OpenAI's batch_size), split into gradient_accumulation_steps micro-batches whose gradients add up to the batch's.",
        Min = 1, Max = 1024, Auto = true)]
    public int BatchSize { get; init; } = 8;

    [Hyperparameter("Multiplies learning_rate (OpenAI's learning_rate_multiplier): the peak rate is learning_rate * multiplier.", Min = 1e-6, Max = 100, Auto = true)]
    public double LearningRateMultiplier { get; init; } = 1.0;

    [Hyperparameter("Peak learning rate of AdamW before the multiplier.", Min = 1e-8, Max = 1)]
    public virtual double LearningRate { get; init; } = 1e-3;

    [Hyperparameter("After linear warmup: cosine (decay to 10% of the peak), linear (decay to 0) or constant.", OneOf = ["cosine", "linear", "constant"])]
    public string LrSchedulerType { get; init; } = "cosine";

    [Hyperparameter("Fraction of the total steps spent in linear warmup from 0 to the peak rate.", Min = 0, Max = 1)]
    public virtual double WarmupRatio { get; init; } = 0.05;

    [Hyperparameter("AdamW's decoupled weight decay; applied to weight matrices and embeddings, never to biases or norm weights (as TRL and nanoGPT group them).",
        Min = 0, Max = 10)]
    public double WeightDecay { get; init; }

    [Hyperparameter("Clip the global L2 norm of the gradient to this; grad_norm reports the norm before clipping.", Min = 1e-6, Max = 1e6)]
    public double MaxGradNorm { get; init; } = 1.0;

    [Hyperparameter("Micro-batches per optimizer step (memory: only one micro-batch's activations are held at a time).", Min = 1, Max = 1024)]
    public int GradientAccumulationSteps { get; init; } = 1;

    [Hyperparameter("Stop after this many optimizer steps even if epochs remain (none: run every epoch).", Min = 1, Max = 10_000_000)]
    public int? MaxSteps { get; init; }

    [Hyperparameter("Write metrics every N steps (each logged step's own values, never averaged across steps).", Min = 1, Max = 1_000_000)]
    public int LoggingSteps { get; init; } = 1;

    [Hyperparameter("Evaluate on the validation file every N steps, and at the end.", Min = 1, Max = 10_000_000)]
    public int EvalSteps { get; init; } = 50;

    [Hyperparameter("Write a checkpoint every N steps, and at the end.", Min = 1, Max = 10_000_000)]
    public int SaveSteps { get; init; } = 50;

    [Hyperparameter("Train LoRA adapters instead of every weight (TRL's use_peft): the base weights stay frozen and are held once, " +
        "the reference of DPO, KTO and the online methods is the base with the adapters switched off, and checkpoints are PEFT adapter folders.")]
    public bool UsePeft { get; init; }

    [Hyperparameter("LoRA rank r (with use_peft).", Min = 1, Max = 1024)]
    public int LoraR { get; init; } = 16;

    [Hyperparameter("LoRA alpha (with use_peft): the adapter's update is scaled by lora_alpha / lora_r.", Min = 1, Max = 100_000)]
    public int LoraAlpha { get; init; } = 32;

    [Hyperparameter("Dropout on the adapter's input (with use_peft), seeded per step so a resumed run draws the same masks.", Min = 0, Max = 0.9)]
    public double LoraDropout { get; init; } = 0.05;

    [Hyperparameter("Linear layers that get adapters, by their Hugging Face names (q_proj, v_proj, ...; GPT-2: c_attn, c_proj, c_fc), or [\"all-linear\"]; " +
        "none: PEFT's default for the architecture (q_proj and v_proj; GPT-2: c_attn).")]
    public IReadOnlyList<string>? LoraTargetModules { get; init; }

    [Hyperparameter("Rank-stabilised LoRA (with use_peft): scale by lora_alpha / sqrt(lora_r).")]
    public bool UseRslora { get; init; }

    [Hyperparameter("With use_peft: the fine-tuned model also gets a merged copy (base + adapter as one Hugging Face folder, " +
        "downloadable with GET /v1/models/{id}/content?merged=true).")]
    public bool SaveMergedModel { get; init; }

    [Hyperparameter("The dtype the model's weights are held and computed in (transformers' torch_dtype): auto keeps the stored dtype " +
        "where the device computes in it (bfloat16 or float16 weights on CUDA) for weights that do not train (the LoRA base), and float32 otherwise, " +
        "always on the CPU; bfloat16 and float16 need use_peft (trained weights stay float32, as do adapters, heads and logits).",
        OneOf = ["auto", "float32", "bfloat16", "float16"])]
    public string TorchDtype { get; init; } = "auto";

    [JsonIgnore] public double PeakLearningRate => LearningRate * LearningRateMultiplier;

    // What the method needs besides the trained model, declared here once: the memory estimate (JobResources) and the
    // trainers read the same properties.
    /// <summary>A frozen reference model (the starting model; with LoRA, the base with its adapters off).</summary>
    [JsonIgnore] public virtual bool NeedsReference => false;
    /// <summary>A trained value model beside the policy (PPO's value head on a copy of the decoder's size, in the estimate).</summary>
    [JsonIgnore] public virtual bool NeedsValueModel => false;
    /// <summary>A frozen teacher model (on-policy distillation), counted at the trained model's size.</summary>
    [JsonIgnore] public virtual bool NeedsTeacher => false;

    public override void Validate(string prefix, Action<string, string> err)
    {
        if (GradientAccumulationSteps > BatchSize) err(prefix + "gradient_accumulation_steps", $"must be at most batch_size ({BatchSize})");
        if (LoraTargetModules is { } t && t.Any(string.IsNullOrWhiteSpace)) err(prefix + "lora_target_modules", "module names must not be empty");
        if (TorchDtype is "bfloat16" or "float16" && !UsePeft)
            err(prefix + "torch_dtype", $"{TorchDtype} weights would be trained in {TorchDtype}; set use_peft (a frozen {TorchDtype} base under float32 adapters) or use float32");
        if (SaveMergedModel && !UsePeft) err(prefix + "save_merged_model", "needs use_peft (a full fine-tune is already a complete model)");
    }

    /// <summary>
    /// Optimizer steps each batch of rows trains (online RL: TRL's num_iterations, PPO's epochs x minibatches); the
    /// engine takes a new batch every this many steps, so an epoch is still one pass over the file.
    /// </summary>
    [JsonIgnore] public virtual int UpdatesPerBatch => 1;

    /// <summary>Optimizer steps for a training file of <paramref name="rows"/> rows: <see cref="StepsPerEpoch"/> per epoch, at most max_steps.</summary>
    public int TotalSteps(int rows) => (int)Math.Min((long)StepsPerEpoch(rows) * NEpochs, MaxSteps ?? int.MaxValue);

    /// <summary>ceil(rows / batch) batches per epoch, each trained <see cref="UpdatesPerBatch"/> steps.</summary>
    public int StepsPerEpoch(int rows) => Math.Max(1, (rows + BatchSize - 1) / BatchSize) * UpdatesPerBatch;
}
