using AlignHub.Domain;
using AlignHub.Training.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Engine;

/// <summary>
/// The dtype a job's weights are held in (<c>torch_dtype</c>): float32, bfloat16 or float16 as asked; <c>auto</c> keeps the
/// stored dtype (the first floating tensor of the model's safetensors, its base's for an adapter) where the device computes
/// in it (CUDA) and the weights do not train, else float32 (always on the CPU, where half-precision matmuls are slow).
/// </summary>
public static class Dtypes
{
    public static ScalarType Resolve(string? setting, Device device, ModelSource source, bool frozen) => setting switch
    {
        "float32" => ScalarType.Float32,
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        _ => device.type == DeviceType.CUDA && frozen && Stored(source) is { } s ? s : ScalarType.Float32,
    };

    /// <summary>The half-precision dtype a model's weights are stored in (null: float32, or no weights).</summary>
    public static ScalarType? Stored(ModelSource source)
    {
        var folder = source.IsAdapter ? source.Base is { } b ? BaseFolder(b) : null : source.Folder;
        if (folder is null || !SafeTensorsFolder.Exists(folder)) return null;
        var file = SafeTensorsFolder.Files(folder).FirstOrDefault();
        if (file is null) return null;
        using var s = File.OpenRead(file);
        var (entries, _, _) = SafeTensorsHeader.Read(s, Path.GetFileName(file));
        return entries.Select(e => e.DType).FirstOrDefault(d => d is "F32" or "BF16" or "F16") switch
        {
            "BF16" => ScalarType.BFloat16,
            "F16" => ScalarType.Float16,
            _ => null,
        };
    }

    static string? BaseFolder(ModelSource s) => s.IsAdapter ? s.Base is { } b ? BaseFolder(b) : null : s.Folder;

    public static string Name(ScalarType t) => t switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32" };
}
