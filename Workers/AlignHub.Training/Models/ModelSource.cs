using AlignHub.Domain;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Models;

/// <summary>
/// Where a job's model comes from: its config.json, its tokenizer kind, and the folder of its weights and tokenizer
/// files in the Hugging Face layout (null: random initialisation from the seed, byte tokenizer).
/// </summary>
public sealed record ModelSource(string ConfigJson, string Tokenizer, string? Folder)
{
    public ModelArchitecture Architecture => ModelArchitecture.Parse(ConfigJson);

    /// <summary>
    /// Builds the model on the CPU (seed torch first for a reproducible random initialisation), loads its weights,
    /// and moves it to <paramref name="device"/> (null: stays on the CPU).
    /// </summary>
    public CausalLM CreateModel(Device? device = null)
    {
        var model = CausalLM.Create(Architecture);
        try
        {
            if (Folder is not null)
            {
                var legacy = Path.Combine(Folder, "model.bin"); // checkpoints written before the safetensors layout
                if (!HfWeights.Exists(Folder) && File.Exists(legacy)) model.load(legacy);
                else HfWeights.Load(model, Folder);
            }
            if (device is not null && !SameDevice(model.Device, device)) model.to(device);
            return model;
        }
        catch { model.Dispose(); throw; }
    }

    /// <summary>A reward model: the decoder plus a scalar head, read from the folder when it holds one (else freshly initialised), on <paramref name="device"/>.</summary>
    public RewardModel CreateRewardModel(Device? device = null)
    {
        var model = CausalLM.Create(Architecture);
        var rm = new RewardModel(model);
        try
        {
            if (Folder is not null) HfWeights.Load(model, Folder, rm.Extra);
            if (device is not null && !SameDevice(model.Device, device)) rm.To(device);
            return rm;
        }
        catch { rm.Dispose(); throw; }
    }

    /// <summary>Moving a module to the device it is on would still copy every parameter: skip it.</summary>
    static bool SameDevice(Device a, Device b) => a.type == b.type && (a.type == DeviceType.CPU || a.index == b.index);

    public ITokenizer CreateTokenizer() => HfTokenizer.ForModel(Tokenizer, Folder, Architecture);

    /// <summary>How rows with messages become text for this model: its own chat template, else AlignHub's role markers.</summary>
    public Domain.Templates.IChatFormat ChatFormat() => Domain.Templates.ChatFormats.ForFolder(Folder);
}
