using System.Text.Json;

namespace AlignHub.Domain;

/// <summary>Which tokenizer a Hugging Face model folder carries, told by its files alone.</summary>
public static class TokenizerFiles
{
    public const string Byte = "byte", Gpt2Bpe = "gpt2-bpe", SentencePiece = "sentencepiece", Tiktoken = "tiktoken", TokenizerJson = "tokenizer-json";

    /// <summary>Files (besides config.json and weights) that travel with a model: tokenizer, chat template and generation settings.</summary>
    public static readonly string[] Companions =
        ["vocab.json", "merges.txt", "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja"];

    /// <summary>
    /// <c>tokenizer.json</c> with a BPE model: the fast tokenizer transformers loads first; else <c>vocab.json</c> +
    /// <c>merges.txt</c>: GPT-2 byte-level BPE; <c>tokenizer.model</c>: SentencePiece; a <c>*.tiktoken</c> file:
    /// tiktoken; none of them: the built-in byte tokenizer.
    /// </summary>
    public static string Detect(string folder)
    {
        if (TokenizerJsonModel(folder) == "BPE") return TokenizerJson;
        if (File.Exists(Path.Combine(folder, "vocab.json")) && File.Exists(Path.Combine(folder, "merges.txt"))) return Gpt2Bpe;
        if (File.Exists(Path.Combine(folder, "tokenizer.model"))) return SentencePiece;
        if (TiktokenFile(folder) is not null) return Tiktoken;
        return Byte;
    }

    /// <summary>
    /// The <c>model.type</c> of a folder's tokenizer.json (BPE, WordPiece, Unigram, WordLevel; BPE when the model names
    /// none, as the tokenizers library reads it), read without loading the vocabulary; null when there is no such file,
    /// "unreadable" when it is not JSON of that shape.
    /// </summary>
    public static string? TokenizerJsonModel(string folder)
    {
        var path = Path.Combine(folder, "tokenizer.json");
        if (!File.Exists(path)) return null;
        try
        {
            var bytes = File.ReadAllBytes(path);
            var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { MaxDepth = 256 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return "unreadable";
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.GetString();
                reader.Read();
                if (name != "model") { reader.Skip(); continue; }
                if (reader.TokenType != JsonTokenType.StartObject) return "unreadable";
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var key = reader.GetString();
                    reader.Read();
                    if (key == "type" && reader.TokenType == JsonTokenType.String) return reader.GetString();
                    reader.Skip();
                }
                return "BPE";
            }
            return "unreadable";
        }
        catch (JsonException) { return "unreadable"; }
    }

    public static string? TiktokenFile(string folder) =>
        Directory.Exists(folder) ? Directory.EnumerateFiles(folder, "*.tiktoken").OrderBy(f => f, StringComparer.Ordinal).FirstOrDefault() : null;
}
