using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Engine;
using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Sft;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The same runs on the CPU and on a CUDA device (AlignHub__Worker__Device's resolution): SFT, LoRA DPO and greedy
/// generation from one seed, compared (losses, weights, tokens), and SFT throughput on both. For a machine with a GPU and a
/// CUDA libtorch (TorchBackend=cuda, or TorchBackend=system with LD_LIBRARY_PATH at one). Prints one JSON report.
/// </summary>
static class DeviceSmoke
{
    public static void Run(string deviceSpec)
    {
        var report = new Dictionary<string, object>();
        var sw = Stopwatch.StartNew();
        var device = Devices.Resolve(deviceSpec);
        report["device"] = device.ToString();
        report["cuda_available"] = cuda.is_available();
        report["cuda_devices"] = cuda.is_available() ? cuda.device_count() : 0;
        report["resolve_s"] = sw.Elapsed.TotalSeconds;
        Console.WriteLine(JsonSerializer.Serialize(report));

        // SFT from one seed on both devices.
        var tiny = new ModelSource(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny-128"]), "byte", null, Name: "alignhub/tiny-128");
        var examples = Enumerable.Range(0, 256).Select(i => ChatTemplate.FromPromptCompletion($"Greet {i % 17}.\n", $"Hello, {i % 17}!")).ToList();
        var sft = new SftConfig { MaxSteps = 30, BatchSize = 16, LearningRate = 3e-3, SaveSteps = 1000, Seed = 7 };
        var (cpuSft, cpuLoss, cpuS) = Sft(tiny, examples, sft, CPU);
        var (devSft, devLoss, devS) = Sft(tiny, examples, sft, device);
        report["sft_loss_cpu"] = cpuLoss;
        report["sft_loss_device"] = devLoss;
        report["sft_seconds_cpu"] = cpuS;
        report["sft_seconds_device"] = devS;
        report["sft_weights_max_abs_diff"] = MaxDiff(cpuSft, devSft);
        Console.WriteLine(JsonSerializer.Serialize(report));

        // Greedy generation from the trained weights on both devices: the same tokens.
        var trained = tiny with { Folder = cpuSft };
        using (var mCpu = trained.CreateModel(CPU))
        using (var mDev = trained.CreateModel(device))
        {
            var tok = trained.CreateTokenizer();
            var prompts = Enumerable.Range(0, 8).Select(i => new AlignHub.Training.Data.PromptEncoder(tok, 64).Encode($"Greet {i}.\n")).ToList();
            var o = new GenerationOptions { MaxNewTokens = 24, Temperature = 0 };
            var a = TextGenerator.Generate(mCpu, tok, prompts, o);
            var b = TextGenerator.Generate(mDev, tok, prompts, o);
            report["greedy_same_tokens"] = a.Zip(b).Count(x => x.First.Tokens.SequenceEqual(x.Second.Tokens));
            report["greedy_rows"] = a.Count;
            report["greedy_sample"] = b[0].Text;
        }

        // LoRA DPO on the trained weights (a stored base), on both devices.
        var dpo = new DpoConfig { MaxSteps = 10, BatchSize = 16, LearningRate = 5e-3, Beta = 0.1, SaveSteps = 1000, Seed = 3, UsePeft = true, LoraR = 8, LoraAlpha = 16, LoraDropout = 0 };
        var pairs = PreferenceTask.Pairs(160, 1);
        string Dpo(Device d)
        {
            var root = Directory.CreateTempSubdirectory("alignhub-smoke-").FullName;
            var r = DpoTrainer.Train(new DpoRun(trained, pairs, null, dpo, root, null, Path.Combine(root, "ref.json"), Device: d), new BenchReporter(), CancellationToken.None);
            return Path.Combine(r.LastCheckpoint!, "adapter_model.safetensors");
        }
        var adCpu = AlignHub.Training.IO.SafeTensors.Read(Dpo(CPU));
        var adDev = AlignHub.Training.IO.SafeTensors.Read(Dpo(device));
        report["lora_dpo_adapter_max_abs_diff"] = adCpu.Max(kv => { using var d = (kv.Value - adDev[kv.Key]).abs().max(); return d.item<float>(); });

        // Throughput: a d512, 8-layer Llama-shaped model, SFT steps per second on each device.
        var big = JsonSerializer.Serialize(new { model_type = "llama", vocab_size = 259, hidden_size = 512, intermediate_size = 1536, num_hidden_layers = 8,
            num_attention_heads = 8, num_key_value_heads = 4, max_position_embeddings = 512, tie_word_embeddings = true });
        var bigSource = new ModelSource(big, "byte", null);
        var longer = Enumerable.Range(0, 512).Select(i => ChatTemplate.FromPromptCompletion(new string('a', 100 + i % 50) + "\n", new string('b', 200))).ToList();
        var quick = new SftConfig { MaxSteps = 6, BatchSize = 16, LearningRate = 1e-3, SaveSteps = 1000, Seed = 1 };
        var (_, _, bigCpu) = Sft(bigSource, longer, quick, CPU);
        var (_, _, bigDev) = Sft(bigSource, longer, quick, device);
        report["d512_sft_6_steps_seconds_cpu"] = bigCpu;
        report["d512_sft_6_steps_seconds_device"] = bigDev;
        report["total_seconds"] = sw.Elapsed.TotalSeconds;
        Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
    }

    static (string Folder, double Loss, double Seconds) Sft(ModelSource source, List<SupervisedExample> examples, SftConfig c, Device device)
    {
        var root = Directory.CreateTempSubdirectory("alignhub-smoke-").FullName;
        var reporter = new LossReporter();
        var sw = Stopwatch.StartNew();
        var r = SftTrainer.Train(new SftRun(source, examples, null, c, root, null, device), reporter, CancellationToken.None);
        return (r.LastCheckpoint!, reporter.Last, sw.Elapsed.TotalSeconds);
    }

    static double MaxDiff(string a, string b)
    {
        var x = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(a, "model.safetensors"));
        var y = AlignHub.Training.IO.SafeTensors.Read(Path.Combine(b, "model.safetensors"));
        return x.Max(kv => { using var d = (kv.Value - y[kv.Key]).abs().max(); return (double)d.item<float>(); });
    }

    sealed class LossReporter : AlignHub.Training.ITrainingReporter
    {
        public double Last;
        public void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null) { }
        public void Step(AlignHub.Training.TrainingProgress p, IReadOnlyDictionary<string, double>? m) { if (m is not null && m.TryGetValue("loss", out var l)) Last = l; }
        public void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics) { }
        public AlignHub.Training.ControlSignal Poll() => AlignHub.Training.ControlSignal.Continue;
    }
}
