using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Data;
using AlignHub.Training.Engine;
using AlignHub.Training.Methods;
using AlignHub.Training.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AlignHub.Training.Generation;

/// <summary>What a generation job needs: the model, the prompts of its file, the settings and where to write.</summary>
public sealed record GenerateRun(ModelSource Model, string ModelId, IReadOnlyList<GenerationPrompt> Prompts, GenerateConfig Config, string OutputPath,
    Device? Device = null);

/// <summary>
/// The generation job (<c>method.type = "generate"</c>): N completions per prompt, batched, written as JSONL rows
/// <c>{"prompt", "completions": [{"text", "tokens", "logprob", "finish_reason"}], "model"}</c> (the input of labeling
/// campaigns and best-of-N). Sample k of prompt p is seeded by (seed, 0, p, k), so a re-run writes the same file
/// whatever the batch size. One step of progress per batch; the stop protocol is the training engine's
/// (<see cref="RunControl"/>); a stopped run keeps nothing and a re-run generates again from the first batch.
/// </summary>
public sealed class GenerateRunner : IMethodRunner
{
    public Type ConfigType => typeof(GenerateConfig);
    public bool Resumable => false;

    public MethodOutcome Run(MethodContext ctx, ITrainingReporter reporter, CancellationToken ct)
    {
        var job = ctx.Job;
        var chatFormat = ctx.Model(job.Model).ChatFormat();
        var prompts = ctx.Rows(job.TrainingFile, p => JsonlRows.LoadPrompts(p, chatFormat));
        var run = new GenerateRun(ctx.Model(job.Model), job.Model, prompts, ctx.ConfigAs<GenerateConfig>(), ctx.Output("generations.jsonl"), ctx.Device);
        var result = Generate(run, reporter, ct);
        return new MethodOutcome(result, File: new ProducedFile(run.OutputPath, $"{job.Id}-generations.jsonl", JsonlRows.Generations, prompts.Count),
            Message: $"Job succeeded: {prompts.Count * run.Config.N} completions in file {{result_file}}");
    }

    public static TrainingResult Generate(GenerateRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        var tok = run.Model.CreateTokenizer();
        int maxPos = run.Model.Architecture.MaxPositions;
        torch.manual_seed(c.Seed);
        using var model = run.Model.CreateModel(run.Device ?? CPU, dtype: Dtypes.Resolve(c.TorchDtype, run.Device ?? CPU, run.Model, frozen: true));

        int promptLimit = Math.Clamp(c.MaxPromptLength ?? maxPos - Math.Min(c.MaxNewTokens, maxPos / 2), 1, maxPos - 1);
        var encoder = new PromptEncoder(tok, promptLimit);
        var stopText = run.Model.ChatFormat().StopText;
        var encoded = run.Prompts.Select(p => encoder.Encode(p.Text)).ToList();
        // Sequences in prompt-major order: (prompt 0, sample 0..N-1), (prompt 1, ...).
        var work = Enumerable.Range(0, run.Prompts.Count).SelectMany(p => Enumerable.Range(0, c.N).Select(k => (P: p, K: k))).ToList();
        int total = (work.Count + c.BatchSize - 1) / c.BatchSize;
        var results = new GeneratedSequence[work.Count];
        reporter.Event("info", $"Generating {c.N} completion(s) for each of {run.Prompts.Count} prompts in {total} batches",
            new Dictionary<string, object> { ["prompts"] = run.Prompts.Count, ["n"] = c.N, ["total_steps"] = total });

        long tokens = 0;
        var clock = new StepClock(total);
        for (int step = 0; step < total; step++)
        {
            if (RunControl.Check(reporter, ct) is { } stop) return new TrainingResult(stop, step, null, tokens);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var slice = Enumerable.Range(step * c.BatchSize, Math.Min(c.BatchSize, work.Count - step * c.BatchSize)).ToList();
            var chat = slice.Any(i => run.Prompts[work[i].P].Chat);
            var options = new GenerationOptions
            {
                MaxNewTokens = c.MaxNewTokens, Temperature = c.Temperature, TopK = c.TopK, TopP = c.TopP,
                Stop = chat && stopText is not null ? [.. c.Stop, stopText] : c.Stop,
            };
            var outs = TextGenerator.Generate(model, tok, slice.Select(i => encoded[work[i].P]).ToList(), options,
                slice.Select(i => Seeds.Row(c.Seed, 0, work[i].P, work[i].K)).ToList());
            long batchTokens = 0;
            for (int k = 0; k < slice.Count; k++) { results[slice[k]] = outs[k]; batchTokens += outs[k].Tokens.Length; }
            tokens += batchTokens;
            reporter.Step(clock.Tick(step + 1, 0, tokens),
                new Dictionary<string, double> { [MetricNames.TokensPerSecond] = batchTokens / Math.Max(1e-9, sw.Elapsed.TotalSeconds) });
        }

        var tmp = run.OutputPath + ".tmp";
        using (var w = new StreamWriter(tmp))
        {
            for (int p = 0; p < run.Prompts.Count; p++)
            {
                var completions = Enumerable.Range(p * c.N, c.N).Select(i => new Dictionary<string, object>
                {
                    ["text"] = results[i].Text,
                    ["tokens"] = results[i].Tokens.Length,
                    ["logprob"] = Math.Round(results[i].SumLogProb, 6),
                    ["finish_reason"] = results[i].FinishReason,
                }).ToList();
                w.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["prompt"] = run.Prompts[p].Prompt, ["completions"] = completions, ["model"] = run.ModelId,
                }));
            }
        }
        File.Move(tmp, run.OutputPath, overwrite: true);
        return new TrainingResult(TrainingOutcome.Completed, total, null, tokens);
    }
}
