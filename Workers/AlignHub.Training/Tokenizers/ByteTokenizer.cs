using System.Text;
using AlignHub.Domain;

namespace AlignHub.Training.Tokenizers;

/// <summary>UTF-8 bytes as ids 0..255, then bos (256), eos (257), pad (258). Needs no files.</summary>
public sealed class ByteTokenizer : ITokenizer
{
    public int VocabSize => ModelPresets.ByteVocab;
    public int BosId => ModelPresets.ByteBos;
    public int EosId => ModelPresets.ByteEos;
    public int PadId => ModelPresets.BytePad;
    /// <summary>AlignHub's convention for the byte tokenizer: a BOS first (the tiny presets are trained with it).</summary>
    public bool AddBos => true;

    public int[] Encode(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) ids[i] = bytes[i];
        return ids;
    }

    public string Decode(IEnumerable<int> ids) =>
        Encoding.UTF8.GetString(ids.Where(i => i is >= 0 and < 256).Select(i => (byte)i).ToArray());
}
