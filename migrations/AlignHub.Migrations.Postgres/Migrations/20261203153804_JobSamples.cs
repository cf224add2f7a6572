using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace AlignHub.Migrations.Postgres.Migrations
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
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    JobId = table.Column<string>(type: "text", nullable: false),
                    Step = table.Column<int>(type: "integer", nullable: false),
                    Index = table.Column<int>(type: "integer", nullable: false),
                    Prompt = table.Column<string>(type: "text", nullable: false),
                    Completion = table.Column<string>(type: "text", nullable: false),
                    Reward = table.Column<double>(type: "double precision", nullable: false),
                    RewardsJson = table.Column<string>(type: "text", nullable: false),
                    Advantage = table.Column<double>(type: "double precision", nullable: false),
                    FinishReason = table.Column<string>(type: "text", nullable: false),
                    CreatedAt = table.Column<long>(type: "bigint", nullable: false)
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
