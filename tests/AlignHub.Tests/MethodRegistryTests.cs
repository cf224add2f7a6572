using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Methods;
using Xunit;

namespace AlignHub.Tests;

/// <summary>The method registry: one config record per method, read for validation, defaults and dispatch.</summary>
public class MethodRegistryTests
{
    static (MethodConfig Config, Dictionary<string, string> Errors) Resolve(JobMethod m, string json)
    {
        var errors = new Dictionary<string, string>();
        var config = Hyperparameters.Resolve(m.ConfigType, JsonDocument.Parse(json).RootElement, m.Prefix, 7, (f, e) => errors[f] = e);
        return (config, errors);
    }

    [Fact]
    public void Every_method_has_exactly_one_runner_and_every_runner_a_method()
    {
        // Each method's config type finds its runner (the runner declares the type), and every runner serves a method.
        Assert.Equal(Methods.All.Count, Methods.Names.Distinct().Count());
        Assert.All(Methods.All, m => Assert.Equal(m.ProducesModel, MethodRunners.For(m.ConfigType).Resumable));
        Assert.All(MethodRunners.All, r => Assert.Contains(Methods.All, m => r.ConfigType.IsAssignableFrom(m.ConfigType)));
        Assert.Equal(MethodRunners.All.Count, MethodRunners.All.Select(r => r.ConfigType).Distinct().Count());
    }

    /// <summary>Each online method runs through a strategy found by its config type, and its summary (job page, OpenAPI) states its objective as a formula.</summary>
    [Fact]
    public void Every_online_method_has_a_strategy_and_states_its_objective()
    {
        var online = Methods.All.Where(m => typeof(OnlineRlConfig).IsAssignableFrom(m.ConfigType)).ToList();
        Assert.Equal(online.Select(m => m.ConfigType.Name).Order(), AlignHub.Training.Rl.RlStrategies.ConfigTypes.Select(t => t.Name).Order());
        Assert.All(online, m => Assert.Matches(@"(^|[ (:])L = ", m.Summary));
        Assert.All(online, m => Assert.NotNull(AlignHub.Training.Rl.RlStrategies.For((OnlineRlConfig)m.Defaults)));
    }

    [Fact]
    public void Every_hyperparameter_has_help_and_its_default_is_the_config_record_default()
    {
        foreach (var m in Methods.All)
        {
            var defaults = m.Defaults;
            Assert.NotEmpty(m.Hyperparameters);
            foreach (var h in m.Hyperparameters)
            {
                Assert.False(string.IsNullOrWhiteSpace(h.Spec.Help), $"{m.Name}.{h.Name}");
                Assert.Equal(JsonSerializer.Serialize(h.Property.GetValue(defaults)), JsonSerializer.Serialize(h.Default));
            }
            Assert.DoesNotContain(m.Hyperparameters, h => h.Name == "seed"); // the job's top-level field
        }
        Assert.Equal(1e-3, new SftConfig().LearningRate);
        Assert.Equal(5e-4, new DpoConfig().LearningRate); // a method's own default overrides the shared one
        Assert.Equal(0.1, Methods.Get("dpo").Hyperparameters.Single(h => h.Name == "warmup_ratio").Default);
    }

    [Fact]
    public void Requests_fill_defaults_accept_auto_and_name_every_bad_field()
    {
        var dpo = Methods.Get("dpo");
        var (ok, none) = Resolve(dpo, """{"beta": "auto", "loss_type": "ipo", "n_epochs": 2, "max_steps": null}""");
        Assert.Empty(none);
        var c = (DpoConfig)ok;
        Assert.Equal((0.1, "ipo", 2, 7, (int?)null), (c.Beta, c.LossType, c.NEpochs, c.Seed, c.MaxSteps));

        var (_, errors) = Resolve(dpo, """{"betta": 1, "n_epochs": "3", "loss_type": "magic", "learning_rate": 5, "max_length": 10, "max_prompt_length": 10}""");
        Assert.Contains("unknown hyperparameter", errors["method.dpo.hyperparameters.betta"]);
        Assert.Contains("integer", errors["method.dpo.hyperparameters.n_epochs"]);
        Assert.Contains("supported: sigmoid", errors["method.dpo.hyperparameters.loss_type"]);
        Assert.Contains("between", errors["method.dpo.hyperparameters.learning_rate"]);
        Assert.Equal("must be below max_length", errors["method.dpo.hyperparameters.max_prompt_length"]);

        var (_, ga) = Resolve(Methods.Supervised, """{"gradient_accumulation_steps": 9, "batch_size": 8, "lr_scheduler_type": "linear"}""");
        Assert.Equal(["method.supervised.hyperparameters.gradient_accumulation_steps"], ga.Keys);
        var (_, notObject) = Resolve(Methods.Supervised, "[1]");
        Assert.Equal(["method.supervised.hyperparameters"], notObject.Keys);
        var (gen, _) = Resolve(Methods.Get("generate"), """{"top_k": 0, "stop": ["\n"]}""");
        Assert.Null(((GenerateConfig)gen).TopK); // 0 means none
    }

    [Fact]
    public void Stored_configs_round_trip_and_configs_stored_before_the_split_still_load()
    {
        var c = new DpoConfig { Beta = 0.3, LossType = "kto", MaxSteps = 12, Seed = 5 };
        Assert.Equal(c, Hyperparameters.FromJson<DpoConfig>(c.ToJson()));
        // A job created before DPO and reward models had separate records stored one PreferenceConfig for both.
        const string old = """{"beta":0.2,"loss_type":"sigmoid","label_smoothing":0,"simpo_gamma":0.5,"orpo_lambda":0.1,"desirable_weight":1,"undesirable_weight":1,"center_rewards_coefficient":0,"ensemble_size":3,"n_epochs":2,"batch_size":16,"gradient_accumulation_steps":1,"learning_rate":0.0005,"learning_rate_multiplier":1,"lr_scheduler_type":"cosine","warmup_ratio":0.1,"weight_decay":0,"max_grad_norm":1,"max_steps":null,"logging_steps":1,"eval_steps":50,"save_steps":50,"max_length":null,"max_prompt_length":null,"seed":9}""";
        var dpo = (DpoConfig)Methods.Get("dpo").ParseConfig(old);
        Assert.Equal((0.2, 2, 16, 9), (dpo.Beta, dpo.NEpochs, dpo.BatchSize, dpo.Seed));
        var rm = (RewardModelConfig)Methods.Get("reward_model").ParseConfig(old);
        Assert.Equal(3, rm.EnsembleSize);
    }
}
