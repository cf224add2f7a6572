using AlignHub.Domain;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace AlignHub.Migrations.Postgres;

/// <summary>Used by <c>dotnet ef</c> only; the host configures the real connection.</summary>
public sealed class DesignTimeFactory : IDesignTimeDbContextFactory<AlignHubDb>
{
    public AlignHubDb CreateDbContext(string[] args) => new(new DbContextOptionsBuilder<AlignHubDb>()
        .UseNpgsql("Host=localhost;Database=alignhub_design", x => x.MigrationsAssembly(typeof(DesignTimeFactory).Assembly.GetName().Name)).Options);
}
