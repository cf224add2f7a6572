using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training;
using AlignHub.Training.Models;
using AlignHub.Training.Rewards;
using AlignHub.Training.Rl;
using AlignHub.Training.Sft;
using TorchSharp;

/// <summary>Issue 21's benchmarks: GSPO and DAPO's dynamic sampling against GRPO per completion sampled, on-policy distillation, the shared trainer's step cost.</summary>
static class Rl2026Benchmarks
{
    static string Temp() => Directory.CreateTempSubdirectory("alignhub-bench-").FullName;
    static readonly JsonElement Grader = JsonSerializer.SerializeToElement(ArithmeticTask.ExactMatchGrader);

    static (ModelSource Tiny, ModelSource Start) Start()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var tiny = new ModelSource(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
        var sft = SftTrainer.Train(new SftRun(tiny, ArithmeticTask.Demonstrations(4000, 1), null,
            new SftConfig { NEpochs = 100, MaxSteps = 250, BatchSize = 32, LearningRate = 3e-3, SaveSteps = 100_000, Seed = 1 }, Temp(), null), new BenchReporter(), CancellationToken.None);
        return (tiny, tiny with { Folder = sft.LastCheckpoint });
    }

    /// <summary>Held-out exact match (eval/reward every <paramref name="evalSteps"/>) against completions sampled so far, for a run.</summary>
    static (List<(int Step, long Sampled, double Accuracy, double Seconds)> Curve, string? Folder) Curve(ModelSource start, OnlineRlConfig c, ModelSource? teacher = null)
    {
        var held = ArithmeticTask.Prompts(200, 99);
        var log = new BenchReporter();
        var result = OnlineRlTrainer.Train(new OnlineRlRun(start, ArithmeticTask.Prompts(2000, 5), held, c, Temp(), null, new GraderSource(c.ParsedGrader()!), Teacher: teacher),
            log, CancellationToken.None);
        long sampled = 0;
        var curve = new List<(int, long, double, double)>();
        for (int i = 0; i < log.Rows.Count; i++)
        {
            var (step, m) = log.Rows[i];
            if (m.TryGetValue("eval/reward", out var acc)) { curve.Add((step, sampled, acc, log.RowTimes[i])); continue; }
            sampled += m.TryGetValue("dynamic_sampling/sampled_completions", out var s) ? (long)s : c.BatchSize * c.NumGenerations;
        }
        return (curve, result.LastCheckpoint);
    }

    /// <summary>GRPO, GSPO and GRPO with dynamic sampling from the same start and seed: held-out exact match against completions sampled.</summary>
    public static void Variants(int steps)
    {
        var (_, start) = Start();
        var grpo = new GrpoConfig { NEpochs = 100, MaxSteps = steps, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4, LearningRate = 5e-4,
            SaveSteps = 100_000, EvalSteps = 25, Seed = 1, Grader = Grader };
        var runs = new (string Name, GrpoConfig Config)[]
        {
            ("grpo", grpo),
            ("gspo", grpo with { ImportanceSamplingLevel = "sequence" }),
            ("grpo+dynamic_sampling", grpo with { DynamicSampling = true, MaxNumGenBatches = 4 }),
        };
        Console.WriteLine("run\tstep\tcompletions_sampled\theld_out_exact_match\twall_s");
        foreach (var (name, c) in runs)
        {
            var (curve, _) = Curve(start, c);
            foreach (var (step, sampled, acc, s) in curve) Console.WriteLine($"{name}\t{step}\t{sampled}\t{acc:F3}\t{s:F1}");
        }
    }

