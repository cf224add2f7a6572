using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace AlignHub.Migrations.Postgres.Migrations
{
    /// <inheritdoc />
    public partial class ChangeNotifications : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // (ChangeFeed documents the channel.) Triggers that NOTIFY alignhub_changes 'table:job' on every write to the tables open pages show.
            migrationBuilder.Sql("""
CREATE OR REPLACE FUNCTION alignhub_notify_by_id() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('alignhub_changes', TG_TABLE_NAME || ':' || OLD."Id");
    ELSE
        PERFORM pg_notify('alignhub_changes', TG_TABLE_NAME || ':' || NEW."Id");
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION alignhub_notify_by_job() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('alignhub_changes', TG_TABLE_NAME || ':' || OLD."JobId");
    ELSE
        PERFORM pg_notify('alignhub_changes', TG_TABLE_NAME || ':' || NEW."JobId");
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER alignhub_notify AFTER INSERT OR UPDATE OR DELETE ON fine_tuning_jobs FOR EACH ROW EXECUTE FUNCTION alignhub_notify_by_id();
CREATE TRIGGER alignhub_notify AFTER INSERT OR UPDATE OR DELETE ON job_events FOR EACH ROW EXECUTE FUNCTION alignhub_notify_by_job();
CREATE TRIGGER alignhub_notify AFTER INSERT OR UPDATE OR DELETE ON job_metrics FOR EACH ROW EXECUTE FUNCTION alignhub_notify_by_job();
CREATE TRIGGER alignhub_notify AFTER INSERT OR UPDATE OR DELETE ON job_checkpoints FOR EACH ROW EXECUTE FUNCTION alignhub_notify_by_job();
CREATE TRIGGER alignhub_notify AFTER INSERT OR UPDATE OR DELETE ON job_samples FOR EACH ROW EXECUTE FUNCTION alignhub_notify_by_job();
CREATE TRIGGER alignhub_notify AFTER INSERT OR UPDATE OR DELETE ON workers FOR EACH ROW EXECUTE FUNCTION alignhub_notify_by_id();
CREATE TRIGGER alignhub_notify AFTER INSERT OR UPDATE OR DELETE ON files FOR EACH ROW EXECUTE FUNCTION alignhub_notify_by_id();
CREATE TRIGGER alignhub_notify AFTER INSERT OR UPDATE OR DELETE ON models FOR EACH ROW EXECUTE FUNCTION alignhub_notify_by_id();
""");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
DROP TRIGGER IF EXISTS alignhub_notify ON fine_tuning_jobs;
DROP TRIGGER IF EXISTS alignhub_notify ON job_events;
DROP TRIGGER IF EXISTS alignhub_notify ON job_metrics;
DROP TRIGGER IF EXISTS alignhub_notify ON job_checkpoints;
DROP TRIGGER IF EXISTS alignhub_notify ON job_samples;
DROP TRIGGER IF EXISTS alignhub_notify ON workers;
DROP TRIGGER IF EXISTS alignhub_notify ON files;
DROP TRIGGER IF EXISTS alignhub_notify ON models;
DROP FUNCTION IF EXISTS alignhub_notify_by_id();
DROP FUNCTION IF EXISTS alignhub_notify_by_job();
""");
        }
    }
}
