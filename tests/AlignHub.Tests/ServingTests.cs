using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Domain.Inference;
using AlignHub.Training.Data;
using AlignHub.Training.Generation;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using TorchSharp;
using Xunit;

namespace AlignHub.Tests;

/// <summary>
/// The serving engine's continuous batching against the batch generator: requests that arrive while others are being
/// generated, join the running batch mid-way and leave it as they finish give the tokens each would get alone.
/// </summary>
public class ServingTests
{
    static readonly string Config = ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny-128"]);
    static readonly ModelRecord Record = new() { Id = "m", OwnedBy = "user", Architecture = "gpt2", ConfigJson = Config, Tokenizer = "byte", WeightsPath = "x" };

    static string Collect(ServingJob job, int choice, out string finish)
    {
        var text = new System.Text.StringBuilder();
        finish = "";
        while (job.Events.TryRead(out var e))
        {
            if (e is TextDelta d && d.Index == choice) text.Append(d.Text);
            if (e is ChoiceFinished f && f.Index == choice) finish = f.FinishReason;
        }
        return text.ToString();
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.9)]
    public void Requests_joining_a_running_batch_get_the_tokens_they_would_get_alone(double temperature)
    {
        torch.manual_seed(3);
        using var model = CausalLM.Create(Config);
        var tok = new ByteTokenizer();
        var encoder = new PromptEncoder(tok, 100);
        string[] prompts = ["Hello", "A longer prompt that arrives later and is long", "x", "Greet Ada.\n", "Count: 1 2 3", "q"];
        int[] maxTokens = [20, 12, 30, 8, 25, 5];
        string[] stops = ["", "", "e", "", "", ""];
        using var engine = new InferenceEngine(model, tok, maxRows: 3, capacity: 128);
        var jobs = new List<ServingJob>();
        ServingJob Submit(int i)
        {
            var req = new InferenceRequest { Model = Record, Prompt = prompts[i], MaxTokens = maxTokens[i], Temperature = temperature, N = 1 };
            var job = new ServingJob(req, 0, stops[i].Length > 0 ? [stops[i]] : [], CancellationToken.None);
            engine.Enqueue([new ServingRow { Job = job, Choice = 0, Prompt = encoder.Encode(prompts[i]), Seed = Seeds.Row(77, 0, i, 0) }]);
            return job;
        }
        // Staggered: two at once, more after a few steps (some wait for a free row or for L to reach their prompt's length).
        jobs.Add(Submit(0)); jobs.Add(Submit(2));
        for (int s = 0; s < 3; s++) engine.Step();
        jobs.Add(Submit(1)); jobs.Add(Submit(3));
        for (int s = 0; s < 4; s++) engine.Step();
        jobs.Add(Submit(4)); jobs.Add(Submit(5));
        for (int s = 0; s < 500 && engine.HasWork; s++) engine.Step();
        Assert.False(engine.HasWork);

        for (int i = 0; i < prompts.Length; i++)
        {
            int k = i switch { 0 => 0, 2 => 1, 1 => 2, 3 => 3, 4 => 4, _ => 5 };
            var alone = TextGenerator.Generate(model, tok, [encoder.Encode(prompts[i])],
                new GenerationOptions { MaxNewTokens = maxTokens[i], Temperature = temperature, Stop = stops[i].Length > 0 ? [stops[i]] : [] },
                [Seeds.Row(77, 0, i, 0)])[0];
            var served = Collect(jobs[k], 0, out var finish);
            Assert.True(alone.Text == served, $"prompt {i}: alone \"{alone.Text}\" served \"{served}\"");
            Assert.Equal(alone.FinishReason, finish);
        }
    }

    /// <summary>
    /// Many requests through two rows: the shared right edge moves on while requests come and go, and the engine shifts the
    /// cache left when the columns before every live row are unused; the tokens stay each request's own.
    /// </summary>
    [Fact]
    public void Requests_cycling_through_a_small_batch_keep_their_tokens_as_the_cache_shifts()
    {
        torch.manual_seed(5);
        using var model = CausalLM.Create(Config);
        var tok = new ByteTokenizer();
        var encoder = new PromptEncoder(tok, 100);
        using var engine = new InferenceEngine(model, tok, maxRows: 2, capacity: 160);
        var prompts = Enumerable.Range(0, 10).Select(i => $"Prompt {i}: " + new string('z', i % 4)).ToList();
        var jobs = prompts.Select((p, i) =>
        {
            var job = new ServingJob(new InferenceRequest { Model = Record, Prompt = p, MaxTokens = 24 + 7 * (i % 3), Temperature = 0.8 }, 0, [], CancellationToken.None);
            engine.Enqueue([new ServingRow { Job = job, Choice = 0, Prompt = encoder.Encode(p), Seed = Seeds.Row(9, 0, i, 0) }]);
            return job;
        }).ToList();
        int steps = 0;
        for (; steps < 2000 && engine.HasWork; steps++) engine.Step();
        Assert.False(engine.HasWork);
        for (int i = 0; i < prompts.Count; i++)
        {
            var alone = TextGenerator.Generate(model, tok, [encoder.Encode(prompts[i])],
                new GenerationOptions { MaxNewTokens = 24 + 7 * (i % 3), Temperature = 0.8 }, [Seeds.Row(9, 0, i, 0)])[0];
            Assert.Equal(alone.Text, Collect(jobs[i], 0, out var finish));
            Assert.Equal(alone.FinishReason, finish);
        }
        // Ten requests of 24 to 38 tokens through two rows: the right edge moved on, and the cache was shifted left on the way.
        Assert.True(engine.Compactions > 0, $"{steps} steps, no shift");
    }

    [Fact]
    public void A_cancelled_request_leaves_the_batch_and_the_others_finish()
    {
        torch.manual_seed(3);
        using var model = CausalLM.Create(Config);
        var tok = new ByteTokenizer();
        var encoder = new PromptEncoder(tok, 100);
        using var engine = new InferenceEngine(model, tok, maxRows: 2, capacity: 128);
        using var cts = new CancellationTokenSource();
        var req = new InferenceRequest { Model = Record, Prompt = "a", MaxTokens = 50, Temperature = 0, N = 2 };
        var gone = new ServingJob(req, 1, [], cts.Token);
        var stays = new ServingJob(req with { N = 1 }, 1, [], CancellationToken.None);
        engine.Enqueue([new ServingRow { Job = gone, Choice = 0, Prompt = encoder.Encode("a"), Seed = 1 }, new ServingRow { Job = gone, Choice = 1, Prompt = encoder.Encode("a"), Seed = 2 }]);
        engine.Enqueue([new ServingRow { Job = stays, Choice = 0, Prompt = encoder.Encode("b"), Seed = 3 }]);
        engine.Step();
        Assert.Equal(3, engine.Load); // two rows busy, one waiting for a row
        cts.Cancel();
        for (int s = 0; s < 200 && engine.HasWork; s++) engine.Step();
        Assert.False(engine.HasWork);
        Collect(stays, 0, out var finish);
        Assert.Equal("length", finish);
    }
}

