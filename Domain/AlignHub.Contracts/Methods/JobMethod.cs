namespace AlignHub.Domain;

/// <summary>
/// A chart on the job page: metric names plotted together (the first one drawn the most), against the step or, when
/// <paramref name="Against"/> names a metric, against that metric's value at the same step (in step order, so the line
/// is the run's path, as a proxy-and-gold reward against KL plot is read).
/// </summary>
public sealed record MetricChart(string Title, string Id, IReadOnlyList<string> Metrics, string? Against = null);

/// <summary>
/// One method a job can run (<c>method.type</c>): its config record, what files and models it reads, how it is
/// checked at creation, what it produces, and which metrics its page plots. The API, the OpenAPI document, the job
/// runner and the dashboard read everything about a method from here, so adding a method is this definition with
/// its config record (one file), a line in <see cref="Methods.All"/>, and its trainer in the training library.
/// </summary>
public abstract class JobMethod
{
    /// <summary>The <c>method.type</c> value, also the key of the method's settings object.</summary>
    public abstract string Name { get; }
    public abstract string Title { get; }
    /// <summary>What the method optimises or computes, with its formula and paper (the job page's method card).</summary>
    public abstract string Summary { get; }
    /// <summary>The config record (a <see cref="MethodConfig"/> whose hyperparameters carry <see cref="HyperparameterAttribute"/>).</summary>
    public abstract Type ConfigType { get; }
    /// <summary>True: success registers a fine-tuned model; false: the job produces a result file.</summary>
    public virtual bool ProducesModel => true;
    /// <summary>The job's model may be a reward model (else it must be a language model).</summary>
    public virtual bool AcceptsRewardModel => false;
    public virtual bool TakesValidationFile => true;
    /// <summary>
    /// Fields of the method's settings object, beside <c>hyperparameters</c>, that its config reads (OpenAI's
    /// <c>method.reinforcement.grader</c>); they are resolved as hyperparameters and errors name them where they were given.
    /// </summary>
    public virtual IReadOnlyList<string> SettingsFields => [];
    /// <summary>The file formats (<see cref="JsonlRows"/>) its training and validation files may hold under this config.</summary>
    public abstract IReadOnlyList<string> FileFormats(MethodConfig config);
    /// <summary>The rows it reads, in words, for the error when a file holds others.</summary>
    public abstract string FileHint { get; }
    /// <summary>The job page's charts, in order; metrics follow README's naming scheme.</summary>
    public abstract IReadOnlyList<MetricChart> Charts { get; }
    /// <summary>An example request body (the OpenAPI document shows one per method).</summary>
    public abstract object Example { get; }
    public virtual string CreatedMessage(string jobId) => $"Created fine-tuning job {jobId}";
    /// <summary>Checks that need the database or the model (context lengths, referenced models); after the fields passed theirs.</summary>
    public virtual Task ValidateAsync(JobCheck check, CancellationToken ct) => Task.CompletedTask;

    /// <summary>Where it is listed (the New job page, the OpenAPI examples): smaller first.</summary>
    public virtual int Order => 100;

    public string Prefix => $"method.{Name}.hyperparameters.";
    /// <summary>The OpenAPI component that describes its hyperparameters: <c>DpoHyperparameters</c>, <c>RewardModelHyperparameters</c>, ...</summary>
    public string HyperparametersSchema => string.Concat(Name.Split('_').Select(w => w.Length == 0 ? w : char.ToUpperInvariant(w[0]) + w[1..])) + "Hyperparameters";
    public IReadOnlyList<HyperparameterInfo> Hyperparameters => Domain.Hyperparameters.Describe(ConfigType);
    public MethodConfig ParseConfig(string json) => Domain.Hyperparameters.FromJson(ConfigType, json);

    /// <summary>
    /// Each hyperparameter as a job's stored config holds it: its value as text (a string unquoted, anything else as
    /// JSON; empty when absent), its JSON kind (<c>Undefined</c> when absent), and whether it differs from the method's
    /// default. The job page bolds the changed ones; a clone starts from them.
    /// </summary>
    public IReadOnlyList<(HyperparameterInfo Info, string Value, System.Text.Json.JsonValueKind Kind, bool Changed)> StoredHyperparameters(string configJson)
    {
        using var stored = System.Text.Json.JsonDocument.Parse(configJson);
        using var defaults = System.Text.Json.JsonDocument.Parse(Defaults.ToJson());
        return Hyperparameters.Select(h =>
        {
            bool has = stored.RootElement.TryGetProperty(h.Name, out var v);
            string text = !has ? "" : v.ValueKind == System.Text.Json.JsonValueKind.String ? v.GetString()! : v.GetRawText();
            bool changed = !defaults.RootElement.TryGetProperty(h.Name, out var d) || (has ? v.GetRawText() : d.GetRawText()) != d.GetRawText();
            return (h, text, has ? v.ValueKind : System.Text.Json.JsonValueKind.Undefined, changed);
        }).ToList();
    }
    public MethodConfig Defaults => (MethodConfig)Activator.CreateInstance(ConfigType)!;
}

