using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace AlignHub.Migrations.Postgres.Migrations
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
                type: "text",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "JudgeLabel",
                table: "annotation_items",
                type: "text",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "JudgeError",
                table: "annotation_campaigns",
                type: "text",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "JudgeId",
                table: "annotation_campaigns",
                type: "text",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "JudgeVisibility",
                table: "annotation_campaigns",
                type: "text",
                nullable: false,
                defaultValue: "hidden");

            migrationBuilder.CreateTable(
                name: "judges",
                columns: table => new
                {
                    Id = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    Name = table.Column<string>(type: "text", nullable: false),
                    Mode = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    Model = table.Column<string>(type: "text", nullable: true),
                    BaseUrl = table.Column<string>(type: "text", nullable: true),
                    RemoteModel = table.Column<string>(type: "text", nullable: true),
                    ApiKeySecret = table.Column<string>(type: "text", nullable: true),
                    PromptTemplate = table.Column<string>(type: "text", nullable: false),
                    RangeMin = table.Column<double>(type: "double precision", nullable: false),
                    RangeMax = table.Column<double>(type: "double precision", nullable: false),
                    MaxTokens = table.Column<int>(type: "integer", nullable: false),
                    CreatedAt = table.Column<long>(type: "bigint", nullable: false)
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