    /// <summary>A GRPO teacher (300 steps from the SFT start), then on-policy distillation of the SFT start from it: held-out exact match every 25 steps.</summary>
    public static void Distill(int teacherSteps, int steps, double lr)
    {
        var (tiny, start) = Start();
        var teacherRun = new GrpoConfig { NEpochs = 100, MaxSteps = teacherSteps, BatchSize = 32, NumGenerations = 8, MaxCompletionLength = 4, LearningRate = 5e-4,
            SaveSteps = 100_000, EvalSteps = teacherSteps, Seed = 1, Grader = Grader };
        var sw = Stopwatch.StartNew();
        var (tcurve, folder) = Curve(start, teacherRun);
        Console.WriteLine($"teacher: GRPO {teacherSteps} steps, held-out exact match {tcurve[^1].Accuracy:F3}, {sw.Elapsed.TotalSeconds:F1} s");
        var teacher = tiny with { Folder = folder };
        var c = new DistillConfig { NEpochs = 100, MaxSteps = steps, BatchSize = 32, NumGenerations = 4, MaxCompletionLength = 4, LearningRate = lr,
            SaveSteps = 100_000, EvalSteps = 25, Seed = 2, TeacherModel = "teacher", Grader = Grader };
        var (curve, _) = Curve(start, c, teacher);
        Console.WriteLine("step\tcompletions_sampled\tstudent_held_out_exact_match\twall_s");
        foreach (var (step, sampled, acc, s) in curve) Console.WriteLine($"{step}\t{sampled}\t{acc:F3}\t{s:F1}");
    }

    /// <summary>REBEL from the SFT start: held-out exact match every 25 steps (pairs of samples, eta, learning rate).</summary>
    public static void Rebel(int steps, int k, double eta, double lr)
    {
        var (_, start) = Start();
        var c = new RebelConfig { NEpochs = 100, MaxSteps = steps, BatchSize = 32, NumGenerations = k, Eta = eta, MaxCompletionLength = 4, LearningRate = lr,
            SaveSteps = 100_000, EvalSteps = 25, Seed = 1, Grader = Grader };
        var (curve, _) = Curve(start, c);
        Console.WriteLine($"rebel k={k} eta={eta} lr={lr}\nstep\tcompletions_sampled\theld_out_exact_match\twall_s");
        foreach (var (step, sampled, acc, sec) in curve) Console.WriteLine($"{step}\t{sampled}\t{acc:F3}\t{sec:F1}");
    }

    /// <summary>Arithmetic preference pairs: the exact answer chosen over a wrong one (off by 1 to 9, or two digits swapped).</summary>
    public static List<PreferencePair> ArithmeticPairs(int n, int seed)
    {
        var rng = new Random(seed);
        return ArithmeticTask.Problems(n, seed).Select(p =>
        {
            int answer = int.Parse(p.Answer), off = rng.Next(1, 10) * (rng.Next(2) == 0 ? -1 : 1);
            return new PreferencePair(p.Prompt, p.Answer, Math.Max(0, answer + off).ToString() is var w && w != p.Answer ? w : (answer + 10).ToString());
        }).ToList();
    }

    /// <summary>A DPO model from the SFT start on arithmetic pairs, then RTO (PPO on its token rewards) from the same start: held-out exact match every 25 batches.</summary>
    public static void Rto(int dpoSteps, int batches, double dpoBeta, bool withGrader, double dpoLr = 1e-3, double dpoTrainBeta = 0.1)
    {
        var (tiny, start) = Start();
        var sw = Stopwatch.StartNew();
        var dpo = AlignHub.Training.Preference.DpoTrainer.Train(new AlignHub.Training.Preference.DpoRun(start, OnPolicyPairs(start, 4000, 3), null,
            new DpoConfig { NEpochs = 100, MaxSteps = dpoSteps, BatchSize = 32, LearningRate = dpoLr, Beta = dpoTrainBeta, SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1 },
            Temp(), null, Path.Combine(Temp(), "ref.json")), new BenchReporter(), CancellationToken.None);
        var dpoModel = tiny with { Folder = dpo.LastCheckpoint };
        Console.WriteLine($"dpo model: {dpoSteps} steps, {sw.Elapsed.TotalSeconds:F1} s, its own held-out exact match {ExactMatch(dpoModel):F3} (start {ExactMatch(start):F3})");
        var c = new RtoConfig { NEpochs = 100, MaxSteps = batches * 4, BatchSize = 32, NumGenerations = 8, NumPpoEpochs = 4, MaxCompletionLength = 4, DpoModel = "dpo", DpoBeta = dpoBeta,
            SaveSteps = 100_000, EvalSteps = 25 * 4, Seed = 1, Grader = Grader };
        // With withGrader the exact-match grader's reward is added at each completion's last token (and scores eval/reward);
        // without it the DPO model's token rewards alone train, and each checkpoint is scored after the run.
        var held = ArithmeticTask.Prompts(200, 99);
        var log = new BenchReporter();
        var saved = new List<(int Step, string Dir)>();
        var run = new OnlineRlRun(start, ArithmeticTask.Prompts(2000, 5), withGrader ? held : null, c with { Grader = withGrader ? Grader : null, SaveSteps = 25 * 4 },
            Temp(), null, withGrader ? new GraderSource(c.ParsedGrader()!) : null, Teacher: dpoModel);
        OnlineRlTrainer.Train(run, new SavingReporter(log, saved), CancellationToken.None);
        Console.WriteLine($"rto dpo_beta={dpoBeta} grader_reward={withGrader}\nbatch\theld_out_exact_match\twall_s");
        foreach (var (step, dir) in saved) Console.WriteLine($"{step / 4}\t{ExactMatch(tiny with { Folder = dir }):F3}\t{log.RowTimes[Math.Min(log.RowTimes.Count - 1, step - 1)]:F1}");
    }

