using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AlignHub.Domain;
using AlignHub.Domain.Inference;
using AlignHub.Domain.Templates;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api.Endpoints;

/// <summary>
/// OpenAI's <c>POST /v1/chat/completions</c> and <c>POST /v1/completions</c> over every registered model, fine-tuned model
/// and checkpoint: the request and response shapes (choices, usage, logprobs), and with <c>stream</c> server-sent events
/// in OpenAI's chunk format ending <c>data: [DONE]</c> (<c>stream_options.include_usage</c> adds the usage chunk). Unknown
/// fields are ignored; a bad value is a 400 naming it. The worker role serves (<see cref="IInferenceService"/>); a process
/// without it answers 503.
/// </summary>
public static class CompletionsEndpoints
{
    public static void MapCompletions(this RouteGroupBuilder v1)
    {
        var g = v1.MapGroup("").WithTags("Completions");
        g.MapPost("/chat/completions", (HttpContext http, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct) => Handle(http, dbs, chat: true, ct))
            .WithSummary("Create a chat completion (OpenAI's shape; messages rendered with the model's chat template; stream: server-sent events). Role: viewer")
            .RequireAuthorization(Auth.Read);
        g.MapPost("/completions", (HttpContext http, IDbContextFactory<AlignHubDb> dbs, CancellationToken ct) => Handle(http, dbs, chat: false, ct))
            .WithSummary("Create a text completion (OpenAI's legacy shape; the prompt as it is). Role: viewer")
            .RequireAuthorization(Auth.Read);
    }

    sealed record Parsed(InferenceRequest Request, bool Stream, bool IncludeUsage, string ModelName);

