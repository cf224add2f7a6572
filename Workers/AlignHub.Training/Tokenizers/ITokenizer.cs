namespace AlignHub.Training.Tokenizers;

public interface ITokenizer
{
    int VocabSize { get; }
    int BosId { get; }
    int EosId { get; }
    int PadId { get; }
    /// <summary>Whether encoding a text as transformers' <c>tokenizer(text)</c> would put the BOS first.</summary>
    bool AddBos { get; }
    /// <summary>Whether a generated id ends a completion: the EOS, or another end id the model's configs name (Llama 3.1's &lt;|eot_id|&gt; and &lt;|end_of_text|&gt;).</summary>
    bool IsEos(int id) => id == EosId;
    int[] Encode(string text);
    string Decode(IEnumerable<int> ids);
}
