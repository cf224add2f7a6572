using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace AlignHub.Training.Models;

/// <summary>GPT-2 hyperparameters, read from an HF-style config.json (same key names).</summary>
public sealed record Gpt2Config(int VocabSize, int NEmbd, int NLayer, int NHead, int NPositions, double LayerNormEpsilon = 1e-5)
{
    public static Gpt2Config FromJson(string json)
    {
        var r = JsonDocument.Parse(json).RootElement;
        int I(string k) => r.TryGetProperty(k, out var v) ? v.GetInt32() : throw new InvalidDataException($"config.json lacks \"{k}\"");
        return new Gpt2Config(I("vocab_size"), I("n_embd"), I("n_layer"), I("n_head"), I("n_positions"),
            r.TryGetProperty("layer_norm_epsilon", out var e) ? e.GetDouble() : 1e-5);
    }
}

/// <summary>
/// GPT-2 (Radford et al., 2019), read top to bottom like nanoGPT: token + learned position embeddings,
/// pre-LayerNorm blocks of causal self-attention and a GELU MLP, a final LayerNorm, and an LM head tied to
/// the token embedding. Parameter names equal the Hugging Face keys (<c>transformer.h.0.attn.c_attn.weight</c>);
/// weights are stored as <c>[out, in]</c> (HF's Conv1D stores <c>[in, out]</c>: transpose when loading those).
/// </summary>
public sealed class Gpt2LMHeadModel : Module<Tensor, Tensor>
{
    public readonly Gpt2Config Config;
    readonly Gpt2Transformer transformer;

    public Gpt2LMHeadModel(Gpt2Config config) : base("GPT2LMHeadModel")
    {
        Config = config;
        transformer = new Gpt2Transformer(config);
        RegisterComponents();
        InitWeights();
    }

    /// <summary>input_ids [B, T] -> logits [B, T, vocab].</summary>
    public override Tensor forward(Tensor inputIds)
    {
        using var h = transformer.forward(inputIds);
        return functional.linear(h, transformer.wte.weight!); // tied LM head
    }

    /// <summary>GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer), zero biases.</summary>
    void InitWeights()
    {
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith(".bias")) init.zeros_(p);
            else if (name.Contains("ln_")) init.ones_(p);
            else if (name.EndsWith("c_proj.weight")) init.normal_(p, 0, 0.02 / Math.Sqrt(2 * Config.NLayer));
            else init.normal_(p, 0, 0.02);
        }
    }
}

sealed class Gpt2Transformer : Module<Tensor, Tensor>
{
    public readonly Embedding wte, wpe;
    readonly ModuleList<Gpt2Block> h;
    readonly LayerNorm ln_f;

    public Gpt2Transformer(Gpt2Config c) : base("transformer")
    {
        wte = Embedding(c.VocabSize, c.NEmbd);
        wpe = Embedding(c.NPositions, c.NEmbd);
        h = new ModuleList<Gpt2Block>(Enumerable.Range(0, c.NLayer).Select(_ => new Gpt2Block(c)).ToArray());
        ln_f = LayerNorm(c.NEmbd, c.LayerNormEpsilon);
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids)
    {
        var t = ids.shape[1];
        using var pos = arange(t, device: ids.device);
        var x = wte.forward(ids) + wpe.forward(pos);
        foreach (var block in h)
        {
            var next = block.forward(x);
            x.Dispose();
            x = next;
        }
        var y = ln_f.forward(x);
        x.Dispose();
        return y;
    }
}

sealed class Gpt2Block : Module<Tensor, Tensor>
{
    readonly LayerNorm ln_1, ln_2;
    readonly Gpt2Attention attn;
    readonly Gpt2Mlp mlp;

    public Gpt2Block(Gpt2Config c) : base("block")
    {
        ln_1 = LayerNorm(c.NEmbd, c.LayerNormEpsilon);
        attn = new Gpt2Attention(c);
        ln_2 = LayerNorm(c.NEmbd, c.LayerNormEpsilon);
        mlp = new Gpt2Mlp(c);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var a = attn.forward(ln_1.forward(x));
        var x1 = x + a;
        using var m = mlp.forward(ln_2.forward(x1));
        var x2 = x1 + m;
        x1.Dispose();
        return x2;
    }
}

sealed class Gpt2Attention : Module<Tensor, Tensor>
{
    readonly Linear c_attn, c_proj;
    readonly int nHead;

    public Gpt2Attention(Gpt2Config c) : base("attn")
    {
        if (c.NEmbd % c.NHead != 0) throw new ArgumentException("n_embd must be divisible by n_head");
        nHead = c.NHead;
        c_attn = Linear(c.NEmbd, 3 * c.NEmbd);
        c_proj = Linear(c.NEmbd, c.NEmbd);
        RegisterComponents();
    }

    /// <summary>Causal multi-head self-attention: softmax(q k^T / sqrt(d_head) + causal mask) v.</summary>
    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1], d = x.shape[2], hd = d / nHead;
        using var qkv = c_attn.forward(x);
        var parts = qkv.split(d, dim: 2);
        using var q = parts[0].view(b, t, nHead, hd).transpose(1, 2);
        using var k = parts[1].view(b, t, nHead, hd).transpose(1, 2);
        using var v = parts[2].view(b, t, nHead, hd).transpose(1, 2);
        foreach (var p in parts) p.Dispose();
        using var y = functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        using var merged = y.transpose(1, 2).contiguous().view(b, t, d);
        return c_proj.forward(merged);
    }
}

sealed class Gpt2Mlp : Module<Tensor, Tensor>
{
    readonly Linear c_fc, c_proj;

    public Gpt2Mlp(Gpt2Config c) : base("mlp")
    {
        c_fc = Linear(c.NEmbd, 4 * c.NEmbd);
        c_proj = Linear(4 * c.NEmbd, c.NEmbd);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var hdn = c_fc.forward(x);
        using var act = functional.gelu(hdn, TorchSharp.Modules.GELU.Approximate.tanh);
        return c_proj.forward(act);
    }
}
