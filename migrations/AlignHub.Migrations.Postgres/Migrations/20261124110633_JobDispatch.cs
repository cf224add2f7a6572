using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace AlignHub.Migrations.Postgres.Migrations
{
    /// <inheritdoc />
    public partial class JobDispatch : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "EnqueuedAtMs",
                table: "fine_tuning_jobs",
                type: "bigint",
                nullable: true);

            // Jobs from before the dispatcher were enqueued when created.
            migrationBuilder.Sql(@"UPDATE fine_tuning_jobs SET ""EnqueuedAtMs"" = ""CreatedAtMs""");

            migrationBuilder.CreateIndex(
                name: "IX_fine_tuning_jobs_undispatched",
                table: "fine_tuning_jobs",
                column: "CreatedAtMs",
                filter: "\"EnqueuedAtMs\" IS NULL AND \"Status\" = 'queued'");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_fine_tuning_jobs_undispatched",
                table: "fine_tuning_jobs");

            migrationBuilder.DropColumn(
                name: "EnqueuedAtMs",
                table: "fine_tuning_jobs");
        }
    }
}
