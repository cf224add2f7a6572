using System.Net;
using System.Text.Json;
using AlignHub.Domain;
using Xunit;

namespace AlignHub.Tests;

/// <summary>AI judges: verdict rules by hand, and a judge-labelled campaign end to end with AlignHub's own endpoint as the judge.</summary>
public class JudgeTests
{
    [Theory]
    [InlineData("A", "b", "a")]      // (a, b) -> A = a; (b, a) -> B = a: both orders name a
    [InlineData("B", "a", "b")]      // (a, b) -> B = b; (b, a) -> A = b
    [InlineData("A", "a", "tie")]    // position bias: A both times, the orders disagree
    [InlineData("none", "b", "tie")] // one order without an answer
    public void Both_orders_must_name_the_same_side(string first, string second, string verdict)
    {
        var p1 = first == "none" ? JudgePrompts.Pick("I cannot tell") : JudgePrompts.Pick($"Answer: {first}.");
        Assert.Equal(verdict, JudgePrompts.Verdict(p1, second));
    }

    [Fact]
    public void Answers_are_read_for_a_letter_or_a_score()
    {
        Assert.Equal("a", JudgePrompts.Pick("A"));
        Assert.Equal("b", JudgePrompts.Pick(" B<|end|>"));
        Assert.Equal("b", JudgePrompts.Pick("Response 2 is better"));
        Assert.Equal("none", JudgePrompts.Pick("Both are Awful")); // a letter inside a word is no answer
        Assert.Equal(7.5, JudgePrompts.Score("Score: 7.5/10", 0, 10));
        Assert.Equal(10, JudgePrompts.Score("12", 0, 10)); // clipped to the range
        Assert.Null(JudgePrompts.Score("great", 0, 10));
    }

    static readonly string[] Names = ["Ada", "Alan", "Grace", "Linus", "Ken", "Barbara", "Edsger", "Donald"];
    const string Template = "A: {{response_a}}\nB: {{response_b}}\nBetter?";

    /// <summary>A campaign of (prompt, response_a, response_b) items, one annotator each, pre-labelled by <paramref name="judgeId"/> (verdicts shown after answers); returns once every item is judged.</summary>
    static async Task<string> JudgedCampaignAsync(AlignHubProcess app, string name, List<(string Prompt, string A, string B)> items, string judgeId)
    {
        var (_, file) = await app.Upload(string.Join("\n", items.Select(x => JsonSerializer.Serialize(new { prompt = x.Prompt, response_a = x.A, response_b = x.B }))), "items.jsonl");
        var (_, campaign) = await app.PostJson("/v1/annotation/campaigns", new { name, file = file.GetProperty("id").GetString(), annotators_per_item = 1 });
        var campaignId = campaign.GetProperty("id").GetString()!;
        var (s, set) = await app.PostJson($"/v1/annotation/campaigns/{campaignId}/judge", new { judge = judgeId, visibility = "after" });
        Assert.True(s == HttpStatusCode.OK, set.ToString());
        var until = DateTime.UtcNow.AddMinutes(3);
        JsonElement c;
        do { await Task.Delay(500); c = await app.GetJson($"/v1/annotation/campaigns/{campaignId}"); }
        while (c.GetProperty("judged_items").GetInt32() < items.Count && c.GetProperty("judge_error").ValueKind == JsonValueKind.Null && DateTime.UtcNow < until);
        Assert.True(c.GetProperty("judged_items").GetInt32() == items.Count, c.ToString());
        return campaignId;
    }

    /// <summary>alignhub/tiny fine-tuned on <paramref name="rows"/> (JSONL) until it repeats them; the model's id.</summary>
    static async Task<string> MemorisedAsync(AlignHubProcess app, string rows, string filename, int nEpochs)
    {
        var (st, f) = await app.Upload(rows, filename);
        Assert.True(st == HttpStatusCode.OK, f.ToString());
        var id = await app.CreateSftJob(f.GetProperty("id").GetString()!, new { n_epochs = nEpochs, batch_size = 4, learning_rate_multiplier = 3, save_steps = 1000, logging_steps = 50 }, seed: 3);
        return (await app.WaitForStatus(id, "succeeded", TimeSpan.FromMinutes(4))).GetProperty("fine_tuned_model").GetString()!;
    }

