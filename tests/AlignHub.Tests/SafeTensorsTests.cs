using System.Text;
using AlignHub.Domain;
using AlignHub.Training.IO;
using AlignHub.Training.Models;
using TorchSharp;
using Xunit;

namespace AlignHub.Tests;

public class SafeTensorsTests
{
    static string Temp(string name) => Path.Combine(Directory.CreateTempSubdirectory("alignhub-st-").FullName, name);
    static ModelArchitecture Tiny => ModelArchitecture.Parse(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]));

    [Fact]
    public void Save_then_load_gives_bit_identical_logits()
    {
        torch.manual_seed(1);
        using var a = new Gpt2LMHeadModel(Tiny);
        torch.manual_seed(2);
        using var b = new Gpt2LMHeadModel(Tiny);
        var path = Temp("model.safetensors");
        SafeTensors.Save(a, path, new Dictionary<string, string> { ["format"] = "pt" });
        SafeTensors.Load(b, path);
        a.eval(); b.eval();
        using var ids = torch.tensor(new long[] { 256, 72, 105, 33, 257 }, [1, 5]);
        using var la = a.forward(ids);
        using var lb = b.forward(ids);
        Assert.Equal(la.data<float>().ToArray(), lb.data<float>().ToArray()); // bit-identical, not approximately equal
        Assert.Contains("transformer.h.0.attn.c_attn.weight", SafeTensors.Read(path).Keys);
    }

    [Fact]
    public void A_file_written_by_hand_from_the_spec_loads_F32_F16_and_BF16()
    {
        // Header JSON, then data: a F32 [2] = {1.5, -2}, b F16 [3] = {1, -2, 0.5}, c BF16 [1, 2] = {1, 3} (offsets relative to the data).
        var header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   + "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[8,14]},"
                   + "\"c\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[14,18]},"
                   + "\"__metadata__\":{\"format\":\"pt\"}}";
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new List<byte>();
        bytes.AddRange(BitConverter.GetBytes((ulong)json.Length));
        bytes.AddRange(json);
        bytes.AddRange(BitConverter.GetBytes(1.5f));
        bytes.AddRange(BitConverter.GetBytes(-2f));
        foreach (ushort h in new ushort[] { 0x3C00, 0xC000, 0x3800 }) bytes.AddRange(BitConverter.GetBytes(h)); // IEEE half
        foreach (ushort h in new ushort[] { 0x3F80, 0x4040 }) bytes.AddRange(BitConverter.GetBytes(h));         // bfloat16
        var path = Temp("hand.safetensors");
        File.WriteAllBytes(path, bytes.ToArray());

        var t = SafeTensors.Read(path);
        Assert.Equal([1.5f, -2f], t["a"].data<float>().ToArray());
        Assert.Equal([1f, -2f, 0.5f], t["b"].data<float>().ToArray());
        Assert.Equal([1L, 2L], t["c"].shape);
        Assert.Equal([1f, 3f], t["c"].data<float>().ToArray());
    }

    [Fact]
    public void Wrong_shape_missing_key_and_unexpected_key_name_the_tensor()
    {
        torch.manual_seed(1);
        using var model = new Gpt2LMHeadModel(Tiny);
        var all = model.named_parameters().Select(p => (p.name, (torch.Tensor)p.parameter)).ToList();

        var missing = Temp("missing.safetensors");
        SafeTensors.Write(missing, all.Where(p => p.name != "transformer.ln_f.bias").ToList());
        var e1 = Assert.Throws<InvalidDataException>(() => SafeTensors.Load(model, missing));
        Assert.Contains("missing tensor \"transformer.ln_f.bias\"", e1.Message);

        var wrong = Temp("wrong.safetensors");
        SafeTensors.Write(wrong, all.Select(p => p.name == "transformer.wpe.weight" ? (p.name, torch.zeros(7, 64)) : p).ToList());
        var e2 = Assert.Throws<InvalidDataException>(() => SafeTensors.Load(model, wrong));
        Assert.Contains("\"transformer.wpe.weight\" has shape [7, 64]", e2.Message);

        var extra = Temp("extra.safetensors");
        SafeTensors.Write(extra, [.. all, ("lm_head.weight", torch.zeros(2, 2))]);
        var e3 = Assert.Throws<InvalidDataException>(() => SafeTensors.Load(model, extra));
        Assert.Contains("unexpected tensor \"lm_head.weight\"", e3.Message);
    }
}
