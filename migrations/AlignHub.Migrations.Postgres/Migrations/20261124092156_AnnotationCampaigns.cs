using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace AlignHub.Migrations.Postgres.Migrations
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
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    CampaignId = table.Column<string>(type: "text", nullable: false),
                    ItemId = table.Column<long>(type: "bigint", nullable: false),
                    Slot = table.Column<int>(type: "integer", nullable: true),
                    Annotator = table.Column<string>(type: "character varying(128)", maxLength: 128, nullable: false),
                    Swapped = table.Column<bool>(type: "boolean", nullable: false),
                    LeasedAtMs = table.Column<long>(type: "bigint", nullable: false),
                    LeaseUntilMs = table.Column<long>(type: "bigint", nullable: false),
                    Label = table.Column<string>(type: "text", nullable: true),
                    RationaleText = table.Column<string>(type: "text", nullable: true),
                    SubmittedAtMs = table.Column<long>(type: "bigint", nullable: true),
                    DurationMs = table.Column<int>(type: "integer", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_annotation_assignments", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "annotation_campaigns",
                columns: table => new
                {
                    Id = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    Name = table.Column<string>(type: "text", nullable: false),
                    SourceFile = table.Column<string>(type: "text", nullable: false),
                    AnnotatorsPerItem = table.Column<int>(type: "integer", nullable: false),
                    Guidelines = table.Column<string>(type: "text", nullable: false),
                    Question = table.Column<string>(type: "text", nullable: false),
                    AllowTies = table.Column<bool>(type: "boolean", nullable: false),
                    Rationale = table.Column<string>(type: "text", nullable: false),
                    LeaseSeconds = table.Column<int>(type: "integer", nullable: false),
                    ItemCount = table.Column<int>(type: "integer", nullable: false),
                    CreatedAt = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_annotation_campaigns", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "annotation_items",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    CampaignId = table.Column<string>(type: "text", nullable: false),
                    Index = table.Column<int>(type: "integer", nullable: false),
                    Prompt = table.Column<string>(type: "text", nullable: false),
                    ResponseA = table.Column<string>(type: "text", nullable: false),
                    ResponseB = table.Column<string>(type: "text", nullable: false)
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
