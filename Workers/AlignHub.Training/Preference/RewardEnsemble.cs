using System.Text.Json;
using AlignHub.Domain;
using AlignHub.Training.Models;
using static TorchSharp.torch;

namespace AlignHub.Training.Preference;

/// <summary>
/// An ensemble of reward models trained with different seeds (Coste et al., 2024, "Reward Model Ensembles Help
/// Mitigate Overoptimization"). Its folder is a normal reward-model folder (member 0's weights, so any single-model
/// consumer works) plus <c>ensemble.json</c> naming every member's folder; scores are the members' mean and standard
/// deviation, and <c>mean - k * std</c> is the uncertainty-penalised reward.
/// </summary>
public sealed class RewardEnsemble : IDisposable
{
    public const string MembersFile = "ensemble.json";
    sealed record Members(List<string> Folders);

    public IReadOnlyList<RewardModel> Models { get; }
    RewardEnsemble(IReadOnlyList<RewardModel> models) => Models = models;

    public static bool IsEnsemble(string? folder) => folder is not null && File.Exists(Path.Combine(folder, MembersFile));

    /// <summary>The member folders (absolute) of an ensemble folder.</summary>
    public static IReadOnlyList<string> MemberFolders(string folder) =>
        (JsonSerializer.Deserialize<Members>(File.ReadAllText(Path.Combine(folder, MembersFile)))?.Folders ?? [])
            .Select(f => Path.GetFullPath(Path.Combine(folder, f))).ToList();

    /// <summary>Loads every member (a plain reward-model folder loads as an ensemble of one).</summary>
    public static RewardEnsemble Load(ModelSource source, Device? device = null)
    {
        IReadOnlyList<string?> folders = IsEnsemble(source.Folder) ? [.. MemberFolders(source.Folder!)] : new List<string?> { source.Folder };
        var models = new List<RewardModel>();
        try
        {
            foreach (var f in folders) { var m = (source with { Folder = f }).CreateRewardModel(device); m.Train(false); models.Add(m); }
        }
        catch { foreach (var m in models) m.Dispose(); throw; }
        return new RewardEnsemble(models);
    }

    /// <summary>Writes the ensemble folder: member 0's files, and the list of members (paths relative to it).</summary>
    public static void Write(string folder, IReadOnlyList<string> members)
    {
        var tmp = folder + ".tmp-" + Environment.ProcessId;
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        foreach (var f in Directory.GetFiles(members[0])) File.Copy(f, Path.Combine(tmp, Path.GetFileName(f)));
        File.WriteAllText(Path.Combine(tmp, MembersFile),
            JsonSerializer.Serialize(new Members(members.Select(m => Path.GetRelativePath(folder, m)).ToList())));
        if (Directory.Exists(folder)) Directory.Delete(folder, true);
        Directory.Move(tmp, folder);
    }

    /// <summary>Mean and standard deviation over the members of the rewards of some pairs' chosen and rejected sides.</summary>
    public (Tensor ChosenMean, Tensor ChosenStd, Tensor RejectedMean, Tensor RejectedStd) ScorePairs(IReadOnlyList<TokenizedPair> data, IReadOnlyList<int> idx, int pad, int maxLen)
    {
        var scores = Models.Select(m => PairData.ScorePairs(m, data, idx, pad, maxLen)).ToList();
        var c = stack(scores.Select(s => s.Chosen).ToArray());
        var r = stack(scores.Select(s => s.Rejected).ToArray());
        bool one = Models.Count == 1;
        return (c.mean([0L]), one ? zeros_like(c[0]) : c.std(0), r.mean([0L]), one ? zeros_like(r[0]) : r.std(0));
    }

    public void Dispose() { foreach (var m in Models) m.Dispose(); }
}

/// <summary>Shifts a member's steps into the ensemble job's step range and names the member in its events.</summary>
sealed class MemberReporter(ITrainingReporter inner, int offset, int total, int member, int members) : ITrainingReporter
{
    public void Event(string level, string message, IReadOnlyDictionary<string, object>? data = null) =>
        inner.Event(level, $"Ensemble member {member + 1} of {members}: {message}", data);
    public void Step(TrainingProgress p, IReadOnlyDictionary<string, double>? metrics) =>
        inner.Step(p with { Step = p.Step + offset, TotalSteps = total }, metrics);
    public void Checkpoint(int step, string directory, IReadOnlyDictionary<string, double> metrics) => inner.Checkpoint(step + offset, directory, metrics);
    public ControlSignal Poll() => inner.Poll();
}
