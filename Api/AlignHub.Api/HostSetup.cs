using AlignHub.Domain;
using AlignHub.Workers;
using AlignHub.Web;
using Hangfire;
using Hangfire.PostgreSql;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api;

public static class HostSetup
{
    public const string SqliteMigrations = "AlignHub.Migrations.Sqlite", PostgresMigrations = "AlignHub.Migrations.Postgres";

    /// <summary>
    /// Wires storage, Hangfire and the roles. <c>ConnectionStrings__AlignHub</c> set: PostgreSQL for EF Core and Hangfire
    /// (shared by many processes); unset: the embedded default, a SQLite file in the data folder and in-memory Hangfire.
    /// </summary>
    public static AlignHubOptions AddAlignHub(this WebApplicationBuilder builder)
    {
        var options = builder.Configuration.GetSection("AlignHub").Get<AlignHubOptions>() ?? new AlignHubOptions();
        Directory.CreateDirectory(options.FullDataDir);
        var services = builder.Services;
        services.AddSingleton(options);

        var pg = builder.Configuration.GetConnectionString("AlignHub");
        bool postgres = !string.IsNullOrWhiteSpace(pg);
        if (postgres)
        {
            // Hot statements (claims, labels, job inserts) are prepared once per connection unless the string says otherwise.
            var csb = new Npgsql.NpgsqlConnectionStringBuilder(pg);
            if (!pg!.Contains("Auto Prepare", StringComparison.OrdinalIgnoreCase)) csb.MaxAutoPrepare = 32;
            pg = csb.ConnectionString;
        }
        services.AddSingleton(new StorageMode(postgres));
        var sqlitePath = Path.Combine(options.FullDataDir, "alignhub.db");
        // Open pages re-read on a change instead of polling: PostgreSQL's triggers notify every process (a listener in
        // web processes, below); the embedded default is one process, whose writes an interceptor sees.
        var changes = new ChangeFeed();
        services.AddSingleton(changes);
        var interceptor = new ChangeInterceptor(changes);
        services.AddPooledDbContextFactory<AlignHubDb>(o =>
        {
            if (postgres) o.UseNpgsql(pg, x => x.MigrationsAssembly(PostgresMigrations));
            else o.UseSqlite($"Data Source={sqlitePath};Default Timeout=30", x => x.MigrationsAssembly(SqliteMigrations)).AddInterceptors(interceptor);
        });
        if (postgres && options.HasRole("web"))
            services.AddHostedService(sp => new PostgresChangeListener(pg!, changes, sp.GetRequiredService<ILogger<PostgresChangeListener>>()));

        services.AddHangfire(cfg =>
        {
            cfg.SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
               .UseSimpleAssemblyNameTypeSerializer()
               .UseRecommendedSerializerSettings();
            if (postgres)
                cfg.UsePostgreSqlStorage(o => o.UseNpgsqlConnection(pg), new PostgreSqlStorageOptions
                {
                    // Without it a job running longer than the invisibility timeout is fetched again by another worker.
                    UseSlidingInvisibilityTimeout = true,
                    QueuePollInterval = TimeSpan.FromSeconds(1),
                    PrepareSchemaIfNecessary = true,
                });
            else
                cfg.UseInMemoryStorage();
        });
        if (options.HasRole("worker"))
        {
            services.AddScoped<ITrainingJob, TrainingJob>();
            services.AddScoped<ICampaignJudging, AlignHub.Workers.CampaignJudgingJob>();
            // Which device and queues: resolved once (CUDA is asked of TorchSharp for "auto"), before Hangfire starts fetching.
            var identity = WorkerIdentity.Resolve(options);
            services.AddSingleton(identity);
            // Registered before the Hangfire server, so it stops after it: the row says "stopped" once the job is handed back.
            services.AddHostedService<WorkerHeartbeatService>();
            services.AddHangfireServer(o =>
            {
                o.WorkerCount = identity.Slots;
                o.Queues = [.. identity.Queues];
                o.ServerName = TrainingJob.WorkerId;
                o.ShutdownTimeout = TimeSpan.FromSeconds(60);
                o.SchedulePollingInterval = TimeSpan.FromSeconds(2);
            });
            // The model server: completions for /v1/chat/completions and /v1/completions, one generation thread per device.
            services.AddSingleton<AlignHub.Domain.Inference.IInferenceService>(sp =>
            {
                var dbs = sp.GetRequiredService<IDbContextFactory<AlignHubDb>>();
                return new AlignHub.Training.Generation.InferenceHost(
                    m => { using var db = dbs.CreateDbContext(); return AlignHub.Workers.ModelSources.Of(db, options, m); },
                    AlignHub.Training.Engine.Devices.Resolve(options.Worker.Device), Math.Max(1, options.Worker.InferenceBatch),
                    Math.Max(16, options.Worker.InferenceContext), (long)Math.Max(64, options.Worker.InferenceMemoryMiB) << 20,
                    sp.GetRequiredService<ILoggerFactory>().CreateLogger("AlignHub.Inference"));
            });
            // Give a running step time to finish and write its checkpoint on shutdown.
            services.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(90));
        }
        services.AddHostedService<JobRecoveryService>();
        services.AddSingleton<JobDispatcher>();
        services.AddHostedService<JobDispatchService>();
        services.AddHostedService<IdempotencySweepService>();

        services.AddSingleton<FileService>();
        services.AddSingleton<JobService>();
        services.AddSingleton<JobQueries>();
        services.AddSingleton<ModelService>();
        services.AddSingleton<AnnotationService>();
        services.AddSingleton<JudgeService>();
        services.AddSingleton<WorkerQueries>();
        services.AddAlignHubAuth(options);

        services.ConfigureHttpJsonOptions(o => ApiJson.Configure(o.SerializerOptions));
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = false);
        services.AddProblemDetails(o => o.CustomizeProblemDetails = ProblemShape.AddOpenAiError);
        services.AddOpenApi(OpenApiDocs.Configure);
        services.Configure<FormOptions>(o => o.MultipartBodyLengthLimit = options.MaxUploadBytes + (1 << 20));
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = options.MaxUploadBytes + (1 << 20));

        if (options.HasRole("web"))
            services.AddDashboard();
        return options;
    }

    /// <summary>Applies migrations (EF Core takes a lock, so several processes may start at once) and adds the presets.</summary>
    public static async Task PrepareDatabaseAsync(this WebApplication app)
    {
        var dbs = app.Services.GetRequiredService<IDbContextFactory<AlignHubDb>>();
        await using var db = await dbs.CreateDbContextAsync();
        await db.Database.MigrateAsync();
        if (db.Database.IsSqlite())
            await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;");
        foreach (var preset in ModelPresets.Records())
        {
            if (await db.Models.AnyAsync(m => m.Id == preset.Id)) continue;
            db.Models.Add(preset);
            try { await db.SaveChangesAsync(); }
            catch (DbUpdateException) { db.ChangeTracker.Clear(); } // another process added it first
        }
    }
}

public sealed record StorageMode(bool Postgres);
