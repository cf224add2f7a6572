using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using AlignHub.Domain;
using static TorchSharp.torch;

namespace AlignHub.Training.IO;

/// <summary>
/// safetensors, written from the format's specification: an 8-byte little-endian unsigned header length N, N bytes
/// of UTF-8 JSON (<c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}</c>, offsets
/// relative to the byte after the header), then the raw little-endian tensor data. Reads F32, F16 and BF16 (returned
/// as F32: we compute in F32 on CPU); writes F32.
/// </summary>
public static class SafeTensors
{
    /// <summary>Reads every tensor as F32 on the CPU. The caller owns (disposes) the tensors.</summary>
    public static Dictionary<string, Tensor> Read(string path)
    {
        using var s = File.OpenRead(path);
        var (entries, _, dataStart) = SafeTensorsHeader.Read(s, path);
        var result = new Dictionary<string, Tensor>();
        foreach (var e in entries)
        {
            var bytes = new byte[e.End - e.Begin];
            s.Position = dataStart + e.Begin;
            s.ReadExactly(bytes);
            result[e.Name] = tensor(ToFloats(bytes, e.DType), e.Shape, device: CPU); // host side: loaders copy into the model wherever it lives
        }
        return result;
    }

    static float[] ToFloats(byte[] bytes, string dtype)
    {
        switch (dtype)
        {
            case "F32":
            {
                var f = new float[bytes.Length / 4];
                for (int i = 0; i < f.Length; i++) f[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * 4));
                return f;
            }
            case "F16":
            {
                var f = new float[bytes.Length / 2];
                for (int i = 0; i < f.Length; i++) f[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(bytes.AsSpan(i * 2));
                return f;
            }
            default: // BF16: the high 16 bits of an F32
            {
                var f = new float[bytes.Length / 2];
                for (int i = 0; i < f.Length; i++)
                    f[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(i * 2)) << 16);
                return f;
            }
        }
    }

    /// <summary>Writes F32 tensors; the header is padded with spaces to a multiple of 8 bytes, as the reference writer does.</summary>
    public static void Write(string path, IReadOnlyList<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header[SafeTensorsHeader.MetadataKey] = metadata;
        var blobs = new List<byte[]>();
        long offset = 0;
        foreach (var (name, t) in tensors)
        {
            using var cpu = t.detach().cpu().to_type(ScalarType.Float32).contiguous();
            var floats = cpu.data<float>().ToArray();
            var bytes = new byte[floats.Length * 4];
            for (int i = 0; i < floats.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), floats[i]);
            header[name] = new Dictionary<string, object> { ["dtype"] = "F32", ["shape"] = cpu.shape, ["data_offsets"] = new[] { offset, offset + bytes.Length } };
            offset += bytes.Length;
            blobs.Add(bytes);
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int padded = (json.Length + 7) / 8 * 8;
        var tmp = path + ".tmp";
        using (var f = File.Create(tmp))
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
            f.Write(len);
            f.Write(json);
            for (int i = json.Length; i < padded; i++) f.WriteByte((byte)' ');
            foreach (var b in blobs) f.Write(b);
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Every named parameter of a module, in registration order.</summary>
    public static void Save(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, module.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).ToList(), metadata);

    /// <summary>
    /// Loads a file into a module strictly: every parameter must be present with its exact shape, and every tensor in
    /// the file must be a parameter; each error names the tensor. <paramref name="rename"/> maps file keys to module
    /// names (null: the same).
    /// </summary>
    public static void Load(nn.Module module, string path, Func<string, string>? rename = null)
    {
        var loaded = Read(path);
        try
        {
            var byName = loaded.ToDictionary(kv => rename?.Invoke(kv.Key) ?? kv.Key, kv => kv.Value);
            var parameters = module.named_parameters().ToList();
            foreach (var (name, p) in parameters)
            {
                if (!byName.TryGetValue(name, out var t))
                    throw new InvalidDataException($"{path}: missing tensor \"{name}\" (shape [{string.Join(", ", p.shape)}])");
                if (!t.shape.SequenceEqual(p.shape))
                    throw new InvalidDataException($"{path}: tensor \"{name}\" has shape [{string.Join(", ", t.shape)}], the model expects [{string.Join(", ", p.shape)}]");
            }
            var unexpected = byName.Keys.Except(parameters.Select(p => p.name)).ToList();
            if (unexpected.Count > 0)
                throw new InvalidDataException($"{path}: unexpected tensor \"{unexpected[0]}\"" + (unexpected.Count > 1 ? $" and {unexpected.Count - 1} more" : ""));
            using var _ = no_grad();
            foreach (var (name, p) in parameters) p.copy_(byName[name]);
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
    }
}
