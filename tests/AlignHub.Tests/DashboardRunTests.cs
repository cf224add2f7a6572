using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.Playwright;
using Xunit;

namespace AlignHub.Tests;

/// <summary>A browser test on PostgreSQL with a cluster of its own: it needs Chromium and ALIGNHUB_TEST_PGBIN.</summary>
public sealed class ChromiumOwnPostgresFactAttribute : FactAttribute
{
    public ChromiumOwnPostgresFactAttribute()
    {
        if (!File.Exists(ChromiumFactAttribute.Executable)) Skip = "Chromium is not installed (apt-get install chromium; tests/run.sh does it as root)";
        else if (OwnPostgres.Bin is null) Skip = "ALIGNHUB_TEST_PGBIN is not set: run tests/run.sh, which finds PostgreSQL's initdb and pg_ctl";
    }
}

/// <summary>
/// The dashboard where runs are understood (issue 15), in Chromium: live job pages fed by a worker in another process,
/// no queries from an idle page, DPO from the New job page, cancel, compare, and an RL job's samples.
/// Screenshots go to <c>ALIGNHUB_SCREENSHOTS</c> when it is set (docs/screenshots holds the committed ones).
/// </summary>
public class DashboardRunTests
{
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-dash-").FullName;

    static string Shot(string data, string name) =>
        Path.Combine(Environment.GetEnvironmentVariable("ALIGNHUB_SCREENSHOTS") is { Length: > 0 } dir ? dir : data, name);

