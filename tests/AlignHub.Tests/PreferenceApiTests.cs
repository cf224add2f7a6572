using System.Net;
using System.Text.Json;
using AlignHub.Domain;
using Xunit;

namespace AlignHub.Tests;

/// <summary>DPO and reward-model jobs through a real AlignHub process, in OpenAI's job shape.</summary>
public class PreferenceApiTests
{
    static string Trl(IEnumerable<PreferencePair> pairs) =>
        string.Join("\n", pairs.Select(p => JsonSerializer.Serialize(new { prompt = p.Prompt, chosen = p.Chosen, rejected = p.Rejected })));

    [Fact]
    public async Task DPO_and_reward_model_jobs_train_on_preference_files()
    {
        await using var app = await AlignHubProcess.StartAsync(Directory.CreateTempSubdirectory("alignhub-prefapi-").FullName);
        var (s1, train) = await app.Upload(Trl(PreferenceTask.Pairs(256, 1)), "pairs.jsonl");
        Assert.True(s1 == HttpStatusCode.OK, train.ToString());
        Assert.Equal("preference", train.GetProperty("format").GetString());
        var (s2, valid) = await app.Upload(Trl(PreferenceTask.Pairs(64, 2)), "valid.jsonl");
        Assert.Equal(HttpStatusCode.OK, s2);

        // OpenAI's DPO rows and TRL's conversational rows are preference files too; a row missing a side names its line.
        var openAi = JsonSerializer.Serialize(new
        {
            input = new { messages = new[] { new { role = "user", content = "Hi" } } },
            preferred_output = new[] { new { role = "assistant", content = "Hello!" } },
            non_preferred_output = new[] { new { role = "assistant", content = "Go away." } },
        });
        var conversational = JsonSerializer.Serialize(new
        {
            prompt = new[] { new { role = "user", content = "Hi" } },
            chosen = new[] { new { role = "assistant", content = "Hello!" } },
            rejected = new[] { new { role = "assistant", content = "No." } },
            margin = 1.5,
        });
        var (s3, mixed) = await app.Upload(openAi + "\n" + conversational, "openai.jsonl");
        Assert.True(s3 == HttpStatusCode.OK, mixed.ToString());
        Assert.Equal("preference", mixed.GetProperty("format").GetString());
        var (s4, bad) = await app.Upload(Trl(PreferenceTask.Pairs(2, 3)) + "\n{\"prompt\": \"x\", \"chosen\": \"y\"}", "bad.jsonl");
        Assert.Equal(HttpStatusCode.BadRequest, s4);
        Assert.Contains("line 3", bad.GetProperty("detail").GetString());
        Assert.Contains("rejected", bad.GetProperty("detail").GetString());

        var trainId = train.GetProperty("id").GetString()!;
        var validId = valid.GetProperty("id").GetString()!;
        async Task<string> Create(string type, object hyperparameters, string model = "alignhub/tiny")
        {
            var method = new Dictionary<string, object> { ["type"] = type, [type] = new { hyperparameters } };
            var (status, body) = await app.PostJson("/v1/fine_tuning/jobs", new { model, training_file = trainId, validation_file = validId, seed = 5, method });
            Assert.True(status == HttpStatusCode.OK, body.ToString());
            return body.GetProperty("id").GetString()!;
        }

        var dpo = await Create("dpo", new { beta = 0.1, n_epochs = 2, batch_size = 16, learning_rate = 2e-3, eval_steps = 8 });
        var dpoJob = await app.WaitForStatus(dpo, "succeeded", TimeSpan.FromMinutes(3));
        Assert.Equal(0.1, dpoJob.GetProperty("method").GetProperty("dpo").GetProperty("hyperparameters").GetProperty("beta").GetDouble());
        Assert.Equal("sigmoid", dpoJob.GetProperty("config").GetProperty("loss_type").GetString());
        var metrics = (await app.GetJson($"/v1/fine_tuning/jobs/{dpo}/metrics?limit=10000")).GetProperty("data").EnumerateArray()
            .Select(m => m.GetProperty("name").GetString()!).ToHashSet();
        foreach (var name in new[] { "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "grad_norm", "learning_rate", "eval/loss", "eval/rewards/accuracies" })
            Assert.Contains(name, metrics);
        var evalAcc = (await app.GetJson($"/v1/fine_tuning/jobs/{dpo}/metrics?name=eval/rewards/accuracies")).GetProperty("data").EnumerateArray().Last().GetProperty("value").GetDouble();
        Assert.True(evalAcc > 0.7, $"held-out implicit-reward accuracy {evalAcc}");
        async Task<List<string>> Messages(string id) => (await app.GetJson($"/v1/fine_tuning/jobs/{id}/events?limit=1000")).GetProperty("data").EnumerateArray()
            .Select(e => e.GetProperty("message").GetString()!).ToList();
        Assert.Contains(await Messages(dpo), m => m.StartsWith("Reference log-probs computed"));

        // A second job with the same model, data and tokenisation reads the cached reference log-probs.
        var ipo = await Create("dpo", new { beta = 0.5, loss_type = "ipo", max_steps = 2, batch_size = 16 });
        await app.WaitForStatus(ipo, "succeeded", TimeSpan.FromMinutes(2));
        Assert.Contains(await Messages(ipo), m => m.StartsWith("Reference log-probs reused"));

        var rm = await Create("reward_model", new { n_epochs = 2, batch_size = 16, learning_rate = 2e-3, eval_steps = 8, ensemble_size = 2 });
        var rmJob = await app.WaitForStatus(rm, "succeeded", TimeSpan.FromMinutes(3));
        var rmModel = rmJob.GetProperty("fine_tuned_model").GetString()!;
        Assert.Equal("reward_model", (await app.GetJson($"/v1/models/{rmModel}")).GetProperty("kind").GetString());
        Assert.Equal(64, rmJob.GetProperty("total_steps").GetInt32()); // 2 members x 32 steps
        var rmAcc = (await app.GetJson($"/v1/fine_tuning/jobs/{rm}/metrics?name=eval/ensemble/accuracy")).GetProperty("data").EnumerateArray().Last().GetProperty("value").GetDouble();
        Assert.True(rmAcc > 0.7, $"held-out reward-model ensemble accuracy {rmAcc}");
        Assert.True((await app.GetJson($"/v1/fine_tuning/jobs/{rm}/metrics?name=eval/ensemble/reward_std")).GetProperty("data").EnumerateArray().Last().GetProperty("value").GetDouble() > 0);

        // Evaluate the DPO policy: implicit-reward accuracy against its base model (the default reference) and the
        // win rate of its greedy samples over the base model's, judged by the reward model.
        var dpoModel = dpoJob.GetProperty("fine_tuned_model").GetString()!;
        var (ev, evBody) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = dpoModel, training_file = validId, seed = 1,
            method = new { type = "evaluate", evaluate = new { hyperparameters = new { reward_model = rmModel, uncertainty_penalty = 0.5, max_new_tokens = 16, bootstrap_samples = 500 } } },
        });
        Assert.True(ev == HttpStatusCode.OK, evBody.ToString());
        var evJob = await app.WaitForStatus(evBody.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(2));
        double Metric(JsonElement rows, string name) => rows.GetProperty("data").EnumerateArray().Last(m => m.GetProperty("name").GetString() == name).GetProperty("value").GetDouble();
        var evMetrics = await app.GetJson($"/v1/fine_tuning/jobs/{evJob.GetProperty("id").GetString()}/metrics");
        Assert.True(Metric(evMetrics, "eval/rewards/accuracies") > 0.7);
        double win = Metric(evMetrics, "win_rate"), lo = Metric(evMetrics, "win_rate_ci_low"), hi = Metric(evMetrics, "win_rate_ci_high");
        Assert.InRange(win, lo, hi);
        Assert.InRange(lo, 0, 1);
        Assert.Single(evJob.GetProperty("result_files").EnumerateArray());
        // And the reward model alone: its preference accuracy.
        var (ev2, ev2Body) = await app.PostJson("/v1/fine_tuning/jobs", new { model = rmModel, training_file = validId, method = new { type = "evaluate" } });
        Assert.True(ev2 == HttpStatusCode.OK, ev2Body.ToString());
        var ev2Job = await app.WaitForStatus(ev2Body.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(1));
        Assert.Equal(rmAcc, Metric(await app.GetJson($"/v1/fine_tuning/jobs/{ev2Job.GetProperty("id").GetString()}/metrics"), "eval/accuracy"), 6);

        // KTO reads unpaired rows {"prompt", "completion", "label"}; other loss types refuse them.
        var unpaired = string.Join("\n", PreferenceTask.Pairs(64, 4).SelectMany(p => new[]
        {
            JsonSerializer.Serialize(new { prompt = p.Prompt, completion = p.Chosen, label = true }),
            JsonSerializer.Serialize(new { prompt = p.Prompt, completion = p.Rejected, label = false }),
        }));
        var (su, unpairedFile) = await app.Upload(unpaired, "kto.jsonl");
        Assert.True(su == HttpStatusCode.OK, unpairedFile.ToString());
        Assert.Equal("unpaired_preference", unpairedFile.GetProperty("format").GetString());
        var (sk, ktoBody) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "alignhub/tiny", training_file = unpairedFile.GetProperty("id").GetString(), seed = 2,
            method = new { type = "dpo", dpo = new { hyperparameters = new { loss_type = "kto", max_steps = 4, batch_size = 16, desirable_weight = 1.0, undesirable_weight = 1.5 } } },
        });
        Assert.True(sk == HttpStatusCode.OK, ktoBody.ToString());
        await app.WaitForStatus(ktoBody.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(1));
        var ktoMetrics = (await app.GetJson($"/v1/fine_tuning/jobs/{ktoBody.GetProperty("id").GetString()}/metrics")).GetProperty("data").EnumerateArray()
            .Select(m => m.GetProperty("name").GetString()).ToHashSet();
        Assert.Contains("kl", ktoMetrics);
        var (sn, notKto) = await app.PostJson("/v1/fine_tuning/jobs", new { model = "alignhub/tiny", training_file = unpairedFile.GetProperty("id").GetString(), method = new { type = "dpo" } });
        Assert.Equal(HttpStatusCode.BadRequest, sn);
        Assert.Equal("training_file", notKto.GetProperty("error").GetProperty("param").GetString());

        // Validation up front: an unknown loss type, a reward model as a DPO policy, a supervised file for DPO.
        var (e1, p1) = await app.PostJson("/v1/fine_tuning/jobs", new { model = "alignhub/tiny", training_file = trainId, method = new { type = "dpo", dpo = new { hyperparameters = new { loss_type = "magic", beta = -1 } } } });
        Assert.Equal(HttpStatusCode.BadRequest, e1);
        Assert.True(p1.GetProperty("errors").TryGetProperty("method.dpo.hyperparameters.loss_type", out _));
        Assert.True(p1.GetProperty("errors").TryGetProperty("method.dpo.hyperparameters.beta", out _));
        var (e2, p2) = await app.PostJson("/v1/fine_tuning/jobs", new { model = rmModel, training_file = trainId, method = new { type = "dpo" } });
        Assert.Equal(HttpStatusCode.BadRequest, e2);
        Assert.Equal("model", p2.GetProperty("error").GetProperty("param").GetString());
        var (_, sft) = await app.Upload(TestData.Jsonl(4));
        var (e3, p3) = await app.PostJson("/v1/fine_tuning/jobs", new { model = "alignhub/tiny", training_file = sft.GetProperty("id").GetString(), method = new { type = "dpo" } });
        Assert.Equal(HttpStatusCode.BadRequest, e3);
        Assert.Contains("preference pairs", p3.GetProperty("error").GetProperty("message").GetString());
    }
}
