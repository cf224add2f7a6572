using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// A PEFT LoRA adapter folder (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>) read without tensors: which
/// base model it stands on, and whether its tensors fit that base (every key a LoRA matrix of a linear layer the base
/// has, with the layer's shapes, or a reward model's <c>score.weight</c>).
/// </summary>
public static class PeftFolder
{
    public const string ConfigFile = "adapter_config.json", WeightsFile = "adapter_model.safetensors", Prefix = "base_model.model.";

    public static bool Is(string? folder) => folder is not null && File.Exists(Path.Combine(folder, ConfigFile));

    /// <summary>The adapter's <c>base_model_name_or_path</c> (an AlignHub model id); an <see cref="InvalidDataException"/> when unreadable.</summary>
    public static string BaseModel(string folder)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, ConfigFile)));
            var c = doc.RootElement;
            if (!c.TryGetProperty("peft_type", out var t) || t.GetString() != "LORA")
                throw new InvalidDataException($"{ConfigFile}: peft_type must be \"LORA\"");
            if (!c.TryGetProperty("base_model_name_or_path", out var b) || b.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(b.GetString()))
                throw new InvalidDataException($"{ConfigFile}: base_model_name_or_path must name the base model (its AlignHub id)");
            if (!c.TryGetProperty("r", out var r) || r.ValueKind != JsonValueKind.Number || r.GetInt32() < 1)
                throw new InvalidDataException($"{ConfigFile}: r must be a positive integer");
            return b.GetString()!;
        }
        catch (JsonException e) { throw new InvalidDataException($"{ConfigFile} is not valid JSON: {e.Message}"); }
    }

    /// <summary>The error for an adapter whose tensors do not fit <paramref name="arch"/> (null: they fit).</summary>
    public static string? Check(string folder, ModelArchitecture arch)
    {
        var file = Path.Combine(folder, WeightsFile);
        if (!File.Exists(file)) return $"no {WeightsFile} beside {ConfigFile}";
        List<SafeTensorsHeader.Entry> entries;
        try
        {
            using var s = File.OpenRead(file);
            entries = SafeTensorsHeader.Read(s, WeightsFile).Entries;
        }
        catch (Exception e) when (e is InvalidDataException or JsonException or EndOfStreamException or KeyNotFoundException or InvalidOperationException)
        {
            return $"{WeightsFile} is not a valid safetensors file: {e.Message}";
        }
        if (entries.Count == 0) return $"{WeightsFile} holds no tensors";
        int r = -1;
        foreach (var e in entries)
        {
            var name = e.Name.StartsWith(Prefix) ? e.Name[Prefix.Length..] : e.Name;
            if (name == "score.weight")
            {
                if (!e.Shape.SequenceEqual([1L, arch.HiddenSize])) return $"{WeightsFile}: score.weight has shape [{string.Join(", ", e.Shape)}], expected [1, {arch.HiddenSize}]";
                continue;
            }
            bool isA = name.EndsWith(".lora_A.weight"), isB = name.EndsWith(".lora_B.weight");
            if (!isA && !isB) return $"{WeightsFile}: \"{e.Name}\" is neither a LoRA matrix nor score.weight";
            var module = name[..^".lora_A.weight".Length];
            if (LayerShape(module, arch) is not var (inF, outF)) return $"{WeightsFile}: the {arch.ModelType} base has no linear layer \"{module}\"";
            if (e.Shape.Length != 2) return $"{WeightsFile}: \"{e.Name}\" must be a matrix";
            long rank = isA ? e.Shape[0] : e.Shape[1];
            if (r < 0) r = (int)rank;
            if (rank != r) return $"{WeightsFile}: \"{e.Name}\" has rank {rank}, other matrices {r}";
            long[] expected = isA ? [r, inF] : [outF, r];
            if (!e.Shape.SequenceEqual(expected)) return $"{WeightsFile}: \"{e.Name}\" has shape [{string.Join(", ", e.Shape)}], the layer needs [{string.Join(", ", expected)}]";
        }
        return null;
    }

    /// <summary>(in, out) of a linear layer by its Hugging Face module name, or null when the architecture has no such layer.</summary>
    static (long In, long Out)? LayerShape(string module, ModelArchitecture a)
    {
        var parts = module.Split('.');
        // model.layers.{i}.self_attn.q_proj | transformer.h.{i}.attn.c_attn
        if (parts.Length != 5 || !int.TryParse(parts[2], out var layer) || layer < 0 || layer >= a.NumLayers) return null;
        long d = a.HiddenSize, ff = a.IntermediateSize, q = (long)a.NumHeads * a.HeadDim, kv = (long)a.NumKeyValueHeads * a.HeadDim;
        var path = $"{parts[0]}.{parts[1]}.*.{parts[3]}.{parts[4]}";
        return (a.Family, path) switch
        {
            (DecoderFamily.Gpt2, "transformer.h.*.attn.c_attn") => (d, 3 * d),
            (DecoderFamily.Gpt2, "transformer.h.*.attn.c_proj") => (d, d),
            (DecoderFamily.Gpt2, "transformer.h.*.mlp.c_fc") => (d, ff),
            (DecoderFamily.Gpt2, "transformer.h.*.mlp.c_proj") => (ff, d),
            (DecoderFamily.Llama, "model.layers.*.self_attn.q_proj") => (d, q),
            (DecoderFamily.Llama, "model.layers.*.self_attn.k_proj") => (d, kv),
            (DecoderFamily.Llama, "model.layers.*.self_attn.v_proj") => (d, kv),
            (DecoderFamily.Llama, "model.layers.*.self_attn.o_proj") => (q, d),
            (DecoderFamily.Llama, "model.layers.*.mlp.gate_proj") => (d, ff),
            (DecoderFamily.Llama, "model.layers.*.mlp.up_proj") => (d, ff),
            (DecoderFamily.Llama, "model.layers.*.mlp.down_proj") => (ff, d),
            _ => null,
        };
    }
}
