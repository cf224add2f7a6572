using System.Threading.Channels;
using AlignHub.Domain.Inference;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Generation;

/// <summary>One choice of a request: its prompt ids, sampling settings and progress, in one row of the engine's batch.</summary>
public sealed class ServingRow
{
    public required ServingJob Job { get; init; }
    public required int Choice { get; init; }
    public required int[] Prompt { get; init; }
    public required long Seed { get; init; }
    internal readonly List<int> Generated = [];
    internal readonly List<TokenLogprob> PendingLogprobs = [];
    internal int Emitted;
    internal int? Next;
    /// <summary>The cache column where this row's prefilled block starts (columns before it are masked out).</summary>
    internal long Start;
}

/// <summary>
/// A request's rows and where their events go. Written only by the device thread; the reader is the API's request.
/// </summary>
public sealed class ServingJob(InferenceRequest request, int promptTokens, IReadOnlyList<string> stop, CancellationToken ct)
{
    readonly Channel<InferenceEvent> channel = Channel.CreateUnbounded<InferenceEvent>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true });
    int remaining = request.N, completionTokens;

    public InferenceRequest Request => request;
    public IReadOnlyList<string> Stop => stop;
    public CancellationToken Cancellation => ct;
    public ChannelReader<InferenceEvent> Events => channel.Reader;

    internal void Write(InferenceEvent e) => channel.Writer.TryWrite(e);

    internal void RowDone(int tokens)
    {
        completionTokens += tokens;
        if (--remaining > 0) return;
        channel.Writer.TryWrite(new UsageReport(promptTokens, completionTokens));
        channel.Writer.TryComplete();
    }

    internal void Fail(Exception e) => channel.Writer.TryComplete(e);
}

