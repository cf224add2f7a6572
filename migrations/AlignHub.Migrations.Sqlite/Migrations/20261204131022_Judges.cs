using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace AlignHub.Migrations.Sqlite.Migrations
{
    /// <inheritdoc />
    public partial class Judges : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "JudgeDetail",
                table: "annotation_items",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "JudgeLabel",
                table: "annotation_items",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "JudgeError",
                table: "annotation_campaigns",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "JudgeId",
                table: "annotation_campaigns",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "JudgeVisibility",
                table: "annotation_campaigns",
                type: "TEXT",
                nullable: false,
                defaultValue: "hidden");

            migrationBuilder.CreateTable(
                name: "judges",
                columns: table => new
                {
                    Id = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Name = table.Column<string>(type: "TEXT", nullable: false),
                    Mode = table.Column<string>(type: "TEXT", maxLength: 16, nullable: false),
                    Model = table.Column<string>(type: "TEXT", nullable: true),
                    BaseUrl = table.Column<string>(type: "TEXT", nullable: true),
                    RemoteModel = table.Column<string>(type: "TEXT", nullable: true),
                    ApiKeySecret = table.Column<string>(type: "TEXT", nullable: true),
                    PromptTemplate = table.Column<string>(type: "TEXT", nullable: false),
                    RangeMin = table.Column<double>(type: "REAL", nullable: false),
                    RangeMax = table.Column<double>(type: "REAL", nullable: false),
                    MaxTokens = table.Column<int>(type: "INTEGER", nullable: false),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_judges", x => x.Id);
                });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "judges");

            migrationBuilder.DropColumn(
                name: "JudgeDetail",
                table: "annotation_items");

            migrationBuilder.DropColumn(
                name: "JudgeLabel",
                table: "annotation_items");

            migrationBuilder.DropColumn(
                name: "JudgeError",
                table: "annotation_campaigns");

            migrationBuilder.DropColumn(
                name: "JudgeId",
                table: "annotation_campaigns");

            migrationBuilder.DropColumn(
                name: "JudgeVisibility",
                table: "annotation_campaigns");
        }
    }
}
