using AlignHub.Domain;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Models;

/// <summary>
/// A decoder-only language model. <c>forward(ids)</c> is the training call (no padding on the left, causal
/// attention); the full call takes an attention mask (1 real, 0 padding, over past + new tokens) and a
/// <see cref="KvCache"/> that it extends in place, for batched left-padded generation.
/// Parameter names equal the Hugging Face keys, so real checkpoints load strictly (see <see cref="HfWeights"/>).
/// </summary>
public abstract class CausalLM : nn.Module<Tensor, Tensor>
{
    protected CausalLM(string name, ModelArchitecture arch) : base(name) => Architecture = arch;

    public ModelArchitecture Architecture { get; }

    /// <summary>input_ids [B, T] -> logits [B, T, vocab], causal, positions 0..T-1.</summary>
    public override Tensor forward(Tensor inputIds) => forward(inputIds, null, null);

    /// <param name="inputIds">[B, T] new tokens.</param>
    /// <param name="attentionMask">[B, past + T], 1 for real tokens, 0 for padding; null: all real.</param>
    /// <param name="cache">keys and values of the past tokens, extended with the new ones; null: no past.</param>
    public abstract Tensor forward(Tensor inputIds, Tensor? attentionMask, KvCache? cache);

    /// <summary>Maps a key of a Hugging Face weights file to this module's parameter name; null: ignore the tensor.</summary>
    public virtual string? ParameterForHfKey(string key) => key;

    /// <summary>Parameters stored transposed in Hugging Face files (GPT-2's Conv1D weights, <c>[in, out]</c>).</summary>
    public virtual bool StoredTransposed(string parameter) => false;

    /// <summary>Builds the decoder a config.json describes, initialised as its family initialises (seed it first).</summary>
    public static CausalLM Create(ModelArchitecture arch) => arch.Family switch
    {
        DecoderFamily.Gpt2 => new Gpt2LMHeadModel(arch),
        DecoderFamily.Llama => new LlamaForCausalLM(arch),
        _ => throw new NotSupportedException(arch.ModelType),
    };

    public static CausalLM Create(string configJson) => Create(ModelArchitecture.Parse(configJson));
}

/// <summary>
/// Keys and values of every layer for the tokens seen so far ([B, kv_heads, S, head_dim] each). The tensors live
/// outside any dispose scope; <see cref="Dispose"/> frees them.
/// </summary>
public sealed class KvCache : IDisposable
{
    readonly Tensor?[] keys, values;

    public KvCache(int layers) { keys = new Tensor?[layers]; values = new Tensor?[layers]; }

    /// <summary>Tokens already in the cache.</summary>
    public long Length => keys[0]?.shape[2] ?? 0;

    /// <summary>Appends this step's keys and values of a layer; returns the full keys and values (owned by the cache).</summary>
    public (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        var oldK = keys[layer]; var oldV = values[layer];
        var newK = oldK is null ? k.detach() : cat([oldK, k], 2);
        var newV = oldV is null ? v.detach() : cat([oldV, v], 2);
        newK.DetachFromDisposeScope(); newV.DetachFromDisposeScope();
        oldK?.Dispose(); oldV?.Dispose();
        keys[layer] = newK; values[layer] = newV;
        return (newK, newV);
    }

    /// <summary>Keeps only the rows of the batch in <paramref name="index"/> (finished sequences leave the batch).</summary>
    public void Select(Tensor index)
    {
        for (int i = 0; i < keys.Length; i++)
        {
            if (keys[i] is null) continue;
            var k = keys[i]!.index_select(0, index); var v = values[i]!.index_select(0, index);
            k.DetachFromDisposeScope(); v.DetachFromDisposeScope();
            keys[i]!.Dispose(); values[i]!.Dispose();
            keys[i] = k; values[i] = v;
        }
    }

    public void Dispose()
    {
        for (int i = 0; i < keys.Length; i++) { keys[i]?.Dispose(); values[i]?.Dispose(); keys[i] = values[i] = null; }
    }
}

/// <summary>Pieces shared by the architectures: positions and the attention mask for padded, cached batches.</summary>
public static class AttentionMasks
{
    /// <summary>
    /// Position ids [B, T] of the new tokens: with a mask, the count of real tokens before each one (left padding
    /// does not shift positions); without one, past..past+T-1.
    /// </summary>
    public static Tensor PositionIds(Tensor? attentionMask, long past, long t, Device device)
    {
        if (attentionMask is null) return arange(past, past + t, dtype: ScalarType.Int64, device: device).unsqueeze(0);
        using var cum = attentionMask.to_type(ScalarType.Int64).cumsum(-1);
        using var pos = (cum - 1).clamp_min(0);
        return pos[.., (int)past..].contiguous();
    }

    /// <summary>
    /// Boolean mask [B, 1, T, S] (true: may attend) for T new queries over S = past + T keys: causal, no padding
    /// keys, and every query sees itself (so a padding query's row is never empty; its output is never used).
    /// Null when plain causal attention is exact (no padding, no past).
    /// </summary>
    public static Tensor? Build(Tensor? attentionMask, long past, long t, Device device)
    {
        if (attentionMask is null && past == 0) return null;
        long s = past + t;
        using var qPos = arange(past, s, device: device).unsqueeze(1);
        using var kPos = arange(0, s, device: device).unsqueeze(0);
        using var causal = kPos.le(qPos); // [T, S]
        if (attentionMask is null) return causal.unsqueeze(0).unsqueeze(0);
        using var self = kPos.eq(qPos);
        using var valid = attentionMask.to_type(ScalarType.Bool).unsqueeze(1); // [B, 1, S]
        using var allowed = causal.unsqueeze(0).logical_and(valid);
        using var withSelf = allowed.logical_or(self.unsqueeze(0));
        return withSelf.unsqueeze(1);
    }

    /// <summary>Scaled dot-product attention; <paramref name="mask"/> null means causal over equal-length q and k.</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask) =>
        mask is null
            ? nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true)
            : nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
}
