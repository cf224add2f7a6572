using AlignHub.Api;
using AlignHub.Api.Endpoints;
using AlignHub.Domain;
using AlignHub.Web;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Scalar.AspNetCore;

var builder = WebApplication.CreateBuilder(args);
var options = builder.AddAlignHub();

var app = builder.Build();
await app.PrepareDatabaseAsync();

app.UseExceptionHandler();
app.UseStatusCodePages();
app.MapGet("/healthz", () => TypedResults.Ok(new { status = "ok" })).ExcludeFromDescription();
app.MapGet("/readyz", ReadinessEndpoint.Check).ExcludeFromDescription();

if (options.HasRole("api"))
{
    app.MapOpenApi();
    app.MapScalarApiReference();
    var v1 = app.MapGroup("/v1");
    v1.MapFiles();
    v1.MapFineTuningJobs();
    v1.MapModels();
    v1.MapAnnotation();
}
if (options.HasRole("web"))
    app.MapDashboard();

app.Lifetime.ApplicationStarted.Register(() =>
{
    var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
    foreach (var a in addresses)
        app.Logger.LogWarning("AlignHub ({Roles}) listening on {Address}{Page}", options.Roles, a, options.HasRole("web") ? " - dashboard: " + a + "/" : "");
    Console.WriteLine($"AlignHub dashboard: {string.Join(", ", addresses.Select(a => a + "/"))}  (data: {options.FullDataDir})");
});

app.Run();

/// <summary>Entry point type, for tests that host the app.</summary>
public partial class Program;
