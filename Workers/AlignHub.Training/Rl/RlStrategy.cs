using AlignHub.Domain;
using AlignHub.Training.Losses;
using static TorchSharp.torch;

namespace AlignHub.Training.Rl;

/// <summary>What a method needs from the shared trainer besides sampled, scored completions.</summary>
public sealed record RlNeeds
{
    /// <summary>The reference model's log-probs of the sampled tokens (a KL term or KL-shaped reward).</summary>
    public bool Reference { get; init; }
    /// <summary>pi_old's log-probs before the advantages are computed (k1 in the reward, the teacher's gap, PPO's values).</summary>
    public bool PolicyLogProbs { get; init; }
    /// <summary>A value head on the policy's last hidden states (PPO), with its own peak learning rate (null: the policy's).</summary>
    public bool ValueHead { get; init; }
    public double? ValueLearningRate { get; init; }
    /// <summary>Each prompt's greedy completion, sampled and scored with the batch (ReMax's baseline).</summary>
    public bool GreedyBaseline { get; init; }
    /// <summary>The teacher's log-probs of the sampled tokens (on-policy distillation).</summary>
    public bool Teacher { get; init; }
    /// <summary>Micro-batches hold whole prompts (a pair's two samples train together).</summary>
    public bool WholeGroups { get; init; }
    /// <summary>Log-probs of logits / temperature (TRL's GRPO, RLOO, PPO); false: of the raw logits (TRL's online DPO).</summary>
    public bool TemperatureScaledLogProbs { get; init; } = true;
    /// <summary>Nash-MD: samples 2i + 1 of each prompt come from the geometric mixture pi^(1-coef) pi_ref^coef (0: all from the policy).</summary>
    public double MixtureCoef { get; init; }
}

/// <summary>
/// The names of a step's statistics and their slots: the engine sums one vector per micro-batch (one host copy each),
/// in this order; everything else reads them by name.
/// </summary>
public sealed class StatLayout
{
    readonly Dictionary<string, int> index = [];
    public IReadOnlyList<string> Names { get; }

    public StatLayout(IEnumerable<string> names)
    {
        Names = names.Distinct().ToList();
        for (int i = 0; i < Names.Count; i++) index[Names[i]] = i;
    }

    public int this[string name] => index.TryGetValue(name, out var i) ? i : throw new KeyNotFoundException($"statistic \"{name}\" is not declared");
}

/// <summary>Statistics one micro-batch adds, by name: scalar tensors on the device (one copy to the host per micro-batch) and host numbers.</summary>
public sealed class StatSink(StatLayout layout)
{
    readonly Dictionary<int, Tensor> device = [];
    readonly double[] host = new double[layout.Names.Count];

    /// <summary>Adds a detached scalar (or a one-element tensor) to the statistic.</summary>
    public void Add(string name, Tensor value)
    {
        int i = layout[name];
        var v = value.detach().reshape([]).to_type(ScalarType.Float64);
        device[i] = device.TryGetValue(i, out var old) ? old + v : v;
    }

    public void Add(string name, double value) => host[layout[name]] += value;

    /// <summary>The vector the engine sums, on <paramref name="on"/>.</summary>
    public Tensor ToVector(Device on)
    {
        var parts = new Tensor[host.Length];
        for (int i = 0; i < host.Length; i++)
            parts[i] = device.TryGetValue(i, out var t) ? t.to(on) + host[i] : tensor(host[i], ScalarType.Float64, device: on);
        return stack(parts);
    }

    public double[] HostValues => host;
}

/// <summary>Summed statistics of a step (or an evaluation), read by name.</summary>
public sealed class StatSums(StatLayout layout, double[] sums)
{
    public double this[string name] => sums[layout[name]];
    /// <summary>A sum divided by another (the denominator at least 1: a count).</summary>
    public double Mean(string sum, string count) => this[sum] / Math.Max(1, this[count]);
}

