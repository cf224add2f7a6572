using System.Diagnostics;
using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Models;
using AlignHub.Training.Tokenizers;
using TorchSharp;

namespace AlignHub.Training.Generation;

/// <summary>What a generation job needs: the model, the prompts of its file, the settings and where to write.</summary>
public sealed record GenerateRun(ModelSource Model, string ModelId, IReadOnlyList<GenerationPrompt> Prompts, GenerateConfig Config, string OutputPath);

/// <summary>
/// The generation job (<c>method.type = "generate"</c>): N completions per prompt, batched, written as JSONL rows
/// <c>{"prompt", "completions": [{"text", "tokens", "logprob", "finish_reason"}], "model"}</c> (the input of labeling
/// campaigns and best-of-N). Each batch has its own seed derived from the job's, so a re-run writes the same file.
/// One step of progress per batch; cancellation is checked between batches.
/// </summary>
public static class GenerateRunner
{
    public static TrainingResult Run(GenerateRun run, ITrainingReporter reporter, CancellationToken ct)
    {
        var c = run.Config;
        var tok = run.Model.CreateTokenizer();
        var arch = run.Model.Architecture;
        torch.manual_seed(c.Seed);
        using var model = run.Model.CreateModel();

        int maxPos = arch.MaxPositions;
        int promptLimit = Math.Clamp(c.MaxPromptLength ?? maxPos - Math.Min(c.MaxNewTokens, maxPos / 2), 1, maxPos - 1);
        var encoded = run.Prompts.Select(p =>
        {
            var ids = new[] { tok.BosId }.Concat(tok.Encode(p.Text)).ToArray();
            return ids.Length > promptLimit ? ids[^promptLimit..] : ids;
        }).ToList();
        // Sequences in prompt-major order: (prompt 0, sample 0..N-1), (prompt 1, ...).
        var work = Enumerable.Range(0, run.Prompts.Count).SelectMany(p => Enumerable.Range(0, c.N).Select(_ => p)).ToList();
        int total = (work.Count + c.BatchSize - 1) / c.BatchSize;
        var results = new GeneratedSequence[work.Count];
        reporter.Event("info", $"Generating {c.N} completion(s) for each of {run.Prompts.Count} prompts in {total} batches",
            new Dictionary<string, object> { ["prompts"] = run.Prompts.Count, ["n"] = c.N, ["total_steps"] = total });

        long tokens = 0;
        var clock = Stopwatch.StartNew();
        for (int step = 0; step < total; step++)
        {
            if (reporter.CancelRequested()) return new TrainingResult(TrainingOutcome.Cancelled, step, null, tokens);
            if (ct.IsCancellationRequested) return new TrainingResult(TrainingOutcome.Interrupted, step, null, tokens);
            var sw = Stopwatch.StartNew();
            var slice = Enumerable.Range(step * c.BatchSize, Math.Min(c.BatchSize, work.Count - step * c.BatchSize)).ToList();
            var chat = slice.Any(i => run.Prompts[work[i]].Chat);
            var options = new GenerationOptions
            {
                MaxNewTokens = c.MaxNewTokens, Temperature = c.Temperature, TopK = c.TopK, TopP = c.TopP,
                Stop = chat ? [.. c.Stop, ChatTemplate.End.TrimEnd('\n')] : c.Stop,
                Seed = (long)c.Seed * 1_000_003L + step,
            };
            var outs = TextGenerator.Generate(model, tok, slice.Select(i => encoded[work[i]]).ToList(), options);
            long batchTokens = 0;
            for (int k = 0; k < slice.Count; k++) { results[slice[k]] = outs[k]; batchTokens += outs[k].Tokens.Length; }
            tokens += batchTokens;
            double perStep = clock.Elapsed.TotalSeconds / (step + 1);
            reporter.Step(new TrainingProgress(step + 1, total, 0, tokens, perStep * (total - step - 1)),
                new Dictionary<string, double> { ["tokens_per_second"] = batchTokens / Math.Max(1e-9, sw.Elapsed.TotalSeconds) });
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
