using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>Judges as a resource (<c>/v1/judges</c>): created, listed, read and deleted; the key is never echoed.</summary>
public sealed class JudgeService(IDbContextFactory<AlignHubDb> dbs)
{
    public sealed record CreateJudgeRequest(string? Name, string? Mode, string? Model, string? BaseUrl, string? RemoteModel, string? ApiKey,
        string? PromptTemplate, double[]? Range, int? MaxTokens);

    public abstract record Result;
    public sealed record Created(Judge Judge) : Result;
    public sealed record Invalid(string Field, string Message) : Result;

    public async Task<Result> CreateAsync(CreateJudgeRequest r, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(r.Name) || r.Name.Length > 200) return new Invalid("name", "name is required (at most 200 characters)");
        var mode = r.Mode ?? "pairwise";
        if (mode is not ("pairwise" or "pointwise")) return new Invalid("mode", "mode must be pairwise or pointwise");
        bool local = !string.IsNullOrWhiteSpace(r.Model), remote = !string.IsNullOrWhiteSpace(r.BaseUrl);
        if (local == remote) return new Invalid(local ? "base_url" : "model", "name either a registered model (model) or an OpenAI-compatible endpoint (base_url with remote_model)");
        if (remote)
        {
            if (!Uri.TryCreate(r.BaseUrl, UriKind.Absolute, out var u) || u.Scheme is not ("http" or "https")) return new Invalid("base_url", "base_url must be an http(s) URL such as https://host/v1");
            if (string.IsNullOrWhiteSpace(r.RemoteModel)) return new Invalid("remote_model", "remote_model names the model at base_url");
        }
        var template = r.PromptTemplate ?? (mode == "pairwise" ? JudgePrompts.DefaultPairwise : JudgePrompts.DefaultPointwise);
        string[] needs = mode == "pairwise" ? ["{{response_a}}", "{{response_b}}"] : ["{{response}}"];
        if (needs.FirstOrDefault(n => !template.Contains(n)) is { } missing) return new Invalid("prompt_template", $"the {mode} template must contain {missing}");
        if (template.Length > 20_000) return new Invalid("prompt_template", "at most 20,000 characters");
        var range = r.Range ?? [0, 10];
        if (range.Length != 2 || !(range[0] < range[1]) || range.Any(x => !double.IsFinite(x))) return new Invalid("range", "range must be [min, max] with min < max");
        int maxTokens = r.MaxTokens ?? 8;
        if (maxTokens is < 1 or > 1024) return new Invalid("max_tokens", "max_tokens must be from 1 to 1024");
        await using var db = await dbs.CreateDbContextAsync(ct);
        if (local)
        {
            if (await ModelService.FindAsync(db, r.Model!, ct) is not { } m) return new Invalid("model", $"model \"{r.Model}\" is not registered");
            var arch = ModelArchitecture.Parse(m.ConfigJson);
            if (arch.IsPreferenceModel && mode != "pairwise") return new Invalid("mode", "a general preference model judges pairs: mode must be pairwise");
            if (arch.IsRewardModel && !arch.IsPreferenceModel)
                return new Invalid("model", $"model \"{r.Model}\" is a reward model: name it as reward_model (evaluate, online jobs, frontier), or train a general preference model (method preference_model) to judge pairs");
        }
        var j = new Judge
        {
            Id = Ids.New("judge-"), Name = r.Name, Mode = mode, Model = local ? r.Model : null, BaseUrl = remote ? r.BaseUrl!.TrimEnd('/') : null,
            RemoteModel = remote ? r.RemoteModel : null, ApiKeySecret = remote ? r.ApiKey : null, PromptTemplate = template,
            RangeMin = range[0], RangeMax = range[1], MaxTokens = maxTokens, CreatedAt = Ids.Now(),
        };
        db.Judges.Add(j);
        await db.SaveChangesAsync(ct);
        return new Created(j);
    }
}
