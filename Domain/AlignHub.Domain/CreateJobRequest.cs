using System.Text.Json;
using System.Text.Json.Serialization;

namespace AlignHub.Domain;

/// <summary>Body of <c>POST /v1/fine_tuning/jobs</c>, as OpenAI's fine-tuning API defines it plus AlignHub's fields.</summary>
public sealed record CreateJobRequest
{
    /// <summary>A registered model, e.g. <c>alignhub/tiny</c>.</summary>
    public string? Model { get; init; }
    /// <summary>Id of an uploaded file (<c>file-...</c>).</summary>
    public string? TrainingFile { get; init; }
    public string? ValidationFile { get; init; }
    public int? Seed { get; init; }
    /// <summary>Up to 64 characters added to the fine-tuned model name.</summary>
    public string? Suffix { get; init; }
    public Dictionary<string, string>? Metadata { get; init; }
    public MethodRequest? Method { get; init; }
    /// <summary>
    /// AlignHub: the device kind the job needs, <c>any</c> (default: the first free worker), <c>cpu</c> or <c>gpu</c>;
    /// it picks the Hangfire queue (training, training_cpu, training_gpu) and so the workers that may run it.
    /// </summary>
    public string? Device { get; init; }
    /// <summary>OpenAI's older top-level form of the supervised hyperparameters; used when <c>method</c> is absent.</summary>
    public JsonElement? Hyperparameters { get; init; }
}

/// <summary>
/// <c>{"type": "dpo", "dpo": {"hyperparameters": {...}}}</c>: the method's settings sit under its own name, as in
/// OpenAI's API. Each method's hyperparameters are described by its config record (<see cref="Methods"/>).
/// </summary>
public sealed record MethodRequest
{
    /// <summary>A method of <see cref="Methods.All"/> (default <c>supervised</c>).</summary>
    public string? Type { get; init; }

    /// <summary>The settings objects by method name (<c>"dpo": {"hyperparameters": {...}}</c>).</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Settings { get; init; }

    /// <summary>
    /// The hyperparameters object of <paramref name="type"/>'s settings (null: none given), with the settings' own
    /// <paramref name="settingsFields"/> (OpenAI's <c>grader</c>) merged in; a settings value that is not an object is an error.
    /// </summary>
    public JsonElement? HyperparametersOf(string type, Action<string, string> err, IReadOnlyList<string>? settingsFields = null)
    {
        if (Settings is null || !Settings.TryGetValue(type, out var s) || s.ValueKind == JsonValueKind.Null) return null;
        if (s.ValueKind != JsonValueKind.Object) { err($"method.{type}", "must be an object"); return null; }
        var hp = s.TryGetProperty("hyperparameters", out var h) ? h : (JsonElement?)null;
        var extra = (settingsFields ?? []).Where(f => s.TryGetProperty(f, out _)).ToList();
        if (extra.Count == 0 || hp is { ValueKind: not (JsonValueKind.Object or JsonValueKind.Null) }) return hp;
        var merged = hp is { ValueKind: JsonValueKind.Object } o ? System.Text.Json.Nodes.JsonObject.Create(o)! : [];
        foreach (var f in extra) merged[f] = System.Text.Json.Nodes.JsonNode.Parse(s.GetProperty(f).GetRawText());
        return JsonSerializer.SerializeToElement(merged);
    }

    /// <summary>A request for <paramref name="type"/> with these hyperparameters (snake_case names), as the dashboard builds one.</summary>
    public static MethodRequest For(string type, object? hyperparameters = null) => new()
    {
        Type = type,
        Settings = hyperparameters is null ? null : new Dictionary<string, JsonElement>
        {
            [type] = JsonSerializer.SerializeToElement(new Dictionary<string, object> { ["hyperparameters"] = hyperparameters }, ApiJson.Options),
        },
    };
}

public static class ApiJson
{
    /// <summary>snake_case everywhere, as OpenAI's API.</summary>
    public static readonly JsonSerializerOptions Options = Configure(new JsonSerializerOptions(JsonSerializerDefaults.Web));

    public static JsonSerializerOptions Configure(JsonSerializerOptions o)
    {
        o.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
        o.DictionaryKeyPolicy = null;
        o.DefaultIgnoreCondition = JsonIgnoreCondition.Never;
        o.MaxDepth = 32;
        o.UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip;
        return o;
    }
}