/// <summary>
/// The whole batch of rollouts as tensors, for a strategy's advantages (computed once per batch, under no_grad).
/// Per-token tensors are [N, T-1] in <see cref="CompletionLogProbs.FromLogits"/>' layout (position t predicts token t+1).
/// </summary>
public sealed class RolloutTensors
{
    /// <summary>[N] float32 rewards (overlong shaping applied); samples of prompt p at p*K .. p*K + K - 1.</summary>
    public required Tensor Rewards { get; init; }
    /// <summary>The same rewards in double precision, on the host (for targets that must be exact, as differences).</summary>
    public required IReadOnlyList<double> RewardValues { get; init; }
    /// <summary>[N, T-1] the sampled completion tokens (truncated completions masked out when mask_truncated_completions).</summary>
    public required Tensor Mask { get; init; }
    public required int K { get; init; }
    /// <summary>The KL coefficient this batch trains with (the adaptive controller moves it between batches).</summary>
    public required double Beta { get; init; }
    public Tensor? OldLogps { get; init; }
    public Tensor? RefLogps { get; init; }
    public Tensor? OldValues { get; init; }
    public Tensor? TeacherLogps { get; init; }
    /// <summary>[P] rewards of each prompt's greedy completion.</summary>
    public Tensor? GreedyRewards { get; init; }
    /// <summary>pi_old's per-sequence k1 KL to the reference, sum_t (log pi_old - log ref) (zeros without a reference).</summary>
    public Tensor SequenceKl() => OldLogps is null || RefLogps is null ? zeros_like(Rewards) : (KlEstimators.K1(OldLogps, RefLogps) * Mask).sum(1);
    /// <summary>
    /// [N] each completion's reward less its pair partner's (completions 2i and 2i + 1 pair up): r(y) - r(y') for the
    /// first, its negative for the second, taken in double precision so a constant added to every reward cancels exactly.
    /// </summary>
    public Tensor PairRewardGaps()
    {
        var r = RewardValues;
        var gap = new float[r.Count];
        for (int i = 0; i + 1 < r.Count; i += 2) (gap[i], gap[i + 1]) = ((float)(r[i] - r[i + 1]), (float)(r[i + 1] - r[i]));
        return tensor(gap, device: Rewards.device);
    }

    public Tensor TokenKl() => OldLogps is null || RefLogps is null ? zeros_like(Mask) : KlEstimators.K1(OldLogps, RefLogps) * Mask;
}

/// <summary>What a strategy computes from a batch: advantages per sequence [N] or per token [N, T-1], PPO's returns, and which sequences carry loss.</summary>
/// <param name="Weights">[N] 1 for a completion that carries loss, 0 for one that does not (best-of-N's rejected, online DPO's ties); null: all.</param>
public sealed record RlTargets(Tensor Advantages, Tensor? Returns = null, Tensor? Weights = null);

/// <summary>One micro-batch as a strategy's loss sees it: the policy's fresh log-probs (with their graph) and the batch's stored values.</summary>
public sealed class RlMicroBatch
{
    /// <summary>[n, T-1] log pi_theta of the sampled tokens, with gradient.</summary>
    public required Tensor Logps { get; init; }
    /// <summary>[n, T-1] the tokens that carry loss: the completion mask times each sequence's weight.</summary>
    public required Tensor Mask { get; init; }
    /// <summary>[n] the sequences' weights (see <see cref="RlTargets.Weights"/>).</summary>
    public required Tensor Weights { get; init; }
    /// <summary>[n, T-1] pi_old (sampling time); the policy's own detached log-probs when the batch trains one update.</summary>
    public required Tensor OldLogps { get; init; }
    public required Tensor Advantages { get; init; }
    public Tensor? RefLogps { get; init; }
    /// <summary>[n, T-1] the value head's values with gradient; the values and returns at sampling time.</summary>
    public Tensor? Values { get; init; }
    public Tensor? OldValues { get; init; }
    public Tensor? Returns { get; init; }
    public required double Beta { get; init; }
    /// <summary>Whole-batch denominators: this micro-batch's loss is its share of the batch's.</summary>
    public required LossNormalizer Norm { get; init; }
}

/// <summary>
/// One online RL method: what it needs, its advantages from the batch's rollouts, its loss of a micro-batch, and its
/// statistics by name. The shared <see cref="OnlineRlMethod"/> samples, scores, computes log-probs and updates; it
/// never branches on which method it runs. A strategy is a class deriving <see cref="RlStrategy{TConfig}"/> with a
/// constructor taking its config: <see cref="RlStrategies.For"/> finds it by the config's type.
/// </summary>
public interface IRlStrategy
{
    RlNeeds Needs { get; }
    /// <summary>Statistics its loss adds per micro-batch (summed over the step).</summary>
    IReadOnlyList<string> StatNames { get; }
    /// <summary>Advantages (and returns) for the whole batch, under no_grad.</summary>
    RlTargets Targets(RolloutTensors batch);
    /// <summary>The micro-batch's share of the batch's loss; its statistics go to <paramref name="stats"/>.</summary>
    Tensor Loss(RlMicroBatch m, StatSink stats);
    /// <summary>Its metrics from the step's sums (the shared ones are already in <paramref name="metrics"/>).</summary>
    void Metrics(StatSums s, Dictionary<string, double> metrics);
}