/// <summary>What a creation-time check may look up (the API implements it over its database).</summary>
public interface IJobLookup
{
    /// <summary>A registered model or a checkpoint's model name (null: none).</summary>
    Task<ModelRecord?> FindModelAsync(string id, CancellationToken ct);
    Task<Judge?> FindJudgeAsync(string id, CancellationToken ct);
    Task<FineTuningJob?> FindJobAsync(string id, CancellationToken ct);
    Task<bool> HasCheckpointsAsync(string jobId, CancellationToken ct);
}

/// <summary>What a method's creation-time check can see: lookups of models, judges and jobs, the job's model (when it exists) and its config.</summary>
public sealed class JobCheck(IJobLookup lookup, ModelRecord? model, MethodConfig config, string prefix, Action<string, string> err)
{
    public IJobLookup Lookup => lookup;
    public ModelRecord? Model => model;
    public ModelArchitecture? Architecture { get; } = model is null ? null : ModelArchitecture.Parse(model.ConfigJson);
    public MethodConfig Config => config;
    public void Error(string hyperparameter, string message) => err(prefix + hyperparameter, message);

    /// <summary>A token count must fit the model's context (or lie strictly below it).</summary>
    public void FitsContext(int? tokens, string hyperparameter, bool below = false)
    {
        if (tokens is not int n || Architecture is null) return;
        int positions = Architecture.MaxPositions;
        if (below ? n >= positions : n > positions)
            Error(hyperparameter, $"must be {(below ? "below" : "at most")} the model's context length {positions}");
    }

    public Task<ModelRecord?> FindModelAsync(string id, CancellationToken ct) => lookup.FindModelAsync(id, ct);

    /// <summary>Every score_model grader's model names a registered model or a judge.</summary>
    public async Task GraderModelsAsync(Grader? grader, string field, CancellationToken ct)
    {
        foreach (var g in grader?.ScoreModels() ?? [])
        {
            bool known = g.Model.StartsWith("judge-", StringComparison.Ordinal)
                ? await lookup.FindJudgeAsync(g.Model, ct) is not null
                : await FindModelAsync(g.Model, ct) is not null;
            if (!known) Error(field, $"score_model grader \"{g.Name}\": model \"{g.Model}\" is neither a registered model nor a judge");
        }
    }

    /// <summary>A method's <c>reward_model</c> (read when it has no grader): registered, and a reward model.</summary>
    public async Task RewardModelAsync(string? id, CancellationToken ct, string field = "reward_model")
    {
        if (id is null) return;
        var rm = await FindModelAsync(id, ct);
        if (rm is null) Error(field, $"model \"{id}\" is not registered");
        else if (!ModelArchitecture.Parse(rm.ConfigJson).IsRewardModel) Error(field, $"model \"{id}\" is not a reward model");
    }
}

/// <summary>
/// Every method, by name: the <see cref="JobMethod"/> classes of this assembly (found by reflection, listed by
/// <see cref="JobMethod.Order"/>), so a new method is its definition's file and nothing else here.
/// </summary>
public static class Methods
{
    public static readonly IReadOnlyList<JobMethod> All = typeof(JobMethod).Assembly.GetTypes()
        .Where(t => !t.IsAbstract && typeof(JobMethod).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
        .Select(t => (JobMethod)Activator.CreateInstance(t)!).OrderBy(m => m.Order).ThenBy(m => m.Name, StringComparer.Ordinal).ToList();

    public static readonly JobMethod Supervised = All.Single(m => m is SupervisedMethod);

    public static IEnumerable<string> Names => All.Select(m => m.Name);

    public static JobMethod? Find(string name) => All.FirstOrDefault(m => m.Name == name);

    public static JobMethod Get(string name) => Find(name) ?? throw new InvalidDataException($"unknown method type \"{name}\"");

    /// <summary>The charts every training method shares after its own: the optimizer's view of the run.</summary>
    public static readonly MetricChart[] OptimizerCharts =
    [
        new("Learning rate", "lr-chart", [MetricNames.LearningRate]),
        new("Gradient norm (before clipping)", "grad-norm-chart", [MetricNames.GradNorm]),
        new("Tokens per second", "throughput-chart", [MetricNames.TokensPerSecond]),
    ];
}
