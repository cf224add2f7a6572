using System.Diagnostics;
using Xunit;

namespace AlignHub.Tests;

/// <summary>
/// OpenAI's official Node SDK (the <c>openai</c> npm package, pinned in tests/sdk/package-lock.json), unchanged, against
/// a live AlignHub: files, supervised and DPO jobs, paginated lists, retrieve, pause, resume, cancel, events,
/// checkpoints and the SDK's error classes (tests/sdk/compat.mjs).
/// </summary>
public class SdkCompatibilityTests
{
    static async Task<(int Code, string Output)> Run(string file, string args, string dir, IReadOnlyDictionary<string, string>? env = null, int timeoutSeconds = 300)
    {
        var psi = new ProcessStartInfo(file, args) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { p.Kill(true); throw new Xunit.Sdk.XunitException($"{file} {args} timed out:\n{await stdout}\n{await stderr}"); }
        return (p.ExitCode, await stdout + await stderr);
    }

    [Fact]
    public async Task The_official_openai_SDK_runs_files_jobs_pause_resume_events_and_checkpoints_unchanged()
    {
        var sdk = Path.Combine(AlignHubProcess.RepoRoot, "tests", "sdk");
        if (!File.Exists(Path.Combine(sdk, "node_modules", "openai", "package.json")))
        {
            var (code, output) = await Run("npm", "ci --no-audit --no-fund", sdk);
            Assert.True(code == 0, "npm ci in tests/sdk failed:\n" + output);
        }
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-sdk-").FullName);
        var env = new Dictionary<string, string>
        {
            ["ALIGNHUB_URL"] = app.Http.BaseAddress!.ToString().TrimEnd('/'),
            ["ALIGNHUB_KEY"] = await app.CreateKey("trainer", "sdk"),
            ["ALIGNHUB_VIEWER_KEY"] = await app.CreateKey("viewer", "sdk-viewer"),
        };
        var (exit, log) = await Run("node", "compat.mjs", sdk, env);
        Assert.True(exit == 0, $"the SDK script failed:\n{log}\n--- AlignHub log ---\n{app.Log()}");
        Assert.Contains("openai SDK compatibility: ok", log);
    }
}
