using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Rewards;
using AlignHub.Training.Sft;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>Tests that change libtorch's process-wide default device run alone.</summary>
[CollectionDefinition(nameof(DefaultDeviceCollection), DisableParallelization = true)]
public sealed class DefaultDeviceCollection;

/// <summary>
/// Every tensor on the model's device, checked without a GPU: the training device is the CPU, and libtorch's
/// default device is switched to <c>meta</c> (shapes, no data). A tensor created anywhere without naming a device
/// (the stray-CPU-tensor bug on a CUDA worker) lands on meta, and the first operation that mixes it with the
/// model's tensors raises a device mismatch, failing the test.
/// </summary>
[Collection(nameof(DefaultDeviceCollection))]
public class DeviceTests
{
    static readonly ModelSource Tiny = new(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-device-").FullName;

    static void WithStrayTensorsOnMeta(Action run)
    {
        set_default_device("meta");
        try { run(); }
        finally { set_default_device("cpu"); }
    }

    [Fact]
    public void The_check_catches_a_tensor_created_without_a_device()
    {
        WithStrayTensorsOnMeta(() =>
        {
            using var onDevice = ones(2, device: CPU);
            var e = Assert.ThrowsAny<Exception>(() => onDevice + tensor(new float[] { 1, 2 }));
            Assert.Contains("same device", e.Message);
        });
    }

    [Fact]
    public void Training_evaluation_resume_generation_and_scoring_create_every_tensor_on_the_model_device()
    {
        WithStrayTensorsOnMeta(() =>
        {
            var device = CPU;
            // SFT: two steps in micro-batches, an evaluation, a checkpoint; then a resume from it.
            var sftRoot = TempDir();
            var sft = new SftConfig { NEpochs = 1, BatchSize = 4, GradientAccumulationSteps = 2, MaxSteps = 2, EvalSteps = 2, SaveSteps = 2, Seed = 1 };
            var demos = PreferenceTask.Demonstrations(16, 1);
            var first = SftTrainer.Train(new SftRun(Tiny, demos, demos.Take(4).ToList(), sft, sftRoot, null, device), new RecordingReporter(), CancellationToken.None);
            Assert.Equal(TrainingOutcome.Completed, first.Outcome);
            var resumed = SftTrainer.Train(new SftRun(Tiny, demos, null, sft with { MaxSteps = 3 }, sftRoot, first.LastCheckpoint, device), new RecordingReporter(), CancellationToken.None);
            Assert.Equal(3, resumed.Step);

            // DPO with its reference pass, KTO, and a reward model.
            var pairs = PreferenceTask.Pairs(16, 1);
            var dpo = new DpoConfig { NEpochs = 1, BatchSize = 4, MaxSteps = 2, EvalSteps = 2, SaveSteps = 2, Seed = 1 };
            Assert.Equal(TrainingOutcome.Completed, DpoTrainer.Train(new DpoRun(Tiny, pairs, pairs.Take(4).ToList(), dpo, TempDir(), null,
                Path.Combine(TempDir(), "ref.json"), Device: device), new RecordingReporter(), CancellationToken.None).Outcome);
            Assert.Equal(TrainingOutcome.Completed, DpoTrainer.Train(new DpoRun(Tiny, pairs, null, dpo with { LossType = "kto" }, TempDir(), null,
                Path.Combine(TempDir(), "ref.json"), Device: device), new RecordingReporter(), CancellationToken.None).Outcome);
            var rmRun = RewardModelTrainer.Train(new RewardModelRun(Tiny, pairs, pairs.Take(4).ToList(),
                new RewardModelConfig { NEpochs = 1, BatchSize = 4, MaxSteps = 2, EvalSteps = 2, SaveSteps = 2, Seed = 1 }, TempDir(), null, device),
                new RecordingReporter(), CancellationToken.None);

            // Rollouts with every sampling setting, their batch form, and reward scoring.
            var tok = new ByteTokenizer();
            torch.manual_seed(2);
            using var model = Tiny.CreateModel(device);
            var prompts = new[] { new[] { 256, 72, 105 }, new[] { 256, 65, 66, 67, 68 } };
            var o = new GenerationOptions { MaxNewTokens = 6, Temperature = 0.8, TopK = 20, TopP = 0.9, Stop = ["zz"] };
            var rollouts = Rollouts.Sample(model, tok, prompts, [0, 1], 2, o, 1, 0, 3);
            using (var batch = Rollouts.ToBatch(rollouts, tok.PadId, device))
                Assert.Equal(device.type, batch.SamplingLogProbs.device.type);
            Assert.Equal(2, TextGenerator.Generate(model, tok, prompts, o with { Temperature = 0 }).Count);
            using var judge = RewardEnsembleSource.Load(Tiny with { Folder = rmRun.LastCheckpoint }, 0.5, 4, device);
            Assert.Equal(2, judge.Score([new RewardInput("Hi", "there"), new RewardInput("A", "B")]).Length);
        });
    }
}
