using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AlignHub.Training.Engine;

/// <summary>
/// glibc's allocator, tuned for libtorch on the CPU when this library loads (so only processes that train or generate).
/// By default glibc serves every allocation above 32 MiB with a fresh mmap and returns it on free, so each large tensor
/// (a batch's logits over a 49k vocabulary are 200 MB) is paid for again in page faults: measured here, an elementwise
/// add over 50M floats took 292 ms that way and 6 ms from reused memory, and a SmolLM2-135M-shaped training step 9.7 s
/// against 6.2 s (BENCHMARKS.md). So large blocks come from the heap and freed memory is kept for the next step
/// (M_MMAP_MAX 0, M_TRIM_THRESHOLD 2 GiB); the process's peak memory is unchanged, it is simply not handed back between
/// steps. One arena for all threads (M_ARENA_MAX 1): a thread's own arena maps its large blocks afresh whatever
/// M_MMAP_MAX says (measured: no gain on a worker thread without it). Runs when this library loads (tests, benches) and
/// first thing in a worker process (Program.cs), before its threads take arenas. <c>ALIGNHUB_GLIBC_DEFAULTS=1</c> keeps
/// glibc's defaults.
/// </summary>
public static class NativeAllocator
{
    const int M_TRIM_THRESHOLD = -1, M_MMAP_MAX = -4, M_ARENA_MAX = -8;

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int MallOpt(int param, int value);

    /// <summary>Whether the tuning is in effect in this process.</summary>
    public static bool Tuned { get; private set; }

#pragma warning disable CA2255 // on purpose: the tuning must precede the first tensor of any process that loads this library
    [ModuleInitializer]
#pragma warning restore CA2255
    public static void Configure()
    {
        if (Tuned || !OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("ALIGNHUB_GLIBC_DEFAULTS") == "1") return;
        try { Tuned = MallOpt(M_ARENA_MAX, 1) == 1 & MallOpt(M_MMAP_MAX, 0) == 1 & MallOpt(M_TRIM_THRESHOLD, int.MaxValue) == 1; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { Tuned = false; } // not glibc (musl)
    }
}
