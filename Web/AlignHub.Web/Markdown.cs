using Markdig;
using Microsoft.AspNetCore.Components;

namespace AlignHub.Web;

/// <summary>Markdown to HTML for prompts, responses and guidelines: raw HTML in the text is escaped, never rendered.</summary>
public static class Markdown
{
    static readonly MarkdownPipeline Pipeline = new MarkdownPipelineBuilder().DisableHtml().UsePipeTables().UseEmphasisExtras().Build();

    public static MarkupString Render(string? text) => new(Markdig.Markdown.ToHtml(text ?? "", Pipeline));
}
