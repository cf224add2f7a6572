using AlignHub.Domain;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace AlignHub.Migrations.Sqlite;

/// <summary>Used by <c>dotnet ef</c> only; the host configures the real connection.</summary>
public sealed class DesignTimeFactory : IDesignTimeDbContextFactory<AlignHubDb>
{
    public AlignHubDb CreateDbContext(string[] args) => new(new DbContextOptionsBuilder<AlignHubDb>()
        .UseSqlite("Data Source=design-time.db", x => x.MigrationsAssembly(typeof(DesignTimeFactory).Assembly.GetName().Name)).Options);
}
