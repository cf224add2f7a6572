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

    /// <summary>The device the parameters live on; batches and caches for this model are created there.</summary>
    public Device Device => parameters().First().device;

    /// <summary>input_ids [B, T] -> logits [B, T, vocab], causal, positions 0..T-1.</summary>
    public override Tensor forward(Tensor inputIds) => forward(inputIds, null, null);

    /// <param name="inputIds">[B, T] new tokens.</param>
    /// <param name="attentionMask">[B, past + T], 1 for real tokens, 0 for padding; null: all real.</param>
    /// <param name="cache">keys and values of the past tokens, extended with the new ones; null: no past.</param>
    public Tensor forward(Tensor inputIds, Tensor? attentionMask, KvCache? cache)
    {
        using var h = Hidden(inputIds, attentionMask, cache);
        return LmHead(h);
    }

    /// <summary>Logits in float32 whatever the weights' dtype (log-softmax and sampling read them): a half-precision head's output is cast.</summary>
    protected static Tensor Float32(Tensor logits)
    {
        if (logits.dtype == ScalarType.Float32) return logits;
        using (logits) return logits.to_type(ScalarType.Float32);
    }

    /// <summary>The final hidden states [B, T, d] (after the last norm), before the LM head: what a reward head reads.</summary>
    public abstract Tensor Hidden(Tensor inputIds, Tensor? attentionMask, KvCache? cache);

    /// <summary>Hidden states [.., d] -> logits [.., vocab], in float32.</summary>
    public abstract Tensor LmHead(Tensor hidden);

    /// <summary>Maps a key of a Hugging Face weights file to this module's parameter name; null: ignore the tensor.</summary>
    public virtual string? ParameterForHfKey(string key) => key;

    /// <summary>Parameters stored transposed in Hugging Face files (GPT-2's Conv1D weights, <c>[in, out]</c>).</summary>
    public virtual bool StoredTransposed(string parameter) => false;

    /// <summary>
    /// Builds the decoder a config.json describes, initialised as its family initialises (seed it first), on the CPU
    /// whatever the process's default device (<see cref="Engine.Devices.OnCpu"/>): move it with <c>to(device)</c>.
    /// </summary>
    public static CausalLM Create(ModelArchitecture arch) => Engine.Devices.OnCpu<CausalLM>(() => arch.Family switch
    {
        DecoderFamily.Gpt2 => new Gpt2LMHeadModel(arch),
        DecoderFamily.Llama => new LlamaForCausalLM(arch),
        _ => throw new NotSupportedException(arch.ModelType),
    });

    public static CausalLM Create(string configJson) => Create(ModelArchitecture.Parse(configJson));
}

/// <summary>
/// Keys and values of every layer for the tokens seen so far: one buffer per layer of
/// [rows, kv_heads, capacity, head_dim], allocated at the first step and written in place (no copy of the past per
/// step). The buffers live outside any dispose scope; <see cref="Dispose"/> frees them. A serving engine keeps one cache
/// for a pool of rows (<paramref name="maxRows"/>): <see cref="ActiveRows"/> narrows each step to the rows in use,
/// <see cref="SetLength"/> moves every layer to the batch's length, and <see cref="CopyRow"/> places a newly prefilled
/// request's keys and values into a free row.
/// </summary>
public sealed class KvCache(int layers, int capacity, int? maxRows = null) : IDisposable
{
    readonly Tensor?[] keys = new Tensor?[layers], values = new Tensor?[layers];
    readonly long[] lengths = new long[layers];

    /// <summary>Tokens already in the cache.</summary>
    public long Length => lengths[0];

    public int Capacity => capacity;

    /// <summary>The rows the next steps read and write (the first rows of the pool); null: every row.</summary>
    public int? ActiveRows { get; set; }

    /// <summary>Every layer's length set to <paramref name="length"/> (positions beyond it are overwritten by the next steps).</summary>
    public void SetLength(long length)
    {
        if (length < 0 || length > capacity) throw new ArgumentOutOfRangeException(nameof(length));
        Array.Fill(lengths, length);
    }

    Tensor Rows(Tensor t) => ActiveRows is int r && r < t.shape[0] ? t.narrow(0, 0, r) : t.alias();

    /// <summary>
    /// Writes this step's keys and values ([B, kv_heads, T, head_dim]) of a layer after the past ones; returns views
    /// of all of them ([.., past + T, ..]), which the caller disposes.
    /// </summary>
    public (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        long past = lengths[layer], t = k.shape[2];
        if (past + t > capacity) throw new InvalidOperationException($"KV cache capacity {capacity} exceeded");
        if (keys[layer] is null)
        {
            long rows = maxRows ?? k.shape[0];
            keys[layer] = empty([rows, k.shape[1], capacity, k.shape[3]], dtype: k.dtype, device: k.device).DetachFromDisposeScope();
            values[layer] = empty([rows, v.shape[1], capacity, v.shape[3]], dtype: v.dtype, device: v.device).DetachFromDisposeScope();
        }
        using (var kr = Rows(keys[layer]!))
        using (var vr = Rows(values[layer]!))
        {
            using (var ks = kr.narrow(2, past, t)) ks.copy_(k);
            using (var vs = vr.narrow(2, past, t)) vs.copy_(v);
            lengths[layer] = past + t;
            return (kr.narrow(2, 0, past + t), vr.narrow(2, 0, past + t));
        }
    }

