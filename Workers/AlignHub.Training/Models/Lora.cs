using System.Text.Json;
using System.Text.Json.Nodes;
using AlignHub.Domain;
using AlignHub.Training.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace AlignHub.Training.Models;

/// <summary>
/// A linear layer with nn.Linear's parameters under nn.Linear's names (<c>weight</c> [out, in], <c>bias</c>) and its
/// initialisation, which can carry a LoRA adapter (Hu et al., 2021): y = W x + b + s B A dropout(x), s = alpha / r
/// (<see cref="LoraSettings.Scaling"/>), with <c>lora_A.weight</c> [r, in] and <c>lora_B.weight</c> [out, r] as PEFT
/// names them. Adding the adapter freezes W and b; <see cref="Lora.Disabled"/> switches it off (the reference model).
/// </summary>
public sealed class LoraLinear : Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter? bias;
    Linear? lora_A, lora_B;
    double scaling, dropout;

    public LoraLinear(long inFeatures, long outFeatures, bool hasBias = true) : base("Linear")
    {
        // nn.Linear's own initialisation (and its draws from the seeded generator), then its tensors, shared, as ours.
        using var linear = Linear(inFeatures, outFeatures, hasBias);
        weight = Parameter(linear.weight!.detach());
        if (hasBias) bias = Parameter(linear.bias!.detach());
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public Parameter? Bias => bias;
    public bool HasAdapter => lora_A is not null;
    /// <summary>False while the adapter is switched off (<see cref="Lora.Disabled"/>).</summary>
    public bool AdapterEnabled { get; set; } = true;
    public double Scaling => scaling;
    public Linear? LoraA => lora_A;
    public Linear? LoraB => lora_B;

    public override Tensor forward(Tensor x)
    {
        var y = functional.linear(x, weight, bias);
        if (lora_A is null || !AdapterEnabled) return y;
        // The adapter computes in its own dtype (float32) over a half-precision base, as PEFT casts, and adds back in the base's.
        using var xa = x.to_type(lora_A.weight!.dtype);
        using var dx = dropout > 0 && training ? functional.dropout(xa, dropout, true) : xa.alias();
        using var a = lora_A.forward(dx);
        using var b = lora_B!.forward(a);
        using var s = b * scaling;
        using var sy = s.to_type(y.dtype);
        using (y) return y + sy;
    }

    /// <summary>Adds the adapter: A Kaiming-uniform (nn.Linear's, as PEFT's default), B zero; W and b frozen.</summary>
    public void AddAdapter(LoraSettings lora)
    {
        if (lora_A is not null) throw new InvalidOperationException("this layer already has an adapter");
        var device = weight.device;
        lora_A = Engine.Devices.OnCpu(() => Linear(weight.shape[1], lora.R, hasBias: false));
        lora_B = Engine.Devices.OnCpu(() => Linear(lora.R, weight.shape[0], hasBias: false));
        using (no_grad()) init.zeros_(lora_B.weight!);
        lora_A.to(device); lora_B.to(device);
        register_module("lora_A", lora_A);
        register_module("lora_B", lora_B);
        (scaling, dropout) = (lora.Scaling, lora.Dropout);
        weight.requires_grad = false;
        if (bias is not null) bias.requires_grad = false;
    }

    /// <summary>W + s B A: the weight with the adapter folded in ([out, in]); a new tensor.</summary>
    public Tensor MergedWeight()
    {
        using var _ = no_grad();
        if (lora_A is null) return weight.detach().clone();
        using var delta = lora_B!.weight!.matmul(lora_A.weight!);
        using var w = weight.detach().to_type(ScalarType.Float32);
        return w + delta * scaling;
    }

    /// <summary>Adds <paramref name="delta"/> ([out, in]) to the frozen weight in place: an adapter merged from a file.</summary>
    public void AddToWeight(Tensor delta)
    {
        using var _ = no_grad();
        using var d = delta.to_type(weight.dtype);
        weight.add_(d);
    }
}

/// <summary>LoRA on a whole decoder: adding adapters, switching them off, and their parameters.</summary>
public static class Lora
{
    /// <summary>Whether a parameter name belongs to an adapter (<c>...q_proj.lora_A.weight</c>), not to the base model.</summary>
    public static bool IsAdapterParameter(string name) => name.Contains(".lora_A.") || name.Contains(".lora_B.");

