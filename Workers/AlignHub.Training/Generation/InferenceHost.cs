using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using AlignHub.Domain;
using AlignHub.Domain.Inference;
using AlignHub.Domain.Templates;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Models;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace AlignHub.Training.Generation;

/// <summary>
/// The worker role's model server (<see cref="IInferenceService"/>): models load on first use into a cache bounded by a
/// memory budget (the least recently used idle one is dropped first), each with its <see cref="InferenceEngine"/>; one
/// thread per device steps every engine that has work, so requests from any number of callers share batches. Prompts are
/// the model's: chat messages through its chat template, text as it is, with the special tokens its tokenizer adds.
/// </summary>
public sealed class InferenceHost : IInferenceService, IDisposable
{
    sealed record Loaded(InferenceEngine Engine, ModelSource Source, IChatFormat Chat, long Bytes);

    readonly Func<ModelRecord, ModelSource> resolve;
    readonly Device device;
    readonly int maxRows, maxContext;
    readonly long budget;
    readonly ILogger? log;
    readonly ConcurrentDictionary<string, Lazy<Task<Loaded>>> loads = new();
    readonly List<Loaded> engines = [];
    readonly ConcurrentDictionary<string, Lazy<Rewards.PreferenceModelSource>> preferenceModels = new();
    readonly SemaphoreSlim signal = new(0);
    readonly Thread thread;
    volatile bool disposed;

    public InferenceHost(Func<ModelRecord, ModelSource> resolve, Device device, int maxRows, int maxContext, long budgetBytes, ILogger? log = null)
    {
        (this.resolve, this.device, this.maxRows, this.maxContext, budget, this.log) = (resolve, device, maxRows, maxContext, budgetBytes, log);
        thread = new Thread(Loop) { IsBackground = true, Name = $"inference {device}" };
        thread.Start();
    }

    /// <summary>Models loaded now, most recently used first.</summary>
    public IReadOnlyList<string> LoadedModels => Snapshot().OrderByDescending(l => l.Engine.LastUsed).Select(l => l.Source.Name ?? "").ToList();

    List<Loaded> Snapshot() { lock (engines) return [.. engines]; }

    public async IAsyncEnumerable<InferenceEvent> GenerateAsync(InferenceRequest request, [EnumeratorCancellation] CancellationToken ct)
    {
        if (request.Model.WeightsPath is null)
            throw new InferenceException($"model \"{request.Model.Id}\" has no weights (it is initialised at random for each job); serve a fine-tuned or uploaded model", "model");
        var loaded = await Load(request.Model, ct);
        var tok = loaded.Engine.Tokenizer;
        string text;
        List<string> stop = [.. request.Stop];
        if (request.Messages is { } messages)
        {
            try { text = loaded.Chat.Prompt(messages); }
            catch (TemplateException e) { throw new InferenceException($"the model's chat template refused the messages: {e.Message}", "messages"); }
            if (loaded.Chat.StopText is { } end) stop.Add(end);
        }
        else text = request.Prompt ?? "";
        var ids = new PromptEncoder(tok, int.MaxValue).Encode(text);
        int context = loaded.Engine.Capacity;
        if (ids.Length + request.MaxTokens > context)
            throw new InferenceException($"this model's maximum context length is {context} tokens; the prompt has {ids.Length} and max_tokens asks for {request.MaxTokens} more",
                request.Messages is null ? "prompt" : "messages");
        long seed = request.Seed ?? Random.Shared.NextInt64();
        var job = new ServingJob(request, ids.Length, stop, ct);
        loaded.Engine.Enqueue(Enumerable.Range(0, request.N).Select(i => new ServingRow { Job = job, Choice = i, Prompt = ids, Seed = Seeds.Row(seed, 0, 0, i) }));
        signal.Release();
        using var wake = ct.Register(() => signal.Release()); // a client that leaves frees its rows at the next step
        await foreach (var e in job.Events.ReadAllAsync(ct)) yield return e;
    }