/// <summary>The playground in Debian's Chromium: two models stream side by side, and the pair goes to a campaign where an annotator sees it.</summary>
public class PlaygroundBrowserTests
{
    static async Task<string> UploadRandomModel(AlignHubProcess app, string id, int seed)
    {
        var dir = Directory.CreateTempSubdirectory("alignhub-play-model-").FullName;
        File.WriteAllText(Path.Combine(dir, "config.json"), TinyConfigs.Gpt2());
        using (var m = TinyConfigs.Create(TinyConfigs.Gpt2(), seed)) HfWeights.Save(m, dir);
        var (status, body) = await ModelsApiTests.UploadModel(app, ModelsApiTests.TarGz(dir, "m"), id);
        Assert.True(status == System.Net.HttpStatusCode.OK, body.ToString());
        return id;
    }

    [ChromiumFact]
    public async Task The_playground_streams_two_models_and_sends_the_pair_to_a_campaign()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-playground-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data);
        var a = await UploadRandomModel(app, "me/left", 1);
        var b = await UploadRandomModel(app, "me/right", 2);
        var (_, file) = await app.Upload(JsonSerializer.Serialize(new { prompt = "seed item", response_a = "x", response_b = "y" }), "items.jsonl");
        var (_, campaign) = await app.PostJson("/v1/annotation/campaigns", new { name = "playground pairs", file = file.GetProperty("id").GetString(), annotators_per_item = 1 });
        var campaignId = campaign.GetProperty("id").GetString()!;

        using var pw = await Microsoft.Playwright.Playwright.CreateAsync();
        await using var browser = await pw.Chromium.LaunchAsync(new()
        {
            ExecutablePath = ChromiumFactAttribute.Executable, Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
        var page = await browser.NewPageAsync();
        await DashboardBrowserTests.SignInAsync(page, app, "playground");
        await page.Locator("#circuit[data-interactive='yes']").WaitForAsync(new() { State = Microsoft.Playwright.WaitForSelectorState.Attached, Timeout = 45_000 });
        await page.SelectOptionAsync("#model-a", a);
        await page.SelectOptionAsync("#model-b", b);
        await page.FillAsync("#max-tokens", "40");
        await page.Locator("#max-tokens").DispatchEventAsync("change");
        await page.FillAsync("#message", "Say something kind.");
        await page.ClickAsync("#send");
        // Both answers stream into their columns, then become the assistant's turns.
        await page.WaitForFunctionAsync("() => document.querySelectorAll('[data-role=assistant]').length === 2 && !document.querySelector('#stop')", null, new() { Timeout = 60_000 });
        var answers = await page.Locator("[data-role=assistant] span").AllInnerTextsAsync();
        Assert.Equal(2, answers.Count);
        Assert.All(answers, t => Assert.False(string.IsNullOrEmpty(t)));
        await page.SelectOptionAsync("#campaign", campaignId);
        await page.ClickAsync("#to-campaign");
        await page.Locator("#sent").WaitForAsync(new() { Timeout = 30_000 });
        Assert.Contains("item 2", await page.Locator("#sent").InnerTextAsync());

        // An annotator of the campaign gets the pair (after the seed item): the prompt and both answers, in some order.
        var annotator = await app.ClientAs("annotator", "play");
        var seen = new List<JsonElement>();
        for (int i = 0; i < 2; i++)
        {
            var next = await annotator.PostAsync($"/v1/annotation/campaigns/{campaignId}/next", System.Net.Http.Json.JsonContent.Create(new { }));
            var item = JsonDocument.Parse(await next.Content.ReadAsStringAsync()).RootElement.Clone();
            seen.Add(item);
            await annotator.PostAsync($"/v1/annotation/campaigns/{campaignId}/labels",
                System.Net.Http.Json.JsonContent.Create(new { assignment_id = item.GetProperty("assignment_id").GetInt64(), choice = "left" }));
        }
        var pair = seen.Single(x => x.GetProperty("prompt").GetString() == "Say something kind.");
        // Stored text holds no NUL (PostgreSQL's text cannot): a NUL an untrained model emits is kept as U+FFFD.
        Assert.Equal(answers.Select(a => a.Replace('\0', '\uFFFD')).Order(), new[] { pair.GetProperty("left").GetString()!, pair.GetProperty("right").GetString()! }.Order());
    }
}
