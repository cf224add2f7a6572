using System.Diagnostics;
using AlignHub.Training;

/// <summary>The benchmarks' reporter: keeps every logged step's metrics and the time of each step; never stops a run.</summary>
sealed class BenchReporter : ITrainingReporter
{
    readonly Stopwatch clock = Stopwatch.StartNew();
    readonly List<double> at = [];
    public readonly List<(int Step, IReadOnlyDictionary<string, double> Metrics)> Rows = [];
    /// <summary>Seconds since the reporter was made when each row was reported.</summary>
    public readonly List<double> RowTimes = [];

    public void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null) { }
    public void Step(TrainingProgress p, IReadOnlyDictionary<string, double>? m)
    {
        at.Add(clock.Elapsed.TotalSeconds);
        if (m is not null) { Rows.Add((p.Step, m)); RowTimes.Add(clock.Elapsed.TotalSeconds); }
    }
    public void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics) { }
    public ControlSignal Poll() => ControlSignal.Continue;

    /// <summary>Mean seconds per step over steps 4 to 13 (the first three warm up).</summary>
    public double PerStep() => (at[12] - at[2]) / 10;
}
