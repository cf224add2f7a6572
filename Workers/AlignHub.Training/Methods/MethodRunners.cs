using AlignHub.Domain;
using AlignHub.Training.Evaluation;
using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Preference;
using AlignHub.Training.Sft;
using static TorchSharp.torch;

namespace AlignHub.Training.Methods;

/// <summary>
/// What a method's runner gets from the worker: the job and its resolved config, the device, and lookups of models
/// and files (the worker owns the database; runners never touch it).
/// </summary>
public sealed class MethodContext
{
    public required JobSpec Job { get; init; }
    public required MethodConfig Config { get; init; }
    public required Device Device { get; init; }
    /// <summary>A registered model by id (an <see cref="InvalidDataException"/> when it is gone).</summary>
    public required Func<string, ModelRecord> FindModel { get; init; }
    /// <summary>The model a job started from (null: no such job).</summary>
    public required Func<string, string?> StartingModelOf { get; init; }
    /// <summary>Where a model's config, tokenizer and weights are on this worker.</summary>
    public required Func<ModelRecord, ModelSource> Source { get; init; }
    /// <summary>An uploaded file by id (an <see cref="InvalidDataException"/> when it is gone).</summary>
    public required Func<string, FileRecord> FindFile { get; init; }
    /// <summary>A data-folder-relative path made absolute.</summary>
    public required Func<string, string> Resolve { get; init; }
    /// <summary>Where the job's checkpoints go (<c>checkpoints/{job}</c>).</summary>
    public required string CheckpointRoot { get; init; }
    /// <summary>The last complete checkpoint to resume from (null: start fresh); only for resumable runners.</summary>
    public string? ResumeFrom { get; init; }
    /// <summary>A folder of the job's own (<c>jobs/{job}</c>) for result files, created on first use.</summary>
    public required string OutputFolder { get; init; }

    /// <summary>A job's checkpoints as (step, model name), by step (the frontier's points).</summary>
    public Func<string, IReadOnlyList<(int Step, string Model)>> CheckpointsOf { get; init; } = _ => [];
    /// <summary>The step of a checkpoint's model name (null: not a checkpoint).</summary>
    public Func<string, int?> CheckpointStepOf { get; init; } = _ => null;

    /// <summary>
    /// Fires when the job is cancelled while its worker runs it (seen between steps by the heartbeat): what slow calls
    /// inside a step (judges, score_model graders) take, so a cancel does not wait for their answers.
    /// </summary>
    public CancellationToken Stopping { get; init; }
    /// <summary>Asks AI judges (local ones through this process's model server); null where none can be asked.</summary>
    public IPairwiseJudging? Judges { get; init; }
    /// <summary>A judge by id (null: no such judge).</summary>
    public Func<string, Judge?> FindJudge { get; init; } = _ => null;
    /// <summary>How score_model graders ask their model (null: no model server; such a grader fails when it grades).</summary>
    public Func<ScoreModel, IReadOnlyList<Domain.Templates.ChatMessage>, string>? GraderAsk { get; init; }
    /// <summary>A grader ready to grade here: its score_model graders bound to <see cref="GraderAsk"/>.</summary>
    public Grader Bind(Grader g) => GraderAsk is null ? g : g.Bind(GraderAsk);

    /// <summary>A reward source from a config's pair of fields: the grader (bound here) when given, else the reward model (or ensemble), else null.</summary>
    public Rewards.IRewardSource? RewardSource(Grader? grader, string? rewardModel, int batchSize) =>
        grader is not null ? new Rewards.GraderSource(Bind(grader))
            : rewardModel is { } id ? Rewards.RewardEnsembleSource.Load(Model(id), 0, batchSize, Device) : null;

    public ModelSource Model(string id) => Source(FindModel(id));
    public string FilePath(string fileId) => Resolve(FindFile(fileId).StoragePath);
    public T ConfigAs<T>() where T : MethodConfig => (T)Config;
    /// <summary>A file's rows through a <see cref="JsonlRows"/> loader.</summary>
    public List<T> Rows<T>(string fileId, Func<string, IEnumerable<T>> load) => load(FilePath(fileId)).ToList();
    /// <summary>The validation file's rows (null: the job has none).</summary>
    public List<T>? ValidationRows<T>(Func<string, IEnumerable<T>> load) => Job.ValidationFile is null ? null : Rows(Job.ValidationFile, load);
    public string Output(string name) { Directory.CreateDirectory(OutputFolder); return Path.Combine(OutputFolder, name); }
}

/// <summary>A file a job produced, registered as a result file when the job succeeds.</summary>
public sealed record ProducedFile(string Path, string Filename, string Format, int Rows);

/// <summary>How a runner ended: the run's result, and on success what it produced and the closing event (null: the default).</summary>
public sealed record MethodOutcome(TrainingResult Result, string? ModelFolder = null, ProducedFile? File = null,
    string? Message = null, IReadOnlyDictionary<string, object>? Data = null);

/// <summary>The worker's side of a method (<see cref="JobMethod"/> is the API's): prepares its inputs and runs its trainer.</summary>
public interface IMethodRunner
{
    /// <summary>The config type it runs: a method's config of this type, or derived from it (online RL's one runner).</summary>
    Type ConfigType { get; }
    /// <summary>True: it resumes from checkpoints (steps after the last one are run again); false: a re-run starts over.</summary>
    bool Resumable { get; }
    MethodOutcome Run(MethodContext ctx, ITrainingReporter reporter, CancellationToken ct);
}

/// <summary>
/// The runners of this assembly, found by reflection (a class implementing <see cref="IMethodRunner"/> with a
/// parameterless constructor), and looked up by a job's config type: the most specific runner whose
/// <see cref="IMethodRunner.ConfigType"/> the config's type is or derives from. Adding a method adds no line here.
/// </summary>
public static class MethodRunners
{
    public static readonly IReadOnlyList<IMethodRunner> All = typeof(IMethodRunner).Assembly.GetTypes()
        .Where(t => !t.IsAbstract && typeof(IMethodRunner).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
        .Select(t => (IMethodRunner)Activator.CreateInstance(t)!).ToList();

    public static IMethodRunner For(Type configType)
    {
        for (var t = configType; t is not null && t != typeof(object); t = t.BaseType)
            if (All.FirstOrDefault(r => r.ConfigType == t) is { } r) return r;
        throw new InvalidDataException($"this worker has no trainer for {configType.Name}");
    }
}