    static async Task<IResult> Handle(HttpContext http, IDbContextFactory<AlignHubDb> dbs, bool chat, CancellationToken ct)
    {
        JsonElement body;
        try { body = (await JsonDocument.ParseAsync(http.Request.Body, cancellationToken: ct)).RootElement; }
        catch (JsonException) { return Invalid("body", "the body must be a JSON object"); }
        if (body.ValueKind != JsonValueKind.Object) return Invalid("body", "the body must be a JSON object");
        var errors = new Dictionary<string, string[]>();
        void Err(string f, string m) => errors.TryAdd(f, [m]);
        var modelName = body.TryGetProperty("model", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString()! : null;
        if (string.IsNullOrWhiteSpace(modelName)) Err("model", "model is required");
        var request = Parse(body, chat, Err);
        if (errors.Count > 0) return TypedResults.ValidationProblem(errors);

        ModelRecord? model;
        await using (var db = await dbs.CreateDbContextAsync(ct)) model = await ModelService.FindAsync(db, modelName!, ct);
        if (model is null)
            return TypedResults.Problem(statusCode: 404, title: "Not found", detail: $"The model `{modelName}` does not exist (GET /v1/models lists them)",
                extensions: new Dictionary<string, object?> { ["code"] = "model_not_found" });
        var service = http.RequestServices.GetService<IInferenceService>();
        if (service is null)
            return TypedResults.Problem(statusCode: 503, title: "No model server",
                detail: "this process does not serve models (AlignHub__Roles lacks worker); send completions to a process with the worker role");
        var parsed = request! with { Model = model };
        bool stream = body.TryGetProperty("stream", out var st) && st.ValueKind == JsonValueKind.True;
        bool includeUsage = body.TryGetProperty("stream_options", out var so) && so.ValueKind == JsonValueKind.Object
                            && so.TryGetProperty("include_usage", out var iu) && iu.ValueKind == JsonValueKind.True;
        var id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        // The first event decides between a JSON error and a response: a request the server refuses (a prompt beyond the
        // context) is a 400 even when streaming.
        var events = service.GenerateAsync(parsed, ct).GetAsyncEnumerator(ct);
        bool has;
        try { has = await events.MoveNextAsync(); }
        catch (InferenceException e) { await events.DisposeAsync(); return Invalid(e.Param ?? "model", e.Message); }
        try
        {
            if (stream) { await Stream(http, events, has, chat, id, created, modelName!, includeUsage, parsed, ct); return TypedResults.Empty; }
            return await Whole(events, has, chat, id, created, modelName!, parsed);
        }
        finally { await events.DisposeAsync(); }
    }

    static IResult Invalid(string param, string message) => TypedResults.ValidationProblem(new Dictionary<string, string[]> { [param] = [message] });

    /// <summary>The request's sampling settings, OpenAI's names and ranges; every error names its field.</summary>
    static InferenceRequest? Parse(JsonElement b, bool chat, Action<string, string> err)
    {
        List<ChatMessage>? messages = null;
        string? prompt = null;
        if (chat)
        {
            if (!b.TryGetProperty("messages", out var ms) || ms.ValueKind != JsonValueKind.Array || ms.GetArrayLength() == 0)
                err("messages", "messages must be a non-empty array of {role, content}");
            else
            {
                messages = [];
                int i = 0;
                foreach (var msg in ms.EnumerateArray())
                {
                    var role = msg.ValueKind == JsonValueKind.Object && msg.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
                    if (role is null || !JsonlRows.IsRole(role)) { err($"messages[{i}].role", "role must be one of system, developer, user, assistant, tool"); break; }
                    string? content = null;
                    if (msg.TryGetProperty("content", out var c))
                    {
                        if (c.ValueKind == JsonValueKind.String) content = c.GetString();
                        else if (c.ValueKind == JsonValueKind.Array) // content parts: the text ones, joined
                            content = string.Concat(c.EnumerateArray().Where(p => p.ValueKind == JsonValueKind.Object && p.TryGetProperty("type", out var t) && t.GetString() == "text" && p.TryGetProperty("text", out _))
                                .Select(p => p.GetProperty("text").GetString()));
                        else if (c.ValueKind == JsonValueKind.Null) content = "";
                    }
                    if (content is null) { err($"messages[{i}].content", "content must be a string or an array of text parts"); break; }
                    messages.Add(new ChatMessage(role == "developer" ? "system" : role, content));
                    i++;
                }
            }
        }
        else
        {
            if (b.TryGetProperty("prompt", out var p) && p.ValueKind == JsonValueKind.String) prompt = p.GetString();
            else if (p.ValueKind == JsonValueKind.Array && p.GetArrayLength() == 1 && p[0].ValueKind == JsonValueKind.String) prompt = p[0].GetString();
            else err("prompt", "prompt must be a string (one prompt per request)");
        }
        int? Int(string name, int min, int max)
        {
            if (!b.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var x) && x >= min && x <= max) return x;
            err(name, $"{name} must be an integer from {min} to {max}");
            return null;
        }
        double? Num(string name, double min, double max)
        {
            if (!b.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var x) && x >= min && x <= max) return x;
            err(name, $"{name} must be a number from {min} to {max}");
            return null;
        }
        int maxTokens = Int("max_completion_tokens", 1, 1_000_000) ?? Int("max_tokens", 1, 1_000_000) ?? (chat ? 256 : 16);
        var temperature = Num("temperature", 0, 2) ?? 1;
        var topP = Num("top_p", 0, 1) ?? 1;
        if (topP == 0) topP = 1e-9; // the most likely token only
        var n = Int("n", 1, 16) ?? 1;
        long? seed = b.TryGetProperty("seed", out var s) && s.ValueKind == JsonValueKind.Number && s.TryGetInt64(out var sv) ? sv : null;
        if (b.TryGetProperty("seed", out var s2) && s2.ValueKind is not (JsonValueKind.Number or JsonValueKind.Null) ) err("seed", "seed must be an integer");
        List<string> stop = [];
        if (b.TryGetProperty("stop", out var stv) && stv.ValueKind != JsonValueKind.Null)
        {
            if (stv.ValueKind == JsonValueKind.String) stop.Add(stv.GetString()!);
            else if (stv.ValueKind == JsonValueKind.Array && stv.GetArrayLength() <= 4 && stv.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String))
                stop.AddRange(stv.EnumerateArray().Select(x => x.GetString()!));
            else err("stop", "stop must be a string or an array of at most 4 strings");
            if (stop.Any(string.IsNullOrEmpty)) err("stop", "stop strings must not be empty");
        }
        bool logprobs;
        int top = 0;
        if (chat)
        {
            logprobs = b.TryGetProperty("logprobs", out var lp) && lp.ValueKind == JsonValueKind.True;
            if (lp.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null)) err("logprobs", "logprobs must be true or false");
            top = Int("top_logprobs", 0, 20) ?? 0;
            if (top > 0 && !logprobs) err("top_logprobs", "top_logprobs needs logprobs: true");
        }
        else
        {
            var k = Int("logprobs", 0, 5);
            logprobs = k is not null;
            top = k ?? 0;
        }
        if (messages is null && prompt is null) return null;
        return new InferenceRequest
        {
            Model = null!, Messages = messages, Prompt = prompt, MaxTokens = maxTokens, Temperature = temperature, TopP = topP, N = n,
            Stop = stop, Seed = seed, Logprobs = logprobs, TopLogprobs = top,
        };
    }

    static JsonObject Usage(UsageReport u) => new() { ["prompt_tokens"] = u.PromptTokens, ["completion_tokens"] = u.CompletionTokens, ["total_tokens"] = u.PromptTokens + u.CompletionTokens };

    static JsonNode LogprobContent(IEnumerable<TokenLogprob> lps) => new JsonArray(lps.Select(l => (JsonNode)new JsonObject
    {
        ["token"] = l.Token, ["logprob"] = l.Logprob, ["bytes"] = new JsonArray(l.Bytes.Select(x => (JsonNode)(int)x).ToArray()),
        ["top_logprobs"] = new JsonArray((l.Top ?? []).Select(t => (JsonNode)new JsonObject
        {
            ["token"] = t.Token, ["logprob"] = t.Logprob, ["bytes"] = new JsonArray(t.Bytes.Select(x => (JsonNode)(int)x).ToArray()),
        }).ToArray()),
    }).ToArray());

    /// <summary>The legacy completions' logprobs: tokens, token_logprobs, top_logprobs (token to logprob maps), text_offset.</summary>
    static JsonObject LegacyLogprobs(List<TokenLogprob> lps)
    {
        int offset = 0;
        var offsets = new JsonArray();
        foreach (var l in lps) { offsets.Add(offset); offset += l.Token.Length; }
        return new JsonObject
        {
            ["tokens"] = new JsonArray(lps.Select(l => (JsonNode)l.Token).ToArray()),
            ["token_logprobs"] = new JsonArray(lps.Select(l => (JsonNode)l.Logprob).ToArray()),
            ["top_logprobs"] = new JsonArray(lps.Select(l => (JsonNode)new JsonObject((l.Top ?? []).GroupBy(t => t.Token).Select(t => KeyValuePair.Create(t.Key, (JsonNode?)t.First().Logprob)))).ToArray()),
            ["text_offset"] = offsets,
        };
    }

    static async Task<IResult> Whole(IAsyncEnumerator<InferenceEvent> events, bool has, bool chat, string id, long created, string model, InferenceRequest req)
    {
        var texts = Enumerable.Range(0, req.N).Select(_ => new StringBuilder()).ToArray();
        var lps = Enumerable.Range(0, req.N).Select(_ => new List<TokenLogprob>()).ToArray();
        var finish = new string?[req.N];
        UsageReport usage = new(0, 0);
        while (has)
        {
            switch (events.Current)
            {
                case TextDelta d: texts[d.Index].Append(d.Text); if (d.Logprobs is { } l) lps[d.Index].AddRange(l); break;
                case ChoiceFinished f: finish[f.Index] = f.FinishReason; break;
                case UsageReport u: usage = u; break;
            }
            has = await events.MoveNextAsync();
        }
        var choices = new JsonArray(Enumerable.Range(0, req.N).Select(i => (JsonNode)(chat
            ? new JsonObject
            {
                ["index"] = i,
                ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = texts[i].ToString(), ["refusal"] = null },
                ["logprobs"] = req.Logprobs ? new JsonObject { ["content"] = LogprobContent(lps[i]), ["refusal"] = null } : null,
                ["finish_reason"] = finish[i] ?? "stop",
            }
            : new JsonObject
            {
                ["text"] = texts[i].ToString(), ["index"] = i,
                ["logprobs"] = req.Logprobs ? LegacyLogprobs(lps[i]) : null,
                ["finish_reason"] = finish[i] ?? "stop",
            })).ToArray());
        var response = new JsonObject
        {
            ["id"] = id, ["object"] = chat ? "chat.completion" : "text_completion", ["created"] = created, ["model"] = model,
            ["choices"] = choices, ["usage"] = Usage(usage), ["system_fingerprint"] = null,
        };
        return TypedResults.Text(response.ToJsonString(), "application/json", Encoding.UTF8);
    }

    static async Task Stream(HttpContext http, IAsyncEnumerator<InferenceEvent> events, bool has, bool chat, string id, long created, string model,
        bool includeUsage, InferenceRequest req, CancellationToken ct)
    {
        var r = http.Response;
        r.StatusCode = 200;
        r.ContentType = "text/event-stream";
        r.Headers.CacheControl = "no-cache";
        r.Headers["X-Accel-Buffering"] = "no";
        async Task Send(JsonObject chunk)
        {
            await r.WriteAsync("data: " + chunk.ToJsonString() + "\n\n", ct);
            await r.Body.FlushAsync(ct);
        }
        JsonObject Chunk(JsonArray choices) => new()
        {
            ["id"] = id, ["object"] = chat ? "chat.completion.chunk" : "text_completion", ["created"] = created, ["model"] = model,
            ["system_fingerprint"] = null, ["choices"] = choices,
        };
        JsonObject Choice(int index, string? text, IReadOnlyList<TokenLogprob>? lps, string? finish, bool first = false) => chat
            ? new JsonObject
            {
                ["index"] = index,
                ["delta"] = first ? new JsonObject { ["role"] = "assistant", ["content"] = "" } : text is null ? new JsonObject() : new JsonObject { ["content"] = text },
                ["logprobs"] = req.Logprobs && lps is not null ? new JsonObject { ["content"] = LogprobContent(lps), ["refusal"] = null } : null,
                ["finish_reason"] = finish,
            }
            : new JsonObject
            {
                ["text"] = text ?? "", ["index"] = index,
                ["logprobs"] = req.Logprobs && lps is not null ? LegacyLogprobs([.. lps]) : null, ["finish_reason"] = finish,
            };
        if (chat)
            for (int i = 0; i < req.N; i++) await Send(Chunk([Choice(i, null, null, null, first: true)]));
        // The common chunk (a text delta without log-probs) is written from a template: one per token per client.
        var head = "data: " + Chunk([]).ToJsonString()[..^2]; // ...,"choices":[
        async Task SendDelta(int index, string text)
        {
            var escaped = JsonSerializer.Serialize(text);
            await r.WriteAsync(chat
                ? $"{head}{{\"index\":{index},\"delta\":{{\"content\":{escaped}}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
                : $"{head}{{\"text\":{escaped},\"index\":{index},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n", ct);
            await r.Body.FlushAsync(ct);
        }
        while (has)
        {
            switch (events.Current)
            {
                case TextDelta d when !req.Logprobs: await SendDelta(d.Index, d.Text); break;
                case TextDelta d: await Send(Chunk([Choice(d.Index, d.Text, d.Logprobs, null)])); break;
                case ChoiceFinished f: await Send(Chunk([Choice(f.Index, chat ? null : "", null, f.FinishReason)])); break;
                case UsageReport u when includeUsage:
                    var last = Chunk([]);
                    last["usage"] = Usage(u);
                    await Send(last);
                    break;
            }
            has = await events.MoveNextAsync();
        }
        await r.WriteAsync("data: [DONE]\n\n", ct);
        await r.Body.FlushAsync(ct);
    }
}