    static async Task InteractiveAsync(IPage page) =>
        await page.Locator("#circuit[data-interactive='yes']").WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 45_000 });

    static async Task<int> IntAttr(IPage page, string selector, string attribute) =>
        int.TryParse(await page.Locator(selector).First.GetAttributeAsync(attribute, new() { Timeout = 45_000 }), out var v) ? v : -1;

    /// <summary>Picks the option containing <paramref name="text"/> in the MudSelect that holds <paramref name="inputId"/>, until the select shows it.</summary>
    static async Task PickAsync(IPage page, string inputId, string text, string shown)
    {
        var control = page.Locator($"div.mud-input-control.mud-select:has(#{inputId})");
        var input = control.Locator("input").First;
        for (int attempt = 0; attempt < 5 && !(await input.InputValueAsync()).Contains(shown); attempt++)
        {
            await control.ClickAsync();
            await page.Locator(".mud-popover-open .mud-list-item", new() { HasText = text }).First.ClickAsync();
            for (int i = 0; i < 20 && !(await input.InputValueAsync()).Contains(shown); i++) await Task.Delay(250);
        }
        Assert.Contains(shown, await input.InputValueAsync());
    }

    /// <summary>
    /// PostgreSQL, an api+web process and a worker process: the job page's progress bar and loss chart advance without
    /// a reload while the other process trains; pressing Cancel cancels the running job; then, with nothing changing,
    /// the open page sends no query about the job for 10 s (counted in PostgreSQL's own statement log), while loading the
    /// page does send them (so the count can see a page's queries).
    /// </summary>
    [ChromiumOwnPostgresFact]
    public async Task A_job_page_follows_a_worker_in_another_process_cancels_and_is_silent_when_nothing_changes()
    {
        await using var pg = await OwnPostgres.StartAsync("-c log_statement=all -c log_line_prefix=''");
        var data = TempDir();
        await using var web = await AlignHubProcess.StartAsync(data, roles: "api,web", postgres: pg.ConnectionString);
        await using var worker = await AlignHubProcess.StartAsync(data, roles: "worker", postgres: pg.ConnectionString);
        var file = (await web.Upload(TestData.Jsonl(64))).Body.GetProperty("id").GetString()!;
        var job = await web.CreateSftJob(file, new { n_epochs = 100, batch_size = 2, max_steps = 3000, save_steps = 1000 });

        using var pw = await Playwright.CreateAsync();
        await using var browser = await DashboardBrowserTests.LaunchAsync(pw);
        var page = await browser.NewPageAsync();
        await DashboardBrowserTests.SignInAsync(page, web, $"jobs/{job}");
        await InteractiveAsync(page);

        await page.WaitForFunctionAsync("() => Number(document.querySelector('.job-progress')?.dataset.steps) >= 3", null, new() { Timeout = 90_000 });
        await page.Locator("#loss-chart polyline.series").First.WaitForAsync(new() { Timeout = 45_000 });
        int steps = await IntAttr(page, ".job-progress", "data-steps"), points = await IntAttr(page, "#loss-chart", "data-points");
        await page.WaitForFunctionAsync($"() => Number(document.querySelector('.job-progress').dataset.steps) >= {steps + 10} && Number(document.querySelector('#loss-chart').dataset.points) > {points}",
            null, new() { Timeout = 60_000 });
        Assert.Equal(1, await page.EvaluateAsync<int>("() => performance.getEntriesByType('navigation').length"));

        await page.ClickAsync("#cancel-job");
        // A confirmation first: "Keep running" changes nothing, "Cancel job" cancels.
        var dialog = page.Locator(".mud-dialog");
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Keep running" }).ClickAsync();
        await dialog.WaitForAsync(new() { State = WaitForSelectorState.Detached, Timeout = 10_000 });
        Assert.NotEqual("cancelled", (await web.GetJson($"/v1/fine_tuning/jobs/{job}")).GetProperty("status").GetString());
        await page.ClickAsync("#cancel-job");
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel job" }).ClickAsync();
        await page.Locator(".status-chip[data-status='cancelled']").First.WaitForAsync(new() { Timeout = 30_000 });
        Assert.Equal("cancelled", (await web.GetJson($"/v1/fine_tuning/jobs/{job}")).GetProperty("status").GetString());
        await Task.Delay(3000); // the worker stops at its next step and writes its last rows

        long Mark() => new FileInfo(pg.LogPath).Length;
        int Mentions(long from)
        {
            using var s = new FileStream(pg.LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            s.Position = from;
            return new StreamReader(s).ReadToEnd().Split('\n').Count(l => l.Contains(job));
        }
        var idleFrom = Mark();
        await Task.Delay(10_000);
        int idle = Mentions(idleFrom);
        var loadFrom = Mark();
        await page.ReloadAsync();
        await InteractiveAsync(page);
        await page.Locator("#loss-chart polyline.series").First.WaitForAsync(new() { Timeout = 45_000 });
        await Task.Delay(1000);
        int load = Mentions(loadFrom);
        Assert.True(load > 0, "loading the page sent no query naming the job: the log cannot see page queries");
        Assert.True(idle == 0, $"an idle job page sent {idle} statements about the job in 10 s");
    }

    /// <summary>A DPO job started from the New job page: method, file and a non-default loss type picked in the form; a bad value is shown at its field first.</summary>
    [ChromiumFact]
    public async Task A_DPO_job_starts_from_the_New_job_page_with_a_chosen_loss_type()
    {
        var data = TempDir();
        await using var app = await AlignHubProcess.StartAsync(data);
        var pairs = string.Join("\n", AlignHub.Domain.PreferenceTask.Pairs(64, 1).Select(p => JsonSerializer.Serialize(new { prompt = p.Prompt, chosen = p.Chosen, rejected = p.Rejected })));
        var file = (await app.Upload(pairs, "pairs.jsonl")).Body.GetProperty("id").GetString()!;

        using var pw = await Playwright.CreateAsync();
        await using var browser = await DashboardBrowserTests.LaunchAsync(pw);
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1400, Height = 1000 } });
        await DashboardBrowserTests.SignInAsync(page, app, "jobs/new");
        await InteractiveAsync(page);

        await PickAsync(page, "method-select", "dpo:", "dpo");
        await page.Locator("#hp-loss_type").WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 30_000 });
        await PickAsync(page, "training-file", file, file);
        await PickAsync(page, "hp-loss_type", "ipo", "ipo");
        // Switching the method rebuilds the form: the DPO fields, each once (a keyed list; without keys stale fields stayed).
        var fields = await page.EvaluateAsync<string[]>("() => [...document.querySelectorAll('input[id^=hp-]')].map(e => e.id)");
        Assert.Contains("hp-beta", fields);
        Assert.DoesNotContain("hp-max_seq_length", fields);
        Assert.Equal(fields.Length, fields.Distinct().Count());
        await page.FillAsync("#hp-max_steps", "40");
        await page.FillAsync("#hp-batch_size", "4");
        await page.FillAsync("#hp-beta", "-1");
        await page.Locator("#start-job:not([disabled])").WaitForAsync(new() { Timeout = 30_000 });
        await page.ClickAsync("#start-job");
        // The API's message about beta is shown under the beta field, and nothing was created.
        var betaError = page.Locator("div.mud-input-control:has(#hp-beta) .mud-input-error");
        await betaError.First.WaitForAsync(new() { Timeout = 30_000 });
        Assert.Empty((await app.GetJson("/v1/fine_tuning/jobs")).GetProperty("data").EnumerateArray());

        await page.FillAsync("#hp-beta", "0.2");
        await page.ClickAsync("#start-job");
        await page.WaitForURLAsync("**/jobs/ftjob-*", new() { Timeout = 45_000 });
        var id = page.Url[(page.Url.LastIndexOf('/') + 1)..];
        var job = await app.GetJson($"/v1/fine_tuning/jobs/{id}");
        Assert.Equal("dpo", job.GetProperty("method").GetProperty("type").GetString());
        var hp = job.GetProperty("method").GetProperty("dpo").GetProperty("hyperparameters");
        Assert.Equal("ipo", hp.GetProperty("loss_type").GetString());
        Assert.Equal(0.2, hp.GetProperty("beta").GetDouble(), 9);

        // The job page while it trains: the method card with its formula, grouped charts filling in.
        await InteractiveAsync(page);
        await page.Locator(".method-formula").WaitForAsync(new() { Timeout = 30_000 });
        await page.WaitForFunctionAsync("() => Number(document.querySelector('.job-progress')?.dataset.steps) >= 20", null, new() { Timeout = 120_000 });
        await page.Locator("#rewards-chart polyline.series").First.WaitForAsync(new() { Timeout = 30_000 });
        await page.ScreenshotAsync(new() { Path = Shot(data, "job-dpo.png"), FullPage = true });
        await app.WaitForStatus(id, "succeeded", TimeSpan.FromMinutes(3));
    }

    /// <summary>Two runs overlaid on the compare view, their config differences marked; clone carries a job's settings into the New job form.</summary>
    [ChromiumFact]
    public async Task The_compare_view_draws_two_runs_and_diffs_their_configs()
    {
        var data = TempDir();
        await using var app = await AlignHubProcess.StartAsync(data);
        var file = (await app.Upload(TestData.Jsonl(64))).Body.GetProperty("id").GetString()!;
        var a = await app.CreateSftJob(file, new { n_epochs = 3, batch_size = 8, learning_rate_multiplier = 1.0 });
        var b = await app.CreateSftJob(file, new { n_epochs = 3, batch_size = 8, learning_rate_multiplier = 4.0 }, seed: 2);
        await app.WaitForStatus(a, "succeeded", TimeSpan.FromMinutes(3));
        await app.WaitForStatus(b, "succeeded", TimeSpan.FromMinutes(3));

        using var pw = await Playwright.CreateAsync();
        await using var browser = await DashboardBrowserTests.LaunchAsync(pw);
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1400, Height = 1000 } });
        await DashboardBrowserTests.SignInAsync(page, app, $"compare?jobs={a},{b}");
        await InteractiveAsync(page);
        var lines = page.Locator("#compare-chart polyline.series");
        await page.WaitForFunctionAsync("() => document.querySelectorAll('#compare-chart polyline.series').length === 2", null, new() { Timeout = 45_000 });
        for (int i = 0; i < 2; i++) Assert.True(int.Parse((await lines.Nth(i).GetAttributeAsync("data-points"))!) >= 10);
        Assert.NotEqual(await lines.Nth(0).GetAttributeAsync("points"), await lines.Nth(1).GetAttributeAsync("points"));
        var differs = page.Locator("table.config-diff tr.differs");
        Assert.Contains("learning_rate_multiplier", string.Join("\n", await differs.AllInnerTextsAsync()));
        Assert.Contains("seed", string.Join("\n", await differs.AllInnerTextsAsync()));
        // The table view of the same chart holds the numbers.
        await page.Locator("#compare-chart .chart-table-toggle").ClickAsync();
        await page.Locator("#compare-chart table.chart-table tbody tr").First.WaitForAsync(new() { Timeout = 15_000 });
        await page.Locator("#compare-chart .chart-table-toggle").ClickAsync();
        await page.Locator("#compare-chart polyline.series").First.WaitForAsync(new() { Timeout = 15_000 });
        await page.ScreenshotAsync(new() { Path = Shot(data, "compare.png"), FullPage = true });

        // Clone with changes: the form starts from job b's settings.
        await page.GotoAsync(app.Http.BaseAddress + $"jobs/new?clone={b}");
        await InteractiveAsync(page);
        Assert.Equal("4", await page.InputValueAsync("#hp-learning_rate_multiplier"));
        Assert.Equal("2", await page.InputValueAsync("#seed"));
    }

    /// <summary>An online RL job's page lists its sampled completions with their rewards.</summary>
    [ChromiumFact]
    public async Task The_samples_table_of_a_GRPO_job_shows_rewards()
    {
        var data = TempDir();
        await using var app = await AlignHubProcess.StartAsync(data);
        var file = (await app.Upload(AlignHub.Domain.ArithmeticTask.Jsonl(32, 1), "problems.jsonl")).Body.GetProperty("id").GetString()!;
        var (s, created) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = file, seed = 3,
            method = new { type = "grpo", grpo = new { hyperparameters = new { max_steps = 4, batch_size = 4, num_generations = 4, max_completion_length = 4, log_completions_steps = 2,
                grader = new { type = "text_similarity", name = "similar", input = "{{sample.output_text}}", reference = "{{item.answer}}", evaluation_metric = "fuzzy_match" } } } },
        });
        Assert.True(s == HttpStatusCode.OK, created.ToString());
        var job = created.GetProperty("id").GetString()!;
        await app.WaitForStatus(job, "succeeded", TimeSpan.FromMinutes(3));
        var api = (await app.GetJson($"/v1/fine_tuning/jobs/{job}/samples?limit=500")).GetProperty("data").EnumerateArray().ToList();
        Assert.NotEmpty(api);

        using var pw = await Playwright.CreateAsync();
        await using var browser = await DashboardBrowserTests.LaunchAsync(pw);
        var page = await browser.NewPageAsync();
        await DashboardBrowserTests.SignInAsync(page, app, $"jobs/{job}");
        await InteractiveAsync(page);
        var rewards = page.Locator("#samples .sample-reward");
        await rewards.First.WaitForAsync(new() { Timeout = 30_000 });
        var shown = (await rewards.AllInnerTextsAsync()).Select(t => double.Parse(t, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        // The newest logged step's samples, as the API returns them.
        int newest = api.Max(x => x.GetProperty("step").GetInt32());
        var expected = api.Where(x => x.GetProperty("step").GetInt32() == newest).Select(x => Math.Round(x.GetProperty("reward").GetDouble(), 3)).ToList();
        Assert.Equal(expected, shown);
        Assert.Contains("similar", await page.Locator("#samples table").InnerTextAsync());
    }

    /// <summary>
    /// Issue 23's diagnostics on the job page: a GRPO job with a proxy grader and a gold grader (the review task's hidden
    /// reward) draws both curves against the step and against KL, and the table view of the KL chart holds the API's
    /// (kl, reward, gold/reward) of every step.
    /// </summary>
    [ChromiumFact]
    public async Task The_job_page_draws_proxy_and_gold_reward_against_the_step_and_against_KL()
    {
        var data = TempDir();
        await using var app = await AlignHubProcess.StartAsync(data);
        // A start that speaks the review task's words (so the gold reward moves), then GRPO on a proxy that rewards "awful".
        var rng = new Random(4);
        var demos = string.Join("\n", Enumerable.Range(0, 512).Select(_ => JsonSerializer.Serialize(new { prompt = AlignHub.Domain.PreferenceTask.Prompt(rng), completion = AlignHub.Domain.PreferenceTask.Response(rng) })));
        var demoFile = (await app.Upload(demos, "reviews-sft.jsonl")).Body.GetProperty("id").GetString()!;
        var (ss, sft) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = demoFile, seed = 1,
            method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 2, batch_size = 16, learning_rate = 3e-3 } } },
        });
        Assert.True(ss == HttpStatusCode.OK, sft.ToString());
        var start = (await app.WaitForStatus(sft.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(3))).GetProperty("fine_tuned_model").GetString()!;
        var rows = string.Join("\n", Enumerable.Range(0, 32).Select(_ => JsonSerializer.Serialize(new { prompt = AlignHub.Domain.PreferenceTask.Prompt(rng) })));
        var file = (await app.Upload(rows, "reviews.jsonl")).Body.GetProperty("id").GetString()!;
        const int steps = 6;
        var (s, created) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = start, training_file = file, seed = 3,
            method = new { type = "grpo", grpo = new { hyperparameters = new { max_steps = steps, batch_size = 4, num_generations = 8, max_completion_length = 16, beta = 0.02,
                learning_rate = 1e-3,
                grader = new { type = "regex_match", name = "says_awful", input = "{{sample.output_text}}", pattern = "awful" },
                gold_grader = AlignHub.Domain.PreferenceTask.TrueRewardGrader } } },
        });
        Assert.True(s == HttpStatusCode.OK, created.ToString());
        var job = created.GetProperty("id").GetString()!;
        await app.WaitForStatus(job, "succeeded", TimeSpan.FromMinutes(3));
        async Task<Dictionary<int, double>> Metric(string name) =>
            (await app.GetJson($"/v1/fine_tuning/jobs/{job}/metrics?name={Uri.EscapeDataString(name)}")).GetProperty("data").EnumerateArray()
                .ToDictionary(m => m.GetProperty("step").GetInt32(), m => m.GetProperty("value").GetDouble());
        var (proxy, gold, kl) = (await Metric("reward"), await Metric("gold/reward"), await Metric("kl"));
        Assert.Equal(steps, gold.Count);
        Assert.Equal(steps, kl.Count);

        using var pw = await Playwright.CreateAsync();
        await using var browser = await DashboardBrowserTests.LaunchAsync(pw);
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1440, Height = 900 } });
        await DashboardBrowserTests.SignInAsync(page, app, $"jobs/{job}");
        await InteractiveAsync(page);
        foreach (var chart in new[] { "#gold-chart", "#gold-kl-chart" })
            foreach (var name in new[] { "reward", "gold/reward" })
            {
                var line = page.Locator($"{chart} polyline.series[data-name='{name}']");
                await line.WaitForAsync(new() { State = WaitForSelectorState.Attached, Timeout = 30_000 }); // a flat line has no height
                Assert.Equal(steps.ToString(), await line.GetAttributeAsync("data-points"));
            }
        Assert.Contains("against KL", await page.Locator("#gold-kl-chart").InnerTextAsync());

        // Hovering a step shows a tooltip with the step and each series' value there, as the API has them.
        var column = page.Locator("#gold-chart .hover-col[data-x='3']");
        await column.Locator("rect").First.HoverAsync(new() { Force = true });
        var tip = column.Locator(".chart-tip");
        await tip.WaitForAsync(new() { State = WaitForSelectorState.Visible, Timeout = 10_000 });
        var tipText = await tip.TextContentAsync() ?? "";
        Assert.Contains("step 3", tipText);
        double Said(string name) => double.Parse(System.Text.RegularExpressions.Regex.Match(tipText, System.Text.RegularExpressions.Regex.Escape(name) + @": (-?[0-9.e-]+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(proxy[3], Said("reward"), 3);
        Assert.Equal(gold[3], Said("gold/reward"), 3);
        Assert.False(await page.Locator("#gold-chart .hover-col[data-x='4'] .chart-tip").IsVisibleAsync());
        // A non-negative metric's axis (top-10 mass and entropy) starts at zero or above.
        var yTicks = (await page.Locator("#topk-chart .y-tick").EvaluateAllAsync<string[]>("els => els.map(e => e.dataset.value)"))
            .Select(v => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.NotEmpty(yTicks);
        Assert.True(yTicks.Min() >= 0, string.Join(", ", yTicks));
        await page.Locator("#gold-chart").ScreenshotAsync(new() { Path = Shot(data, "job-gold-proxy.png") });
        await page.Locator("#gold-kl-chart").ScreenshotAsync(new() { Path = Shot(data, "job-gold-proxy-kl.png") });

        // The table view: one row per step keyed by that step's KL, holding its proxy and gold reward.
        await page.Locator("#gold-kl-chart .chart-table-toggle").ClickAsync();
        var cells = page.Locator("#gold-kl-chart table.chart-table tbody tr");
        await cells.First.WaitForAsync(new() { Timeout = 15_000 });
        var header = await page.Locator("#gold-kl-chart table.chart-table thead th").AllInnerTextsAsync();
        Assert.Equal(["kl", "reward", "gold/reward"], header);
        var table = new List<double[]>();
        foreach (var row in await cells.AllAsync())
            table.Add((await row.Locator("td").AllInnerTextsAsync()).Select(t => double.Parse(t, System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        Assert.Equal(kl.Values.Distinct().Count(), table.Count);
        static bool Near(double a, double b) => Math.Abs(a - b) <= 1e-3 * Math.Max(1, Math.Abs(b));
        foreach (var step in kl.Keys)
            Assert.Contains(table, r => Near(r[0], kl[step]) && Near(r[1], proxy[step]) && Near(r[2], gold[step]));
    }

    /// <summary>The Files page shows a file's first rows; the Models page shows a fine-tuned model's lineage; the Workers page its worker.</summary>
    [ChromiumFact]
    public async Task Files_models_and_workers_pages_show_rows_lineage_and_the_worker()
    {
        var data = TempDir();
        await using var app = await AlignHubProcess.StartAsync(data);
        var file = (await app.Upload(TestData.Jsonl(16), "greetings.jsonl")).Body.GetProperty("id").GetString()!;
        var job = await app.CreateSftJob(file, new { n_epochs = 1, batch_size = 8 });
        var done = await app.WaitForStatus(job, "succeeded", TimeSpan.FromMinutes(2));
        var model = done.GetProperty("fine_tuned_model").GetString()!;

        using var pw = await Playwright.CreateAsync();
        await using var browser = await DashboardBrowserTests.LaunchAsync(pw);
        var page = await browser.NewPageAsync();
        await DashboardBrowserTests.SignInAsync(page, app, "files");
        await InteractiveAsync(page);
        await page.Locator($"tr[data-file-id='{file}'] button").ClickAsync();
        var preview = page.Locator("tr.file-preview pre");
        await preview.WaitForAsync(new() { Timeout = 30_000 });
        var firstLine = File.ReadLines(Directory.GetFiles(Path.Combine(data, "files"), file + ".jsonl").Single()).First();
        Assert.StartsWith(firstLine, await preview.InnerTextAsync());

        await page.GotoAsync(app.Http.BaseAddress + "models");
        await InteractiveAsync(page);
        var lineage = page.Locator($"tr[data-model-id='{model}'] .lineage");
        await lineage.WaitForAsync(new() { Timeout = 30_000 });
        var text = await lineage.InnerTextAsync();
        Assert.Contains(job, text);
        Assert.Contains("alignhub/tiny", text);

        await page.GotoAsync(app.Http.BaseAddress + "workers");
        await InteractiveAsync(page);
        // The summary by its id: a bare text match on "1 online" also matched a worker row whose id ends in "1".
        await Assertions.Expect(page.Locator("#workers-summary")).ToContainTextAsync("1 online", new() { Timeout = 30_000 });
    }

    /// <summary>Hangfire's own dashboard is mounted for admins only.</summary>
    [Fact]
    public async Task Hangfire_dashboard_is_for_admins_only()
    {
        await using var app = await AlignHubProcess.StartAsync(TempDir(), roles: "api,web");
        var ok = await app.Http.GetAsync("/hangfire");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Contains("AlignHub queues", await ok.Content.ReadAsStringAsync());
        var viewer = await app.ClientAs("viewer", "v");
        Assert.Equal(HttpStatusCode.Forbidden, (await viewer.GetAsync("/hangfire")).StatusCode);
        using var anonymous = new HttpClient { BaseAddress = app.Http.BaseAddress };
        var none = await anonymous.GetAsync("/hangfire");
        Assert.True(none.StatusCode is HttpStatusCode.Unauthorized || (none.RequestMessage?.RequestUri?.AbsolutePath == "/signin"), $"{none.StatusCode} {none.RequestMessage?.RequestUri}");
    }
}