    /// <summary>
    /// A general preference model's P(a &gt; b | prompt), on the host's device: the model loads on first use and stays (it
    /// is one small scorer, outside the generation cache's budget); calls to one model take turns, each in one dispose scope.
    /// </summary>
    public async Task<double> PreferenceAsync(ModelRecord model, string prompt, string a, string b, CancellationToken ct)
    {
        if (model.WeightsPath is null) throw new InferenceException($"model \"{model.Id}\" has no weights", "model");
        if (!ModelArchitecture.Parse(model.ConfigJson).IsPreferenceModel)
            throw new InferenceException($"model \"{model.Id}\" is not a general preference model (train one with method preference_model)", "model");
        var key = model.Id + "\n" + model.WeightsPath;
        var lazy = preferenceModels.GetOrAdd(key, _ => new Lazy<Rewards.PreferenceModelSource>(() =>
        {
            var pm = Rewards.PreferenceModelSource.Load(resolve(model), device, model.Id);
            log?.LogInformation("Loaded preference model {Model} on {Device}", model.Id, device);
            return pm;
        }));
        return await Task.Run(() =>
        {
            Rewards.PreferenceModelSource pm;
            try { pm = lazy.Value; }
            catch (Exception e) when (e is not InferenceException)
            {
                preferenceModels.TryRemove(key, out _);
                throw new InferenceException($"model \"{model.Id}\" could not be loaded: {e.Message}", "model");
            }
            lock (pm) return pm.Matrix(prompt, [a, b])[0, 1];
        }, ct);
    }

    async Task<Loaded> Load(ModelRecord model, CancellationToken ct)
    {
        var key = model.Id + "\n" + model.WeightsPath;
        var lazy = loads.GetOrAdd(key, _ => new Lazy<Task<Loaded>>(() => Task.Run(() => Create(model))));
        try { return await lazy.Value.WaitAsync(ct); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            loads.TryRemove(key, out _);
            if (e is InferenceException) throw;
            throw new InferenceException($"model \"{model.Id}\" could not be loaded: {e.Message}", "model");
        }
    }

    Loaded Create(ModelRecord model)
    {
        var source = resolve(model);
        var arch = source.Architecture;
        if (arch.IsRewardModel) throw new InferenceException($"model \"{model.Id}\" is a reward model; it scores, it does not generate", "model");
        var dtype = Dtypes.Resolve("auto", device, source, frozen: true);
        var m = source.CreateModel(device, dtype: dtype);
        int context = Math.Min(arch.MaxPositions, maxContext);
        long bytes = arch.Parameters() * (dtype == ScalarType.Float32 ? 4 : 2)
                     + 2L * arch.NumLayers * maxRows * arch.NumKeyValueHeads * context * arch.HeadDim * (dtype == ScalarType.Float32 ? 4 : 2);
        var loaded = new Loaded(new InferenceEngine(m, source.CreateTokenizer(), maxRows, context), source, source.ChatFormat(), bytes);
        lock (engines) engines.Add(loaded);
        log?.LogInformation("Serving model {Model} on {Device} ({Dtype}, {MiB} MiB with its cache)", model.Id, device, Dtypes.Name(dtype), bytes >> 20);
        signal.Release();
        return loaded;
    }

    void Loop()
    {
        while (!disposed)
        {
            bool worked = false;
            foreach (var l in Snapshot())
            {
                if (!l.Engine.HasWork) continue;
                worked = true;
                try { l.Engine.Step(); }
                catch (Exception e)
                {
                    log?.LogError(e, "Serving {Model} failed", l.Source.Name);
                    l.Engine.FailAll(e);
                }
            }
            if (!worked)
            {
                Evict();
                signal.Wait(TimeSpan.FromSeconds(1));
            }
        }
    }

    /// <summary>Above the budget, idle models go, least recently used first (on the device thread, which alone steps them).</summary>
    void Evict()
    {
        List<Loaded> gone = [];
        lock (engines)
        {
            long total = engines.Sum(e => e.Bytes);
            foreach (var l in engines.Where(e => !e.Engine.HasWork).OrderBy(e => e.Engine.LastUsed).ToList())
            {
                if (total <= budget || engines.Count <= 1) break;
                engines.Remove(l);
                total -= l.Bytes;
                gone.Add(l);
            }
        }
        foreach (var l in gone)
        {
            loads.TryRemove(loads.FirstOrDefault(kv => kv.Value.IsValueCreated && kv.Value.Value.IsCompletedSuccessfully && kv.Value.Value.Result == l).Key ?? "", out _);
            log?.LogInformation("Unloaded model {Model} (memory budget)", l.Source.Name);
            l.Engine.Dispose();
        }
    }

    public void Dispose()
    {
        disposed = true;
        signal.Release();
        thread.Join(TimeSpan.FromSeconds(10));
        foreach (var l in Snapshot()) { l.Engine.FailAll(new ObjectDisposedException("the inference host stopped")); l.Engine.Dispose(); }
        foreach (var pm in preferenceModels.Values.Where(x => x.IsValueCreated)) { try { pm.Value.Dispose(); } catch (Exception) { } }
    }
}
