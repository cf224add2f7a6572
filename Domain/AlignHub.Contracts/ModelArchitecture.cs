using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>Decoder families AlignHub builds. <c>llama</c> covers Llama, Qwen2, SmolLM and Mistral-shaped configs.</summary>
public enum DecoderFamily { Gpt2, Llama }

/// <summary>
/// The hyperparameters of a decoder, read from a Hugging Face <c>config.json</c> (GPT-2's <c>n_embd</c>/<c>n_layer</c>
/// names or Llama's <c>hidden_size</c>/<c>num_hidden_layers</c> names). Pure data: the API validates uploads with it
/// and counts parameters without loading any tensor library.
/// </summary>
public sealed record ModelArchitecture
{
    public required string ModelType { get; init; }
    public required DecoderFamily Family { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    /// <summary>Key/value heads (grouped-query attention when below <see cref="NumHeads"/>); GPT-2: equal to heads.</summary>
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int IntermediateSize { get; init; }
    public required int MaxPositions { get; init; }
    public required double NormEps { get; init; }
    public double RopeTheta { get; init; } = 10000;
    /// <summary>Rotary frequency scaling (config.json's <c>rope_scaling</c>, or transformers v5's <c>rope_parameters</c>); null: none.</summary>
    public RopeScaling? RopeScaling { get; init; }
    public bool TieWordEmbeddings { get; init; } = true;
    /// <summary>Bias on the q/k/v projections (Qwen2, or Llama's <c>attention_bias</c>).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>A reward model: HF's <c>*ForSequenceClassification</c> with a scalar <c>score</c> head.</summary>
    public bool IsRewardModel { get; init; }
    /// <summary>Outputs of a sequence classifier's head (config.json's <c>num_labels</c>): 1 for a reward model, 2k for a general preference model's embedding.</summary>
    public int NumLabels { get; init; } = 1;
    /// <summary>A general preference model (AlignHub's <c>alignhub_preference_model</c> marker): its head's outputs are a preference embedding, not a reward.</summary>
    public bool IsPreferenceModel { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }
    public int? PadTokenId { get; init; }

    /// <summary>The config.json key that marks a general preference model's folder.</summary>
    public const string PreferenceModelMarker = "alignhub_preference_model";

    public static readonly string[] SupportedModelTypes = ["gpt2", "llama", "qwen2", "mistral", "smollm"];

    /// <summary>Parses a config.json; errors name the key that is missing or wrong.</summary>
    public static ModelArchitecture Parse(string json)
    {
        JsonElement r;
        try { r = JsonDocument.Parse(json).RootElement; }
        catch (JsonException e) { throw new InvalidDataException($"config.json is not valid JSON: {e.Message}"); }
        if (r.ValueKind != JsonValueKind.Object) throw new InvalidDataException("config.json must be a JSON object");
        var modelType = Str(r, "model_type") ?? throw new InvalidDataException("config.json lacks \"model_type\"");
        int I(string k) => Int(r, k) ?? throw new InvalidDataException($"config.json lacks \"{k}\" (model_type {modelType})");
        var special = (Bos: TokenId(r, "bos_token_id"), Eos: TokenId(r, "eos_token_id"), Pad: TokenId(r, "pad_token_id"));
        ModelArchitecture a;
        switch (modelType)
        {
            case "gpt2":
            {
                int d = I("n_embd"), h = I("n_head");
                a = new ModelArchitecture
                {
                    ModelType = modelType, Family = DecoderFamily.Gpt2, VocabSize = I("vocab_size"), HiddenSize = d,
                    NumLayers = I("n_layer"), NumHeads = h, NumKeyValueHeads = h, HeadDim = h > 0 ? d / h : 0,
                    IntermediateSize = Int(r, "n_inner") ?? 4 * d, MaxPositions = I("n_positions"),
                    NormEps = Dbl(r, "layer_norm_epsilon") ?? 1e-5, TieWordEmbeddings = true,
                    BosTokenId = special.Bos, EosTokenId = special.Eos, PadTokenId = special.Pad,
                };
                var act = Str(r, "activation_function") ?? "gelu_new";
                if (act is not ("gelu_new" or "gelu_pytorch_tanh"))
                    throw new InvalidDataException($"config.json: activation_function \"{act}\" is not supported (gelu_new)");
                break;
            }
            case "llama" or "qwen2" or "mistral" or "smollm":
            {
                int d = I("hidden_size"), h = I("num_attention_heads");
                a = new ModelArchitecture
                {
                    ModelType = modelType, Family = DecoderFamily.Llama, VocabSize = I("vocab_size"), HiddenSize = d,
                    NumLayers = I("num_hidden_layers"), NumHeads = h, NumKeyValueHeads = Int(r, "num_key_value_heads") ?? h,
                    HeadDim = Int(r, "head_dim") ?? (h > 0 ? d / h : 0), IntermediateSize = I("intermediate_size"),
                    MaxPositions = Int(r, "max_position_embeddings") ?? 2048, NormEps = Dbl(r, "rms_norm_eps") ?? 1e-6,
                    RopeTheta = Dbl(r, "rope_theta") ?? 10000,
                    TieWordEmbeddings = Bool(r, "tie_word_embeddings") ?? false, // LlamaConfig/Qwen2Config/MistralConfig default
                    AttentionBias = modelType == "qwen2" || (Bool(r, "attention_bias") ?? false),
                    BosTokenId = special.Bos, EosTokenId = special.Eos, PadTokenId = special.Pad,
                };
                var act = Str(r, "hidden_act") ?? "silu";
                if (act != "silu") throw new InvalidDataException($"config.json: hidden_act \"{act}\" is not supported (silu)");
                a = a with { RopeScaling = Domain.RopeScaling.Parse(r, a.MaxPositions) };
                if (a.RopeScaling is { Type: "dynamic" } dyn) a = a with { MaxPositions = (int)Math.Min(int.MaxValue, a.MaxPositions * dyn.Factor) };
                break;
            }
            default:
                throw new InvalidDataException($"config.json: model_type \"{modelType}\" is not supported; supported: {string.Join(", ", SupportedModelTypes)}");
        }
        a = a with
        {
            IsRewardModel = r.TryGetProperty("architectures", out var archs) && archs.ValueKind == JsonValueKind.Array && archs.GetArrayLength() > 0
                            && archs[0].ValueKind == JsonValueKind.String && archs[0].GetString()!.EndsWith("ForSequenceClassification"),
            NumLabels = r.TryGetProperty("num_labels", out var nl) && nl.ValueKind == JsonValueKind.Number ? Math.Max(1, nl.GetInt32()) : 1,
            IsPreferenceModel = r.TryGetProperty(PreferenceModelMarker, out var pm) && pm.ValueKind == JsonValueKind.True,
        };
        a.Check();
        return a;
    }

    void Check()
    {
        void Positive(int v, string name) { if (v <= 0) throw new InvalidDataException($"config.json: {name} must be positive, got {v}"); }
        Positive(VocabSize, "vocab_size"); Positive(HiddenSize, "hidden size"); Positive(NumLayers, "number of layers");
        Positive(NumHeads, "number of attention heads"); Positive(NumKeyValueHeads, "num_key_value_heads");
        Positive(IntermediateSize, "intermediate size"); Positive(MaxPositions, "maximum positions"); Positive(HeadDim, "head_dim");
        if (Family == DecoderFamily.Gpt2 && HiddenSize % NumHeads != 0)
            throw new InvalidDataException($"config.json: n_embd {HiddenSize} is not divisible by n_head {NumHeads}");
        if (NumHeads % NumKeyValueHeads != 0)
            throw new InvalidDataException($"config.json: num_attention_heads {NumHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}");
        if (Family == DecoderFamily.Llama && HeadDim % 2 != 0)
            throw new InvalidDataException($"config.json: head_dim {HeadDim} must be even for rotary embeddings");
        if (!(NormEps > 0)) throw new InvalidDataException("config.json: the norm epsilon must be positive");
        foreach (var (id, name) in new[] { (BosTokenId, "bos_token_id"), (EosTokenId, "eos_token_id"), (PadTokenId, "pad_token_id") })
            if (id is int v && (v < 0 || v >= VocabSize))
                throw new InvalidDataException($"config.json: {name} {v} is outside the vocabulary (0..{VocabSize - 1})");
        if (Parameters() > 20_000_000_000L) throw new InvalidDataException("config.json: the model has more than 20B parameters");
    }

    /// <summary>
    /// Tensors of Hugging Face files that are not parameters of this architecture: GPT-2's causal-mask buffers
    /// (<c>attn.bias</c>, <c>attn.masked_bias</c>), Llama's rotary cache (<c>rotary_emb.inv_freq</c>), and a tied
    /// model's stored <c>lm_head.weight</c>. Loaders skip them and the API leaves them out of parameter counts.
    /// </summary>
    public bool IsIgnoredHfKey(string key) => Family == DecoderFamily.Gpt2
        ? key == "lm_head.weight" || key.EndsWith(".attn.masked_bias") || key.EndsWith(".attn.bias")
        : key.EndsWith("rotary_emb.inv_freq") || (key == "lm_head.weight" && !HasLmHead);

    /// <summary>
    /// An untied LM head of its own: not for tied models, and not for reward models (HF's <c>*ForSequenceClassification</c>
    /// has a <c>score</c> head instead; a stored <c>lm_head.weight</c>, as a causal base brings, is skipped).
    /// </summary>
    public bool HasLmHead => Family == DecoderFamily.Llama && !TieWordEmbeddings && !IsRewardModel;

    /// <summary>Parameter count (tied embeddings counted once).</summary>
    public long Parameters()
    {
        long d = HiddenSize, v = VocabSize, L = NumLayers, f = IntermediateSize;
        long head = IsRewardModel ? d : 0; // score.weight [1, d]
        if (Family == DecoderFamily.Gpt2)
            return v * d + (long)MaxPositions * d + L * (4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d) + 2 * d + head;
        long q = (long)NumHeads * HeadDim, kv = (long)NumKeyValueHeads * HeadDim;
        long attn = d * q + 2 * d * kv + q * d + (AttentionBias ? q + 2 * kv : 0);
        long mlp = 3 * d * f;
        return v * d + (HasLmHead ? v * d : 0) + L * (attn + mlp + 2 * d) + d + head;
    }

    static string? Str(JsonElement r, string k) => r.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
    static bool? Bool(JsonElement r, string k) => r.TryGetProperty(k, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
    static double? Dbl(JsonElement r, string k) => r.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

    static int? Int(JsonElement r, string k)
    {
        if (!r.TryGetProperty(k, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i)) return i;
        throw new InvalidDataException($"config.json: \"{k}\" must be an integer");
    }

    /// <summary>Token ids may be an integer or a list (several eos ids): the first is used.</summary>
    static int? TokenId(JsonElement r, string k)
    {
        if (!r.TryGetProperty(k, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Array) return v.GetArrayLength() > 0 && v[0].TryGetInt32(out var f) ? f : null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i)) return i;
        throw new InvalidDataException($"config.json: \"{k}\" must be an integer");
    }
}
