using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace AlignHub.Migrations.Sqlite.Migrations
{
    /// <inheritdoc />
    public partial class LifecycleStates : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // A request a worker had yet to act on was the status it asked for plus RequestedAction; it is now a state of its own.
            migrationBuilder.Sql("UPDATE fine_tuning_jobs SET \"Status\" = 'pausing' WHERE \"RequestedAction\" = 'pause' AND \"LeaseOwner\" IS NOT NULL");
            migrationBuilder.Sql("UPDATE fine_tuning_jobs SET \"Status\" = 'cancelling', \"FinishedAt\" = NULL WHERE \"RequestedAction\" = 'cancel' AND \"LeaseOwner\" IS NOT NULL");
            migrationBuilder.DropColumn(
                name: "RequestedAction",
                table: "fine_tuning_jobs");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "RequestedAction",
                table: "fine_tuning_jobs",
                type: "TEXT",
                maxLength: 16,
                nullable: true);
            migrationBuilder.Sql("UPDATE fine_tuning_jobs SET \"RequestedAction\" = 'pause', \"Status\" = 'paused' WHERE \"Status\" = 'pausing'");
            migrationBuilder.Sql("UPDATE fine_tuning_jobs SET \"RequestedAction\" = 'cancel', \"Status\" = 'cancelled' WHERE \"Status\" = 'cancelling'");
        }
    }
}
