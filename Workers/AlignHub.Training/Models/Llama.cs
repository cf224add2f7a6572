using AlignHub.Domain;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace AlignHub.Training.Models;

/// <summary>
/// The Llama family (Touvron et al., 2023, "LLaMA: Open and Efficient Foundation Language Models"), which also covers
/// Qwen2 (bias on q/k/v), SmolLM and Mistral-shaped configs: token embedding, pre-RMSNorm blocks of grouped-query
/// attention with rotary position embeddings (Su et al., 2021, RoFormer; rope_theta) and a SwiGLU MLP
/// (Shazeer, 2020), a final RMSNorm, and an LM head that is tied to the embedding or not.
/// Parameter names equal the Hugging Face keys (<c>model.layers.0.self_attn.q_proj.weight</c>).
/// </summary>
public sealed class LlamaForCausalLM : CausalLM
{
    readonly LlamaModel model;
    readonly Linear? lm_head;

    public LlamaForCausalLM(ModelArchitecture arch) : base("LlamaForCausalLM", arch)
    {
        model = new LlamaModel(arch);
        if (arch.HasLmHead) lm_head = Linear(arch.HiddenSize, arch.VocabSize, hasBias: false);
        RegisterComponents();
        InitWeights();
    }

    public override Tensor Hidden(Tensor inputIds, Tensor? attentionMask, KvCache? cache) => model.forward(inputIds, attentionMask, cache);

    public override Tensor LmHead(Tensor hidden) => Float32(lm_head is null ? functional.linear(hidden, model.embed_tokens.weight!) : lm_head.forward(hidden));

    /// <summary>
    /// Tied models and reward models (no LM head: <c>score</c> reads the hidden states) skip a stored <c>lm_head.weight</c>;
    /// rotary caches (<c>rotary_emb.inv_freq</c>) are recomputed.
    /// </summary>
    public override string? ParameterForHfKey(string key) => Architecture.IsIgnoredHfKey(key) ? null : key;

    /// <summary>HF's Llama initialisation: N(0, initializer_range = 0.02) weights, zero biases, unit norms.</summary>
    void InitWeights()
    {
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith(".bias")) init.zeros_(p);
            else if (name.EndsWith("norm.weight")) init.ones_(p);
            else init.normal_(p, 0, 0.02);
        }
    }
}

sealed class LlamaModel : Module
{
    public readonly Embedding embed_tokens;
    readonly ModuleList<LlamaDecoderLayer> layers;
    readonly RmsNorm norm;
    Tensor invFreq; // not a parameter: follows the positions' device the first time they differ
    readonly ModelArchitecture arch;

    public LlamaModel(ModelArchitecture c) : base("model")
    {
        embed_tokens = Embedding(c.VocabSize, c.HiddenSize);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.NumLayers).Select(_ => new LlamaDecoderLayer(c)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.NormEps);
        RegisterComponents();
        arch = c;
        invFreq = Rope.InverseFrequencies(c.HeadDim, c.RopeTheta, c.RopeScaling).DetachFromDisposeScope();
    }

    public Tensor forward(Tensor ids, Tensor? attentionMask, KvCache? cache)
    {
        long t = ids.shape[1], past = cache?.Length ?? 0;
        using var pos = AttentionMasks.PositionIds(attentionMask, past, t, ids.device);
        using var mask = AttentionMasks.Build(attentionMask, past, t, ids.device);
        var (cos32, sin32) = Rotary(pos);
        var x = embed_tokens.forward(ids);
        // Rotations in the activations' dtype (float32 tables would promote half-precision q and k).
        var (cos, sin) = x.dtype == ScalarType.Float32 ? (cos32, sin32) : (cos32.to_type(x.dtype), sin32.to_type(x.dtype));
        if (x.dtype != ScalarType.Float32) { cos32.Dispose(); sin32.Dispose(); }
        using (cos)
        using (sin)
        {
            for (int i = 0; i < layers.Count; i++)
            {
                var next = layers[i].forward(x, cos, sin, mask, cache, i);
                x.Dispose();
                x = next;
            }
            var y = norm.forward(x);
            x.Dispose();
            return y;
        }
    }

    (Tensor Cos, Tensor Sin) Rotary(Tensor pos)
    {
        if (arch.RopeScaling is { Type: "dynamic" } dyn)
        {
            // Dynamic NTK: frequencies for this forward's length (one host read of the largest position).
            long seqLen = pos.max().item<long>() + 1;
            if (seqLen > dyn.OriginalMaxPositions)
            {
                using var scaled = Rope.InverseFrequencies(arch.HeadDim, arch.RopeTheta, dyn, seqLen).to(pos.device);
                return Rope.CosSin(pos, scaled);
            }
        }
        if (invFreq.device != pos.device)
        {
            var moved = invFreq.to(pos.device).DetachFromDisposeScope();
            invFreq.Dispose();
            invFreq = moved;
        }
        return Rope.CosSin(pos, invFreq);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) invFreq.Dispose();
        base.Dispose(disposing);
    }
}

sealed class LlamaDecoderLayer : Module
{
    readonly LlamaAttention self_attn;
    readonly LlamaMlp mlp;
    readonly RmsNorm input_layernorm, post_attention_layernorm;

    public LlamaDecoderLayer(ModelArchitecture c) : base("layer")
    {
        self_attn = new LlamaAttention(c);
        mlp = new LlamaMlp(c);
        input_layernorm = new RmsNorm(c.HiddenSize, c.NormEps);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.NormEps);
        RegisterComponents();
    }

    public Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer)
    {
        using var n1 = input_layernorm.forward(x);
        using var a = self_attn.forward(n1, cos, sin, mask, cache, layer);
        using var x1 = x + a;
        using var n2 = post_attention_layernorm.forward(x1);
        using var m = mlp.forward(n2);
        return x1 + m;
    }
}

