namespace AlignHub.Training.Tokenizers;

public interface ITokenizer
{
    int VocabSize { get; }
    int BosId { get; }
    int EosId { get; }
    int PadId { get; }
    int[] Encode(string text);
    string Decode(IEnumerable<int> ids);
}
