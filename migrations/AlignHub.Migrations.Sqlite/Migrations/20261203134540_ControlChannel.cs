using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace AlignHub.Migrations.Sqlite.Migrations
{
    /// <inheritdoc />
    public partial class ControlChannel : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "RequestedAction",
                table: "fine_tuning_jobs",
                type: "TEXT",
                maxLength: 16,
                nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "RequestedAction",
                table: "fine_tuning_jobs");
        }
    }
}
