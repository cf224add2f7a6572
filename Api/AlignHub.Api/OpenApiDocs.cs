using System.Text.Json;
using System.Text.Json.Nodes;
using AlignHub.Domain;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace AlignHub.Api;

/// <summary>
/// The OpenAPI document's extras: the bearer-key scheme, an example request for every job method, and a schema of
/// every method's hyperparameters (type, range, allowed values, default and help), read from the method registry
/// and its config records, so the document cannot drift from the code.
/// </summary>
public static class OpenApiDocs
{
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
                foreach (var m in Methods.All)
                    media.Examples[m.Name] = new OpenApiExample { Summary = m.Title, Value = JsonSerializer.SerializeToNode(m.Example, ApiJson.Options) };
            }
            return Task.CompletedTask;
        });
        // Each method's settings object under its name in MethodRequest, with its hyperparameters' schema.
        o.AddDocumentTransformer((doc, _, _) =>
        {
            doc.Components ??= new OpenApiComponents();
            doc.Components.Schemas ??= new Dictionary<string, IOpenApiSchema>();
            foreach (var m in Methods.All)
                doc.Components.Schemas[m.HyperparametersSchema] = new OpenApiSchema
                {
                    Type = JsonSchemaType.Object,
                    Description = $"{m.Title}: {m.Summary}",
                    Properties = m.Hyperparameters.ToDictionary(h => h.Name, h => (IOpenApiSchema)Property(h)),
                };
            if (doc.Components.Schemas.TryGetValue("MethodRequest", out var request) && request is OpenApiSchema r)
            {
                r.Properties ??= new Dictionary<string, IOpenApiSchema>();
                r.Properties.Remove("settings");
                foreach (var m in Methods.All)
                    r.Properties[m.Name] = new OpenApiSchema
                    {
                        Type = JsonSchemaType.Object | JsonSchemaType.Null,
                        Description = $"Settings of method.type = \"{m.Name}\"",
                        Properties = new Dictionary<string, IOpenApiSchema> { ["hyperparameters"] = new OpenApiSchemaReference(m.HyperparametersSchema, doc) }
                            .Concat(m.SettingsFields.Select(f => KeyValuePair.Create(f, (IOpenApiSchema)Property(m.Hyperparameters.Single(h => h.Name == f)))))
                            .ToDictionary(),
                    };
            }
            return Task.CompletedTask;
        });
    }

    static OpenApiSchema Property(HyperparameterInfo h)
    {
        var type = h.Kind switch
        {
            "integer" => JsonSchemaType.Integer,
            "number" => JsonSchemaType.Number,
            "boolean" => JsonSchemaType.Boolean,
            "string" => JsonSchemaType.String,
            "object" => JsonSchemaType.Object,
            _ => JsonSchemaType.Array,
        };
        if (h.Spec.Auto) type |= JsonSchemaType.String;
        if (h.IsNullable) type |= JsonSchemaType.Null;
        var s = new OpenApiSchema { Type = type, Description = h.Description, Default = JsonSerializer.SerializeToNode(h.Default, Hyperparameters.Json) };
        if (h.Kind == "array") s.Items = new OpenApiSchema { Type = JsonSchemaType.String };
        if (h.Spec.Min > double.MinValue) s.Minimum = h.Spec.Min.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (h.Spec.Max < double.MaxValue) s.Maximum = h.Spec.Max.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (h.Spec.OneOf is { } values) s.Enum = values.Select(v => (JsonNode)JsonValue.Create(v)).ToList();
        return s;
    }
}
