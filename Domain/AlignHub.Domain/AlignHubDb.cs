using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>The jobs table is the source of truth; Hangfire only carries ids.</summary>
public sealed class AlignHubDb(DbContextOptions<AlignHubDb> options) : DbContext(options)
{
    public DbSet<FileRecord> Files => Set<FileRecord>();
    public DbSet<ModelRecord> Models => Set<ModelRecord>();
    public DbSet<FineTuningJob> Jobs => Set<FineTuningJob>();
    public DbSet<JobEvent> Events => Set<JobEvent>();
    public DbSet<JobMetric> Metrics => Set<JobMetric>();
    public DbSet<JobCheckpoint> Checkpoints => Set<JobCheckpoint>();
    public DbSet<JobSample> Samples => Set<JobSample>();
    public DbSet<AnnotationCampaign> Campaigns => Set<AnnotationCampaign>();
    public DbSet<AnnotationItem> AnnotationItems => Set<AnnotationItem>();
    public DbSet<AnnotationAssignment> Assignments => Set<AnnotationAssignment>();
    public DbSet<ApiKey> ApiKeys => Set<ApiKey>();
    public DbSet<IdempotencyRecord> IdempotencyRecords => Set<IdempotencyRecord>();
    public DbSet<Judge> Judges => Set<Judge>();
    public DbSet<WorkerRecord> Workers => Set<WorkerRecord>();

    protected override void OnModelCreating(ModelBuilder b)
    {
        b.Entity<FileRecord>(e =>
        {
            e.ToTable("files");
            e.Property(x => x.Id).HasMaxLength(64);
            e.Property(x => x.Filename).HasMaxLength(256);
            e.Property(x => x.Purpose).HasMaxLength(32);
            e.HasIndex(x => x.CreatedAt);
        });
        b.Entity<ModelRecord>(e =>
        {
            e.ToTable("models");
            e.Property(x => x.Id).HasMaxLength(256);
        });
        b.Entity<FineTuningJob>(e =>
        {
            e.ToTable("fine_tuning_jobs");
            e.Property(x => x.Id).HasMaxLength(64);
            e.Property(x => x.Status).HasMaxLength(32);
            e.Property(x => x.Device).HasMaxLength(8).HasDefaultValue(JobResources.Any);
            e.HasIndex(x => new { x.CreatedAtMs, x.Id });
            e.HasIndex(x => x.Status);
            // The dispatcher's work list: queued jobs not yet handed to Hangfire.
            e.HasIndex(x => x.CreatedAtMs, "IX_fine_tuning_jobs_undispatched").HasFilter("\"EnqueuedAtMs\" IS NULL AND \"Status\" = 'queued'");
        });
        b.Entity<JobEvent>(e =>
        {
            e.ToTable("job_events");
            e.HasIndex(x => new { x.JobId, x.Id });
        });
        b.Entity<JobMetric>(e =>
        {
            e.ToTable("job_metrics");
            // A step's metric is written once: a resumed job cannot duplicate it.
            e.HasIndex(x => new { x.JobId, x.Name, x.Step }).IsUnique();
            e.HasIndex(x => new { x.JobId, x.Step });
        });
        b.Entity<JobCheckpoint>(e =>
        {
            e.ToTable("job_checkpoints");
            e.Property(x => x.Id).HasMaxLength(64);
            e.HasIndex(x => new { x.JobId, x.Step }).IsUnique();
        });
        b.Entity<JobSample>(e =>
        {
            e.ToTable("job_samples");
            // A step's samples are written once: a resumed job deletes those after its checkpoint first.
            e.HasIndex(x => new { x.JobId, x.Step, x.Index }).IsUnique();
        });
        b.Entity<AnnotationCampaign>(e =>
        {
            e.ToTable("annotation_campaigns");
            e.Property(x => x.Id).HasMaxLength(64);
        });
        b.Entity<AnnotationItem>(e =>
        {
            e.ToTable("annotation_items");
            e.HasIndex(x => new { x.CampaignId, x.Index }).IsUnique();
            // The claimable items in order: a claim reads the first few of these.
            e.HasIndex(x => new { x.CampaignId, x.Index }, "IX_annotation_items_open").HasFilter("\"OpenSlots\" > 0");
        });
        b.Entity<AnnotationAssignment>(e =>
        {
            e.ToTable("annotation_assignments");
            e.Property(x => x.Annotator).HasMaxLength(128);
            // A slot of an item is filled once; an annotator holds or labels an item once.
            e.HasIndex(x => new { x.ItemId, x.Slot }).IsUnique().HasFilter("\"Slot\" IS NOT NULL");
            e.HasIndex(x => new { x.ItemId, x.Annotator }).IsUnique();
            e.HasIndex(x => new { x.CampaignId, x.Annotator, x.SubmittedAtMs });
            e.HasIndex(x => new { x.CampaignId, x.LeaseUntilMs }, "IX_annotation_assignments_leases").HasFilter("\"Label\" IS NULL");
        });
        b.Entity<ApiKey>(e =>
        {
            e.ToTable("api_keys");
            e.Property(x => x.Id).HasMaxLength(64);
            e.Property(x => x.Name).HasMaxLength(128);
            e.Property(x => x.Role).HasMaxLength(16);
            e.Property(x => x.Hash).HasMaxLength(64);
            e.HasIndex(x => x.Hash).IsUnique();
        });
        b.Entity<Judge>(e =>
        {
            e.ToTable("judges");
            e.Property(x => x.Id).HasMaxLength(64);
            e.Property(x => x.Mode).HasMaxLength(16);
        });
        b.Entity<WorkerRecord>(e =>
        {
            e.ToTable("workers");
            e.Property(x => x.Id).HasMaxLength(128);
            e.HasIndex(x => x.HeartbeatAtMs);
        });
        b.Entity<IdempotencyRecord>(e =>
        {
            e.ToTable("idempotency_records");
            e.HasKey(x => new { x.Owner, x.Key });
            e.Property(x => x.Owner).HasMaxLength(64);
            e.Property(x => x.Key).HasMaxLength(255);
            e.HasIndex(x => x.CreatedAtMs);
        });
    }
}
