using System.Text;
using Microsoft.Playwright;
using Xunit;

namespace AlignHub.Tests;

/// <summary>A test that drives Debian's Chromium; skipped, saying why, where it is not installed.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public const string Executable = "/usr/bin/chromium";
    public ChromiumFactAttribute()
    {
        if (!File.Exists(Executable)) Skip = "Chromium is not installed (apt-get install chromium; tests/run.sh does it as root)";
    }
}

/// <summary>The dashboard in a real browser over its Blazor Server circuit.</summary>
public class DashboardBrowserTests
{
    /// <summary>Signs in on /signin with <paramref name="key"/> (the admin key by default) and lands on <paramref name="path"/>.</summary>
    public static async Task SignInAsync(IPage page, AlignHubProcess app, string path, string key = AlignHubProcess.AdminKey)
    {
        await page.GotoAsync(app.Http.BaseAddress + "signin?returnUrl=" + Uri.EscapeDataString("/" + path));
        await page.FillAsync("#key", key);
        await page.ClickAsync("#signin");
        await page.WaitForURLAsync(u => new Uri(u).PathAndQuery == "/" + path, new() { Timeout = 45_000 });
    }

    internal static async Task<IBrowser> LaunchAsync(IPlaywright pw) => await pw.Chromium.LaunchAsync(new()
    {
        ExecutablePath = ChromiumFactAttribute.Executable,
        Headless = true,
        Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"],
    });

