using AlignHub.Domain;
using AlignHub.Training.Models;

namespace AlignHub.Workers;

/// <summary>Where a registered model's files are on this worker, for training jobs and for serving alike.</summary>
public static class ModelSources
{
    /// <summary>
    /// The model's folder under the data folder; an adapter folder's base (its <c>base_model_name_or_path</c>, a
    /// registered model id) is resolved the same way, so adapters on adapters load as a chain.
    /// </summary>
    public static ModelSource Of(AlignHubDb db, AlignHubOptions options, ModelRecord m, int depth = 0)
    {
        var folder = m.WeightsPath is null ? null : options.Resolve(m.WeightsPath);
        ModelSource? baseSource = null;
        if (PeftFolder.Is(folder))
        {
            if (depth > 8) throw new InvalidDataException($"model \"{m.Id}\": adapters stand on each other more than 8 deep");
            var baseId = PeftFolder.BaseModel(folder!);
            var b = ModelService.Find(db, baseId) ?? throw new InvalidDataException($"the base model \"{baseId}\" of adapter \"{m.Id}\" is no longer registered");
            baseSource = Of(db, options, b, depth + 1);
        }
        return new ModelSource(m.ConfigJson, m.Tokenizer, folder, baseSource, m.Id);
    }
}
