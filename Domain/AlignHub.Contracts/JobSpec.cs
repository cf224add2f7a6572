namespace AlignHub.Domain;

/// <summary>A job as a trainer sees it: what to train, from which model, on which files (a plain record, not the database row).</summary>
public sealed record JobSpec(string Id, string Model, string TrainingFile, string? ValidationFile, int Seed, string MethodType)
{
    public static JobSpec Of(FineTuningJob j) => new(j.Id, j.Model, j.TrainingFile, j.ValidationFile, j.Seed, j.MethodType);
}
