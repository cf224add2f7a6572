using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace AlignHub.Migrations.Sqlite.Migrations
{
    /// <inheritdoc />
    public partial class AnnotationCampaigns : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "annotation_assignments",
                columns: table => new
                {
                    Id = table.Column<long>(type: "INTEGER", nullable: false)
                        .Annotation("Sqlite:Autoincrement", true),
                    CampaignId = table.Column<string>(type: "TEXT", nullable: false),
                    ItemId = table.Column<long>(type: "INTEGER", nullable: false),
                    Slot = table.Column<int>(type: "INTEGER", nullable: true),
                    Annotator = table.Column<string>(type: "TEXT", maxLength: 128, nullable: false),
                    Swapped = table.Column<bool>(type: "INTEGER", nullable: false),
                    LeasedAtMs = table.Column<long>(type: "INTEGER", nullable: false),
                    LeaseUntilMs = table.Column<long>(type: "INTEGER", nullable: false),
                    Label = table.Column<string>(type: "TEXT", nullable: true),
                    RationaleText = table.Column<string>(type: "TEXT", nullable: true),
                    SubmittedAtMs = table.Column<long>(type: "INTEGER", nullable: true),
                    DurationMs = table.Column<int>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_annotation_assignments", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "annotation_campaigns",
                columns: table => new
                {
                    Id = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Name = table.Column<string>(type: "TEXT", nullable: false),
                    SourceFile = table.Column<string>(type: "TEXT", nullable: false),
                    AnnotatorsPerItem = table.Column<int>(type: "INTEGER", nullable: false),
                    Guidelines = table.Column<string>(type: "TEXT", nullable: false),
                    Question = table.Column<string>(type: "TEXT", nullable: false),
                    AllowTies = table.Column<bool>(type: "INTEGER", nullable: false),
                    Rationale = table.Column<string>(type: "TEXT", nullable: false),
                    LeaseSeconds = table.Column<int>(type: "INTEGER", nullable: false),
                    ItemCount = table.Column<int>(type: "INTEGER", nullable: false),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_annotation_campaigns", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "annotation_items",
                columns: table => new
                {
                    Id = table.Column<long>(type: "INTEGER", nullable: false)
                        .Annotation("Sqlite:Autoincrement", true),
                    CampaignId = table.Column<string>(type: "TEXT", nullable: false),
                    Index = table.Column<int>(type: "INTEGER", nullable: false),
                    Prompt = table.Column<string>(type: "TEXT", nullable: false),
                    ResponseA = table.Column<string>(type: "TEXT", nullable: false),
                    ResponseB = table.Column<string>(type: "TEXT", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_annotation_items", x => x.Id);
                });

            migrationBuilder.CreateIndex(
                name: "IX_annotation_assignments_CampaignId_Annotator_SubmittedAtMs",
                table: "annotation_assignments",
                columns: new[] { "CampaignId", "Annotator", "SubmittedAtMs" });

            migrationBuilder.CreateIndex(
                name: "IX_annotation_assignments_ItemId_Annotator",
                table: "annotation_assignments",
                columns: new[] { "ItemId", "Annotator" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_annotation_assignments_ItemId_Slot",
                table: "annotation_assignments",
                columns: new[] { "ItemId", "Slot" },
                unique: true,
                filter: "\"Slot\" IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "IX_annotation_items_CampaignId_Index",
                table: "annotation_items",
                columns: new[] { "CampaignId", "Index" },
                unique: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "annotation_assignments");

            migrationBuilder.DropTable(
                name: "annotation_campaigns");

            migrationBuilder.DropTable(
                name: "annotation_items");
        }
    }
}
