using System.Security.Cryptography;

namespace AlignHub.Domain;

/// <summary>Ids with OpenAI's prefixes (<c>file-</c>, <c>ftjob-</c>, <c>ftckpt-</c>).</summary>
public static class Ids
{
    const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    public static string New(string prefix) => prefix + RandomNumberGenerator.GetString(Alphabet, 24);

    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    public static long NowMs() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
}
