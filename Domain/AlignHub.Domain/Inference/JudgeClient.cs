using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using AlignHub.Domain.Templates;

namespace AlignHub.Domain.Inference;

/// <summary>
/// Asks a <see cref="Judge"/>: a local judge through the worker's model server, a remote one through its
/// OpenAI-compatible <c>/chat/completions</c> (greedy, the judge's <c>max_tokens</c>). Errors name the judge and the
/// status, never its key.
/// </summary>
public sealed class JudgeClient(IInferenceService? inference, Func<string, ModelRecord?> findModel, HttpClient? http = null) : IPairwiseJudging
{
    static readonly HttpClient Shared = new() { Timeout = TimeSpan.FromMinutes(2) };
    readonly HttpClient client = http ?? Shared;

    /// <summary>The judge's answer to one user message.</summary>
    public Task<string> AskAsync(Judge judge, string content, CancellationToken ct) => AskAsync(judge, [new ChatMessage("user", content)], judge.MaxTokens, ct);

    /// <summary>
    /// How score_model graders ask their model (<see cref="Grader.Bind"/>): a judge's id names that judge's model or
    /// endpoint; anything else is a registered model served here. Synchronous, for trainers' reward sources; a slow
    /// answer is abandoned when <paramref name="ct"/> fires (the job is cancelled, or its worker stops).
    /// </summary>
    public Func<ScoreModel, IReadOnlyList<ChatMessage>, string> GraderAsk(Func<string, Judge?> findJudge, CancellationToken ct) => (g, messages) =>
    {
        var judge = g.Model.StartsWith("judge-", StringComparison.Ordinal)
            ? findJudge(g.Model) ?? throw new InvalidDataException($"score_model grader \"{g.Name}\": judge \"{g.Model}\" does not exist")
            : new Judge { Id = "", Name = g.Name, Mode = "pointwise", Model = g.Model, PromptTemplate = "" };
        return AskAsync(judge, messages, g.MaxTokens, ct).GetAwaiter().GetResult();
    };

    /// <summary>The judge's answer to a conversation, at most <paramref name="maxTokens"/> tokens, greedy.</summary>
    public async Task<string> AskAsync(Judge judge, IReadOnlyList<ChatMessage> messages, int maxTokens, CancellationToken ct)
    {
        if (judge.Model is { } local)
        {
            if (inference is null) throw new InvalidOperationException($"judge \"{judge.Name}\" runs on a local model, and this process serves none (it needs the worker role)");
            var model = findModel(local) ?? throw new InvalidDataException($"judge \"{judge.Name}\": model \"{local}\" is no longer registered");
            var text = new StringBuilder();
            await foreach (var e in inference.GenerateAsync(new InferenceRequest
            {
                Model = model, Messages = messages, MaxTokens = maxTokens, Temperature = 0,
            }, ct))
                if (e is TextDelta d) text.Append(d.Text);
            return text.ToString();
        }
        using var req = new HttpRequestMessage(HttpMethod.Post, judge.BaseUrl + "/chat/completions")
        {
            Content = JsonContent.Create(new { model = judge.RemoteModel, messages = messages.Select(m => new { role = m.Role, content = m.Content }), temperature = 0, max_tokens = maxTokens }),
        };
        if (!string.IsNullOrEmpty(judge.ApiKeySecret)) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", judge.ApiKeySecret);
        using var res = await client.SendAsync(req, ct);
        if (!res.IsSuccessStatusCode)
            throw new InvalidDataException($"judge \"{judge.Name}\": {judge.BaseUrl} answered {(int)res.StatusCode} {res.ReasonPhrase}");
        using var doc = JsonDocument.Parse(await res.Content.ReadAsStringAsync(ct));
        return doc.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString() ?? "";
    }

    /// <summary>
    /// A pairwise verdict: asked with a as A and b as B, then the other way round; a side wins only when both orders pick
    /// it. A judge whose model is a general preference model is asked for P(A &gt; B) in each order instead of a letter,
    /// and picks the side above 1/2 (its answers read <c>P(A &gt; B) = 0.73</c>).
    /// </summary>
    public async Task<PairVerdict> CompareAsync(Judge judge, string prompt, string a, string b, CancellationToken ct)
    {
        if (judge.Model is { } local && findModel(local) is { } record && ModelArchitecture.Parse(record.ConfigJson).IsPreferenceModel)
        {
            if (inference is null) throw new InvalidOperationException($"judge \"{judge.Name}\" runs on a local model, and this process serves none (it needs the worker role)");
            double pab = await inference.PreferenceAsync(record, prompt, a, b, ct), pba = await inference.PreferenceAsync(record, prompt, b, a, ct);
            static string Side(double p) => p > 0.5 ? "a" : p < 0.5 ? "b" : "none";
            static string Said(double p) => "P(A > B) = " + p.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture);
            return new PairVerdict(JudgePrompts.Verdict(Side(pab), Side(pba)), Side(pab), Side(pba), Said(pab), Said(pba));
        }
        var first = await AskAsync(judge, JudgePrompts.Pairwise(judge.PromptTemplate, prompt, a, b), ct);
        var second = await AskAsync(judge, JudgePrompts.Pairwise(judge.PromptTemplate, prompt, b, a), ct);
        var (p1, p2) = (JudgePrompts.Pick(first), JudgePrompts.Pick(second));
        return new PairVerdict(JudgePrompts.Verdict(p1, p2), p1, p2, first, second);
    }

    /// <summary>A pointwise score in the judge's range (null when the answer holds no number).</summary>
    public async Task<(double? Score, string Answer)> ScoreAsync(Judge judge, string prompt, string response, CancellationToken ct)
    {
        var answer = await AskAsync(judge, JudgePrompts.Pointwise(judge.PromptTemplate, prompt, response, judge.RangeMin, judge.RangeMax), ct);
        return (JudgePrompts.Score(answer, judge.RangeMin, judge.RangeMax), answer);
    }
}
