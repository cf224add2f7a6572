using System.Buffers.Binary;
using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>
/// The header of a safetensors file (8-byte little-endian length N, N bytes of JSON), parsed without any tensor
/// library: the API checks uploaded checkpoints and counts their parameters with it.
/// </summary>
public static class SafeTensorsHeader
{
    public const string MetadataKey = "__metadata__";

    public sealed record Entry(string Name, string DType, long[] Shape, long Begin, long End);

    /// <summary>Parses the header of a safetensors file; every entry is checked against the data size.</summary>
    public static (List<Entry> Entries, Dictionary<string, string> Metadata, long DataStart) Read(Stream s, string what)
    {
        Span<byte> lenBytes = stackalloc byte[8];
        s.ReadExactly(lenBytes);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (n == 0 || n > 100_000_000 || (long)n > s.Length - 8)
            throw new InvalidDataException($"{what}: header length {n} does not fit a file of {s.Length} bytes");
        var json = new byte[n];
        s.ReadExactly(json);
        var dataStart = 8 + (long)n;
        var dataLength = s.Length - dataStart;
        using var doc = JsonDocument.Parse(json);
        var entries = new List<Entry>();
        var metadata = new Dictionary<string, string>();
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == MetadataKey)
            {
                foreach (var m in p.Value.EnumerateObject()) metadata[m.Name] = m.Value.GetString() ?? "";
                continue;
            }
            var dtype = p.Value.GetProperty("dtype").GetString()!;
            var shape = p.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            var offsets = p.Value.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || offsets[1] > dataLength)
                throw new InvalidDataException($"{what}: tensor \"{p.Name}\" has data_offsets outside the data ({dataLength} bytes)");
            long count = shape.Aggregate(1L, (a, b) => a * b);
            if (count * ElementSize(dtype, p.Name, what) != offsets[1] - offsets[0])
                throw new InvalidDataException($"{what}: tensor \"{p.Name}\" of shape [{string.Join(", ", shape)}] {dtype} needs {count * ElementSize(dtype, p.Name, what)} bytes, its offsets span {offsets[1] - offsets[0]}");
            entries.Add(new Entry(p.Name, dtype, shape, offsets[0], offsets[1]));
        }
        return (entries, metadata, dataStart);
    }

    public static int ElementSize(string dtype, string name, string what) => dtype switch
    {
        "F32" => 4,
        "F16" or "BF16" => 2,
        _ => throw new InvalidDataException($"{what}: tensor \"{name}\" has dtype {dtype}; supported: F32, F16, BF16"),
    };

}

/// <summary>
/// The weight files of a Hugging Face model folder: <c>model.safetensors</c>, or the shards that
/// <c>model.safetensors.index.json</c> maps tensors to (<c>{"weight_map": {tensor: shard file}}</c>).
/// </summary>
public static class SafeTensorsFolder
{
    public const string SingleFile = "model.safetensors", IndexFile = "model.safetensors.index.json";

    public static bool Exists(string folder) =>
        File.Exists(Path.Combine(folder, SingleFile)) || File.Exists(Path.Combine(folder, IndexFile));

    /// <summary>
    /// The single file, or every shard the index names (each once); empty when the folder has neither. A bad index
    /// throws <see cref="InvalidDataException"/>, a missing shard <see cref="FileNotFoundException"/>; both name the file.
    /// </summary>
    public static IReadOnlyList<string> Files(string folder)
    {
        var single = Path.Combine(folder, SingleFile);
        if (File.Exists(single)) return [single];
        var index = Path.Combine(folder, IndexFile);
        if (!File.Exists(index)) return [];
        JsonElement map;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var m) || m.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{IndexFile}: no \"weight_map\" object");
            map = m.Clone();
        }
        catch (JsonException e) { throw new InvalidDataException($"{IndexFile} is not valid JSON: {e.Message}"); }
        var shards = new List<string>();
        foreach (var p in map.EnumerateObject())
        {
            var shard = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : "";
            if (shard.Length == 0 || shard.Contains('/') || shard.Contains('\\') || shard.StartsWith('.'))
                throw new InvalidDataException($"{IndexFile}: tensor \"{p.Name}\" maps to \"{shard}\", not a file of this folder");
            var path = Path.Combine(folder, shard);
            if (!shards.Contains(path)) shards.Add(path);
        }
        foreach (var s in shards)
            if (!File.Exists(s)) throw new FileNotFoundException($"{IndexFile} names shard {Path.GetFileName(s)}, which is missing");
        return shards;
    }
}
