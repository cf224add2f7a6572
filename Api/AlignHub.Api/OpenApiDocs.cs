using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using AlignHub.Domain;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace AlignHub.Api;

/// <summary>
/// The OpenAPI document's extras: the bearer-key scheme, an example request for every job method, and each
/// hyperparameter's default (read from the config records, so the document cannot drift from the code).
/// </summary>
public static class OpenApiDocs
{
    static readonly Dictionary<string, object> Defaults = new()
    {
        ["HyperparametersRequest"] = new SftConfig(),
        ["PreferenceHyperparametersRequest"] = new PreferenceConfig(),
        ["GenerateHyperparametersRequest"] = new GenerateConfig(),
        ["EvaluateHyperparametersRequest"] = new EvaluateConfig(),
    };

    static readonly (string Name, string Summary, object Body)[] JobExamples =
    [
        ("supervised", "Supervised fine-tuning (OpenAI's shape)", new { model = "alignhub/tiny", training_file = "file-abc123", seed = 1,
            method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 3, batch_size = 8, learning_rate_multiplier = "auto" } } } }),
        ("dpo", "Direct preference optimisation (OpenAI's beta; TRL's loss types)", new { model = "ft:alignhub/tiny:sft:ftjob-abc123", training_file = "file-prefs",
            method = new { type = "dpo", dpo = new { hyperparameters = new { beta = 0.1, loss_type = "sigmoid", n_epochs = 1 } } } }),
        ("reward_model", "Bradley-Terry reward model, optionally an ensemble", new { model = "alignhub/tiny", training_file = "file-prefs",
            method = new { type = "reward_model", reward_model = new { hyperparameters = new { n_epochs = 2, ensemble_size = 3 } } } }),
        ("generate", "N completions per prompt into a result file", new { model = "alignhub/tiny", training_file = "file-prompts",
            method = new { type = "generate", generate = new { hyperparameters = new { n = 2, max_new_tokens = 64, temperature = 0.8, top_p = 0.95 } } } }),
        ("evaluate", "Reward-model accuracy, implicit-reward accuracy, win rate with a bootstrap interval", new { model = "ft:alignhub/tiny:dpo:ftjob-abc123", training_file = "file-heldout",
            method = new { type = "evaluate", evaluate = new { hyperparameters = new { reward_model = "ft:alignhub/tiny:rm:ftjob-def456", bootstrap_samples = 1000 } } } }),
    ];

    public static void Configure(OpenApiOptions o)
    {
        o.AddDocumentTransformer((doc, _, _) =>
        {
            doc.Info.Title = "AlignHub API";
            doc.Info.Description = "OpenAI's fine-tuning API shape plus AlignHub's methods, models and labeling. Every endpoint but /healthz and /readyz needs `Authorization: Bearer <key>`; its summary names the least role that may call it (admin > trainer > viewer; annotator: only labeling).";
            doc.Components ??= new OpenApiComponents();
            doc.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
            doc.Components.SecuritySchemes["bearer"] = new OpenApiSecurityScheme { Type = SecuritySchemeType.Http, Scheme = "bearer", Description = "An AlignHub API key (ahk-...)" };
            doc.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference("bearer", doc)] = [] }];
            return Task.CompletedTask;
        });
        o.AddOperationTransformer((op, ctx, _) =>
        {
            if (ctx.Description.HttpMethod == "POST" && ctx.Description.RelativePath?.TrimEnd('/') == "v1/fine_tuning/jobs"
                && op.RequestBody?.Content?.TryGetValue("application/json", out var media) == true)
            {
                media.Examples ??= new Dictionary<string, IOpenApiExample>();
                foreach (var (name, summary, body) in JobExamples)
                    media.Examples[name] = new OpenApiExample { Summary = summary, Value = JsonSerializer.SerializeToNode(body, ApiJson.Options) };
            }
            return Task.CompletedTask;
        });
        // Defaults, once every schema is in the components (property schemas such as "auto"-or-number ones are only final there).
        o.AddDocumentTransformer((doc, _, _) =>
        {
            foreach (var (type, config) in Defaults)
            {
                if (doc.Components?.Schemas?.TryGetValue(type, out var schema) != true || schema!.Properties is null) continue;
                foreach (var (name, property) in schema.Properties)
                {
                    var p = config.GetType().GetProperty(Pascal(name), BindingFlags.Public | BindingFlags.Instance);
                    if (p is null || property is not OpenApiSchema s) continue;
                    var value = p.GetValue(config);
                    s.Description = $"Default: {(value is null ? "none" : JsonSerializer.Serialize(value, ApiJson.Options))}" +
                        (name is "n_epochs" or "batch_size" or "learning_rate_multiplier" or "beta" ? " (or \"auto\")" : "");
                }
            }
            return Task.CompletedTask;
        });
    }

    static string Pascal(string snake) => string.Concat(snake.Split('_').Select(w => w.Length == 0 ? w : char.ToUpperInvariant(w[0]) + w[1..]));
}
