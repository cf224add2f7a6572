using AlignHub.Domain;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace AlignHub.Training.Models;

/// <summary>
/// GPT-2 (Radford et al., 2019, "Language Models are Unsupervised Multitask Learners"), read top to bottom like
/// nanoGPT: token + learned position embeddings, pre-LayerNorm blocks of causal self-attention and a GELU (tanh) MLP,
/// a final LayerNorm, and an LM head tied to the token embedding. Parameter names equal the Hugging Face keys
/// (<c>transformer.h.0.attn.c_attn.weight</c>). Weights are held as <c>[out, in]</c>; HF's Conv1D files store
/// <c>[in, out]</c>, so <see cref="StoredTransposed"/> marks those for <see cref="HfWeights"/>.
/// </summary>
public sealed class Gpt2LMHeadModel : CausalLM
{
    readonly Gpt2Transformer transformer;

    public Gpt2LMHeadModel(ModelArchitecture arch) : base("GPT2LMHeadModel", arch)
    {
        transformer = new Gpt2Transformer(arch);
        RegisterComponents();
        InitWeights();
    }

    public override Tensor Hidden(Tensor inputIds, Tensor? attentionMask, KvCache? cache) => transformer.forward(inputIds, attentionMask, cache);

    public override Tensor LmHead(Tensor hidden) => Float32(functional.linear(hidden, transformer.wte.weight!)); // tied to the token embedding

    /// <summary>
    /// HF GPT-2 files: keys with or without the <c>transformer.</c> prefix; the causal-mask buffers
    /// (<c>attn.bias</c>, <c>attn.masked_bias</c>) and the tied <c>lm_head.weight</c> are skipped.
    /// </summary>
    public override string? ParameterForHfKey(string key)
    {
        if (Architecture.IsIgnoredHfKey(key)) return null;
        return key.StartsWith("transformer.") ? key : "transformer." + key;
    }

    public override bool StoredTransposed(string parameter) =>
        parameter.EndsWith("c_attn.weight") || parameter.EndsWith("c_proj.weight") || parameter.EndsWith("c_fc.weight");

    /// <summary>GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer), zero biases.</summary>
    void InitWeights()
    {
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith(".bias")) init.zeros_(p);
            else if (name.Contains("ln_")) init.ones_(p);
            else if (name.EndsWith("c_proj.weight")) init.normal_(p, 0, 0.02 / Math.Sqrt(2 * Architecture.NumLayers));
            else init.normal_(p, 0, 0.02);
        }
    }
}

sealed class Gpt2Transformer : Module
{
    public readonly Embedding wte, wpe;
    readonly ModuleList<Gpt2Block> h;
    readonly LayerNorm ln_f;

    public Gpt2Transformer(ModelArchitecture c) : base("transformer")
    {
        wte = Embedding(c.VocabSize, c.HiddenSize);
        wpe = Embedding(c.MaxPositions, c.HiddenSize);
        h = new ModuleList<Gpt2Block>(Enumerable.Range(0, c.NumLayers).Select(_ => new Gpt2Block(c)).ToArray());
        ln_f = LayerNorm(c.HiddenSize, c.NormEps);
        RegisterComponents();
    }

    public Tensor forward(Tensor ids, Tensor? attentionMask, KvCache? cache)
    {
        long t = ids.shape[1], past = cache?.Length ?? 0;
        using var pos = AttentionMasks.PositionIds(attentionMask, past, t, ids.device);
        using var mask = AttentionMasks.Build(attentionMask, past, t, ids.device);
        using var tok = wte.forward(ids);
        using var posEmb = wpe.forward(pos);
        var x = tok + posEmb;
        for (int i = 0; i < h.Count; i++)
        {
            var next = h[i].forward(x, mask, cache, i);
            x.Dispose();
            x = next;
        }
        var y = ln_f.forward(x);
        x.Dispose();
        return y;
    }
}

sealed class Gpt2Block : Module
{
    readonly LayerNorm ln_1, ln_2;
    readonly Gpt2Attention attn;
    readonly Gpt2Mlp mlp;

    public Gpt2Block(ModelArchitecture c) : base("block")
    {
        ln_1 = LayerNorm(c.HiddenSize, c.NormEps);
        attn = new Gpt2Attention(c);
        ln_2 = LayerNorm(c.HiddenSize, c.NormEps);
        mlp = new Gpt2Mlp(c);
        RegisterComponents();
    }

    public Tensor forward(Tensor x, Tensor? mask, KvCache? cache, int layer)
    {
        using var n1 = ln_1.forward(x);
        using var a = attn.forward(n1, mask, cache, layer);
        using var x1 = x + a;
        using var n2 = ln_2.forward(x1);
        using var m = mlp.forward(n2);
        return x1 + m;
    }
}

sealed class Gpt2Attention : Module
{
    readonly LoraLinear c_attn, c_proj;
    readonly int nHead;

    public Gpt2Attention(ModelArchitecture c) : base("attn")
    {
        nHead = c.NumHeads;
        c_attn = new LoraLinear(c.HiddenSize, 3 * c.HiddenSize);
        c_proj = new LoraLinear(c.HiddenSize, c.HiddenSize);
        RegisterComponents();
    }

    /// <summary>Causal multi-head self-attention: softmax(q k^T / sqrt(d_head) + mask) v.</summary>
    public Tensor forward(Tensor x, Tensor? mask, KvCache? cache, int layer)
    {
        long b = x.shape[0], t = x.shape[1], d = x.shape[2], hd = d / nHead;
        using var qkv = c_attn.forward(x);
        var parts = qkv.split(d, dim: 2);
        using var q = parts[0].view(b, t, nHead, hd).transpose(1, 2);
        using var k = parts[1].view(b, t, nHead, hd).transpose(1, 2);
        using var v = parts[2].view(b, t, nHead, hd).transpose(1, 2);
        foreach (var p in parts) p.Dispose();
        using var y = AttentionMasks.AttendWithCache(q, k, v, mask, cache, layer);
        using var merged = y.transpose(1, 2).contiguous().view(b, t, d);
        return c_proj.forward(merged);
    }
}

sealed class Gpt2Mlp : Module
{
    readonly LoraLinear c_fc, c_proj;

    public Gpt2Mlp(ModelArchitecture c) : base("mlp")
    {
        c_fc = new LoraLinear(c.HiddenSize, c.IntermediateSize);
        c_proj = new LoraLinear(c.IntermediateSize, c.HiddenSize);
        RegisterComponents();
    }

    public Tensor forward(Tensor x)
    {
        using var hdn = c_fc.forward(x);
        using var act = functional.gelu(hdn, TorchSharp.Modules.GELU.Approximate.tanh);
        return c_proj.forward(act);
    }
}
