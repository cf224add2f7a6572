namespace AlignHub.Domain;

/// <summary>Which tokenizer a Hugging Face model folder carries, told by its files alone.</summary>
public static class TokenizerFiles
{
    public const string Byte = "byte", Gpt2Bpe = "gpt2-bpe", SentencePiece = "sentencepiece", Tiktoken = "tiktoken";

    /// <summary>Files (besides config.json and weights) that travel with a model: tokenizer and generation settings.</summary>
    public static readonly string[] Companions =
        ["vocab.json", "merges.txt", "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

    /// <summary>
    /// <c>vocab.json</c> + <c>merges.txt</c>: GPT-2 byte-level BPE; <c>tokenizer.model</c>: SentencePiece;
    /// a <c>*.tiktoken</c> file: tiktoken; none of them: the built-in byte tokenizer.
    /// </summary>
    public static string Detect(string folder)
    {
        if (File.Exists(Path.Combine(folder, "vocab.json")) && File.Exists(Path.Combine(folder, "merges.txt"))) return Gpt2Bpe;
        if (File.Exists(Path.Combine(folder, "tokenizer.model"))) return SentencePiece;
        if (TiktokenFile(folder) is not null) return Tiktoken;
        return Byte;
    }

    public static string? TiktokenFile(string folder) =>
        Directory.Exists(folder) ? Directory.EnumerateFiles(folder, "*.tiktoken").OrderBy(f => f, StringComparer.Ordinal).FirstOrDefault() : null;
}