    /// <summary>Keeps the checkpoints' folders and hands everything else to the bench reporter.</summary>
    sealed class SavingReporter(BenchReporter inner, List<(int Step, string Dir)> saved) : ITrainingReporter
    {
        public void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null) => inner.Event(level, message, data);
        public void Step(TrainingProgress p, IReadOnlyDictionary<string, double>? m) => inner.Step(p, m);
        public void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics) => saved.Add((step, directory));
        public ControlSignal Poll() => ControlSignal.Continue;
    }

    /// <summary>
    /// Pairs on the start's own distribution: for each problem four samples of the start (temperature 1); the exact
    /// answer is chosen over one of its wrong samples (problems it never gets wrong are skipped).
    /// </summary>
    public static List<PreferencePair> OnPolicyPairs(ModelSource start, int n, int seed)
    {
        var problems = ArithmeticTask.Problems(n, seed);
        using var model = start.CreateModel();
        var tok = start.CreateTokenizer();
        var ids = problems.Select(p => new[] { tok.BosId }.Concat(tok.Encode(p.Prompt)).ToArray()).ToList();
        var rollouts = AlignHub.Training.Generation.Rollouts.Sample(model, tok, ids, Enumerable.Range(0, n).ToList(), 4,
            new AlignHub.Training.Generation.GenerationOptions { MaxNewTokens = 4, Temperature = 1 }, seed, 0, 256);
        return rollouts.GroupBy(r => r.PromptIndex).Select(g => (P: problems[g.Key], Wrong: g.FirstOrDefault(r => r.Completion.Text != problems[g.Key].Answer)))
            .Where(x => x.Wrong is not null).Select(x => new PreferencePair(x.P.Prompt, x.P.Answer, x.Wrong!.Completion.Text)).ToList();
    }

    /// <summary>Greedy exact match of a model on the 200 held-out problems (seed 99).</summary>
    static double ExactMatch(ModelSource source)
    {
        var held = ArithmeticTask.Prompts(200, 99);
        using var model = source.CreateModel();
        var tok = source.CreateTokenizer();
        var outs = AlignHub.Training.Generation.TextGenerator.Generate(model, tok, held.Select(h => new[] { tok.BosId }.Concat(tok.Encode(h.Text)).ToArray()).ToList(),
            new AlignHub.Training.Generation.GenerationOptions { MaxNewTokens = 4, Temperature = 0 });
        return held.Zip(outs).Count(x => x.Second.Text == x.First.Row!.Value.GetProperty("answer").GetString()) / (double)held.Count;
    }

    /// <summary>
    /// The intransitive task: an SFT start (weights 0.7 formal, 0.2 warm, 0.1 playful; <c>sft</c> steps, so a short one
    /// also answers with near misses), a general preference model and a Bradley-Terry reward model trained on the same
    /// <c>pairs</c> pairs, then a self-play method (<c>method</c> sppo or dno) against the preference model and GRPO on
    /// the reward model with the same budget; each checkpoint's and the final policy's win rate over the start under the
    /// hidden rule (8 samples of each of 160 prompts, both policies, every pair of a prompt), 95% bootstrap CI over
    /// prompts, and the styles each samples. Arguments as key=value: method, steps, lr, eta (SPPO), beta (DNO),
    /// iterations (num_iterations), sft, pairs, corrupt (share of pairs against a near miss), grpo (0: skip the baseline).
    /// </summary>
    public static void Cyclic(string[] args)
    {
        var o = args.Select(a => a.Split('=', 2)).ToDictionary(x => x[0], x => x[1]);
        string Opt(string k, string d) => o.GetValueOrDefault(k, d);
        double D(string k, double d) => double.Parse(Opt(k, d.ToString(System.Globalization.CultureInfo.InvariantCulture)), System.Globalization.CultureInfo.InvariantCulture);
        string method = Opt("method", "dno");
        int steps = (int)D("steps", 200), sftSteps = (int)D("sft", 400), pairs = (int)D("pairs", 480), iterations = (int)D("iterations", 1);
        double lr = D("lr", 1e-4);
        torch.set_num_threads(Environment.ProcessorCount);
        var tiny = new ModelSource(ModelPresets.ConfigJson(ModelPresets.All["alignhub/tiny"]), "byte", null);
        var sft = SftTrainer.Train(new SftRun(tiny, CyclicPreferenceTask.Demonstrations(2000, 1, [0.7, 0.2, 0.1]), null,
            new SftConfig { NEpochs = 100, MaxSteps = sftSteps, BatchSize = 32, LearningRate = 3e-3, SaveSteps = 100_000, Seed = 1 }, Temp(), null), new BenchReporter(), CancellationToken.None);
        var start = tiny with { Folder = sft.LastCheckpoint };
        var train = CyclicPreferenceTask.Pairs(pairs, 1, D("corrupt", 0.25));
        var held = CyclicPreferenceTask.Pairs(240, 2);
        int rounds = (int)D("rounds", 1), onPolicy = (int)D("onpolicy", 0);
        var prompts = CyclicPreferenceTask.Prompts(512);
        var policies = new List<(string Name, string Folder, double Seconds)> { ("start", sft.LastCheckpoint!, 0.0) };
        var current = start;
        double Last(BenchReporter log, string name) => log.Rows.Last(r => r.Metrics.ContainsKey(name)).Metrics[name];
        var sw = Stopwatch.StartNew();
        for (int round = 0; round < rounds; round++)
        {
            // Each round's oracle also learns from the hidden rule's labels of the current policy's own samples (a labelling round).
            if (onPolicy > 0) train.AddRange(StylePairsFrom(current, onPolicy, 10 + round));
            sw.Restart();
            var pmLog = new BenchReporter();
            var pm = AlignHub.Training.Preference.PreferenceModelTrainer.Train(new AlignHub.Training.Preference.PreferenceModelRun(tiny, train, held,
                new PreferenceModelConfig { NEpochs = Math.Max(1, 14400 / train.Count), BatchSize = 16, LearningRate = 1e-3, PreferenceDim = 8, WarmupRatio = 0.05, EvalSteps = 100_000, SaveSteps = 100_000, Seed = 1 }, Temp(), null),
                pmLog, CancellationToken.None);
            Console.WriteLine($"round {round + 1}: preference model on {train.Count} pairs: held-out accuracy {Last(pmLog, "eval/accuracy"):F3}, cyclic triples {Last(pmLog, "eval/cyclic_triples"):F3} ({sw.Elapsed.TotalSeconds:F0} s)");
            var pmSource = tiny with { Folder = pm.LastCheckpoint, ConfigJson = File.ReadAllText(Path.Combine(pm.LastCheckpoint!, "config.json")) };
            SelfPlayConfig selfPlay = method switch
            {
                "sppo" => new SppoConfig { Eta = D("eta", 1.0) },
                "dno" => new DnoConfig { Beta = D("beta", 0.1) },
                "online_ipo" => new OnlineIpoConfig { Beta = D("beta", 0.1), NumGenerations = 4, MixtureCoef = D("mixture", 0) },
                _ => throw new ArgumentException(method),
            };
            selfPlay = selfPlay with { NEpochs = 100, MaxSteps = steps, BatchSize = 16, NumGenerations = 4, NumIterations = iterations, MaxCompletionLength = 16, LearningRate = lr,
                SaveSteps = Math.Max(1, steps / (rounds > 1 ? 2 : 4)), EvalSteps = 100_000, Seed = 1 + round, PreferenceModel = "pm" };
            sw.Restart();
            var saved = new List<(int Step, string Dir)>();
            var selfLog = new BenchReporter();
            OnlineRlTrainer.Train(new OnlineRlRun(current, prompts, null, selfPlay, Temp(), null,
                new GroupWinRateSource(PreferenceModelSource.Load(pmSource, null), selfPlay.WinRateGroupSize)), new SavingReporter(selfLog, saved), CancellationToken.None);
            double selfSeconds = sw.Elapsed.TotalSeconds;
            var roundRates = selfLog.Rows.Where(r => r.Metrics.ContainsKey("round/win_rate")).ToList();
            Console.WriteLine("  round win rates over the previous round (preference model, both orders), every 10th: " +
                string.Join(", ", roundRates.Where((_, i) => i % 10 == 9).Select(r => $"{r.Metrics["round"]:F0}: {r.Metrics["round/win_rate"]:F2}")));
            policies.AddRange(saved.Select(x => ($"{method} vs preference model{(rounds > 1 ? $", iteration {round + 1}" : "")}, step {x.Step}", x.Dir, selfSeconds * x.Step / steps)));
            current = tiny with { Folder = saved[^1].Dir };
        }
        if (D("grpo", 1) != 0)
        {
            // The baseline: a Bradley-Terry reward model on the same (final) pairs, GRPO from the start for the same number of steps.
            var rmLog = new BenchReporter();
            var rm = AlignHub.Training.Preference.RewardModelTrainer.Train(new AlignHub.Training.Preference.RewardModelRun(tiny, train, held,
                new RewardModelConfig { NEpochs = Math.Max(1, 14400 / train.Count), BatchSize = 16, LearningRate = 1e-3, WarmupRatio = 0.05, EvalSteps = 100_000, SaveSteps = 100_000, Seed = 1 }, Temp(), null),
                rmLog, CancellationToken.None);
            Console.WriteLine($"reward model on {train.Count} pairs: held-out accuracy {Last(rmLog, "eval/accuracy"):F3}");
            var grpo = new GrpoConfig { NEpochs = 100, MaxSteps = steps * iterations * rounds, BatchSize = 16, NumGenerations = 4, MaxCompletionLength = 16, LearningRate = lr,
                SaveSteps = 100_000, EvalSteps = 100_000, Seed = 1, RewardModel = "rm" };
            sw.Restart();
            var grpoRun = OnlineRlTrainer.Train(new OnlineRlRun(start, prompts, null, grpo, Temp(), null,
                RewardEnsembleSource.Load(tiny with { Folder = rm.LastCheckpoint }, 0, 64, null)), new BenchReporter(), CancellationToken.None);
            policies.Add(("grpo vs reward model (same completions sampled)", grpoRun.LastCheckpoint!, sw.Elapsed.TotalSeconds));
        }
        Console.WriteLine("policy\twin_rate_over_start\tci95\tformal\twarm\tplayful\tother\tseconds");
        var startSamples = StyleSamples(start);
        foreach (var (name, folder, sec) in policies)
        {
            var samples = StyleSamples(tiny with { Folder = folder });
            var (w, lo, hi) = WinRate(samples, startSamples);
            var all = samples.SelectMany(x => x.Replies).ToList();
            double Share(int? s) => all.Count(r => CyclicPreferenceTask.StyleOf(r.Prompt, r.Text) == s) / (double)all.Count;
            Console.WriteLine($"{name}\t{w:F3}\t[{lo:F3}, {hi:F3}]\t{Share(0):F2}\t{Share(1):F2}\t{Share(2):F2}\t{Share(null):F2}\t{sec:F1}\t" +
                string.Join(" | ", all.Where(r => CyclicPreferenceTask.StyleOf(r.Prompt, r.Text) is null).Take(3).Select(r => r.Text)));
        }
    }

    /// <summary>
    /// Pairs labelled by the hidden rule on a policy's own samples (temperature 1): for each of <paramref name="n"/>
    /// prompts, its two samples against each other and the first against a random style's reply; ties are skipped.
    /// </summary>
    static List<PreferencePair> StylePairsFrom(ModelSource policy, int n, int seed)
    {
        var prompts = CyclicPreferenceTask.Prompts(n);
        using var model = policy.CreateModel();
        var tok = policy.CreateTokenizer();
        var ids = prompts.Select(p => new[] { tok.BosId }.Concat(tok.Encode(p.Text)).ToArray()).ToList();
        var rs = AlignHub.Training.Generation.Rollouts.Sample(model, tok, ids, Enumerable.Range(0, prompts.Count).ToList(), 2,
            new AlignHub.Training.Generation.GenerationOptions { MaxNewTokens = 16, Temperature = 1 }, 1000 + seed, 0, 256);
        var rng = new Random(seed);
        var result = new List<PreferencePair>();
        void Add(string prompt, string a, string b)
        {
            double p = CyclicPreferenceTask.Preference(prompt, a, b);
            if (p != 0.5) result.Add(p > 0.5 ? new PreferencePair(prompt, a, b) : new PreferencePair(prompt, b, a));
        }
        foreach (var g in rs.GroupBy(r => r.PromptIndex))
        {
            var prompt = prompts[g.Key].Text;
            var texts = g.Select(r => r.Completion.Text).ToList();
            Add(prompt, texts[0], texts[1]);
            Add(prompt, texts[0], CyclicPreferenceTask.Reply(rng.Next(3), prompt[6..^1]));
        }
        Console.WriteLine($"  {result.Count} pairs labelled by the hidden rule on the policy's samples");
        return result;
    }

    /// <summary>Eight samples (temperature 1) of each of 160 prompts, per prompt.</summary>
    static List<(string Prompt, List<(string Prompt, string Text)> Replies)> StyleSamples(ModelSource source)
    {
        var prompts = CyclicPreferenceTask.Prompts(160);
        using var model = source.CreateModel();
        var tok = source.CreateTokenizer();
        var ids = prompts.Select(p => new[] { tok.BosId }.Concat(tok.Encode(p.Text)).ToArray()).ToList();
        var rs = AlignHub.Training.Generation.Rollouts.Sample(model, tok, ids, Enumerable.Range(0, prompts.Count).ToList(), 8,
            new AlignHub.Training.Generation.GenerationOptions { MaxNewTokens = 16, Temperature = 1 }, 77, 0, 256);
        return rs.GroupBy(r => r.PromptIndex).Select(g => (prompts[g.Key].Text, g.Select(r => (prompts[g.Key].Text, r.Completion.Text)).ToList())).ToList();
    }

    /// <summary>Mean P(a &gt; b) under the hidden rule over every (a, b) pair of a prompt's samples, and a 95% bootstrap interval over prompts.</summary>
    static (double Mean, double Low, double High) WinRate(List<(string Prompt, List<(string Prompt, string Text)> Replies)> a, List<(string Prompt, List<(string Prompt, string Text)> Replies)> b)
    {
        var per = a.Zip(b, (x, y) => x.Replies.SelectMany(r => y.Replies.Select(s => CyclicPreferenceTask.Preference(x.Prompt, r.Text, s.Text))).Average()).ToArray();
        var rng = new Random(5);
        var boot = Enumerable.Range(0, 2000).Select(_ => Enumerable.Range(0, per.Length).Average(_ => per[rng.Next(per.Length)])).Order().ToArray();
        return (per.Average(), boot[50], boot[1949]);
    }
}
