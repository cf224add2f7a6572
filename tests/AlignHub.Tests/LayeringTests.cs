using System.Reflection;
using AlignHub.Domain;
using Xunit;

namespace AlignHub.Tests;

/// <summary>The layers say what they are: what each assembly may reference, and that pages go through services.</summary>
public class LayeringTests
{
    static IReadOnlyList<string> References(Assembly a) => a.GetReferencedAssemblies().Select(r => r.Name!).ToList();

    [Fact]
    public void The_contracts_reference_no_EF_Hangfire_ASP_NET_HTTP_or_TorchSharp()
    {
        var contracts = typeof(JobMethod).Assembly;
        Assert.Equal("AlignHub.Contracts", contracts.GetName().Name);
        foreach (var r in References(contracts))
            Assert.False(r.StartsWith("Microsoft.EntityFrameworkCore") || r.StartsWith("Hangfire") || r.StartsWith("Microsoft.AspNetCore")
                || r.StartsWith("TorchSharp") || r == "System.Net.Http" || r.StartsWith("Npgsql"), $"AlignHub.Contracts references {r}");
        // The method definitions, configs, graders, templates and job records live there.
        foreach (var t in new[] { typeof(GrpoConfig), typeof(Grader), typeof(ModelArchitecture), typeof(FineTuningJob), typeof(JobSpec), typeof(AlignHub.Domain.Templates.ChatMessage), typeof(MetricNames) })
            Assert.Equal(contracts, t.Assembly);
    }

    [Fact]
    public void The_training_library_references_the_contracts_and_no_EF_or_Hangfire()
    {
        var training = typeof(AlignHub.Training.Rl.OnlineRlMethod).Assembly;
        var refs = References(training);
        Assert.Contains("AlignHub.Contracts", refs);
        Assert.DoesNotContain("AlignHub.Domain", refs);
        Assert.DoesNotContain(refs, r => r.StartsWith("Microsoft.EntityFrameworkCore") || r.StartsWith("Hangfire") || r.StartsWith("Npgsql"));
        // Only the training library references TorchSharp.
        Assert.Contains("TorchSharp", refs);
        Assert.DoesNotContain("TorchSharp", References(typeof(JobService).Assembly));
    }

    [Fact]
    public void Pages_use_services_not_the_DbContext()
    {
        var web = Path.Combine(AlignHubProcess.RepoRoot, "Web");
        var files = Directory.GetFiles(web, "*.razor", SearchOption.AllDirectories).Concat(Directory.GetFiles(web, "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}")).ToList();
        Assert.NotEmpty(files);
        foreach (var f in files)
        {
            var text = File.ReadAllText(f);
            Assert.False(text.Contains("AlignHubDb") || text.Contains("IDbContextFactory"), $"{Path.GetRelativePath(web, f)} uses the DbContext; read and write through the services the API uses");
        }
    }
}
