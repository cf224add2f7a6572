using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AlignHub.Domain;

/// <summary>
/// Marks a property of a method's config record as a hyperparameter: a field of <c>method.{type}.hyperparameters</c>.
/// Its help text, range and allowed values are read at run time by the request validation, the OpenAPI document
/// and the dashboard, so a hyperparameter is documented and checked in exactly one place. The default is the
/// property's initial value.
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class HyperparameterAttribute(string help) : Attribute
{
    public string Help { get; } = help;
    public double Min { get; init; } = double.MinValue;
    public double Max { get; init; } = double.MaxValue;
    /// <summary>Accepts <c>"auto"</c> (OpenAI's fields): the default.</summary>
    public bool Auto { get; init; }
    /// <summary>The only values a string hyperparameter may take.</summary>
    public string[]? OneOf { get; init; }
}

/// <summary>One hyperparameter as the API, the OpenAPI document and the dashboard see it.</summary>
public sealed record HyperparameterInfo(string Name, PropertyInfo Property, HyperparameterAttribute Spec, object? Default)
{
    public Type ValueType => Nullable.GetUnderlyingType(Property.PropertyType) ?? Property.PropertyType;
    public bool IsNullable => Nullable.GetUnderlyingType(Property.PropertyType) is not null
        || !Property.PropertyType.IsValueType && new NullabilityInfoContext().Create(Property).ReadState == NullabilityState.Nullable;
    /// <summary><c>integer</c>, <c>number</c>, <c>string</c>, <c>boolean</c>, <c>object</c> (JSON, checked by the config) or <c>array</c> (of strings).</summary>
    public string Kind => ValueType == typeof(int) ? "integer" : ValueType == typeof(double) ? "number" : ValueType == typeof(bool) ? "boolean"
        : ValueType == typeof(string) ? "string" : ValueType == typeof(JsonElement) ? "object" : "array";

    /// <summary>"Default: 0.1 (or "auto"). Help." — the OpenAPI description and the dashboard's hint.</summary>
    public string Description => $"Default: {(Default is null ? "none" : JsonSerializer.Serialize(Default, Hyperparameters.Json))}" +
        (Spec.Auto ? " (or \"auto\")" : "") + ". " + Spec.Help;
}

/// <summary>
/// The base of every method's config: the resolved settings of a job (every default filled in), stored with the job
/// and copied into every checkpoint, so a run can be reproduced and resumed.
/// </summary>
public abstract record MethodConfig
{
    /// <summary>The job's seed (the request's top-level <c>seed</c>, else drawn at creation): initialisation, data order, sampling.</summary>
    public int Seed { get; init; }

    /// <summary>Checks of whole values and between fields (a field that failed its own check holds its default); <paramref name="prefix"/> names the hyperparameters object.</summary>
    public virtual void Validate(string prefix, Action<string, string> err) { }

    /// <summary>Derived values filled in after validation (for example <c>top_k = 0</c> meaning none).</summary>
    public virtual MethodConfig Normalize() => this;

    public string ToJson() => JsonSerializer.Serialize(this, GetType(), Hyperparameters.Json);
}