    [ChromiumFact]
    public async Task Sign_in_with_a_key_the_Keys_page_and_roles_on_pages()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-keys-web-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data, roles: "api,web");
        using var pw = await Playwright.CreateAsync();
        await using var browser = await LaunchAsync(pw);
        var page = await browser.NewPageAsync();
        // Not signed in: the dashboard sends you to sign in; a wrong key is refused.
        await page.GotoAsync(app.Http.BaseAddress + "jobs");
        await page.WaitForURLAsync("**/signin?*", new() { Timeout = 45_000 });
        await page.FillAsync("#key", "ahk-wrong");
        await page.ClickAsync("#signin");
        await page.Locator("#signin-error").WaitForAsync();

        // The admin creates a viewer key on the Keys page; its secret is shown once.
        await SignInAsync(page, app, "keys");
        await page.Locator("#circuit[data-interactive='yes']").WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 45_000 });
        await page.FillAsync("#key-name", "watcher");
        // Pick "viewer" and wait until the select shows it: under load the choice can land after a quick click on Create,
        // which would make the key with the default role.
        var roleInput = page.Locator("div.mud-input-control.mud-select:has(#key-role) input").First;
        for (int attempt = 0; attempt < 5 && await roleInput.InputValueAsync() != "viewer"; attempt++)
        {
            await page.Locator("div.mud-input-control.mud-select:has(#key-role)").ClickAsync();
            await page.Locator(".mud-popover-open .mud-list-item", new() { HasText = "viewer" }).ClickAsync();
            for (int i = 0; i < 20 && await roleInput.InputValueAsync() != "viewer"; i++) await Task.Delay(250);
        }
        Assert.Equal("viewer", await roleInput.InputValueAsync());
        await page.ClickAsync("#create-key");
        var secret = (await page.Locator("#new-key").InnerTextAsync()).Trim();
        Assert.StartsWith("ahk-", secret);
        await page.Locator("tr", new() { HasText = "watcher" }).WaitForAsync();
        Assert.Contains("viewer", await page.Locator("tr", new() { HasText = "watcher" }).InnerTextAsync());
        // Sign out (a form post with the antiforgery token) ends the admin's session.
        // Under a loaded machine a click can land while the page is re-rendering and be lost: click until the post goes out.
        for (int attempt = 1; new Uri(page.Url).AbsolutePath != "/signin"; attempt++)
        {
            try
            {
                await page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync(new() { Timeout = 15_000 });
                await page.WaitForURLAsync(u => new Uri(u).AbsolutePath == "/signin", new() { Timeout = 15_000 });
            }
            catch (TimeoutException) when (attempt < 3) { }
        }
        await page.GotoAsync(app.Http.BaseAddress + "keys");
        await page.WaitForURLAsync("**/signin?*", new() { Timeout = 45_000 });

        // The viewer sees jobs but may not open New job or Keys, and sees no New job link.
        var viewer = await browser.NewPageAsync();
        await SignInAsync(viewer, app, "jobs", secret);
        await viewer.Locator("#circuit[data-interactive='yes']").WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 45_000 });
        Assert.Equal("watcher", (await viewer.Locator("#signed-in-as").InnerTextAsync()).Trim());
        Assert.Equal(0, await viewer.Locator("a[href='/jobs/new']").CountAsync());
        await viewer.GotoAsync(app.Http.BaseAddress + "jobs/new");
        await viewer.GetByText("needs another role").WaitForAsync(new() { Timeout = 45_000 });
        // Revoking the key ends the viewer's session.
        var keyId = (await app.GetJson("/v1/api_keys")).GetProperty("data").EnumerateArray().Single(k => k.GetProperty("name").GetString() == "watcher").GetProperty("id").GetString();
        Assert.Equal(System.Net.HttpStatusCode.OK, (await app.Http.DeleteAsync($"/v1/api_keys/{keyId}")).StatusCode);
        await Task.Delay(TimeSpan.FromSeconds(11)); // other processes' key caches expire within 10 s; this one evicts at once
        await viewer.GotoAsync(app.Http.BaseAddress + "jobs");
        await viewer.WaitForURLAsync("**/signin?*", new() { Timeout = 45_000 });
    }

    /// <summary>
    /// At 390 px the top links fold into a menu button whose menu holds them; at 1440 px the links show and the button
    /// does not. An unknown dashboard address answers the dashboard's 404 page (status 404), while an unknown API path
    /// still answers ProblemDetails JSON.
    /// </summary>
    [ChromiumFact]
    public async Task Narrow_screens_get_a_menu_button_revoking_asks_first_and_unknown_pages_get_a_404_page()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-web-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data);
        using var pw = await Playwright.CreateAsync();
        await using var browser = await LaunchAsync(pw);
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 390, Height = 844 } });
        await SignInAsync(page, app, "jobs");
        await page.Locator("#circuit[data-interactive='yes']").WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 45_000 });
        var button = page.Locator(".nav-menu button").First;
        Assert.True(await button.IsVisibleAsync());
        Assert.False(await page.Locator(".nav-links").First.IsVisibleAsync());
        await button.ClickAsync();
        var item = page.Locator(".mud-popover-open .mud-menu-item", new() { HasText = "Models" });
        await item.First.WaitForAsync(new() { Timeout = 15_000 });
        await item.First.ClickAsync();
        await page.WaitForURLAsync(u => new Uri(u).AbsolutePath == "/models", new() { Timeout = 15_000 });
        var width = await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth");
        Assert.True(width <= 390, $"the page is {width} px wide at 390 px");

        await page.SetViewportSizeAsync(1440, 900);
        await page.Locator(".nav-links").First.WaitForAsync(new() { State = WaitForSelectorState.Visible, Timeout = 10_000 });
        Assert.False(await button.IsVisibleAsync());

        // Revoking a key asks first; "Keep it" keeps it.
        var secret = await app.CreateKey("viewer", "to-revoke");
        await page.GotoAsync(app.Http.BaseAddress + "keys");
        await page.Locator("#circuit[data-interactive='yes']").WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 45_000 });
        var keyRow = page.Locator("tr", new() { HasText = "to-revoke" });
        await keyRow.Locator(".revoke-key").ClickAsync();
        var dialog = page.Locator(".mud-dialog");
        Assert.Contains("to-revoke", await dialog.InnerTextAsync());
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Keep it" }).ClickAsync();
        await dialog.WaitForAsync(new() { State = WaitForSelectorState.Detached, Timeout = 10_000 });
        Assert.Contains("active", await keyRow.InnerTextAsync());
        await keyRow.Locator(".revoke-key").ClickAsync();
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Revoke" }).ClickAsync();
        await page.WaitForFunctionAsync("() => [...document.querySelectorAll('tr')].some(r => r.innerText.includes('to-revoke') && r.innerText.includes('revoked'))", null, new() { Timeout = 10_000 });
        using var withRevoked = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        withRevoked.Headers.Authorization = new("Bearer", secret);
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await app.Http.SendAsync(withRevoked)).StatusCode);

        var missing = await page.GotoAsync(app.Http.BaseAddress + "no/such/page");
        Assert.Equal(404, missing!.Status);
        try { await page.Locator("#not-found").WaitForAsync(new() { Timeout = 15_000 }); }
        catch (TimeoutException) { var html = await page.ContentAsync(); Assert.Fail("no 404 page: " + html[..Math.Min(3000, html.Length)]); }
        Assert.Contains("does not exist", await page.Locator("#not-found").InnerTextAsync());
        using var api = new HttpRequestMessage(HttpMethod.Get, "/v1/no-such-resource");
        api.Headers.Accept.ParseAdd("text/html,application/json");
        var res = await app.Http.SendAsync(api);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, res.StatusCode);
        Assert.DoesNotContain("does not exist</", await res.Content.ReadAsStringAsync());
    }

    [ChromiumFact]
    public async Task Jobs_page_shows_a_new_job_and_its_progress_without_a_reload()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-web-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data);
        using var pw = await Playwright.CreateAsync();
        await using var browser = await LaunchAsync(pw);
        var page = await browser.NewPageAsync();
        await SignInAsync(page, app, "jobs");
        await page.GetByText("No jobs yet").WaitForAsync();
        await page.Locator("#circuit[data-interactive='yes']").WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 45_000 });

        var file = (await app.Upload(TestData.Jsonl(64))).Body.GetProperty("id").GetString()!;
        var jobId = await app.CreateSftJob(file, new { n_epochs = 12, save_steps = 40 });

        // The row appears, its progress moves and its chip turns green: all without navigating.
        var row = $"tr[data-job-id='{jobId}']";
        await page.Locator(row).WaitForAsync(new() { Timeout = 45_000 });
        await page.WaitForFunctionAsync($"() => Number(document.querySelector(\"{row} .job-progress\")?.dataset.steps) >= 5", null, new() { Timeout = 60_000 });
        await page.Locator($"{row} .status-chip[data-status='succeeded']").WaitForAsync(new() { Timeout = 120_000 });
        Assert.Equal("96", await page.Locator($"{row} .job-progress").GetAttributeAsync("data-steps"));
        Assert.Equal(1, await page.EvaluateAsync<int>("() => performance.getEntriesByType('navigation').length"));
        await page.ScreenshotAsync(new() { Path = Path.Combine(data, "jobs.png"), FullPage = true });
    }

    [ChromiumFact]
    public async Task New_job_form_uploads_a_file_and_starts_a_job_that_succeeds()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-web-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data);
        using var pw = await Playwright.CreateAsync();
        await using var browser = await LaunchAsync(pw);
        var page = await browser.NewPageAsync();
        await SignInAsync(page, app, "jobs/new");
        await page.Locator("#circuit[data-interactive='yes']").WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 45_000 });

        // InputFile hooks its change listener from JS after the first interactive render; a file set before that is lost.
        await page.WaitForFunctionAsync("() => document.querySelector('#file-input')?._blazorInputFileNextFileId !== undefined", null, new() { Timeout = 45_000 });

        // A bad file: the form names the line, and nothing is stored.
        await page.Locator("#file-input").SetInputFilesAsync(new FilePayload
        {
            Name = "bad.jsonl", MimeType = "application/jsonl",
            Buffer = Encoding.UTF8.GetBytes(TestData.Jsonl(3) + "not json\n"),
        });
        await page.Locator("#upload-error").WaitForAsync(new() { Timeout = 45_000 });
        Assert.Contains("line 4", await page.Locator("#upload-error").InnerTextAsync());
        Assert.Empty((await app.GetJson("/v1/files")).GetProperty("data").EnumerateArray());

        await page.Locator("#file-input").SetInputFilesAsync(new FilePayload
        {
            Name = "greetings.jsonl", MimeType = "application/jsonl", Buffer = Encoding.UTF8.GetBytes(TestData.Jsonl(40)),
        });
        await page.Locator("#start-job:not([disabled])").WaitForAsync(new() { Timeout = 45_000 });
        await page.ClickAsync("#start-job");
        await page.WaitForURLAsync("**/jobs/ftjob-*", new() { Timeout = 45_000 });
        await page.Locator("#job-title ~ .status-chip[data-status='succeeded'], .status-chip[data-status='succeeded']").First
            .WaitForAsync(new() { Timeout = 120_000 });
        await page.Locator("#loss-chart svg").First.WaitForAsync(new() { Timeout = 45_000 });
        await page.GetByText("Checkpoint saved at step 15").WaitForAsync(new() { Timeout = 45_000 });

        var jobId = page.Url[(page.Url.LastIndexOf('/') + 1)..];
        var job = await app.GetJson($"/v1/fine_tuning/jobs/{jobId}");
        Assert.Equal("succeeded", job.GetProperty("status").GetString());
        Assert.Equal("greetings.jsonl", (await app.GetJson($"/v1/files/{job.GetProperty("training_file").GetString()}")).GetProperty("filename").GetString());
        await page.ScreenshotAsync(new() { Path = Path.Combine(data, "job.png"), FullPage = true });
    }
}
