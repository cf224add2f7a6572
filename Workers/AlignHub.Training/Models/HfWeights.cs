using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.IO;
using static TorchSharp.torch;

namespace AlignHub.Training.Models;

/// <summary>
/// Weights in the Hugging Face folder layout: <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c> (<c>{"metadata": {"total_size"}, "weight_map": {key: shard file}}</c>).
/// Loads are strict: every parameter present with its shape, no unknown tensor; errors name the tensor. LoRA adapter
/// parameters are not the base model's: they are neither loaded nor saved here (<see cref="PeftAdapter"/>).
/// </summary>
public static class HfWeights
{
    public const string SingleFile = SafeTensorsFolder.SingleFile, IndexFile = SafeTensorsFolder.IndexFile;

    public static bool Exists(string folder) => SafeTensorsFolder.Exists(folder);

    /// <summary>The safetensors files of a folder (<see cref="SafeTensorsFolder.Files"/>); a folder without weights is an error here.</summary>
    public static IReadOnlyList<string> Files(string folder)
    {
        var files = SafeTensorsFolder.Files(folder);
        return files.Count > 0 ? files : throw new FileNotFoundException($"{folder}: neither {SingleFile} nor {IndexFile}");
    }

    /// <summary>
    /// Loads the folder's weights into <paramref name="model"/> (any stored dtype, computed in F32).
    /// <paramref name="extra"/>: tensors outside the decoder (a reward head's <c>score.weight</c>), filled when the
    /// files hold them and left as they are otherwise.
    /// </summary>
    public static void Load(CausalLM model, string folder, IReadOnlyDictionary<string, Tensor>? extra = null)
    {
        var parameters = model.named_parameters().Where(p => !Lora.IsAdapterParameter(p.name)).ToDictionary(p => p.name, p => p.parameter);
        var seen = new HashSet<string>();
        using var _ = no_grad();
        foreach (var file in Files(folder))
        {
            var tensors = SafeTensors.Read(file);
            try
            {
                foreach (var (key, t) in tensors)
                {
                    if (extra is not null && extra.TryGetValue(key, out var target))
                    {
                        if (!t.shape.SequenceEqual(target.shape))
                            throw new InvalidDataException($"{Path.GetFileName(file)}: tensor \"{key}\" has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", target.shape)}]");
                        target.copy_(t);
                        continue;
                    }
                    var name = model.ParameterForHfKey(key);
                    if (name is null) continue;
                    if (!parameters.TryGetValue(name, out var p))
                        throw new InvalidDataException($"{Path.GetFileName(file)}: unexpected tensor \"{key}\" (the {model.Architecture.ModelType} model has no such parameter)");
                    using var value = model.StoredTransposed(name) && t.dim() == 2 ? t.t() : t.alias();
                    if (!value.shape.SequenceEqual(p.shape))
                        throw new InvalidDataException($"{Path.GetFileName(file)}: tensor \"{key}\" has shape [{string.Join(", ", t.shape)}], the model expects [{string.Join(", ", model.StoredTransposed(name) ? p.shape.Reverse() : p.shape)}]");
                    p.copy_(value);
                    seen.Add(name);
                }
            }
            finally
            {
                foreach (var t in tensors.Values) t.Dispose();
            }
        }
        var missing = parameters.Keys.Where(k => !seen.Contains(k)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{folder}: missing tensor \"{missing[0]}\" (shape [{string.Join(", ", parameters[missing[0]].shape)}])" +
                                           (missing.Count > 1 ? $" and {missing.Count - 1} more" : ""));
    }

    /// <summary>
    /// Writes the model's weights as HF does (F32; GPT-2's Conv1D weights transposed back to <c>[in, out]</c>):
    /// one <c>model.safetensors</c>, or shards of at most <paramref name="maxShardBytes"/> with an index.
    /// </summary>
    public static void Save(CausalLM model, string folder, long maxShardBytes = 2L << 30, IReadOnlyDictionary<string, Tensor>? extra = null)
    {
        Directory.CreateDirectory(folder);
        var tensors = model.named_parameters().Where(p => !Lora.IsAdapterParameter(p.name))
            .Select(p => (Name: p.name, Tensor: model.StoredTransposed(p.name) ? p.parameter.detach().t() : p.parameter.detach()))
            .Concat((extra ?? new Dictionary<string, Tensor>()).Select(kv => (Name: kv.Key, Tensor: kv.Value.detach())))
            .ToList();
        try
        {
            var shards = new List<List<(string, Tensor)>> { new() };
            long size = 0;
            foreach (var (name, t) in tensors)
            {
                long bytes = t.numel() * 4;
                if (size > 0 && size + bytes > maxShardBytes) { shards.Add([]); size = 0; }
                shards[^1].Add((name, t));
                size += bytes;
            }
            var meta = new Dictionary<string, string> { ["format"] = "pt" };
            if (shards.Count == 1)
            {
                SafeTensors.Write(Path.Combine(folder, SingleFile), shards[0], meta);
                return;
            }
            var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < shards.Count; i++)
            {
                var file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
                SafeTensors.Write(Path.Combine(folder, file), shards[i], meta);
                foreach (var (name, _) in shards[i]) weightMap[name] = file;
            }
            var index = new { metadata = new { total_size = tensors.Sum(t => t.Tensor.numel() * 4) }, weight_map = weightMap };
            File.WriteAllText(Path.Combine(folder, IndexFile), JsonSerializer.Serialize(index, new JsonSerializerOptions { WriteIndented = true }));
        }
        finally
        {
            foreach (var (_, t) in tensors) t.Dispose();
        }
    }

    /// <summary>Builds a model from a folder's config.json and loads its weights.</summary>
    public static CausalLM LoadModel(string folder)
    {
        var config = Path.Combine(folder, "config.json");
        if (!File.Exists(config)) throw new FileNotFoundException($"{folder}: no config.json");
        var model = CausalLM.Create(ModelArchitecture.Parse(File.ReadAllText(config)));
        try { Load(model, folder); }
        catch { model.Dispose(); throw; }
        return model;
    }
}
