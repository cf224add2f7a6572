using AlignHub.Domain;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Models;

/// <summary>
/// Where a job's model comes from: its config.json, its tokenizer kind, and the folder of its weights and tokenizer
/// files in the Hugging Face layout (null: random initialisation from the seed, byte tokenizer). A PEFT adapter folder
/// (<see cref="PeftAdapter"/>) stands on <see cref="Base"/>, the model its <c>base_model_name_or_path</c> names: the
/// base is loaded and the adapter merged into it. <see cref="Name"/>: the registered model's id (what adapters trained
/// on this model name as their base).
/// </summary>
public sealed record ModelSource(string ConfigJson, string Tokenizer, string? Folder, ModelSource? Base = null, string? Name = null)
{
    public ModelArchitecture Architecture => ModelArchitecture.Parse(ConfigJson);

    public bool IsAdapter => PeftAdapter.IsAdapterFolder(Folder);

    /// <summary>
    /// Builds the model on the CPU (seed torch first for a reproducible random initialisation), loads its weights,
    /// holds its weights in <paramref name="dtype"/>, adds LoRA adapters when <paramref name="lora"/> is set (float32, seeded by
    /// <paramref name="seed"/>; the base is frozen), and moves it to <paramref name="device"/> (null: stays on the CPU).
    /// </summary>
    public CausalLM CreateModel(Device? device = null, LoraSettings? lora = null, int seed = 0, ScalarType dtype = ScalarType.Float32)
    {
        NeedsWeights(lora);
        var model = CausalLM.Create(Architecture);
        try
        {
            LoadInto(model, null);
            if (dtype != ScalarType.Float32) model.to(dtype); // before the adapters, which stay float32
            if (lora is not null) Lora.Apply(model, lora, seed);
            if (device is not null && !SameDevice(model.Device, device)) model.to(device);
            return model;
        }
        catch { model.Dispose(); throw; }
    }

    /// <summary>
    /// A reward model: the decoder plus a scalar head, read from the folder when it holds one (else freshly initialised), on
    /// <paramref name="device"/>; with <paramref name="lora"/>, adapters on the decoder and the head trainable beside them.
    /// </summary>
    /// <param name="labels">Outputs of the head (null: the folder's <c>num_labels</c>); a preference model's embedding size on a fresh head.</param>
    public RewardModel CreateRewardModel(Device? device = null, LoraSettings? lora = null, int seed = 0, ScalarType dtype = ScalarType.Float32, int? labels = null)
    {
        NeedsWeights(lora);
        // A sequence classifier has no LM head: a causal base's lm_head.weight is skipped when it loads.
        var model = CausalLM.Create(Architecture with { IsRewardModel = true });
        var rm = new RewardModel(model, labels ?? Architecture.NumLabels);
        try
        {
            LoadInto(model, rm.Extra);
            if (dtype != ScalarType.Float32) model.to(dtype); // the decoder; the score head stays float32
            if (lora is not null) Lora.Apply(model, lora, seed);
            if (device is not null && !SameDevice(model.Device, device)) rm.To(device);
            return rm;
        }
        catch { rm.Dispose(); throw; }
    }

    /// <summary>Adapters need a base that exists as weights: one drawn at random per job could not be rebuilt under a saved adapter.</summary>
    void NeedsWeights(LoraSettings? lora)
    {
        if (lora is not null && Folder is null)
            throw new InvalidDataException("LoRA adapts stored weights; this model has none (it is initialised at random from the seed): fine-tune it without use_peft first");
    }

    /// <summary>This source's weights into <paramref name="model"/>: the base's then this adapter merged in, or the folder's own.</summary>
    void LoadInto(CausalLM model, IReadOnlyDictionary<string, Tensor>? extra)
    {
        if (Folder is null) return;
        if (IsAdapter)
        {
            if (Base is null) throw new InvalidDataException($"{Folder}: an adapter folder needs its base model (adapter_config.json's base_model_name_or_path)");
            Base.LoadInto(model, extra);
            PeftAdapter.MergeInto(model, Folder, extra);
            return;
        }
        var legacy = Path.Combine(Folder, "model.bin"); // checkpoints written before the safetensors layout
        if (!HfWeights.Exists(Folder) && File.Exists(legacy)) model.load(legacy);
        else HfWeights.Load(model, Folder, extra);
    }

    /// <summary>Moving a module to the device it is on would still copy every parameter: skip it.</summary>
    static bool SameDevice(Device a, Device b) => a.type == b.type && (a.type == DeviceType.CPU || a.index == b.index);

    /// <summary>The folder that holds the tokenizer files: this one, or for an adapter without them, its base's.</summary>
    public string? TokenizerFolder => Folder is not null && (!IsAdapter || HasTokenizerFiles(Folder)) ? Folder : Base?.TokenizerFolder;

    static bool HasTokenizerFiles(string folder) => TokenizerFiles.Detect(folder) != TokenizerFiles.Byte || File.Exists(Path.Combine(folder, "tokenizer_config.json"));

    public ITokenizer CreateTokenizer() => HfTokenizer.ForModel(Tokenizer, TokenizerFolder, Architecture);

    /// <summary>How rows with messages become text for this model: its own chat template, else AlignHub's role markers.</summary>
    public Domain.Templates.IChatFormat ChatFormat() => Domain.Templates.ChatFormats.ForFolder(TokenizerFolder);
}
