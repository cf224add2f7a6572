using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Data;
using AlignHub.Training.Generation;
using AlignHub.Training.Losses;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Sft;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Offline preference benchmarks (issue 4): the built-in task end to end, DPO vs SFT step time, peak RSS.</summary>
static class PreferenceBenchmarks
{
    static readonly string Tiny = ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]);
    static string D256 => JsonSerializer.Serialize(new { model_type = "gpt2", vocab_size = 259, n_embd = 256, n_layer = 4, n_head = 4, n_positions = 256 });
    static string Temp() => Directory.CreateTempSubdirectory("alignhub-bench-").FullName;

    static double GreedyTrueReward(ModelSource source)
    {
        using var model = source.CreateModel();
        var tok = new ByteTokenizer();
        var rng = new Random(99);
        var ids = Enumerable.Range(0, 64).Select(_ => new[] { tok.BosId }.Concat(tok.Encode(PreferenceTask.Prompt(rng))).ToArray()).ToList();
        return TextGenerator.Generate(model, tok, ids, new GenerationOptions { MaxNewTokens = 32, Temperature = 0 }).Average(o => PreferenceTask.TrueReward(o.Text));
    }

    /// <summary>The built-in task: SFT start, reward model, DPO; accuracies, greedy true reward, run times.</summary>
    public static void Task()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var train = PreferenceTask.Pairs(512, 1);
        var valid = PreferenceTask.Pairs(256, 2);
        var sw = Stopwatch.StartNew();
        var sft = SftTrainer.Train(new SftRun(new ModelSource(Tiny, "byte", null), PreferenceTask.Demonstrations(1024, 1), null,
            new SftConfig { NEpochs = 5, BatchSize = 16, LearningRate = 3e-3, SaveSteps = 10_000, Seed = 1 }, Temp(), null), new BenchReporter(), CancellationToken.None);
        Console.WriteLine($"sft start: {sft.Step} steps in {sw.Elapsed.TotalSeconds:F1} s");
        var start = new ModelSource(Tiny, "byte", sft.LastCheckpoint);

        sw.Restart();
        var rmRep = new BenchReporter();
        var rm = RewardModelTrainer.Train(new RewardModelRun(start, train, valid,
            new RewardModelConfig { NEpochs = 4, BatchSize = 16, LearningRate = 1e-3, EvalSteps = 10_000, SaveSteps = 10_000, Seed = 1 }, Temp(), null),
            rmRep, CancellationToken.None);
        Console.WriteLine($"reward model: {rm.Step} steps in {sw.Elapsed.TotalSeconds:F1} s, held-out accuracy {rmRep.Rows.Last(m => m.Metrics.ContainsKey("eval/accuracy")).Metrics["eval/accuracy"]:F3}");

        foreach (var lossType in new[] { "sigmoid", "ipo", "simpo" })
        {
            sw.Restart();
            var rep = new BenchReporter();
            var c = new DpoConfig { NEpochs = 3, BatchSize = 16, LearningRate = 5e-4, Beta = lossType == "simpo" ? 2.0 : lossType == "ipo" ? 0.5 : 0.1, LossType = lossType, EvalSteps = 10_000, SaveSteps = 10_000, Seed = 1 };
            var dpo = DpoTrainer.Train(new DpoRun(start, train, valid, c, Temp(), null, Path.Combine(Temp(), "ref.json")), rep, CancellationToken.None);
            double seconds = sw.Elapsed.TotalSeconds;
            var acc = rep.Rows.Last(m => m.Metrics.ContainsKey("eval/rewards/accuracies")).Metrics["eval/rewards/accuracies"];
            Console.WriteLine($"dpo {lossType}: {dpo.Step} steps in {seconds:F1} s, held-out implicit-reward accuracy {acc:F3}, greedy true reward {GreedyTrueReward(start):F2} -> {GreedyTrueReward(new ModelSource(Tiny, "byte", dpo.LastCheckpoint)):F2}");
        }
    }

    /// <summary>DPO step (cached reference log-probs) vs SFT step over the same sequences: 2B sequences each.</summary>
    public static void StepTime()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var tok = new ByteTokenizer();
        var encoder = new PromptEncoder(tok, 128);
        var pairs = PreferenceTask.Pairs(16 * 40, 1).Select(p => PairData.Tokenize(p, encoder, 256)).ToList();
        torch.manual_seed(1);
        using var model = CausalLM.Create(D256);
        model.train();
        using var opt = optim.AdamW(model.parameters(), lr: 1e-4);
        const int b = 16;
        var reference = ReferenceCache.Compute(model, pairs, tok.PadId, 256, b);
        double Sft(int i)
        {
            var idx = Enumerable.Range(i * b, b).ToList();
            var sw = Stopwatch.StartNew();
            using var scope = NewDisposeScope();
            var rows = idx.Select(j => (pairs[j].Prompt, pairs[j].Chosen)).Concat(idx.Select(j => (pairs[j].Prompt, pairs[j].Rejected))).ToList();
            using var batch = Collator.PromptCompletions(rows, tok.PadId, model.Device);
            var logits = model.forward(batch.InputIds);
            var (loss, _, _) = SupervisedLoss.MaskedNll(logits, batch.InputIds, batch.CompletionMask.to_type(ScalarType.Bool));
            opt.zero_grad(); loss.backward(); opt.step();
            return sw.Elapsed.TotalSeconds;
        }
        double Dpo(int i)
        {
            var idx = Enumerable.Range(i * b, b).ToList();
            var sw = Stopwatch.StartNew();
            using var scope = NewDisposeScope();
            var (pc, pr) = CompletionLogProbs.Concatenated(model, idx.Select(j => (pairs[j].Prompt, pairs[j].Chosen)).ToList(),
                idx.Select(j => (pairs[j].Prompt, pairs[j].Rejected)).ToList(), tok.PadId);
            var x = new PairLogps(pc.Sum, pr.Sum, tensor(idx.Select(j => reference.Chosen[j]).ToArray()), tensor(idx.Select(j => reference.Rejected[j]).ToArray()));
            var loss = PreferenceLosses.Sigmoid(x, 0.1).Losses.mean();
            opt.zero_grad(); loss.backward(); opt.step();
            return sw.Elapsed.TotalSeconds;
        }
        for (int i = 0; i < 3; i++) { Sft(i); Dpo(i); }
        double sft = 0, dpo = 0;
        for (int i = 3; i < 40; i++) { sft += Sft(i); dpo += Dpo(i); } // interleaved: both see the same machine state
        Console.WriteLine($"gpt2 d256 L4, {2 * b} sequences per step, 37 steps each: SFT {sft / 37 * 1000:F1} ms/step, DPO {dpo / 37 * 1000:F1} ms/step, ratio {dpo / sft:F3}");

        // The same comparison through the training engine: the real trainers, 13 steps each, steps 4 to 13 timed.
        var source = new ModelSource(D256, "byte", null);
        var taskPairs = PreferenceTask.Pairs(16 * 13, 1);
        var sftRows = taskPairs.SelectMany(p => new[] { ChatTemplate.FromPromptCompletion(p.Prompt, p.Chosen), ChatTemplate.FromPromptCompletion(p.Prompt, p.Rejected) }).ToList();
        var sftTimer = new BenchReporter();
        SftTrainer.Train(new SftRun(source, sftRows, null, new SftConfig { NEpochs = 1, BatchSize = 2 * b, MaxSteps = 13, LearningRate = 1e-4, SaveSteps = 10_000, EvalSteps = 10_000, Seed = 1 },
            Temp(), null), sftTimer, CancellationToken.None);
        var dpoTimer = new BenchReporter();
        DpoTrainer.Train(new DpoRun(source, taskPairs, null, new DpoConfig { NEpochs = 1, BatchSize = b, MaxSteps = 13, LearningRate = 1e-4, SaveSteps = 10_000, EvalSteps = 10_000, Seed = 1 },
            Temp(), null, Path.Combine(Temp(), "ref.json")), dpoTimer, CancellationToken.None);
        double es = sftTimer.PerStep(), ed = dpoTimer.PerStep();
        Console.WriteLine($"engine: SFT {es * 1000:F1} ms/step, DPO {ed * 1000:F1} ms/step, ratio {ed / es:F3}; engine/raw SFT {es / (sft / 37):F3}, DPO {ed / (dpo / 37):F3}");
    }


    /// <summary>Runs one trainer (sft or dpo) on the task's sequences and prints the process's peak RSS (VmHWM).</summary>
    public static void PeakRss(string which)
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var source = new ModelSource(D256, "byte", null);
        var pairs = PreferenceTask.Pairs(512, 1);
        if (which == "sft")
        {
            var examples = pairs.SelectMany(p => new[] { ChatTemplate.FromPromptCompletion(p.Prompt, p.Chosen), ChatTemplate.FromPromptCompletion(p.Prompt, p.Rejected) }).ToList();
            SftTrainer.Train(new SftRun(source, examples, null, new SftConfig { NEpochs = 1, BatchSize = 32, MaxSteps = 20, SaveSteps = 10_000, Seed = 1 }, Temp(), null), new BenchReporter(), CancellationToken.None);
        }
        else
        {
            DpoTrainer.Train(new DpoRun(source, pairs, null, new DpoConfig { NEpochs = 1, BatchSize = 16, MaxSteps = 20, SaveSteps = 10_000, EvalSteps = 10_000, Seed = 1 },
                Temp(), null, Path.Combine(Temp(), "ref.json")), new BenchReporter(), CancellationToken.None);
        }
        var hwm = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:"));
        Console.WriteLine($"{which} {hwm}");
    }
}