    /// <summary>The layers a target list names, as PEFT matches them: the module's name, or its last part.</summary>
    public static List<(string Name, LoraLinear Layer)> Targets(Module model, IReadOnlyList<string> targets) =>
        model.named_modules().Where(m => m.module is LoraLinear && targets.Any(t => m.name == t || m.name.EndsWith("." + t)))
            .Select(m => (m.name, (LoraLinear)m.module)).ToList();

    /// <summary>
    /// Freezes every parameter of <paramref name="model"/> and adds adapters to the target layers (seeded, so a job's
    /// adapters start the same everywhere); the adapter parameters are then the model's only trainable ones.
    /// </summary>
    public static void Apply(CausalLM model, LoraSettings lora, int seed)
    {
        var layers = Targets(model, lora.TargetModules);
        if (layers.Count == 0) throw new InvalidDataException($"no linear layer of the model matches lora_target_modules {string.Join(", ", lora.TargetModules)}");
        foreach (var p in model.parameters()) p.requires_grad = false;
        torch.manual_seed(seed);
        foreach (var (_, layer) in layers) layer.AddAdapter(lora);
    }

    public static bool IsAdapted(Module model) => model.modules().Any(m => m is LoraLinear { HasAdapter: true });

    /// <summary>The parameters that train: every parameter with requires_grad (all of them, or the adapters alone).</summary>
    public static List<Parameter> Trainable(Module model) => model.parameters().Where(p => p.requires_grad).ToList();

    /// <summary>Switches every adapter of the model off until disposed: the base model, for reference log-probs.</summary>
    public static IDisposable Disabled(Module model)
    {
        var layers = model.modules().OfType<LoraLinear>().Where(l => l.HasAdapter && l.AdapterEnabled).ToList();
        foreach (var l in layers) l.AdapterEnabled = false;
        return new Restore(layers);
    }

    sealed class Restore(List<LoraLinear> layers) : IDisposable
    {
        public void Dispose() { foreach (var l in layers) l.AdapterEnabled = true; }
    }
}

/// <summary>
/// PEFT's adapter folder (the layout <c>PeftModel.save_pretrained</c> writes and <c>PeftModel.from_pretrained</c> reads):
/// <c>adapter_config.json</c> (<c>peft_type</c> LORA, <c>task_type</c>, <c>base_model_name_or_path</c>, <c>r</c>,
/// <c>lora_alpha</c>, <c>lora_dropout</c>, <c>target_modules</c>, <c>fan_in_fan_out</c>, <c>modules_to_save</c>, ...)
/// and <c>adapter_model.safetensors</c> with keys <c>base_model.model.{module}.lora_A.weight</c> and <c>.lora_B.weight</c>
/// (the module as the base model names it, which is our module's name, without PEFT's adapter name), plus <c>base_model.model.score.weight</c> for a
/// reward model's head (PEFT keeps a sequence classifier's <c>score</c> in <c>modules_to_save</c>).
/// </summary>
public static class PeftAdapter
{
    public const string ConfigFile = PeftFolder.ConfigFile, WeightsFile = PeftFolder.WeightsFile, Prefix = PeftFolder.Prefix;

    public static bool IsAdapterFolder(string? folder) => PeftFolder.Is(folder);

