using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Playwright;
using Xunit;

namespace AlignHub.Tests;

/// <summary>The labeling page in Debian's Chromium, driven by the keyboard only.</summary>
public class LabelingBrowserTests
{
    [ChromiumFact]
    public async Task Keyboard_labels_a_tie_a_skip_and_an_undo_and_the_database_holds_exactly_those_labels()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-label-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data);
        var items = string.Join("\n", Enumerable.Range(0, 4).Select(i => JsonSerializer.Serialize(new
        {
            prompt = $"Item {i}: which **review** is kinder?", response_a = $"great lovely {i}", response_b = $"awful dull {i}\n\n```\ncode {i}\n```",
        })));
        var (_, file) = await app.Upload(items, "items.jsonl");
        var (_, campaign) = await app.PostJson("/v1/annotation/campaigns", new
        {
            name = "kindness", file = file.GetProperty("id").GetString(), annotators_per_item = 1, allow_ties = true, guidelines = "Prefer **kind** words.",
        });
        var id = campaign.GetProperty("id").GetString()!;

        using var pw = await Playwright.CreateAsync();
        await using var browser = await pw.Chromium.LaunchAsync(new()
        {
            ExecutablePath = ChromiumFactAttribute.Executable, Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
        var page = await browser.NewPageAsync();
        // An invite link signs the annotator in and opens the campaign's labeling page.
        var (inviteStatus, invite) = await app.PostJson($"/v1/annotation/campaigns/{id}/invites", new { annotator = "kbd" });
        Assert.True(inviteStatus == System.Net.HttpStatusCode.OK, invite.ToString());
        await page.GotoAsync(app.Http.BaseAddress + invite.GetProperty("path").GetString()!.TrimStart('/'));
        await page.WaitForURLAsync($"**/label/{id}", new() { Timeout = 45_000 });
        await page.Locator("#circuit[data-interactive='yes']").WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 45_000 });
        await page.Locator("#prompt").WaitForAsync(new() { Timeout = 45_000 });
        Assert.Equal("review", await page.Locator("#prompt strong").InnerTextAsync()); // markdown rendered
        var expected = new Dictionary<string, (string Chosen, bool Tie)>();

        async Task<(string Item, string Prompt, string Left, string Right)> Current()
        {
            await page.Locator("#labeler").FocusAsync();
            return (await page.Locator("#prompt").GetAttributeAsync("data-item") ?? "", await page.Locator("#prompt").InnerTextAsync(),
                await page.Locator("#left").InnerTextAsync(), await page.Locator("#right").InnerTextAsync());
        }
        async Task NextItem(string previous) =>
            await page.WaitForFunctionAsync($"() => (document.querySelector('#prompt')?.dataset.item ?? 'done') !== '{previous}'", null, new() { Timeout = 45_000 });

        // 1 + Enter: left better.
        var a = await Current();
        await page.Keyboard.PressAsync("1");
        await page.Keyboard.PressAsync("Enter");
        expected[a.Prompt.Trim()] = (a.Left.Trim(), false);
        await NextItem(a.Item);
        // 3 + Enter: a tie.
        var b = await Current();
        await page.Keyboard.PressAsync("3");
        await page.Keyboard.PressAsync("Enter");
        expected[b.Prompt.Trim()] = ("", true);
        await NextItem(b.Item);
        // s: skip, then u: undo brings the skipped item back; typing in the rationale box triggers nothing; 2 + Enter.
        var c = await Current();
        await page.Keyboard.PressAsync("s");
        await NextItem(c.Item);
        await page.Keyboard.PressAsync("u");
        await page.WaitForFunctionAsync($"() => document.querySelector('#prompt')?.dataset.item === '{c.Item}'", null, new() { Timeout = 45_000 });
        await page.Locator("#rationale").ClickAsync();
        await page.Keyboard.TypeAsync("1 s u because");
        Assert.Equal(c.Item, await page.Locator("#prompt").GetAttributeAsync("data-item"));
        await page.Locator("#labeler").FocusAsync();
        await page.Keyboard.PressAsync("2");
        await page.Keyboard.PressAsync("Enter");
        expected[c.Prompt.Trim()] = (c.Right.Trim(), false);
        await NextItem(c.Item);
        Assert.Equal("3", await page.Locator("#label-progress").GetAttributeAsync("data-done"));

        // The database holds exactly those three labels, sides mapped back to the items' own responses.
        var stats = await app.GetJson($"/v1/annotation/campaigns/{id}/stats");
        Assert.Equal(3, stats.GetProperty("labels").GetInt32());
        Assert.Equal(0, stats.GetProperty("skips").GetInt32());
        var (_, export) = await app.PostJson($"/v1/annotation/campaigns/{id}/export", new { include_ties = true });
        var rows = (await app.Http.GetStringAsync($"/v1/files/{export.GetProperty("id").GetString()}/content")).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Equal(3, rows.Count);
        foreach (var row in rows)
        {
            var prompt = row.GetProperty("prompt").GetString()!;
            var key = expected.Keys.Single(k => k == prompt.Replace("**", ""));
            var (chosen, tie) = expected[key];
            if (tie) Assert.Equal(0, row.GetProperty("margin").GetInt32());
            else Assert.Equal(chosen.Split('\n')[0].Trim(), row.GetProperty("chosen").GetString()!.Split('\n')[0].Trim());
        }
        await page.ScreenshotAsync(new() { Path = Path.Combine(data, "label.png"), FullPage = true });

        // The campaign page shows the figures and starts a DPO job on the exported pairs in one click.
        // An annotator may not open the campaign's figures; a trainer may.
        await page.GotoAsync(app.Http.BaseAddress + $"campaigns/{id}");
        await page.GetByText("needs another role").WaitForAsync(new() { Timeout = 45_000 });
        await DashboardBrowserTests.SignInAsync(page, app, $"campaigns/{id}", await app.CreateKey("trainer", "lead"));
        await page.Locator("#circuit[data-interactive='yes']").WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 45_000 });
        await page.Locator("tr[data-annotator='kbd']").WaitForAsync(new() { Timeout = 45_000 });
        await page.ClickAsync("#train-dpo");
        await page.WaitForURLAsync("**/jobs/ftjob-*", new() { Timeout = 45_000 });
        var jobId = page.Url[(page.Url.LastIndexOf('/') + 1)..];
        var job = await app.WaitForStatus(jobId, "succeeded", TimeSpan.FromMinutes(2));
        Assert.Equal("dpo", job.GetProperty("method").GetProperty("type").GetString());
    }
}
