using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Models;
using TorchSharp;
using Xunit;

namespace AlignHub.Tests;

/// <summary>
/// The memory estimate shown when a job is created, checked where it can be against the models TorchSharp builds:
/// weights and trained parameters counted from the real modules (full fine-tuning and LoRA on GPT-2 and Llama
/// layouts), reference copies per loss, and queue routing.
/// </summary>
public class JobResourcesTests
{
    static readonly string Llama = JsonSerializer.Serialize(new
    {
        model_type = "llama", vocab_size = 259, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, num_attention_heads = 4,
        num_key_value_heads = 2, max_position_embeddings = 128, tie_word_embeddings = true,
    });
    static readonly string Gpt2 = JsonSerializer.Serialize(new { model_type = "gpt2", vocab_size = 259, n_embd = 32, n_layer = 2, n_head = 4, n_positions = 128 });

    static long Numel(IEnumerable<torch.Tensor> ps) => ps.Sum(p => p.numel());

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Weights_and_trained_parameters_match_the_built_model(string family)
    {
        var config = family == "gpt2" ? Gpt2 : Llama;
        var arch = ModelArchitecture.Parse(config);
        using var model = CausalLM.Create(config);
        long parameters = Numel(model.parameters());

        var full = JobResources.Estimate(arch, parameters, new SftConfig());
        Assert.Equal(4 * parameters, full.WeightsBytes);
        Assert.Equal(12 * parameters, full.TrainingStateBytes);

        foreach (IReadOnlyList<string>? targets in new IReadOnlyList<string>?[] { null, ["all-linear"], family == "gpt2" ? ["c_fc", "c_proj"] : ["k_proj", "down_proj"] })
        {
            var c = new SftConfig { UsePeft = true, LoraR = 4, LoraTargetModules = targets };
            using var adapted = CausalLM.Create(config);
            Lora.Apply(adapted, LoraSettings.From(c, arch)!, 1);
            long trained = Numel(adapted.parameters().Where(p => p.requires_grad));
            var lora = JobResources.Estimate(arch, parameters, c);
            Assert.Equal(12 * trained, lora.TrainingStateBytes);
            Assert.Equal(4 * parameters + 4 * trained, lora.WeightsBytes); // the frozen base and the adapters
        }
    }

    [Fact]
    public void Reference_copies_follow_the_loss_and_LoRA()
    {
        var arch = ModelArchitecture.Parse(Gpt2);
        const long p = 1000;
        Assert.Equal(2 * 4 * p, JobResources.Estimate(arch, p, new DpoConfig()).WeightsBytes); // policy + reference
        Assert.Equal(4 * p, JobResources.Estimate(arch, p, new DpoConfig { LossType = "simpo" }).WeightsBytes); // reference-free
        Assert.Equal(4 * p, JobResources.Estimate(arch, p, new GrpoConfig { Beta = 0 }).WeightsBytes);
        Assert.Equal(2 * 4 * p, JobResources.Estimate(arch, p, new GrpoConfig { Beta = 0.04 }).WeightsBytes);
        // PPO: policy, reference and a trained value model.
        var ppo = JobResources.Estimate(arch, p, new PpoConfig());
        Assert.Equal(3 * 4 * p, ppo.WeightsBytes);
        Assert.Equal(2 * 12 * p, ppo.TrainingStateBytes);
        // LoRA: the base with adapters off is the reference, so no second copy.
        long real;
        using (var model = CausalLM.Create(Gpt2)) real = Numel(model.parameters());
        var loraDpo = JobResources.Estimate(arch, real, new DpoConfig { UsePeft = true });
        Assert.True(loraDpo.WeightsBytes < 1.5 * 4 * real, $"{loraDpo.WeightsBytes} vs {4 * real}");
        Assert.True(loraDpo.WeightsBytes > 4 * real);
        // Preference rows are pairs: twice the activations of SFT at the same batch and length.
        var sft = JobResources.Estimate(arch, p, new SftConfig { MaxSeqLength = 64 });
        var dpo = JobResources.Estimate(arch, p, new DpoConfig { MaxLength = 64 });
        Assert.Equal(2 * sft.ActivationBytes, dpo.ActivationBytes);
    }

    [Fact]
    public void Queues_follow_the_device_and_worker_settings()
    {
        Assert.Equal("training", JobResources.QueueFor("any"));
        Assert.Equal("training_gpu", JobResources.QueueFor("gpu"));
        Assert.Equal(["training_cpu", "training", "default"], JobResources.WorkerQueues("", cuda: false));
        Assert.Equal(["training_gpu", "training", "default"], JobResources.WorkerQueues(null, cuda: true));
        Assert.Equal(["training_gpu", "default"], JobResources.WorkerQueues(" Training_GPU ", cuda: false));
        Assert.False(JobResources.IsValidQueue("training-gpu!"));
        Assert.Equal("1.5 GiB", ResourceEstimate.Format(3L << 29));
    }
}