    public static void Save(CausalLM model, string folder, LoraSettings lora, string baseModel, IReadOnlyDictionary<string, Tensor>? extra = null)
    {
        Directory.CreateDirectory(folder);
        var layers = model.named_modules().Where(m => m.module is LoraLinear { HasAdapter: true }).Select(m => (m.name, (LoraLinear)m.module)).ToList();
        var tensors = new List<(string, Tensor)>();
        foreach (var (name, layer) in layers)
        {
            tensors.Add(($"{Prefix}{name}.lora_A.weight", layer.LoraA!.weight!.detach()));
            tensors.Add(($"{Prefix}{name}.lora_B.weight", layer.LoraB!.weight!.detach()));
        }
        foreach (var (key, t) in extra ?? new Dictionary<string, Tensor>()) tensors.Add((Prefix + key, t.detach()));
        SafeTensors.Write(Path.Combine(folder, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var modulesToSave = extra is { Count: > 0 } ? extra.Keys.Select(k => k[..k.LastIndexOf('.')]).Distinct().ToArray() : null;
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = model.Architecture.IsRewardModel || modulesToSave is not null ? "SEQ_CLS" : "CAUSAL_LM",
            ["base_model_name_or_path"] = baseModel,
            ["r"] = lora.R,
            ["lora_alpha"] = lora.Alpha,
            ["lora_dropout"] = lora.Dropout,
            ["target_modules"] = new JsonArray(lora.TargetModules.Order(StringComparer.Ordinal).Select(t => (JsonNode)t).ToArray()),
            ["bias"] = "none",
            // GPT-2's layers are Conv1D in transformers ([in, out] weights): PEFT marks them fan_in_fan_out.
            ["fan_in_fan_out"] = model.Architecture.Family == DecoderFamily.Gpt2,
            ["modules_to_save"] = modulesToSave is null ? null : new JsonArray(modulesToSave.Select(m => (JsonNode)m).ToArray()),
            ["init_lora_weights"] = true,
            ["inference_mode"] = true,
            ["use_rslora"] = lora.UseRslora,
            ["use_dora"] = false,
            ["layers_to_transform"] = null,
            ["layers_pattern"] = null,
            ["rank_pattern"] = new JsonObject(),
            ["alpha_pattern"] = new JsonObject(),
            ["revision"] = null,
        };
        File.WriteAllText(Path.Combine(folder, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>The settings an adapter folder was trained with.</summary>
    public static (LoraSettings Lora, string BaseModel) ReadConfig(string folder)
    {
        JsonElement c;
        try { c = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, ConfigFile))).RootElement; }
        catch (JsonException e) { throw new InvalidDataException($"{ConfigFile} is not valid JSON: {e.Message}"); }
        var type = c.TryGetProperty("peft_type", out var pt) ? pt.GetString() : null;
        if (type != "LORA") throw new InvalidDataException($"{ConfigFile}: peft_type \"{type}\" is not supported (LORA)");
        foreach (var key in new[] { "rank_pattern", "alpha_pattern" })
            if (c.TryGetProperty(key, out var p) && p.ValueKind == JsonValueKind.Object && p.EnumerateObject().Any())
                throw new InvalidDataException($"{ConfigFile}: {key} is not supported");
        if (c.TryGetProperty("use_dora", out var dora) && dora.ValueKind == JsonValueKind.True) throw new InvalidDataException($"{ConfigFile}: DoRA adapters are not supported");
        int r = c.GetProperty("r").GetInt32();
        int alpha = c.TryGetProperty("lora_alpha", out var a) ? (int)a.GetDouble() : 8;
        double dropout = c.TryGetProperty("lora_dropout", out var d) && d.ValueKind == JsonValueKind.Number ? d.GetDouble() : 0;
        var targets = c.TryGetProperty("target_modules", out var t) && t.ValueKind == JsonValueKind.Array ? t.EnumerateArray().Select(x => x.GetString()!).ToList()
            : t.ValueKind == JsonValueKind.String ? [t.GetString()!] : [];
        bool rs = c.TryGetProperty("use_rslora", out var u) && u.ValueKind == JsonValueKind.True;
        var baseModel = c.TryGetProperty("base_model_name_or_path", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString()! : "";
        return (new LoraSettings(r, alpha, dropout, targets, rs), baseModel);
    }

    /// <summary>
    /// Loads an adapter folder into a model that carries adapters of the same shape (a LoRA run resumed from its
    /// checkpoint); <paramref name="extra"/> (a reward head) is filled from the file's other tensors.
    /// </summary>
    public static void Load(CausalLM model, string folder, IReadOnlyDictionary<string, Tensor>? extra = null)
    {
        var parameters = model.named_parameters().Where(p => Lora.IsAdapterParameter(p.name)).ToDictionary(p => p.name, p => p.parameter);
        var seen = new HashSet<string>();
        var tensors = SafeTensors.Read(Path.Combine(folder, WeightsFile));
        using var _ = no_grad();
        try
        {
            foreach (var (key, t) in tensors)
            {
                var name = key.StartsWith(Prefix) ? key[Prefix.Length..] : key;
                Tensor target = parameters.TryGetValue(name, out var p) ? p
                    : extra is not null && extra.TryGetValue(name, out var e) ? e
                    : throw new InvalidDataException($"{WeightsFile}: unexpected tensor \"{key}\"");
                if (!t.shape.SequenceEqual(target.shape))
                    throw new InvalidDataException($"{WeightsFile}: tensor \"{key}\" has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", target.shape)}]");
                target.copy_(t);
                seen.Add(name);
            }
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
        var missing = parameters.Keys.Where(k => !seen.Contains(k)).ToList();
        if (missing.Count > 0) throw new InvalidDataException($"{folder}: missing adapter tensor \"{missing[0]}\"" + (missing.Count > 1 ? $" and {missing.Count - 1} more" : ""));
    }

    /// <summary>
    /// Folds an adapter folder into a base model's weights: W += s B A for each adapted layer (PEFT's merge_and_unload),
    /// and a reward head from the file into <paramref name="extra"/>. The model then is the adapted model, with no adapter modules.
    /// </summary>
    public static void MergeInto(CausalLM model, string folder, IReadOnlyDictionary<string, Tensor>? extra = null)
    {
        var (lora, _) = ReadConfig(folder);
        var layers = model.named_modules().Where(m => m.module is LoraLinear).ToDictionary(m => m.name, m => (LoraLinear)m.module);
        var tensors = SafeTensors.Read(Path.Combine(folder, WeightsFile));
        using var _ = no_grad();
        try
        {
            foreach (var (key, a) in tensors)
            {
                var name = key.StartsWith(Prefix) ? key[Prefix.Length..] : key;
                if (name.EndsWith(".lora_B.weight")) continue;
                if (name.EndsWith(".lora_A.weight"))
                {
                    var module = name[..^".lora_A.weight".Length];
                    if (!layers.TryGetValue(module, out var layer)) throw new InvalidDataException($"{WeightsFile}: no linear layer \"{module}\" in the base model");
                    if (!tensors.TryGetValue(key.Replace(".lora_A.", ".lora_B."), out var b)) throw new InvalidDataException($"{WeightsFile}: \"{key}\" has no lora_B");
                    using var a32 = a.to(ScalarType.Float32, layer.Weight.device);
                    using var b32 = b.to(ScalarType.Float32, layer.Weight.device);
                    using var delta = b32.matmul(a32);
                    if (!delta.shape.SequenceEqual(layer.Weight.shape))
                        throw new InvalidDataException($"{WeightsFile}: the adapter of \"{module}\" makes [{string.Join(", ", delta.shape)}], the layer is [{string.Join(", ", layer.Weight.shape)}]");
                    using var scaled = delta * lora.Scaling;
                    layer.AddToWeight(scaled);
                    continue;
                }
                if (extra is not null && extra.TryGetValue(name, out var target)) { target.copy_(a); continue; }
                throw new InvalidDataException($"{WeightsFile}: unexpected tensor \"{key}\"");
            }
        }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    /// <summary>Writes the model with its adapters folded in as a full Hugging Face folder (weights only; the caller adds config and tokenizer).</summary>
    public static void SaveMerged(CausalLM model, string folder, IReadOnlyDictionary<string, Tensor>? extra = null)
    {
        var layers = model.modules().OfType<LoraLinear>().Where(l => l.HasAdapter).ToList();
        var merged = layers.Select(l => (Layer: l, Weight: l.MergedWeight())).ToList();
        using var _ = no_grad();
        var originals = new List<Tensor>();
        try
        {
            // Swap the merged weights in, write, swap back: the in-memory model keeps training unchanged.
            foreach (var (layer, w) in merged) { originals.Add(layer.Weight.detach().clone()); layer.Weight.copy_(w); }
            using (Lora.Disabled(model)) HfWeights.Save(model, folder, extra: extra);
        }
        finally
        {
            for (int i = 0; i < originals.Count; i++) { merged[i].Layer.Weight.copy_(originals[i]); originals[i].Dispose(); }
            foreach (var (_, w) in merged) w.Dispose();
        }
    }
}