/// <summary>A strategy for the config type <typeparamref name="TConfig"/> (its constructor takes the config).</summary>
public abstract class RlStrategy<TConfig>(TConfig config) : IRlStrategy where TConfig : OnlineRlConfig
{
    protected TConfig Config { get; } = config;
    public abstract RlNeeds Needs { get; }
    public virtual IReadOnlyList<string> StatNames => [];
    public abstract RlTargets Targets(RolloutTensors batch);
    public abstract Tensor Loss(RlMicroBatch m, StatSink stats);
    public virtual void Metrics(StatSums s, Dictionary<string, double> metrics) { }

    /// <summary>The clipped token-level surrogate (<see cref="PolicyLosses.Clipped"/>) with the config's clipping and loss_type, its clip counts recorded.</summary>
    protected Tensor ClippedLoss(RlMicroBatch m, StatSink stats, double lossBeta = 0, string level = "token")
    {
        var o = PolicyLosses.Clipped(m.Logps, m.OldLogps, m.Advantages, m.Mask, Config.Epsilon, Config.EpsilonHigh ?? Config.Epsilon,
            Config.LossType, m.Norm, m.RefLogps, lossBeta, level);
        RecordClips(o, stats);
        o.PerToken.Dispose();
        return o.Loss;
    }

    protected static void RecordClips(PolicyLossOutput o, StatSink stats)
    {
        stats.Add(ClipStats.Low, o.ClipLow);
        stats.Add(ClipStats.High, o.ClipHigh);
        stats.Add(ClipStats.Units, o.ClipUnits);
    }
}

/// <summary>
/// A strategy whose loss is a clipped surrogate: it reports TRL's clip ratios, and its KL to the reference, when it has
/// one, is either in the loss (beta k3) or in the reward (beta k1 of pi_old, summed into the returns).
/// </summary>
public abstract class ClippedStrategy<TConfig>(TConfig config) : RlStrategy<TConfig>(config) where TConfig : OnlineRlConfig
{
    public override IReadOnlyList<string> StatNames => ClipStats.Names;
    public override void Metrics(StatSums s, Dictionary<string, double> metrics) => ClipStats.Metrics(s, metrics);
    /// <summary>Needs of a KL shaped into the reward: the reference and pi_old's log-probs, when beta &gt; 0.</summary>
    protected RlNeeds KlInReward => new() { Reference = Config.NeedsReference, PolicyLogProbs = Config.NeedsReference };
}

/// <summary>The clip statistics every clipped strategy reports (TRL's <c>clip_ratio/*</c>).</summary>
public static class ClipStats
{
    public const string Low = "clip_low", High = "clip_high", Units = "clip_units";
    public static readonly IReadOnlyList<string> Names = [Low, High, Units];

    public static void Metrics(StatSums s, Dictionary<string, double> m)
    {
        m["clip_ratio/low_mean"] = s.Mean(Low, Units);
        m["clip_ratio/high_mean"] = s.Mean(High, Units);
        m["clip_ratio/region_mean"] = (s[Low] + s[High]) / Math.Max(1, s[Units]);
    }
}

/// <summary>The strategies of this assembly, found by their config type.</summary>
public static class RlStrategies
{
    static readonly Dictionary<Type, Type> ByConfig = typeof(IRlStrategy).Assembly.GetTypes()
        .Where(t => !t.IsAbstract && typeof(IRlStrategy).IsAssignableFrom(t))
        .Select(t => (Strategy: t, Config: BaseConfig(t)))
        .Where(x => x.Config is not null)
        .ToDictionary(x => x.Config!, x => x.Strategy);

    static Type? BaseConfig(Type t)
    {
        for (var b = t.BaseType; b is not null; b = b.BaseType)
            if (b.IsGenericType && b.GetGenericTypeDefinition() == typeof(RlStrategy<>)) return b.GetGenericArguments()[0];
        return null;
    }

    /// <summary>The config types that have a strategy (every online method's).</summary>
    public static IReadOnlyCollection<Type> ConfigTypes => ByConfig.Keys;

    public static IRlStrategy For(OnlineRlConfig c) =>
        ByConfig.TryGetValue(c.GetType(), out var t) ? (IRlStrategy)Activator.CreateInstance(t, c)!
            : throw new InvalidOperationException($"no online RL strategy for {c.GetType().Name}");
}
