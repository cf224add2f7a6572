using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Engine;

/// <summary>
/// Where a worker's tensors live (<c>AlignHub__Worker__Device</c>): <c>cpu</c>, <c>cuda</c>, <c>cuda:N</c>, or
/// <c>auto</c> (CUDA when TorchSharp reports it, else the CPU). Models are built and initialised on the CPU, so a
/// seed gives the same weights on every device, then moved; batches, masks and caches are created on the model's
/// device; values come back to the host only where they leave the worker (metrics, tokens, files).
/// </summary>
public static class Devices
{
    public static Device Resolve(string? spec)
    {
        var s = (spec ?? "auto").Trim().ToLowerInvariant();
        if (s is "" or "auto") return cuda.is_available() ? CUDA : CPU;
        if (s == "cpu") return CPU;
        if (s == "cuda" || s.StartsWith("cuda:"))
        {
            if (!cuda.is_available())
                throw new InvalidOperationException($"AlignHub__Worker__Device is \"{spec}\" but TorchSharp reports no CUDA device (this worker needs a CUDA build of libtorch and a GPU)");
            int index = s == "cuda" ? 0 : int.TryParse(s[5..], out var i) && i >= 0 ? i : throw new InvalidOperationException($"AlignHub__Worker__Device \"{spec}\": expected cuda:N");
            int count = cuda.device_count();
            if (index >= count) throw new InvalidOperationException($"AlignHub__Worker__Device \"{spec}\": this machine has {count} CUDA device(s)");
            return new Device(DeviceType.CUDA, index);
        }
        throw new InvalidOperationException($"AlignHub__Worker__Device \"{spec}\": expected cpu, cuda, cuda:N or auto");
    }

    /// <summary>
    /// Runs <paramref name="build"/> with the CPU as the default device: model construction and seeded
    /// initialisation happen on the host whatever the process default is, so weights do not depend on the device.
    /// </summary>
    public static T OnCpu<T>(Func<T> build)
    {
        var previous = get_default_device();
        if (previous.type == DeviceType.CPU) return build();
        set_default_device(CPU);
        try { return build(); }
        finally { set_default_device(previous); }
    }
}