    /// <summary>
    /// Copies <paramref name="length"/> positions of row <paramref name="fromRow"/> of another cache (from its position 0)
    /// into row <paramref name="toRow"/> of this one at <paramref name="toPosition"/>, for every layer.
    /// </summary>
    public void CopyRow(KvCache from, int fromRow, int toRow, long toPosition, long length)
    {
        if (toPosition + length > capacity) throw new InvalidOperationException($"KV cache capacity {capacity} exceeded");
        for (int layer = 0; layer < keys.Length; layer++)
        {
            var (fk, fv) = (from.keys[layer]!, from.values[layer]!);
            if (keys[layer] is null)
            {
                long rows = maxRows ?? fk.shape[0];
                keys[layer] = empty([rows, fk.shape[1], capacity, fk.shape[3]], dtype: fk.dtype, device: fk.device).DetachFromDisposeScope();
                values[layer] = empty([rows, fv.shape[1], capacity, fv.shape[3]], dtype: fv.dtype, device: fv.device).DetachFromDisposeScope();
            }
            using var fkRow = fk.narrow(0, fromRow, 1);
            using var fvRow = fv.narrow(0, fromRow, 1);
            using var kRow = keys[layer]!.narrow(0, toRow, 1);
            using var vRow = values[layer]!.narrow(0, toRow, 1);
            using var srcK = fkRow.narrow(2, 0, length);
            using var srcV = fvRow.narrow(2, 0, length);
            using var dstK = kRow.narrow(2, toPosition, length);
            using var dstV = vRow.narrow(2, toPosition, length);
            dstK.copy_(srcK);
            dstV.copy_(srcV);
        }
    }

    /// <summary>
    /// Drops the first <paramref name="by"/> positions of every row: positions [by, length) move to [0, length - by) and the
    /// length shrinks by <paramref name="by"/> (a serving engine reclaiming columns no live row uses).
    /// </summary>
    public void ShiftLeft(long by, long length)
    {
        if (by <= 0) return;
        for (int layer = 0; layer < keys.Length; layer++)
            foreach (var buffer in new[] { keys[layer], values[layer] })
            {
                if (buffer is null) continue;
                using var src = buffer.narrow(2, by, length - by);
                using var copy = src.clone(); // the ranges overlap
                using var dst = buffer.narrow(2, 0, length - by);
                dst.copy_(copy);
            }
        Array.Fill(lengths, length - by);
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
        if (t == 1) // one new token: its position is the count of real tokens before it
        {
            using var real = attentionMask.to_type(ScalarType.Int64).sum(-1, keepdim: true);
            return (real - 1).clamp_min(0);
        }
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
        if (t == 1) // one new query, the last position: causality holds; it sees the real keys and itself
        {
            if (attentionMask is null) return ones([1, 1, 1, s], dtype: ScalarType.Bool, device: device);
            using var realKeys = attentionMask.to_type(ScalarType.Bool);
            using var selfKey = zeros([1, s], dtype: ScalarType.Bool, device: device);
            using (var last = selfKey.narrow(1, s - 1, 1)) last.fill_(true); // in place: no scalar tensor made on the default device
            using var seen = realKeys.logical_or(selfKey);
            return seen.view(-1, 1, 1, s);
        }
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

    /// <summary>Attention over this step's keys and values, after the cached past ones when there is a cache.</summary>
    public static Tensor AttendWithCache(Tensor q, Tensor k, Tensor v, Tensor? mask, KvCache? cache, int layer)
    {
        if (cache is null) return Attend(q, k, v, mask);
        var (keys, values) = cache.Append(layer, k, v);
        using (keys)
        using (values)
            return Attend(q, keys, values, mask);
    }

    /// <summary>
    /// Scaled dot-product attention of q [B, H, T, hd] over k, v [B, H_kv, S, hd]; <paramref name="mask"/> null means
    /// causal over equal-length q and k. With H_kv &lt; H (grouped-query attention) query head h reads kv head
    /// h / (H / H_kv): under a mask, the query heads of a group are folded into one kv head's rows (no copy of k and
    /// v); causal attention without a mask repeats k and v instead.
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], hd = q.shape[3], hkv = k.shape[1], groups = h / hkv;
        if (groups == 1)
            return mask is null
                ? nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true)
                : nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        if (mask is null)
        {
            using var kr = k.repeat_interleave(groups, dim: 1);
            using var vr = v.repeat_interleave(groups, dim: 1);
            return nn.functional.scaled_dot_product_attention(q, kr, vr, is_casual: true);
        }
        using var qg = q.reshape(b, hkv, groups * t, hd);          // rows ordered (head in group, position)
        using var mg = mask.repeat(1, 1, groups, 1);                 // [B or 1, 1, groups * T, S]
        using var y = nn.functional.scaled_dot_product_attention(qg, k, v, attn_mask: mg);
        return y.reshape(b, h, t, hd);
    }
}
