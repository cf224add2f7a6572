using System.Diagnostics;
using Xunit;

namespace AlignHub.Tests;

/// <summary>
/// The independent implementations in tests/oracles (npm, pinned by its package-lock.json): installed with
/// <c>npm ci --ignore-scripts</c> on first use and run as node scripts that read a JSON request on stdin.
/// </summary>
public static class Oracles
{
    public static readonly string Dir = Path.Combine(AlignHubProcess.RepoRoot, "tests", "oracles");
    static readonly SemaphoreSlim Installing = new(1, 1);

    /// <summary>A package's folder inside tests/oracles/node_modules.</summary>
    public static string Package(string name) => Path.Combine(Dir, "node_modules", name);

    public static async Task EnsureAsync()
    {
        await Installing.WaitAsync();
        try
        {
            var manifest = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(Dir, "package.json")));
            var missing = manifest.RootElement.GetProperty("dependencies").EnumerateObject()
                .Any(d => !File.Exists(Path.Combine(Package(d.Name), "package.json")));
            if (!missing) return;
            var psi = new ProcessStartInfo("npm", "ci --ignore-scripts --no-audit --no-fund") { WorkingDirectory = Dir, RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEndAsync();
            var errors = p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync();
            Assert.True(p.ExitCode == 0, "npm ci in tests/oracles failed:\n" + await output + await errors);
        }
        finally { Installing.Release(); }
    }

    /// <summary>Runs a script of tests/oracles with <paramref name="stdin"/>; its exit code and stdout (stdout and stderr on failure).</summary>
    public static async Task<(int Code, string Output)> NodeAsync(string script, string stdin)
    {
        await EnsureAsync();
        var psi = new ProcessStartInfo("node", script) { WorkingDirectory = Dir, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardInput.WriteAsync(stdin);
        p.StandardInput.Close();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await p.WaitForExitAsync(cts.Token);
        return (p.ExitCode, p.ExitCode == 0 ? await stdout : await stdout + await stderr);
    }
}
