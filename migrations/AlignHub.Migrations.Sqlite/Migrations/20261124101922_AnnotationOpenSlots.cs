using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace AlignHub.Migrations.Sqlite.Migrations
{
    /// <inheritdoc />
    public partial class AnnotationOpenSlots : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<int>(
                name: "OpenSlots",
                table: "annotation_items",
                type: "INTEGER",
                nullable: false,
                defaultValue: 0);

            // Existing campaigns: k minus the slots held now.
            migrationBuilder.Sql(@"UPDATE annotation_items SET ""OpenSlots"" =
                (SELECT c.""AnnotatorsPerItem"" FROM annotation_campaigns c WHERE c.""Id"" = annotation_items.""CampaignId"")
              - (SELECT COUNT(*) FROM annotation_assignments a WHERE a.""ItemId"" = annotation_items.""Id"" AND a.""Slot"" IS NOT NULL)");

            migrationBuilder.CreateIndex(
                name: "IX_annotation_items_open",
                table: "annotation_items",
                columns: new[] { "CampaignId", "Index" },
                filter: "\"OpenSlots\" > 0");

            migrationBuilder.CreateIndex(
                name: "IX_annotation_assignments_leases",
                table: "annotation_assignments",
                columns: new[] { "CampaignId", "LeaseUntilMs" },
                filter: "\"Label\" IS NULL");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_annotation_items_open",
                table: "annotation_items");

            migrationBuilder.DropIndex(
                name: "IX_annotation_assignments_leases",
                table: "annotation_assignments");

            migrationBuilder.DropColumn(
                name: "OpenSlots",
                table: "annotation_items");
        }
    }
}
