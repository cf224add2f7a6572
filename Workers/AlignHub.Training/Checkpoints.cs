using System.Text.Json;
using System.Text.Json.Nodes;
using AlignHub.Domain;
using AlignHub.Training.Models;
using TorchSharp;

namespace AlignHub.Training;

/// <summary>
/// Trainer position saved with each checkpoint; with the weights and optimizer state it resumes a run.
/// <paramref name="Method"/>: what the method adds (<see cref="Engine.ITrainingMethod.SaveState"/>), absent for most.
/// </summary>
public sealed record TrainerState(int Step, int EpochsCompleted, long TrainedTokens, int TotalSteps, JsonObject? Method = null);

/// <summary>
/// A checkpoint is a Hugging Face model folder (<c>config.json</c>, <c>model.safetensors</c>, the tokenizer files of
/// the base model), so it loads in transformers as it is, or with LoRA a PEFT adapter folder (<c>adapter_config.json</c>,
/// <c>adapter_model.safetensors</c>, loaded onto the base by PEFT), plus what resumes the run: <c>optimizer.bin</c>,
/// <c>trainer_state.json</c> and <c>alignhub_config.json</c> (the job's resolved config). With <c>save_merged_model</c> the
/// last one also holds <c>merged/</c>, the adapted model as one HF folder. Written to a temporary folder and renamed, so a
/// folder that exists is complete.
/// </summary>
public static class Checkpoints
{
    public const string Optimizer = "optimizer.bin", State = "trainer_state.json", ModelConfig = "config.json", JobConfig = "alignhub_config.json", Merged = "merged";

    public static string Save(string root, CausalLM model, TorchSharp.Modules.OptimizerHelper optimizer, TrainerState state,
        ModelSource source, string jobConfigJson, IReadOnlyDictionary<string, TorchSharp.torch.Tensor>? extraTensors = null, string? modelConfigJson = null,
        LoraSettings? lora = null, bool saveMerged = false)
    {
        var dir = Path.Combine(root, $"step-{state.Step:D7}");
        if (Directory.Exists(dir)) return dir; // a complete checkpoint of this step exists (re-run after a crash)
        var tmp = dir + ".tmp-" + Environment.ProcessId;
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        try
        {
            Directory.CreateDirectory(tmp);
            if (lora is not null)
            {
                PeftAdapter.Save(model, tmp, lora, source.Name ?? source.Folder ?? "", extraTensors);
                if (saveMerged)
                {
                    var merged = Path.Combine(tmp, Merged);
                    PeftAdapter.SaveMerged(model, merged, extraTensors);
                    File.WriteAllText(Path.Combine(merged, ModelConfig), modelConfigJson ?? source.ConfigJson);
                    CopyTokenizerFiles(source.TokenizerFolder, merged);
                }
            }
            else HfWeights.Save(model, tmp, extra: extraTensors);
            optimizer.save_state_dict(Path.Combine(tmp, Optimizer));
            File.WriteAllText(Path.Combine(tmp, State), JsonSerializer.Serialize(state));
            File.WriteAllText(Path.Combine(tmp, ModelConfig), modelConfigJson ?? source.ConfigJson);
            File.WriteAllText(Path.Combine(tmp, JobConfig), jobConfigJson);
            CopyTokenizerFiles(source.TokenizerFolder, tmp);
            // On disk before the rename: a folder that exists after a crash or power loss is complete.
            foreach (var f in Directory.EnumerateFiles(tmp, "*", SearchOption.AllDirectories))
                using (var fs = new FileStream(f, FileMode.Open, FileAccess.ReadWrite)) fs.Flush(flushToDisk: true);
            Directory.Move(tmp, dir);
        }
        catch (IOException e)
        {
            // A full disk (or any write error): drop the partial folder, keep every earlier checkpoint as it is, and say so.
            try { if (Directory.Exists(tmp)) Directory.Delete(tmp, true); } catch (IOException) { }
            var last = Directory.Exists(root) ? Directory.GetDirectories(root, "step-*").Where(d => !d.Contains(".tmp-")).Select(StepOf).Where(x => x >= 0).DefaultIfEmpty(-1).Max() : -1;
            throw new InvalidDataException($"the checkpoint of step {state.Step} could not be written ({e.Message.Trim()}); " +
                (last >= 0 ? $"the checkpoint of step {last} is intact and the job resumes from it when retried" : "no earlier checkpoint exists"), e);
        }
        return dir;
    }

    /// <summary>Copies the tokenizer and generation files of a model folder (and any *.tiktoken file) into another.</summary>
    public static void CopyTokenizerFiles(string? from, string to)
    {
        if (from is null || !Directory.Exists(from)) return;
        var names = TokenizerFiles.Companions.ToList();
        if (TokenizerFiles.TiktokenFile(from) is { } tk) names.Add(Path.GetFileName(tk));
        foreach (var name in names)
        {
            var src = Path.Combine(from, name);
            if (File.Exists(src)) File.Copy(src, Path.Combine(to, name), overwrite: true);
        }
    }

    /// <summary>The step a checkpoint folder (<c>step-0000050</c>) holds.</summary>
    public static int StepOf(string dir) =>
        Path.GetFileName(Path.TrimEndingDirectorySeparator(dir)) is var name && name.StartsWith("step-") && int.TryParse(name[5..], out var s) ? s : -1;

    /// <summary>A checkpoint's weights into the run's model: the adapter of a LoRA run, else the full weights.</summary>
    public static void LoadWeights(CausalLM model, string dir, IReadOnlyDictionary<string, TorchSharp.torch.Tensor>? extra)
    {
        if (PeftAdapter.IsAdapterFolder(dir))
        {
            if (!Lora.IsAdapted(model)) throw new InvalidDataException($"{dir} holds a LoRA adapter; the run trains every weight (use_peft differs from the checkpoint's)");
            PeftAdapter.Load(model, dir, extra);
        }
        else
        {
            if (Lora.IsAdapted(model)) throw new InvalidDataException($"{dir} holds full weights; the run trains LoRA adapters (use_peft differs from the checkpoint's)");
            HfWeights.Load(model, dir, extra);
        }
    }

    public static TrainerState LoadState(string dir) =>
        JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(Path.Combine(dir, State)))
        ?? throw new InvalidDataException($"{dir}: empty trainer state");
}
