using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace AlignHub.Migrations.Sqlite.Migrations
{
    /// <inheritdoc />
    public partial class JobSamples : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "job_samples",
                columns: table => new
                {
                    Id = table.Column<long>(type: "INTEGER", nullable: false)
                        .Annotation("Sqlite:Autoincrement", true),
                    JobId = table.Column<string>(type: "TEXT", nullable: false),
                    Step = table.Column<int>(type: "INTEGER", nullable: false),
                    Index = table.Column<int>(type: "INTEGER", nullable: false),
                    Prompt = table.Column<string>(type: "TEXT", nullable: false),
                    Completion = table.Column<string>(type: "TEXT", nullable: false),
                    Reward = table.Column<double>(type: "REAL", nullable: false),
                    RewardsJson = table.Column<string>(type: "TEXT", nullable: false),
                    Advantage = table.Column<double>(type: "REAL", nullable: false),
                    FinishReason = table.Column<string>(type: "TEXT", nullable: false),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_job_samples", x => x.Id);
                });

            migrationBuilder.CreateIndex(
                name: "IX_job_samples_JobId_Step_Index",
                table: "job_samples",
                columns: new[] { "JobId", "Step", "Index" },
                unique: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "job_samples");
        }
    }
}
