using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// Rotary-embedding frequency scaling as transformers computes it (<c>modeling_rope_utils</c>), from config.json's
/// <c>rope_scaling</c> (or transformers v5's <c>rope_parameters</c>) with <c>rope_type</c> (or the older <c>type</c>):
/// <list type="bullet">
/// <item><c>linear</c> (Chen et al., 2023, position interpolation): inv_freq / factor.</item>
/// <item><c>dynamic</c> (dynamic NTK scaling): for a sequence of L &gt; the original context C positions, the base becomes
/// theta * (factor * L / C - (factor - 1))^(d / (d - 2)); at most C positions it is unchanged. The context grows to factor * C.</item>
/// <item><c>llama3</c> (Llama 3.1): wavelengths 2 pi / inv_freq above C / low_freq_factor are divided by factor, those
/// below C / high_freq_factor kept, and those between interpolated with s = (C / wavelength - low) / (high - low):
/// (1 - s) * inv_freq / factor + s * inv_freq, C = original_max_position_embeddings.</item>
/// </list>
/// Other types (yarn, longrope) are refused with their name.
/// </summary>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor = 1, double HighFreqFactor = 4, int OriginalMaxPositions = 0)
{
    public static readonly string[] Supported = ["linear", "dynamic", "llama3"];

    /// <summary>The scaling a config.json asks for; null for none or <c>default</c>. Errors name the key.</summary>
    public static RopeScaling? Parse(JsonElement config, int maxPositions)
    {
        JsonElement s = default;
        string key = "rope_scaling";
        if (config.TryGetProperty("rope_scaling", out var a) && a.ValueKind == JsonValueKind.Object) s = a;
        else if (config.TryGetProperty("rope_parameters", out var b) && b.ValueKind == JsonValueKind.Object) (s, key) = (b, "rope_parameters");
        else if (config.TryGetProperty("rope_scaling", out var c) && c.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined))
            throw new InvalidDataException("config.json: rope_scaling must be an object");
        if (s.ValueKind != JsonValueKind.Object) return null;
        string? type = s.TryGetProperty("rope_type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()
            : s.TryGetProperty("type", out var t2) && t2.ValueKind == JsonValueKind.String ? t2.GetString() : null;
        if (type is null or "default") return null;
        if (!Supported.Contains(type))
            throw new InvalidDataException($"config.json: {key} type \"{type}\" is not supported; supported: {string.Join(", ", Supported)}");
        double Num(string name, double? fallback)
        {
            if (s.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number) return v.GetDouble();
            return fallback ?? throw new InvalidDataException($"config.json: {key}.{name} is required for {type}");
        }
        var factor = Num("factor", null);
        if (!(factor >= 1)) throw new InvalidDataException($"config.json: {key}.factor must be at least 1");
        if (type != "llama3") return new RopeScaling(type, factor, OriginalMaxPositions: maxPositions);
        var low = Num("low_freq_factor", null);
        var high = Num("high_freq_factor", null);
        if (!(high > low)) throw new InvalidDataException($"config.json: {key}.high_freq_factor must be above low_freq_factor");
        var original = (int)Num("original_max_position_embeddings", null);
        if (original <= 0) throw new InvalidDataException($"config.json: {key}.original_max_position_embeddings must be positive");
        return new RopeScaling(type, factor, low, high, original);
    }

    /// <summary>
    /// inv_freq[i] for i &lt; head_dim / 2 under this scaling, in float64; <paramref name="seqLen"/> (dynamic only): the length of
    /// the sequence the frequencies are for.
    /// </summary>
    public static double[] InverseFrequencies(int headDim, double theta, RopeScaling? scaling, long seqLen = 0)
    {
        double Base(double th, int i) => 1.0 / Math.Pow(th, 2.0 * i / headDim);
        int n = headDim / 2;
        if (scaling is { Type: "dynamic" } dyn && seqLen > dyn.OriginalMaxPositions)
        {
            double scaled = theta * Math.Pow(dyn.Factor * seqLen / dyn.OriginalMaxPositions - (dyn.Factor - 1), headDim / (headDim - 2.0));
            return [.. Enumerable.Range(0, n).Select(i => Base(scaled, i))];
        }
        var inv = Enumerable.Range(0, n).Select(i => Base(theta, i)).ToArray();
        switch (scaling?.Type)
        {
            case "linear":
                for (int i = 0; i < n; i++) inv[i] /= scaling.Factor;
                break;
            case "llama3":
            {
                double lowWavelen = scaling.OriginalMaxPositions / scaling.LowFreqFactor, highWavelen = scaling.OriginalMaxPositions / scaling.HighFreqFactor;
                for (int i = 0; i < n; i++)
                {
                    double wavelen = 2 * Math.PI / inv[i];
                    if (wavelen < highWavelen) continue;
                    if (wavelen > lowWavelen) { inv[i] /= scaling.Factor; continue; }
                    double smooth = (scaling.OriginalMaxPositions / wavelen - scaling.LowFreqFactor) / (scaling.HighFreqFactor - scaling.LowFreqFactor);
                    inv[i] = (1 - smooth) * inv[i] / scaling.Factor + smooth * inv[i];
                }
                break;
            }
        }
        return inv;
    }
}
