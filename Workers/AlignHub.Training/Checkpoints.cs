using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training;

/// <summary>Trainer position saved with each checkpoint; with the weights and optimizer state it resumes a run.</summary>
public sealed record TrainerState(int Step, int EpochsCompleted, long TrainedTokens, int TotalSteps);

/// <summary>
/// Checkpoint folder: <c>model.bin</c> (weights), <c>optimizer.bin</c>, <c>trainer_state.json</c>,
/// <c>config.json</c> (the model's HF config) and <c>alignhub_config.json</c> (the job's resolved config).
/// Written to a temporary folder and renamed, so a folder that exists is complete.
/// </summary>
public static class Checkpoints
{
    public const string Weights = "model.bin", Optimizer = "optimizer.bin", State = "trainer_state.json",
        ModelConfig = "config.json", JobConfig = "alignhub_config.json";

    public static string Save(string root, nn.Module model, TorchSharp.Modules.OptimizerHelper optimizer, TrainerState state,
        string modelConfigJson, string jobConfigJson)
    {
        var dir = Path.Combine(root, $"step-{state.Step:D7}");
        if (Directory.Exists(dir)) return dir; // a complete checkpoint of this step exists (re-run after a crash)
        var tmp = dir + ".tmp-" + Environment.ProcessId;
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        model.save(Path.Combine(tmp, Weights));
        optimizer.save_state_dict(Path.Combine(tmp, Optimizer));
        File.WriteAllText(Path.Combine(tmp, State), JsonSerializer.Serialize(state));
        File.WriteAllText(Path.Combine(tmp, ModelConfig), modelConfigJson);
        File.WriteAllText(Path.Combine(tmp, JobConfig), jobConfigJson);
        Directory.Move(tmp, dir);
        return dir;
    }

    public static TrainerState LoadState(string dir) =>
        JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(Path.Combine(dir, State)))
        ?? throw new InvalidDataException($"{dir}: empty trainer state");
}