sealed class LlamaAttention : Module
{
    readonly LoraLinear q_proj, k_proj, v_proj, o_proj;
    readonly int nHead, nKv, headDim;

    public LlamaAttention(ModelArchitecture c) : base("self_attn")
    {
        (nHead, nKv, headDim) = (c.NumHeads, c.NumKeyValueHeads, c.HeadDim);
        q_proj = new LoraLinear(c.HiddenSize, nHead * headDim, hasBias: c.AttentionBias);
        k_proj = new LoraLinear(c.HiddenSize, nKv * headDim, hasBias: c.AttentionBias);
        v_proj = new LoraLinear(c.HiddenSize, nKv * headDim, hasBias: c.AttentionBias);
        o_proj = new LoraLinear(nHead * headDim, c.HiddenSize, hasBias: false);
        RegisterComponents();
    }

    /// <summary>
    /// Grouped-query attention (Ainslie et al., 2023): nHead query heads share nKv key/value heads, each kv head
    /// repeated nHead/nKv times; rotary embeddings on q and k: x*cos + rotate_half(x)*sin.
    /// </summary>
    public Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer)
    {
        long b = x.shape[0], t = x.shape[1];
        using var q0 = q_proj.forward(x).view(b, t, nHead, headDim).transpose(1, 2);
        using var k0 = k_proj.forward(x).view(b, t, nKv, headDim).transpose(1, 2);
        using var v = v_proj.forward(x).view(b, t, nKv, headDim).transpose(1, 2);
        using var q = Rope.Apply(q0, cos, sin);
        using var k = Rope.Apply(k0, cos, sin);
        using var y = AttentionMasks.AttendWithCache(q, k, v, mask, cache, layer);
        using var merged = y.transpose(1, 2).contiguous().view(b, t, nHead * headDim);
        return o_proj.forward(merged);
    }
}

/// <summary>
/// Rotary position embeddings (Su et al., 2021, "RoFormer") in Hugging Face's half-split layout: dimension i and
/// i + head_dim/2 form a pair rotated by the angle pos * theta^(-2i / head_dim), i.e.
/// x * cos + rotate_half(x) * sin with rotate_half(x) = cat(-x2, x1).
/// </summary>
public static class Rope
{
    /// <summary>
    /// inv_freq[i] = theta^(-2i / head_dim), scaled as config.json's rope_scaling says (<see cref="RopeScaling"/>: linear,
    /// dynamic for a sequence of <paramref name="seqLen"/> positions, llama3), computed in float64, returned in float32.
    /// </summary>
    public static Tensor InverseFrequencies(int headDim, double theta, RopeScaling? scaling = null, long seqLen = 0)
    {
        using var inv = tensor(RopeScaling.InverseFrequencies(headDim, theta, scaling, seqLen), dtype: ScalarType.Float64);
        return inv.to_type(ScalarType.Float32);
    }

    /// <summary>
    /// cos and signed sin [B, 1, T, head_dim] for positions [B, T]; the sin's first half is negated so that
    /// rotate_half(x) * sin = roll(x, head_dim / 2) * signed sin (one roll instead of slices, a negation and a cat).
    /// </summary>
    public static (Tensor Cos, Tensor SignedSin) CosSin(Tensor positions, Tensor invFreq)
    {
        using var freqs = positions.to_type(ScalarType.Float32).unsqueeze(-1) * invFreq; // [B, T, hd/2]
        using var emb = cat([freqs, freqs], -1);
        using var c = emb.cos();
        using var sHalf = freqs.sin();
        using var negHalf = -sHalf;
        using var s = cat([negHalf, sHalf], -1);
        return (c.unsqueeze(1), s.unsqueeze(1));
    }

    /// <summary>x [B, H, T, head_dim] rotated: x * cos + roll(x, head_dim / 2) * signed sin.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor signedSin)
    {
        using var rolled = x.roll(x.shape[^1] / 2, -1);
        using var a = x * cos;
        using var r = rolled * signedSin;
        return a + r;
    }
}

sealed class LlamaMlp : Module
{
    readonly LoraLinear gate_proj, up_proj, down_proj;

    public LlamaMlp(ModelArchitecture c) : base("mlp")
    {
        gate_proj = new LoraLinear(c.HiddenSize, c.IntermediateSize, hasBias: false);
        up_proj = new LoraLinear(c.HiddenSize, c.IntermediateSize, hasBias: false);
        down_proj = new LoraLinear(c.IntermediateSize, c.HiddenSize, hasBias: false);
        RegisterComponents();
    }

    /// <summary>SwiGLU: down(silu(gate(x)) * up(x)).</summary>
    public Tensor forward(Tensor x)
    {
        using var g = gate_proj.forward(x);
        using var act = functional.silu(g);
        using var u = up_proj.forward(x);
        using var prod = act * u;
        return down_proj.forward(prod);
    }
}

/// <summary>RMSNorm (Zhang and Sennrich, 2019): weight * x / sqrt(mean(x^2) + eps), computed in float32.</summary>
sealed class RmsNorm : Module
{
    readonly Parameter weight;
    readonly double eps;

    public RmsNorm(int size, double eps) : base("RMSNorm")
    {
        weight = Parameter(ones(size));
        this.eps = eps;
        RegisterComponents();
    }

    public Tensor forward(Tensor x)
    {
        using var x32 = x.to_type(ScalarType.Float32); // an alias when x is float32
        using var sq = x32.pow(2);
        using var ms = sq.mean([-1L], keepdim: true);
        using var r = (ms + eps).rsqrt();
        using var n = x32 * r;
        using var back = n.to_type(x.dtype);
        return weight * back;
    }
}
