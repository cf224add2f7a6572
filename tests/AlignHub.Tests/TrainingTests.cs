using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Sft;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using Xunit;

namespace AlignHub.Tests;

sealed class RecordingReporter : ITrainingReporter
{
    public readonly List<(int Step, Dictionary<string, double> Metrics)> Metrics = [];
    public readonly List<(int Step, string Dir)> Saved = [];
    public readonly List<string> Events = [];
    public readonly List<(int Step, SampleRecord Sample)> SampleLog = [];
    public int? CancelAtStep, PauseAtStep;
    int lastStep;
    public void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null) => Events.Add(message);
    public void Step(TrainingProgress p, IReadOnlyDictionary<string, double>? m)
    {
        lastStep = p.Step;
        if (m is not null) Metrics.Add((p.Step, new Dictionary<string, double>(m)));
    }
    public void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics) => Saved.Add((step, directory));
    public void Samples(int step, IReadOnlyList<SampleRecord> samples) => SampleLog.AddRange(samples.Select(s => (step, s)));
    public ControlSignal Poll() =>
        CancelAtStep is int s && lastStep >= s ? ControlSignal.Cancel : PauseAtStep is int p && lastStep >= p ? ControlSignal.Pause : ControlSignal.Continue;
}

public class TrainingTests
{
    static readonly string TinyConfig = ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]);
    static readonly AlignHub.Training.Models.ModelSource Tiny = new(TinyConfig, "byte", null);

    static List<SupervisedExample> Examples(int n) =>
        TestData.Greetings(n).Select(g => ChatTemplate.FromPromptCompletion(g.Prompt, g.Completion)).ToList();

    [Fact]
    public void TorchSharp_loads_with_the_patched_native_library()
    {
        using var t = torch.ones(2, 3);
        Assert.Equal(6f, t.sum().item<float>());
    }

    [Fact]
    public void Patched_library_marks_GLIBCXX_3_4_32_weak()
    {
        var lib = Directory.GetFiles(AppContext.BaseDirectory, "libLibTorchSharp.so", SearchOption.AllDirectories).Single();
        var bytes = File.ReadAllBytes(lib);
        Assert.Contains("GLIBCXX_3.4.32", System.Text.Encoding.ASCII.GetString(bytes));
        Assert.Equal(0x2, ElfVersionFlags(bytes, "GLIBCXX_3.4.32") & 0x2);
    }

    /// <summary>Independent reader of the .gnu.version_r entry's flags (ELF64 little-endian).</summary>
    static int ElfVersionFlags(byte[] b, string name)
    {
        long shoff = BitConverter.ToInt64(b, 0x28);
        int shentsize = BitConverter.ToUInt16(b, 0x3A), shnum = BitConverter.ToUInt16(b, 0x3C);
        for (int i = 0; i < shnum; i++)
        {
            int sh = (int)(shoff + i * shentsize);
            if (BitConverter.ToUInt32(b, sh + 4) != 0x6ffffffe) continue;
            long off = BitConverter.ToInt64(b, sh + 24);
            int link = (int)BitConverter.ToUInt32(b, sh + 40), count = (int)BitConverter.ToUInt32(b, sh + 44);
            long str = BitConverter.ToInt64(b, (int)(shoff + link * shentsize) + 24);
            long vn = off;
            for (int n = 0; n < count; n++, vn += BitConverter.ToUInt32(b, (int)vn + 12))
            {
                long aux = vn + BitConverter.ToUInt32(b, (int)vn + 8);
                for (int a = 0; a < BitConverter.ToUInt16(b, (int)vn + 2); a++, aux += BitConverter.ToUInt32(b, (int)aux + 12))
                {
                    int s = (int)(str + BitConverter.ToUInt32(b, (int)aux + 8)), e = s;
                    while (b[e] != 0) e++;
                    if (System.Text.Encoding.ASCII.GetString(b, s, e - s) == name) return BitConverter.ToUInt16(b, (int)aux + 4);
                }
            }
        }
        throw new Xunit.Sdk.XunitException(name + " not found");
    }

    [Fact]
    public void Prompt_tokens_never_carry_loss()
    {
        var tok = new ByteTokenizer();
        var t = SupervisedTokenization.Tokenize(ChatTemplate.FromPromptCompletion("ab", "cd"), tok, 100);
        Assert.Equal([256, 'a', 'b', 'c', 'd', 257], t.Ids);
        Assert.Equal([false, false, false, true, true, true], t.Trainable);
        var chat = SupervisedTokenization.Tokenize(AlignHub.Domain.Templates.ChatMarkers.Instance.Conversation([new("user", "hi"), new("assistant", "yo")]), tok, 100);
        var text = tok.Decode(chat.Ids.Where((_, i) => chat.Trainable[i]));
        Assert.Equal("yo<|end|>\n", text);
    }

    [Fact]
    public void Sft_training_lowers_the_loss_and_writes_checkpoints()
    {
        var root = Directory.CreateTempSubdirectory("alignhub-sft-").FullName;
        var config = new SftConfig { NEpochs = 4, BatchSize = 8, LearningRate = 3e-3, SaveSteps = 16, Seed = 7 };
        var rep = new RecordingReporter();
        var result = SftTrainer.Train(new SftRun(Tiny, Examples(64), Examples(16), config, root, null), rep, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        Assert.Equal(32, result.Step);
        var losses = rep.Metrics.Where(m => m.Metrics.ContainsKey("loss")).Select(m => m.Metrics["loss"]).ToList();
        Assert.Equal(32, losses.Count);
        Assert.True(losses.TakeLast(4).Average() < 0.6 * losses.Take(4).Average(), $"loss {losses.Take(4).Average()} -> {losses.TakeLast(4).Average()}");
        Assert.Equal([16, 32], rep.Saved.Select(s => s.Step));
        Assert.True(File.Exists(Path.Combine(rep.Saved[^1].Dir, "model.safetensors")));
        Assert.Contains(rep.Metrics, m => m.Metrics.ContainsKey("eval/loss"));
    }

    [Fact]
    public void Resuming_from_a_checkpoint_continues_where_it_stopped()
    {
        var config = new SftConfig { NEpochs = 2, BatchSize = 8, LearningRate = 3e-3, SaveSteps = 4, Seed = 3 };
        var full = new RecordingReporter();
        var rootA = Directory.CreateTempSubdirectory("alignhub-a-").FullName;
        SftTrainer.Train(new SftRun(Tiny, Examples(64), null, config, rootA, null), full, CancellationToken.None);

        var rootB = Directory.CreateTempSubdirectory("alignhub-b-").FullName;
        var first = new RecordingReporter { CancelAtStep = 9 };
        var stopped = SftTrainer.Train(new SftRun(Tiny, Examples(64), null, config, rootB, null), first, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Cancelled, stopped.Outcome);
        var resumed = new RecordingReporter();
        var result = SftTrainer.Train(new SftRun(Tiny, Examples(64), null, config, rootB, stopped.LastCheckpoint), resumed, CancellationToken.None);
        Assert.Equal(TrainingOutcome.Completed, result.Outcome);
        Assert.Equal(9, resumed.Metrics.First().Step);
        double a = full.Metrics.Last().Metrics["loss"], b = resumed.Metrics.Last().Metrics["loss"];
        Assert.True(Math.Abs(a - b) < 1e-4, $"uninterrupted {a} vs resumed {b}");
    }
}
