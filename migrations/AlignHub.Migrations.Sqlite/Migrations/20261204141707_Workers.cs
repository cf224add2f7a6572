using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace AlignHub.Migrations.Sqlite.Migrations
{
    /// <inheritdoc />
    public partial class Workers : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "Device",
                table: "fine_tuning_jobs",
                type: "TEXT",
                maxLength: 8,
                nullable: false,
                defaultValue: "any");

            migrationBuilder.AddColumn<long>(
                name: "EstimatedMemoryBytes",
                table: "fine_tuning_jobs",
                type: "INTEGER",
                nullable: true);

            migrationBuilder.AddColumn<long>(
                name: "NoWorkerNoticeAtMs",
                table: "fine_tuning_jobs",
                type: "INTEGER",
                nullable: true);

            migrationBuilder.CreateTable(
                name: "workers",
                columns: table => new
                {
                    Id = table.Column<string>(type: "TEXT", maxLength: 128, nullable: false),
                    Host = table.Column<string>(type: "TEXT", nullable: false),
                    Pid = table.Column<int>(type: "INTEGER", nullable: false),
                    Queues = table.Column<string>(type: "TEXT", nullable: false),
                    Device = table.Column<string>(type: "TEXT", nullable: false),
                    Version = table.Column<string>(type: "TEXT", nullable: false),
                    Slots = table.Column<int>(type: "INTEGER", nullable: false),
                    StartedAtMs = table.Column<long>(type: "INTEGER", nullable: false),
                    HeartbeatAtMs = table.Column<long>(type: "INTEGER", nullable: false),
                    StoppedAtMs = table.Column<long>(type: "INTEGER", nullable: true),
                    CurrentJobId = table.Column<string>(type: "TEXT", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_workers", x => x.Id);
                });

            migrationBuilder.CreateIndex(
                name: "IX_workers_HeartbeatAtMs",
                table: "workers",
                column: "HeartbeatAtMs");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "workers");

            migrationBuilder.DropColumn(
                name: "Device",
                table: "fine_tuning_jobs");

            migrationBuilder.DropColumn(
                name: "EstimatedMemoryBytes",
                table: "fine_tuning_jobs");

            migrationBuilder.DropColumn(
                name: "NoWorkerNoticeAtMs",
                table: "fine_tuning_jobs");
        }
    }
}