/// <summary>
/// Continuous batching for one model on one device (the scheme vLLM popularised, here with a shared right edge): a pool of
/// rows shares one KV cache whose columns are positions; every row's newest token sits in the same column, L, so one
/// decode step feeds one token per row. A request joins between steps when a row is free and its prompt fits to the left
/// of L: its prompt is prefilled on its own (left-padded among the requests joining with it) and its keys and values are
/// copied into its row ending at column L, the columns before masked out; positions count real tokens, so the model sees
/// what a batch of its own would show it. A finished row frees its slot at once; when none is busy, L returns to 0.
/// Sampling is per row: its own temperature and top-p, its own seed (<see cref="Seeds"/>), so a request's tokens do not
/// depend on what it was batched with. One thread (the device's) calls <see cref="Step"/>; others only enqueue.
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    readonly CausalLM model;
    readonly ITokenizer tok;
    readonly int maxRows, capacity;
    readonly KvCache cache;
    readonly ServingRow?[] slots;
    readonly long[] hostMask; // [maxRows, capacity]: 1 where a row holds a real token
    readonly Queue<ServingRow> waiting = new();
    readonly object gate = new();
    long length;

    public InferenceEngine(CausalLM model, ITokenizer tok, int maxRows, int capacity)
    {
        (this.model, this.tok, this.maxRows) = (model, tok, maxRows);
        this.capacity = Math.Min(capacity, model.Architecture.MaxPositions);
        cache = new KvCache(model.Architecture.NumLayers, this.capacity, maxRows);
        slots = new ServingRow?[maxRows];
        hostMask = new long[maxRows * this.capacity];
        model.eval();
    }

    public ITokenizer Tokenizer => tok;
    /// <summary>How often the cache has been shifted left (<see cref="Compact"/>).</summary>
    public int Compactions { get; private set; }
    public int Capacity => capacity;
    public DateTime LastUsed { get; private set; } = DateTime.UtcNow;

    /// <summary>Rows busy or waiting.</summary>
    public int Load { get { lock (gate) return waiting.Count + slots.Count(s => s is not null); } }
    public bool HasWork => Load > 0;

    public void Enqueue(IEnumerable<ServingRow> rows)
    {
        lock (gate) foreach (var r in rows) waiting.Enqueue(r);
        LastUsed = DateTime.UtcNow;
    }

    /// <summary>Admits what fits, then one decode step for every busy row. The device thread's only entry point.</summary>
    public void Step()
    {
        LastUsed = DateTime.UtcNow;
        using var noGrad = no_grad();
        for (int s = 0; s < maxRows; s++)
            if (slots[s] is { } r && r.Job.Cancellation.IsCancellationRequested) Free(s, r, write: false);
        if (slots.All(s => s is null)) length = 0;
        else Compact();
        Admit();
        if (slots.Any(s => s?.Next is not null)) Decode();
    }

    /// <summary>
    /// Columns left of every live row's block hold nothing anyone attends to: once they are a quarter of the length (and
    /// at least 32), every row moves left by that much, so attention's cost follows the live rows, not the batch's history.
    /// </summary>
    void Compact()
    {
        long first = slots.Where(s => s is not null).Min(s => s!.Start);
        if (first < 32 || first < length / 4) return;
        using var noGrad = no_grad();
        cache.ShiftLeft(first, length);
        for (int s = 0; s < maxRows; s++)
        {
            Array.Copy(hostMask, s * capacity + first, hostMask, s * capacity, length - first);
            Array.Clear(hostMask, s * capacity + (int)(length - first), (int)first);
            if (slots[s] is { } r) r.Start -= first;
        }
        length -= first;
        Compactions++;
    }

    void Admit()
    {
        var group = new List<(int Slot, ServingRow Row)>();
        int pg = 0;
        lock (gate)
        {
            var kept = new Queue<ServingRow>();
            while (waiting.TryDequeue(out var r))
            {
                if (r.Job.Cancellation.IsCancellationRequested) { r.Job.RowDone(0); continue; }
                int free = Array.FindIndex(slots, s => s is null);
                int p = r.Prompt.Length;
                // Joining a running batch: the prompt ends at column L. Starting one: L becomes the group's longest prompt,
                // and every row of the group must still have room for its max_tokens after it.
                bool fits = free >= 0 && (length > 0
                    ? p <= length && length + r.Job.Request.MaxTokens <= capacity
                    : group.Append((free, r)).All(g => Math.Max(pg, p) + g.Item2.Job.Request.MaxTokens <= capacity));
                if (!fits) { kept.Enqueue(r); continue; }
                slots[free] = r; // reserved; prefilled below
                group.Add((free, r));
                pg = Math.Max(pg, p);
            }
            while (kept.TryDequeue(out var r)) waiting.Enqueue(r);
        }
        if (group.Count == 0) return;
        if (length == 0) length = pg;
        int n = group.Count;
        var ids = new long[n * pg];
        var mask = new long[n * pg];
        for (int j = 0; j < n; j++)
        {
            var p = group[j].Row.Prompt;
            int off = pg - p.Length;
            for (int i = 0; i < pg; i++) { ids[j * pg + i] = i < off ? tok.PadId : p[i - off]; mask[j * pg + i] = i < off ? 0 : 1; }
        }
        using var scope = NewDisposeScope();
        using var temp = new KvCache(model.Architecture.NumLayers, pg);
        var device = model.Device;
        var logits = model.forward(tensor(ids, [n, pg], device: device), tensor(mask, [n, pg], device: device), temp);
        for (int j = 0; j < n; j++)
        {
            var (slot, row) = group[j];
            long start = length - pg;
            cache.CopyRow(temp, j, slot, start, pg);
            row.Start = start;
            Array.Clear(hostMask, slot * capacity, capacity);
            Array.Copy(mask, j * pg, hostMask, slot * capacity + start, pg);
        }
        Sample(logits[.., -1, ..], group.Select(g => g.Slot).ToArray(), Enumerable.Range(0, n).ToArray());
    }

    void Decode()
    {
        if (length >= capacity) { for (int s = 0; s < maxRows; s++) if (slots[s] is { } r) Finish(s, r, "length"); return; }
        int b = Array.FindLastIndex(slots, s => s?.Next is not null) + 1;
        var feed = new long[b];
        var mask = new long[b * (length + 1)];
        for (int s = 0; s < b; s++)
        {
            bool active = slots[s]?.Next is not null;
            feed[s] = active ? slots[s]!.Next!.Value : tok.PadId;
            hostMask[s * capacity + length] = active ? 1 : 0;
            Array.Copy(hostMask, s * capacity, mask, s * (length + 1), length + 1);
        }
        using var scope = NewDisposeScope();
        var device = model.Device;
        cache.ActiveRows = b;
        cache.SetLength(length);
        var logits = model.forward(tensor(feed, [b, 1], device: device), tensor(mask, [b, length + 1], device: device), cache);
        length++;
        var busy = Enumerable.Range(0, b).Where(s => slots[s]?.Next is not null).ToArray();
        Sample(logits[.., -1, ..], busy, busy);
    }

    /// <summary>
    /// Draws each row's next token from its own distribution (one host copy per group of equal settings); slot
    /// <paramref name="slotsToSample"/>[i] reads row <paramref name="rowInLast"/>[i] of <paramref name="last"/>.
    /// </summary>
    void Sample(Tensor last, int[] slotsToSample, int[] rowInLast)
    {
        var groups = slotsToSample.Select((s, i) => (Slot: s, Row: rowInLast[i]))
            .GroupBy(x => (slots[x.Slot]!.Job.Request.Temperature, slots[x.Slot]!.Job.Request.TopP));
        var device = model.Device;
        bool anyLogprobs = slotsToSample.Any(sl => slots[sl]!.Job.Request.Logprobs);
        using var logp = anyLogprobs ? last.log_softmax(-1) : null;
        foreach (var g in groups)
        {
            var members = g.Select(x => x.Slot).ToArray();
            var index = g.Select(x => (long)x.Row).ToArray();
            // One group over every row of last, in order (the usual case): no gather of rows.
            bool whole = index.Length == last.shape[0] && index.Select((r, i) => r == i).All(x => x);
            using var idx = whole ? null : tensor(index, device: device);
            using var rows = whole ? last.alias() : last.index_select(0, idx!);
            var o = new GenerationOptions { Temperature = g.Key.Temperature, TopP = g.Key.TopP };
            using var u = tensor(members.Select(s => Seeds.Uniform(slots[s]!.Seed, slots[s]!.Generated.Count)).ToArray(), device: device);
            var (chosen, _) = Sampler.Pick(rows, o, u);
            bool wantLogprobs = members.Any(s => slots[s]!.Job.Request.Logprobs);
            using var rowLogp = wantLogprobs ? (whole ? logp!.alias() : logp!.index_select(0, idx!)) : null;
            using var chosenLogp = rowLogp is null ? zeros_like(chosen, dtype: ScalarType.Float32) : rowLogp.gather(1, chosen.unsqueeze(1)).squeeze(1);
            using (chosen)
            using (var host = stack([chosen.to_type(ScalarType.Float64), chosenLogp.to_type(ScalarType.Float64)]).cpu())
            {
                var h = host.data<double>().ToArray();
                int k = members.Max(s => slots[s]!.Job.Request.Logprobs ? slots[s]!.Job.Request.TopLogprobs : 0);
                double[]? topV = null; long[]? topI = null;
                if (k > 0)
                {
                    var (values, indices) = rowLogp!.topk(k, dim: -1);
                    using (values) using (indices)
                    {
                        using var hv = values.to_type(ScalarType.Float64).cpu();
                        using var hi = indices.cpu();
                        topV = hv.data<double>().ToArray(); topI = hi.data<long>().ToArray();
                    }
                }
                for (int j = 0; j < members.Length; j++)
                {
                    int s = members[j];
                    var row = slots[s]!;
                    IReadOnlyList<TokenLogprob>? top = null;
                    int rk = row.Job.Request.Logprobs ? row.Job.Request.TopLogprobs : 0;
                    if (rk > 0) top = Enumerable.Range(0, rk).Select(i => Logprob((int)topI![j * k + i], topV![j * k + i])).ToList();
                    Accept(s, row, (int)h[j], h[members.Length + j], top);
                }
            }
        }
    }

    TokenLogprob Logprob(int token, double logp, IReadOnlyList<TokenLogprob>? top = null)
    {
        var text = tok.Decode([token]);
        return new TokenLogprob(text, logp, System.Text.Encoding.UTF8.GetBytes(text), top);
    }

    /// <summary>A row's new token: end of sequence, a stop string, or text to stream (held back while it may be cut).</summary>
    void Accept(int slot, ServingRow row, int token, double logp, IReadOnlyList<TokenLogprob>? top)
    {
        var req = row.Job.Request;
        row.Generated.Add(token);
        bool eos = tok.IsEos(token);
        if (req.Logprobs && !eos) row.PendingLogprobs.Add(Logprob(token, logp, top));
        string? finish = eos ? "stop" : null;
        var text = tok.Decode(eos ? row.Generated.Take(row.Generated.Count - 1) : row.Generated);
        if (finish is null && row.Job.Stop.Count > 0)
        {
            int cut = row.Job.Stop.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
            if (cut >= 0) { text = text[..cut]; finish = "stop"; }
        }
        if (finish is null && row.Generated.Count >= req.MaxTokens) finish = "length";
        int end = text.Length;
        if (finish is null)
        {
            // Hold back what may still change: an incomplete UTF-8 sequence, or the start of a stop string.
            while (end > row.Emitted && text[end - 1] == '\uFFFD') end--;
            foreach (var s in row.Job.Stop)
                for (int l = Math.Min(s.Length - 1, end - row.Emitted); l > 0; l--)
                    if (string.CompareOrdinal(text, end - l, s, 0, l) == 0) { end -= l; break; }
        }
        if (end > row.Emitted || (finish is not null && row.PendingLogprobs.Count > 0))
        {
            row.Job.Write(new TextDelta(row.Choice, text[row.Emitted..Math.Max(end, row.Emitted)], req.Logprobs ? [.. row.PendingLogprobs] : null));
            row.PendingLogprobs.Clear();
            row.Emitted = Math.Max(end, row.Emitted);
        }
        if (finish is not null) Finish(slot, row, finish);
        else row.Next = token;
    }

    void Finish(int slot, ServingRow row, string reason)
    {
        row.Job.Write(new ChoiceFinished(row.Choice, reason));
        Free(slot, row, write: true);
    }

    void Free(int slot, ServingRow row, bool write)
    {
        slots[slot] = null;
        row.Next = null;
        Array.Clear(hostMask, slot * capacity, capacity);
        row.Job.RowDone(row.Generated.Count);
    }

    /// <summary>Fails every request this engine holds (the device thread hit an error).</summary>
    public void FailAll(Exception e)
    {
        lock (gate)
        {
            foreach (var r in waiting) r.Job.Fail(e);
            waiting.Clear();
        }
        for (int s = 0; s < maxRows; s++) if (slots[s] is { } r) { r.Job.Fail(e); slots[s] = null; }
        length = 0;
        Array.Clear(hostMask);
    }

    public void Dispose()
    {
        cache.Dispose();
        model.Dispose();
    }
}
