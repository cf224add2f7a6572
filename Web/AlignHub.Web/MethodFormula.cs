using System.Net;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Components;

namespace AlignHub.Web;

/// <summary>
/// The formula in a method's summary, set as mathematics: the first <c>L = …</c> or <c>A_i = …</c> clause is lifted
/// out and drawn with Greek letters, subscripts and operators (β, σ, π, π_ref, y_w, ≈), the rest stays prose.
/// </summary>
public static partial class MethodFormula
{
    [GeneratedRegex(@"(?<![A-Za-z])(L|A_i|A_t|rho_t|KL)\s=\s")]
    private static partial Regex Start();

    /// <summary>(prose before, the formula or null, prose after).</summary>
    public static (string Before, string? Formula, string After) Split(string summary)
    {
        var m = Start().Match(summary);
        if (!m.Success) return (summary, null, "");
        int depth = 0, end = summary.Length;
        for (int i = m.Index; i < summary.Length; i++)
        {
            char c = summary[i];
            if (c is '(' or '[' or '{') depth++;
            else if (c is ')' or ']' or '}') depth--;
            else if (depth == 0 && (c == ';' || (c == '.' && (i + 1 == summary.Length || summary[i + 1] == ' ')) || (c == ',' && i + 1 < summary.Length && summary[i + 1] == ' ' && IsWord(summary, i + 2))))
            { end = i; break; }
        }
        return (summary[..m.Index].TrimEnd(' ', ':'), summary[m.Index..end].Trim(), summary[end..].TrimStart(';', '.', ',', ' '));
    }

    static bool IsWord(string s, int i)
    {
        int j = i;
        while (j < s.Length && char.IsLetter(s[j])) j++;
        return j - i >= 4; // ", where ...", ", the ...": prose follows
    }

    static readonly (string From, string To)[] Words =
    [
        ("sigmoid", "σ"), ("beta", "β"), ("lambda", "λ"), ("gamma", "γ"), ("epsilon", "ε"), ("rho", "ρ"), ("sum", "Σ"),
        ("pi_old", "π<sub>old</sub>"), ("ref", "π<sub>ref</sub>"), ("pi", "π"),
    ];

    [GeneratedRegex(@"([A-Za-z]+)_([A-Za-z0-9<]+|\{[^}]*\})")]
    private static partial Regex Subscript();

    [GeneratedRegex(@"\b([A-Za-z_]+)\b")]
    private static partial Regex Word();

    public static MarkupString Render(string formula)
    {
        var html = WebUtility.HtmlEncode(formula);
        html = Word().Replace(html, m =>
        {
            foreach (var (from, to) in Words) if (m.Value == from) return to;
            return m.Value;
        });
        html = Subscript().Replace(html, m => m.Groups[1].Value is "sub" ? m.Value : $"{m.Groups[1].Value}<sub>{m.Groups[2].Value.Trim('{', '}')}</sub>");
        html = html.Replace(" * ", " · ").Replace("^2", "²").Replace("&gt;=", "≥").Replace("&lt;=", "≤");
        return new MarkupString(html);
    }
}