/// <summary>Reads, checks and describes the hyperparameters of config records (<see cref="HyperparameterAttribute"/>).</summary>
public static class Hyperparameters
{
    /// <summary>How configs are stored: snake_case, every field written.</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        WriteIndented = false,
    };

    static readonly Dictionary<Type, IReadOnlyList<HyperparameterInfo>> Described = [];

    /// <summary>The hyperparameters of a config type, method-specific ones first, with their defaults.</summary>
    public static IReadOnlyList<HyperparameterInfo> Describe(Type configType)
    {
        lock (Described)
        {
            if (Described.TryGetValue(configType, out var known)) return known;
            var defaults = Activator.CreateInstance(configType);
            var list = new List<HyperparameterInfo>();
            // Most derived type first: a method's own settings, then the shared optimizer and schedule settings.
            for (var t = configType; t is not null && t != typeof(object); t = t.BaseType)
                foreach (var p in t.GetProperties(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly).OrderBy(p => p.MetadataToken))
                {
                    if (p.GetCustomAttribute<HyperparameterAttribute>() is not { } spec) continue;
                    var name = JsonNamingPolicy.SnakeCaseLower.ConvertName(p.Name);
                    if (list.Any(h => h.Name == name)) continue; // an override already listed
                    list.Add(new HyperparameterInfo(name, configType.GetProperty(p.Name)!, spec, configType.GetProperty(p.Name)!.GetValue(defaults)));
                }
            return Described[configType] = list;
        }
    }

    /// <summary>
    /// A config of <paramref name="configType"/> from a request's hyperparameters object: every field the request
    /// names is checked (type, range, allowed values; unknown names are errors), every other field keeps its
    /// documented default. Errors name the field under <paramref name="prefix"/> (<c>method.dpo.hyperparameters.</c>).
    /// </summary>
    public static MethodConfig Resolve(Type configType, JsonElement? hyperparameters, string prefix, int seed, Action<string, string> err)
    {
        var config = (MethodConfig)Activator.CreateInstance(configType)!;
        var known = Describe(configType);
        int failures = 0;
        var errors = new Action<string, string>((f, m) => { failures++; err(f, m); });
        if (hyperparameters is JsonElement hp && hp.ValueKind != JsonValueKind.Null)
        {
            if (hp.ValueKind != JsonValueKind.Object) errors(prefix.TrimEnd('.'), "must be an object");
            else
                foreach (var field in hp.EnumerateObject())
                {
                    var info = known.FirstOrDefault(h => h.Name == field.Name);
                    if (info is null)
                    {
                        errors(prefix + field.Name, $"unknown hyperparameter; this method takes {string.Join(", ", known.Select(h => h.Name))}");
                        continue;
                    }
                    if (Parse(info, field.Value, out var value, out var message)) { if (value is not Unset) info.Property.SetValue(config, value); }
                    else errors(prefix + field.Name, message!);
                }
        }
        typeof(MethodConfig).GetProperty(nameof(MethodConfig.Seed))!.SetValue(config, seed);
        config.Validate(prefix, errors); // fields that failed their own checks kept their defaults
        return failures == 0 ? config.Normalize() : config;
    }

    /// <summary>A field left to its default ("auto", or null).</summary>
    sealed class Unset { public static readonly Unset Value = new(); }

    static bool Parse(HyperparameterInfo h, JsonElement v, out object? value, out string? message)
    {
        var s = h.Spec;
        value = Unset.Value; message = null;
        if (v.ValueKind == JsonValueKind.Null) return true;
        if (s.Auto && v.ValueKind == JsonValueKind.String && v.GetString() == "auto") return true;
        string range = s.Min > double.MinValue || s.Max < double.MaxValue ? $" from {Num(s.Min)} to {Num(s.Max)}" : "";
        string auto = s.Auto ? "\"auto\" or " : "";
        var t = h.ValueType;
        if (t == typeof(int))
        {
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) && i >= s.Min && i <= s.Max) { value = i; return true; }
            message = s.Auto ? $"must be {auto}an integer{range}" : $"must be an integer between {Num(s.Min)} and {Num(s.Max)}";
            return false;
        }
        if (t == typeof(double))
        {
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var d) && double.IsFinite(d) && d >= s.Min && d <= s.Max) { value = d; return true; }
            message = s.Auto ? $"must be {auto}a number{range}" : $"must be between {Num(s.Min)} and {Num(s.Max)}";
            return false;
        }
        if (t == typeof(bool))
        {
            if (v.ValueKind is JsonValueKind.True or JsonValueKind.False) { value = v.GetBoolean(); return true; }
            message = "must be true or false";
            return false;
        }
        if (t == typeof(string))
        {
            if (v.ValueKind == JsonValueKind.String && v.GetString() is { } str && (s.OneOf is null || s.OneOf.Contains(str))) { value = str; return true; }
            message = s.OneOf is null ? "must be a string" : $"must be one of {string.Join(", ", s.OneOf)}";
            if (v.ValueKind == JsonValueKind.String && s.OneOf is not null) message = $"unknown {h.Name} \"{v.GetString()}\"; supported: {string.Join(", ", s.OneOf)}";
            return false;
        }
        if (t == typeof(JsonElement))
        {
            if (v.ValueKind == JsonValueKind.Object) { value = v.Clone(); return true; }
            message = "must be an object";
            return false;
        }
        // A list of strings.
        if (v.ValueKind == JsonValueKind.Array && v.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String))
        {
            value = v.EnumerateArray().Select(x => x.GetString()!).ToList();
            return true;
        }
        message = "must be an array of strings";
        return false;
    }

    static string Num(double x) => x.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static T FromJson<T>(string json) where T : MethodConfig =>
        JsonSerializer.Deserialize<T>(json, Json) ?? throw new InvalidDataException("empty config");

    public static MethodConfig FromJson(Type configType, string json) =>
        (MethodConfig?)JsonSerializer.Deserialize(json, configType, Json) ?? throw new InvalidDataException("empty config");
}