    [Fact]
    public async Task A_judge_labelled_campaign_exports_pairs_that_train_DPO_and_the_judges_key_never_shows()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-judge-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data);
        // The judge model: alignhub/tiny taught to answer with the letter of the kind response, in either position.
        var rows = Names.SelectMany(n => new[]
        {
            JsonSerializer.Serialize(new { messages = new object[] { new { role = "user", content = JudgePrompts.Pairwise(Template, "", $"Hello, {n}!", $"Go away, {n}.") }, new { role = "assistant", content = "A" } } }),
            JsonSerializer.Serialize(new { messages = new object[] { new { role = "user", content = JudgePrompts.Pairwise(Template, "", $"Go away, {n}.", $"Hello, {n}!") }, new { role = "assistant", content = "B" } } }),
        });
        var (s1, sft) = await app.Upload(string.Join("\n", rows), "judge.jsonl");
        Assert.True(s1 == HttpStatusCode.OK, sft.ToString());
        var job = await app.CreateSftJob(sft.GetProperty("id").GetString()!, new { n_epochs = 100, batch_size = 4, learning_rate_multiplier = 3, save_steps = 1000, logging_steps = 50 }, seed: 2);
        var judgeModel = (await app.WaitForStatus(job, "succeeded", TimeSpan.FromMinutes(4))).GetProperty("fine_tuned_model").GetString()!;

        // The judge is AlignHub's own endpoint, reached as any OpenAI-compatible server: its base URL, the model, a key.
        var secret = await app.CreateKey("viewer", "judge-caller");
        var (s2, judge) = await app.PostJson("/v1/judges", new
        {
            name = "kindness judge", mode = "pairwise", base_url = app.Http.BaseAddress + "v1", remote_model = judgeModel, api_key = secret,
            prompt_template = Template, max_tokens = 3,
        });
        Assert.True(s2 == HttpStatusCode.OK, judge.ToString());
        Assert.True(judge.GetProperty("has_api_key").GetBoolean());
        var judgeId = judge.GetProperty("id").GetString()!;

        // A campaign of 12 pairs, the kind response on either side; the judge pre-labels it, shown to annotators after they answer.
        var rng = new Random(4);
        var items = Enumerable.Range(0, 12).Select(i =>
        {
            var n = Names[i % Names.Length];
            bool kindFirst = rng.Next(2) == 0;
            return (Prompt: $"Greet {n}.", A: kindFirst ? $"Hello, {n}!" : $"Go away, {n}.", B: kindFirst ? $"Go away, {n}." : $"Hello, {n}!", Kind: kindFirst ? "a" : "b");
        }).ToList();
        var campaignId = await JudgedCampaignAsync(app, "judged", items.Select(x => (x.Prompt, x.A, x.B)).ToList(), judgeId);

        // Both orders were asked and recorded; the verdicts are right where the two orders agree.
        var judgements = (await app.GetJson($"/v1/annotation/campaigns/{campaignId}/judgements")).GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(12, judgements.Count);
        foreach (var j in judgements)
        {
            var orders = j.GetProperty("orders");
            Assert.Equal("a,b", orders.GetProperty("first").GetProperty("order").GetString());
            Assert.Equal("b,a", orders.GetProperty("second").GetProperty("order").GetString());
            Assert.False(string.IsNullOrEmpty(orders.GetProperty("first").GetProperty("answer").GetString()));
        }
        var verdicts = judgements.ToDictionary(j => j.GetProperty("index").GetInt32(), j => j.GetProperty("verdict").GetString()!);
        var decided = verdicts.Where(v => v.Value != "tie").ToList();
        Assert.True(decided.Count >= 8, $"only {decided.Count} of 12 verdicts were not ties: " + string.Join("; ", judgements.Select(j =>
            $"{j.GetProperty("index").GetInt32()}:{j.GetProperty("verdict").GetString()} ({j.GetProperty("orders").GetProperty("first").GetProperty("answer").GetString()}|{j.GetProperty("orders").GetProperty("second").GetProperty("answer").GetString()})")));
        Assert.All(decided, v => Assert.Equal(items[v.Key].Kind, v.Value));

        // An annotator labels three items; the judge's verdict comes back after each answer, and the stats compare them.
        var annotator = await app.ClientAs("annotator", "human");
        for (int k = 0; k < 3; k++)
        {
            var next = JsonDocument.Parse(await (await annotator.PostAsync($"/v1/annotation/campaigns/{campaignId}/next", System.Net.Http.Json.JsonContent.Create(new { }))).Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(JsonValueKind.Null, next.GetProperty("judge").ValueKind); // hidden until the answer
            var kindSide = next.GetProperty("left").GetString()!.StartsWith("Hello") ? "left" : "right";
            var labelled = JsonDocument.Parse(await (await annotator.PostAsync($"/v1/annotation/campaigns/{campaignId}/labels",
                System.Net.Http.Json.JsonContent.Create(new { assignment_id = next.GetProperty("assignment_id").GetInt64(), choice = kindSide }))).Content.ReadAsStringAsync()).RootElement;
            var index = items.FindIndex(x => x.Prompt == next.GetProperty("prompt").GetString() && (x.A == next.GetProperty("left").GetString() || x.B == next.GetProperty("left").GetString()));
            if (verdicts[index] != "tie") Assert.Equal(kindSide, labelled.GetProperty("judge").GetString());
        }
        var stats = await app.GetJson($"/v1/annotation/campaigns/{campaignId}/stats");
        Assert.Equal(12, stats.GetProperty("judge").GetProperty("judged_items").GetInt32());
        Assert.Equal(3, stats.GetProperty("judge").GetProperty("compared").GetInt32());

        // The judge's pairs (ties dropped) become a preference file that trains DPO.
        var (s4, exported) = await app.PostJson($"/v1/annotation/campaigns/{campaignId}/export", new { source = "judge" });
        Assert.True(s4 == HttpStatusCode.OK, exported.ToString());
        Assert.Equal(decided.Count, exported.GetProperty("line_count").GetInt32());
        var content = await app.Http.GetStringAsync($"/v1/files/{exported.GetProperty("id").GetString()}/content");
        Assert.All(content.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => Assert.StartsWith("Hello", JsonDocument.Parse(l).RootElement.GetProperty("chosen").GetString()));
        var (s5, dpo) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = exported.GetProperty("id").GetString(), method = new { type = "dpo", dpo = new { hyperparameters = new { beta = 0.1, n_epochs = 2, batch_size = 4 } } },
        });
        Assert.True(s5 == HttpStatusCode.OK, dpo.ToString());
        var dpoId = dpo.GetProperty("id").GetString()!;
        await app.WaitForStatus(dpoId, "succeeded", TimeSpan.FromMinutes(3));

        // The same judge decides an evaluation's win rate: a model that greets kindly against one that does not, each prompt asked in both orders.
        Task<string> Greeter(string reply) => MemorisedAsync(app,
            string.Join("\n", Names.Select(n => JsonSerializer.Serialize(new { messages = new object[] { new { role = "user", content = $"Greet {n}." }, new { role = "assistant", content = string.Format(reply, n) } } }))),
            "greet.jsonl", 100);
        var kind = await Greeter("Hello, {0}!");
        var rude = await Greeter("Go away, {0}.");
        var prompts = string.Join("\n", Names.Select(n => JsonSerializer.Serialize(new { prompt = new[] { new { role = "user", content = $"Greet {n}." } },
            chosen = new[] { new { role = "assistant", content = $"Hello, {n}!" } }, rejected = new[] { new { role = "assistant", content = $"Go away, {n}." } } })));
        var (s6, heldOut) = await app.Upload(prompts, "heldout.jsonl");
        Assert.True(s6 == HttpStatusCode.OK, heldOut.ToString());
        var (s7, eval) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = kind, training_file = heldOut.GetProperty("id").GetString(),
            method = new { type = "evaluate", evaluate = new { hyperparameters = new { reference_model = rude, judge = judgeId, max_new_tokens = 12 } } },
        });
        Assert.True(s7 == HttpStatusCode.OK, eval.ToString());
        var evalId = eval.GetProperty("id").GetString()!;
        await app.WaitForStatus(evalId, "succeeded", TimeSpan.FromMinutes(3));
        var winRate = (await app.GetJson($"/v1/fine_tuning/jobs/{evalId}/metrics?name=win_rate")).GetProperty("data")[0].GetProperty("value").GetDouble();
        Assert.True(winRate >= 0.75, $"win rate of the kind greeter by the judge: {winRate}");

        // A score_model grader can name the judge: its model is asked through its endpoint (it answers a letter, no number: the range's minimum).
        var (s8, graded) = await app.PostJson("/v1/fine_tuning/alpha/graders/run", new
        {
            grader = new { type = "score_model", name = "judge-score", model = judgeId, input = new[] { new { role = "user", content = "A: {{sample.output_text}}\nB: Go away, Ada.\nBetter?" } }, range = new[] { 0, 1 } },
            model_sample = "Hello, Ada!", item = new { },
        });
        Assert.True(s8 == HttpStatusCode.OK, graded.ToString());
        Assert.Equal(0, graded.GetProperty("reward").GetDouble());

        // The key shows nowhere: not in the judge's objects, the campaign's, its judgements or stats, any event, or the server's log.
        var seen = new List<string>
        {
            (await app.Http.GetStringAsync("/v1/judges")), (await app.Http.GetStringAsync($"/v1/judges/{judgeId}")), judge.ToString(),
            (await app.Http.GetStringAsync($"/v1/annotation/campaigns/{campaignId}")), (await app.Http.GetStringAsync($"/v1/annotation/campaigns/{campaignId}/judgements")),
            stats.ToString(), (await app.Http.GetStringAsync($"/v1/fine_tuning/jobs/{dpoId}/events?limit=1000")),
            (await app.Http.GetStringAsync($"/v1/fine_tuning/jobs/{job}/events?limit=1000")), (await app.Http.GetStringAsync($"/v1/fine_tuning/jobs/{evalId}/events?limit=1000")),
            graded.ToString(), File.ReadAllText(app.LogPath),
        };
        Assert.All(seen, s => Assert.DoesNotContain(secret, s));
        // A judge with an unknown model or no endpoint is refused, naming the field.
        var (bad, badBody) = await app.PostJson("/v1/judges", new { name = "x", model = "no/such-model" });
        Assert.Equal(HttpStatusCode.BadRequest, bad);
        Assert.Equal("model", badBody.GetProperty("error").GetProperty("param").GetString());
    }

    /// <summary>
    /// A general preference model (issue 23) is a pairwise judge wherever one is named: trained by a preference_model job
    /// on the intransitive task, it labels a campaign in both orders (its answers are P(A &gt; B), its verdicts the hidden
    /// cycle's) and decides an evaluation's win rate: a formal greeter beats a warm one and loses to a playful one, which
    /// no single reward could judge. A scalar reward model is refused as a judge, and a preference model as a pointwise one.
    /// </summary>
    [Fact]
    public async Task A_preference_model_judges_a_campaign_and_an_evaluation_by_the_cycle()
    {
        var data = Directory.CreateTempSubdirectory("alignhub-pmjudge-").FullName;
        await using var app = await AlignHubProcess.StartAsync(data);
        string Rows(IEnumerable<PreferencePair> pairs) => string.Join("\n", pairs.Select(x => JsonSerializer.Serialize(new { prompt = x.Prompt, chosen = x.Chosen, rejected = x.Rejected })));
        var (_, train) = await app.Upload(Rows(CyclicPreferenceTask.Pairs(480, 1)), "cyclic.jsonl");
        var (s1, pmJob) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = train.GetProperty("id").GetString(), seed = 1,
            method = new { type = "preference_model", preference_model = new { hyperparameters = new { n_epochs = 30, batch_size = 16, learning_rate = 1e-3, preference_dim = 8, warmup_ratio = 0.05 } } },
        });
        Assert.True(s1 == HttpStatusCode.OK, pmJob.ToString());
        var pm = (await app.WaitForStatus(pmJob.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(6))).GetProperty("fine_tuned_model").GetString()!;

        var (bad, badBody) = await app.PostJson("/v1/judges", new { name = "pm", mode = "pointwise", model = pm });
        Assert.Equal(HttpStatusCode.BadRequest, bad);
        Assert.Equal("mode", badBody.GetProperty("error").GetProperty("param").GetString());
        var (s2, judge) = await app.PostJson("/v1/judges", new { name = "cycle judge", model = pm });
        Assert.True(s2 == HttpStatusCode.OK, judge.ToString());
        var judgeId = judge.GetProperty("id").GetString()!;

        // A campaign of 12 style pairs of held-out draws, each (winner, loser) order of the cycle on either side.
        var rng = new Random(9);
        var items = Enumerable.Range(0, 12).Select(i =>
        {
            var name = CyclicPreferenceTask.Names[rng.Next(CyclicPreferenceTask.Names.Count)];
            int winner = i % 3;
            string w = CyclicPreferenceTask.Reply(winner, name), l = CyclicPreferenceTask.Reply((winner + 1) % 3, name);
            bool first = rng.Next(2) == 0;
            return (Prompt: CyclicPreferenceTask.Prompt(name), A: first ? w : l, B: first ? l : w, Winner: first ? "a" : "b");
        }).ToList();
        var campaignId = await JudgedCampaignAsync(app, "cycle", items.Select(x => (x.Prompt, x.A, x.B)).ToList(), judgeId);
        var judgements = (await app.GetJson($"/v1/annotation/campaigns/{campaignId}/judgements")).GetProperty("data").EnumerateArray().ToList();
        foreach (var j in judgements)
        {
            var (first, second) = (j.GetProperty("orders").GetProperty("first").GetProperty("answer").GetString()!, j.GetProperty("orders").GetProperty("second").GetProperty("answer").GetString()!);
            double P(string answer) => double.Parse(answer.Replace("P(A > B) = ", ""), System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(1, P(first) + P(second), 3); // the same pair asked the other way round
            Assert.Equal(items[j.GetProperty("index").GetInt32()].Winner, j.GetProperty("verdict").GetString());
        }

        // An evaluation's win rate by the same judge: formal beats warm, playful beats formal.
        Task<string> Greeter(int style) => MemorisedAsync(app,
            string.Join("\n", CyclicPreferenceTask.Names.Select(n => JsonSerializer.Serialize(new { prompt = CyclicPreferenceTask.Prompt(n), completion = CyclicPreferenceTask.Reply(style, n) }))),
            $"greet-{style}.jsonl", 60);
        var (formal, warm, playful) = (await Greeter(0), await Greeter(1), await Greeter(2));
        var (_, held) = await app.Upload(Rows(CyclicPreferenceTask.Names.Select(n => new PreferencePair(CyclicPreferenceTask.Prompt(n), CyclicPreferenceTask.Reply(0, n), CyclicPreferenceTask.Reply(1, n)))), "held.jsonl");
        async Task<double> WinRate(string policy, string reference)
        {
            var (st, eval) = await app.PostJson("/v1/fine_tuning/jobs", new
            {
                model = policy, training_file = held.GetProperty("id").GetString(),
                method = new { type = "evaluate", evaluate = new { hyperparameters = new { reference_model = reference, judge = judgeId, max_new_tokens = 16 } } },
            });
            Assert.True(st == HttpStatusCode.OK, eval.ToString());
            var id = eval.GetProperty("id").GetString()!;
            await app.WaitForStatus(id, "succeeded", TimeSpan.FromMinutes(3));
            return (await app.GetJson($"/v1/fine_tuning/jobs/{id}/metrics?name=win_rate")).GetProperty("data")[0].GetProperty("value").GetDouble();
        }
        double overWarm = await WinRate(formal, warm), overPlayful = await WinRate(formal, playful);
        Assert.True(overWarm >= 0.9 && overPlayful <= 0.1, $"formal over warm {overWarm}, formal over playful {overPlayful}");

        // A scalar reward model is no pairwise judge here: it is named as reward_model instead.
        var (_, rmFile) = await app.Upload(Rows(CyclicPreferenceTask.Pairs(32, 3)), "rm.jsonl");
        var (s4, rmJob) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = rmFile.GetProperty("id").GetString(),
            method = new { type = "reward_model", reward_model = new { hyperparameters = new { n_epochs = 1, batch_size = 8 } } },
        });
        Assert.True(s4 == HttpStatusCode.OK, rmJob.ToString());
        var rm = (await app.WaitForStatus(rmJob.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(3))).GetProperty("fine_tuned_model").GetString()!;
        var (s5, rmJudge) = await app.PostJson("/v1/judges", new { name = "rm", model = rm });
        Assert.Equal(HttpStatusCode.BadRequest, s5);
        Assert.Contains("reward_model", rmJudge.GetProperty("error").GetProperty("message").GetString());
    }

    /// <summary>
    /// A cancel reaches a grader that waits on a judge that never answers: the job shows cancelling, its worker's
    /// heartbeat sees it and abandons the call (the HTTP client would wait two minutes), and the job is cancelled
    /// within seconds, saying why.
    /// </summary>
    [Fact]
    public async Task A_cancel_interrupts_a_grader_waiting_on_a_silent_judge()
    {
        using var silent = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        silent.Start();
        int port = ((System.Net.IPEndPoint)silent.LocalEndpoint).Port;
        var held = new List<System.Net.Sockets.TcpClient>();
        var accepting = Task.Run(async () => { while (true) held.Add(await silent.AcceptTcpClientAsync()); }); // accepts, never answers
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-silent-judge-").FullName, leaseSeconds: 8);
        var (js, judge) = await app.PostJson("/v1/judges", new { name = "silent", mode = "pointwise", base_url = $"http://127.0.0.1:{port}/v1", remote_model = "m" });
        Assert.True(js == HttpStatusCode.OK, judge.ToString());
        var file = (await app.Upload(AlignHub.Domain.ArithmeticTask.Jsonl(16, 1), "problems.jsonl")).Body.GetProperty("id").GetString()!;
        var (cs, job) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = file,
            method = new { type = "grpo", grpo = new { hyperparameters = new { max_steps = 3, batch_size = 2, num_generations = 2, max_completion_length = 2,
                grader = new { type = "score_model", name = "slow", model = judge.GetProperty("id").GetString(), input = new[] { new { role = "user", content = "Rate {{sample.output_text}}" } } } } } },
        });
        Assert.True(cs == HttpStatusCode.OK, job.ToString());
        var id = job.GetProperty("id").GetString()!;
        for (var until = DateTime.UtcNow.AddSeconds(60); held.Count == 0; await Task.Delay(100))
            Assert.True(DateTime.UtcNow < until, "the grader never called the judge");
        var (ks, cancel) = await app.PostJson($"/v1/fine_tuning/jobs/{id}/cancel", new { });
        Assert.Equal(HttpStatusCode.OK, ks);
        Assert.Equal("cancelled", cancel.GetProperty("status").GetString()); // OpenAI's vocabulary
        Assert.Equal("cancelling", cancel.GetProperty("state").GetString()); // its worker has yet to act
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var done = await app.WaitForJob(id, j => j.GetProperty("state").GetString() == "cancelled", TimeSpan.FromSeconds(30));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"cancelled after {sw.Elapsed.TotalSeconds:F1} s");
        Assert.True(done.GetProperty("finished_at").GetInt64() > 0);
        var events = (await app.GetJson($"/v1/fine_tuning/jobs/{id}/events?limit=50")).GetProperty("data").EnumerateArray().Select(e => e.GetProperty("message").GetString()!).ToList();
        Assert.Contains(events, e => e.Contains("job cancelled while a grader or judge was waiting"));
        Assert.DoesNotContain(events, e => e.StartsWith("Job failed"));
        foreach (var c in held) c.Dispose();
    }
}
