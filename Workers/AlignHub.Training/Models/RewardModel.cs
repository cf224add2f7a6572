using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlignHub.Training.Models;

/// <summary>
/// A reward model (Ouyang et al., 2022): a decoder whose final hidden state at the last real token goes through a
/// scalar head, <c>score.weight</c> [1, d] as in HF's <c>*ForSequenceClassification</c> with <c>num_labels = 1</c>.
/// Saved in the same folder layout as its decoder, with <c>score.weight</c> beside the decoder's tensors. With
/// <c>labels</c> &gt; 1 the head gives an embedding instead (a general preference model's, <c>score.weight</c> [2k, d]).
/// </summary>
public sealed class RewardModel : IDisposable
{
    public const string ScoreKey = "score.weight";

    public RewardModel(CausalLM backbone, int labels = 1)
    {
        Backbone = backbone;
        Score = Engine.Devices.OnCpu(() => nn.Linear(backbone.Architecture.HiddenSize, labels, hasBias: false));
        using var _ = no_grad();
        nn.init.normal_(Score.weight!, 0, 0.02);
        Score.to(backbone.Device);
    }

    public CausalLM Backbone { get; }
    public Linear Score { get; }

    /// <summary>The parameters that train: all of them, or with LoRA the adapters and the head.</summary>
    public IEnumerable<Parameter> Parameters() => Backbone.parameters().Concat(Score.parameters()).Where(p => p.requires_grad);

    public IReadOnlyDictionary<string, Tensor> Extra => new Dictionary<string, Tensor> { [ScoreKey] = Score.weight! };

    public void To(Device device) { Backbone.to(device); Score.to(device); }

    public void Train(bool on) { if (on) { Backbone.train(); Score.train(); } else { Backbone.eval(); Score.eval(); } }

    /// <summary>r [B] for right-padded ids [B, T]: the score of the hidden state at each row's last real token.</summary>
    public Tensor Rewards(Tensor inputIds, Tensor lastIndex)
    {
        using var r = Outputs(inputIds, lastIndex);
        return r.squeeze(-1);
    }

    /// <summary>The head's outputs [B, labels] at each row's last real token (a preference model's embeddings).</summary>
    public Tensor Outputs(Tensor inputIds, Tensor lastIndex)
    {
        using var h = Backbone.Hidden(inputIds, null, null);
        long d = h.shape[2];
        using var idx = lastIndex.view(-1, 1, 1).expand(-1, 1, d);
        using var lastH = h.gather(1, idx).squeeze(1);
        using var last = lastH.to_type(Score.weight!.dtype); // the head stays float32 over a half-precision decoder
        return Score.forward(last);
    }

    /// <summary>r [N] of (prompt, completion) rows, right-padded on the model's device: one forward, each row scored once.</summary>
    public Tensor Rewards(IReadOnlyList<(int[] Prompt, int[] Completion)> rows, int pad, int? maxLength = null)
    {
        using var outputs = Outputs(rows, pad, maxLength);
        return outputs.squeeze(-1);
    }

    /// <summary>The head's outputs [N, labels] of (prompt, completion) rows, one forward.</summary>
    public Tensor Outputs(IReadOnlyList<(int[] Prompt, int[] Completion)> rows, int pad, int? maxLength = null)
    {
        using var batch = Data.Collator.PromptCompletions(rows, pad, Backbone.Device, maxLength);
        using var lengths = batch.AttentionMask.sum(1).to_type(ScalarType.Int64);
        using var last = (lengths - 1).clamp_min(0);
        return Outputs(batch.InputIds, last);
    }

    public void Dispose() { Backbone.Dispose(); Score.Dispose(); }
}
