namespace AlignHub.Domain;

/// <summary>
/// What a job needs from a worker: a device kind (the job's <c>device</c>: <c>cpu</c>, <c>gpu</c> or <c>any</c>), which
/// picks its Hangfire queue, and a memory estimate shown when it is created. Workers serve queues
/// (<c>AlignHub__Worker__Queues</c>; by default those of their device plus the shared one).
/// </summary>
public static class JobResources
{
    public const string Any = "any", Cpu = "cpu", Gpu = "gpu";
    /// <summary>The queue every training worker serves (Hangfire's <c>ITrainingJob</c> is enqueued on it or its device variants).</summary>
    public const string TrainingQueue = "training";
    public static readonly IReadOnlyList<string> Devices = [Any, Cpu, Gpu];

    /// <summary>The Hangfire queue of a job that needs <paramref name="device"/>: <c>training</c> (any worker), <c>training_cpu</c> or <c>training_gpu</c>.</summary>
    public static string QueueFor(string? device) => device switch
    {
        Cpu => TrainingQueue + "_cpu",
        Gpu => TrainingQueue + "_gpu",
        _ => TrainingQueue,
    };

    /// <summary>
    /// The queues a worker serves: <paramref name="configured"/> (comma-separated, <c>AlignHub__Worker__Queues</c>) when
    /// set, else its device kind's queue and the shared one; campaign judging and other short jobs use <c>default</c>, always served.
    /// </summary>
    public static IReadOnlyList<string> WorkerQueues(string? configured, bool cuda)
    {
        var list = (configured ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(q => q.ToLowerInvariant()).ToList();
        if (list.Count == 0) list = [QueueFor(cuda ? Gpu : Cpu), TrainingQueue];
        if (!list.Contains("default")) list.Add("default");
        return list.Distinct().ToList();
    }

    /// <summary>A queue name Hangfire accepts: lowercase letters, digits and underscores.</summary>
    public static bool IsValidQueue(string q) => q.Length is > 0 and <= 50 && q.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '_');

    /// <summary>
    /// An upper bound on the memory one job holds on its device, at the longest sequences its config allows:
    /// <list type="bullet">
    /// <item>weights: parameters x bytes per weight (4 in float32; 2 for a bfloat16/float16 LoRA base) for each model copy
    /// held (the policy; a reference model for DPO-family losses that use one and for online RL with beta &gt; 0, unless
    /// LoRA makes the base its own reference; PPO's value model);</item>
    /// <item>training state: 12 bytes per trained parameter (float32 gradient and AdamW's two moments; LoRA trains only
    /// the adapters, r x (in + out) per target layer);</item>
    /// <item>activations kept for the backward pass, after Korthikanti et al. (2022), "Reducing Activation Recomputation
    /// in Large Transformer Models": per layer and row 34 s h + 5 a s^2 values (s positions, h hidden size, a heads),
    /// 4 bytes each here, plus the logits (rows x s x vocab, three float32 copies: logits, log-softmax, gradient);</item>
    /// <item>generation and evaluation: weights plus the KV cache (rows x s x layers x 2 x kv heads x head dim) and one row of logits.</item>
    /// </list>
    /// Not counted: a reward model or judge scored through another model, the allocator's slack, the CUDA context (~0.5 GiB).
    /// </summary>
    public static ResourceEstimate Estimate(ModelArchitecture a, long parameters, MethodConfig config)
    {
        long p = Math.Max(parameters, 1);
        int positions = a.MaxPositions;
        if (config is TrainingConfig t)
        {
            bool peft = t.UsePeft;
            int weightBytes = peft && t.TorchDtype is "bfloat16" or "float16" ? 2 : 4;
            int copies = 1;
            if (t.NeedsReference && !peft) copies++;
            if (t.NeedsTeacher) copies++; // the teacher (assumed the student's size)
            long trained = peft ? LoraParameters(t, a) : p;
            long weights = p * weightBytes * copies + (peft ? trained * 4 : 0);
            if (t.NeedsValueModel) { weights += p * 4; trained += p; } // the value model: a trained copy with a scalar head
            long state = trained * 12;
            int micro = Math.Max(1, t.BatchSize / Math.Max(1, t.GradientAccumulationSteps));
            (long rows, int seq) = t switch
            {
                SftConfig s => ((long)micro, Math.Min(s.MaxSeqLength ?? positions, positions)),
                PairConfig pc => (2L * micro, Math.Min(pc.MaxLength ?? positions, positions)),
                OnlineRlConfig o => ((long)micro * o.NumGenerations, Math.Min((o.MaxPromptLength ?? positions) + o.MaxCompletionLength, positions)),
                _ => ((long)micro, positions),
            };
            long perLayer = 34L * seq * a.HiddenSize + 5L * a.NumHeads * seq * seq;
            long activations = rows * (perLayer * a.NumLayers * 4 + (long)seq * a.VocabSize * 4 * 3);
            return new ResourceEstimate(weights, state, activations);
        }
        (long genRows, int genSeq, int copiesInference, int bytes) = config switch
        {
            GenerateConfig g => ((long)g.BatchSize, positions, 1, g.TorchDtype is "bfloat16" or "float16" ? 2 : 4),
            EvaluateConfig => (16L, positions, 2, 4),
            _ => (16L, positions, 1, 4),
        };
        long kv = genRows * genSeq * a.NumLayers * 2L * a.NumKeyValueHeads * a.HeadDim * bytes;
        return new ResourceEstimate(p * bytes * copiesInference, 0, kv + genRows * a.VocabSize * 4L);
    }

    /// <summary>Parameters LoRA trains: r x (in + out) for each target linear layer of every block.</summary>
    static long LoraParameters(TrainingConfig t, ModelArchitecture a)
    {
        var lora = LoraSettings.From(t, a)!;
        long h = a.HiddenSize, kv = (long)a.NumKeyValueHeads * a.HeadDim, q = (long)a.NumHeads * a.HeadDim, i = a.IntermediateSize;
        long perBlock = 0;
        foreach (var m in lora.TargetModules)
            perBlock += m switch
            {
                "q_proj" => h + q,
                "k_proj" or "v_proj" => h + kv,
                "o_proj" => q + h,
                "gate_proj" or "up_proj" => h + i,
                "down_proj" => i + h,
                "c_attn" => h + 3 * h,
                "c_proj" => 2 * h + i + h, // attention's and the MLP's c_proj
                "c_fc" => h + i,
                _ => 2 * h,
            };
        return perBlock * lora.R * a.NumLayers;
    }
}

/// <summary>Bytes a job is estimated to hold on its device (<see cref="JobResources.Estimate"/>).</summary>
public sealed record ResourceEstimate(long WeightsBytes, long TrainingStateBytes, long ActivationBytes)
{
    public long TotalBytes => WeightsBytes + TrainingStateBytes + ActivationBytes;

    /// <summary>1.5 GiB, 312 MiB, 18 KiB.</summary>
    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.#} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.#} MiB",
        0 => "0 B",
        _ => $"{Math.Max(1, bytes / 1024.0):0} KiB",
    };
}
