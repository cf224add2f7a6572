using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>
/// Registers models in the Hugging Face folder layout (config.json, safetensors weights, tokenizer files): from an
/// uploaded .tar.gz/.tgz/.tar/.zip archive, from a server-side folder under an allowed root, or as a random
/// initialisation of a config. Checks everything a trainer would trip on later (config keys, weight headers and
/// their parameter count, the tokenizer) without loading any tensor, and packs models back into archives.
/// </summary>
public sealed partial class ModelService(IDbContextFactory<AlignHubDb> dbs, AlignHubOptions options)
{
    public abstract record RegisterResult;
    public sealed record Registered(ModelRecord Model) : RegisterResult;
    public sealed record Invalid(string Field, string Message) : RegisterResult;
    public sealed record Conflict(string Message) : RegisterResult;
    public sealed record TooLarge(string Message) : RegisterResult;

    /// <summary>Every registered model, oldest first (the API's list and the dashboard's Models page).</summary>
    public async Task<List<ModelRecord>> ListAsync(CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Models.AsNoTracking().OrderBy(m => m.CreatedAt).ThenBy(m => m.Id).ToListAsync(ct);
    }

    /// <summary>A model by name or checkpoint name (<see cref="FindAsync(AlignHubDb, string, CancellationToken, int)"/>), for pages and endpoints.</summary>
    public async Task<ModelRecord?> FindAsync(string name, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await FindAsync(db, name, ct);
    }

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9][A-Za-z0-9._\-]*)?$")]
    private static partial Regex IdPattern();

    /// <summary>
    /// A model by name: a registered model, or a checkpoint's model name (<c>ft:...:ckpt-step-N</c>, as OpenAI names
    /// them), which stands for the checkpoint's weights with the job's base model's config and tokenizer.
    /// </summary>
    /// <summary><see cref="Find"/> without blocking a thread (request paths).</summary>
    public static async Task<ModelRecord?> FindAsync(AlignHubDb db, string name, CancellationToken ct, int depth = 0)
    {
        var m = await db.Models.AsNoTracking().FirstOrDefaultAsync(x => x.Id == name, ct);
        if (m is not null || depth > 8) return m;
        var c = await db.Checkpoints.AsNoTracking().FirstOrDefaultAsync(x => x.ModelName == name, ct);
        if (c is null) return null;
        var job = await db.Jobs.AsNoTracking().FirstOrDefaultAsync(j => j.Id == c.JobId, ct);
        var baseModel = job is null ? null : await FindAsync(db, job.Model, ct, depth + 1);
        return baseModel is null ? null : CheckpointModel(name, c, baseModel);
    }

    static ModelRecord CheckpointModel(string name, JobCheckpoint c, ModelRecord baseModel) => new()
    {
        Id = name, CreatedAt = c.CreatedAt, OwnedBy = "user", Architecture = baseModel.Architecture, ConfigJson = baseModel.ConfigJson,
        Tokenizer = baseModel.Tokenizer, WeightsPath = c.StoragePath, ParentJobId = c.JobId, Parameters = baseModel.Parameters,
    };

    public static ModelRecord? Find(AlignHubDb db, string name, int depth = 0)
    {
        var m = db.Models.AsNoTracking().FirstOrDefault(x => x.Id == name);
        if (m is not null || depth > 8) return m;
        var c = db.Checkpoints.AsNoTracking().FirstOrDefault(x => x.ModelName == name);
        if (c is null) return null;
        var job = db.Jobs.AsNoTracking().FirstOrDefault(j => j.Id == c.JobId);
        var baseModel = job is null ? null : Find(db, job.Model, depth + 1);
        return baseModel is null ? null : CheckpointModel(name, c, baseModel);
    }

    /// <summary>Checks a requested model id: letters, digits, '.', '_', '-', one optional '/', not reserved.</summary>
    public static string? IdError(string? id)
    {
        if (string.IsNullOrWhiteSpace(id)) return "id is required";
        if (id.Length > 128) return "id must be at most 128 characters";
        if (!IdPattern().IsMatch(id) || id.Contains("..")) return "id may hold letters, digits, '.', '_', '-' and one '/' (owner/name), and must start each part with a letter or digit";
        if (id.StartsWith("alignhub/", StringComparison.OrdinalIgnoreCase)) return "ids under alignhub/ are reserved for built-in models";
        if (id.EndsWith("/content", StringComparison.Ordinal)) return "id must not end with /content";
        return null;
    }

    /// <summary>A model with no weights: initialised at random from each job's seed. Only the byte tokenizer needs no files.</summary>
    public async Task<RegisterResult> RegisterConfigAsync(string? id, JsonElement config, string? tokenizer, CancellationToken ct)
    {
        if (IdError(id) is { } idErr) return new Invalid("id", idErr);
        if (config.ValueKind != JsonValueKind.Object) return new Invalid("config", "config must be a config.json object");
        tokenizer ??= TokenizerFiles.Byte;
        if (tokenizer != TokenizerFiles.Byte)
            return new Invalid("tokenizer", "a model created from a config uses the built-in \"byte\" tokenizer; upload an archive to bring tokenizer files");
        var json = config.GetRawText();
        ModelArchitecture arch;
        try { arch = ModelArchitecture.Parse(json); }
        catch (InvalidDataException e) { return new Invalid("config", e.Message); }
        if (arch.VocabSize < ModelPresets.ByteVocab)
            return new Invalid("config", $"vocab_size must be at least {ModelPresets.ByteVocab} for the byte tokenizer");
        return await AddAsync(new ModelRecord
        {
            Id = id!, CreatedAt = Ids.Now(), OwnedBy = "user", Architecture = arch.ModelType, ConfigJson = json,
            Tokenizer = TokenizerFiles.Byte, WeightsPath = null, Parameters = arch.Parameters(),
        }, ct);
    }

    /// <summary>Registers a folder that already exists on this server, under one of <c>ModelImportRoots</c>; read in place.</summary>
    public async Task<RegisterResult> RegisterPathAsync(string? id, string? path, CancellationToken ct)
    {
        if (IdError(id) is { } idErr) return new Invalid("id", idErr);
        if (string.IsNullOrWhiteSpace(path)) return new Invalid("path", "path is required");
        var roots = options.ImportRoots();
        if (roots.Count == 0) return new Invalid("path", "registering server-side folders is off; an administrator allows roots with AlignHub__ModelImportRoots");
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception) { return new Invalid("path", "path is not a valid folder path"); }
        if (!roots.Any(r => full == r || full.StartsWith(r + Path.DirectorySeparatorChar)))
            return new Invalid("path", "path is not under an allowed import root");
        if (!Directory.Exists(full)) return new Invalid("path", "no such folder");
        if (new DirectoryInfo(full).LinkTarget is not null) return new Invalid("path", "path must not be a symbolic link");
        Inspection checkedFolder;
        await using (var db = await dbs.CreateDbContextAsync(ct)) checkedFolder = Inspect(full, name => Find(db, name));
        if (checkedFolder.Error is { } err) return new Invalid("path", err);
        return await AddAsync(Record(id!, checkedFolder, full), ct);
    }

    /// <summary>Extracts an uploaded archive of an HF model folder into the data folder and registers it.</summary>
    public async Task<RegisterResult> RegisterArchiveAsync(string? id, Stream archive, string? fileName, CancellationToken ct)
    {
        if (IdError(id) is { } idErr) return new Invalid("id", idErr);
        await using (var db = await dbs.CreateDbContextAsync(ct))
            if (await db.Models.AnyAsync(m => m.Id == id, ct)) return new Conflict($"model \"{id}\" already exists");
        var folderName = Ids.New("model-");
        var relative = Path.Combine("models", folderName);
        var final = options.Resolve(relative);
        var tmp = final + ".upload";
        Directory.CreateDirectory(tmp);
        try
        {
            var uploaded = Path.Combine(tmp, "upload.archive");
            await using (var fs = new FileStream(uploaded, FileMode.CreateNew))
                await FileService.CopyLimitedAsync(archive, fs, options.MaxUploadBytes, ct);
            var extracted = Path.Combine(tmp, "x");
            Directory.CreateDirectory(extracted);
            try { Extract(uploaded, fileName ?? "", extracted, options.MaxModelBytes); }
            catch (InvalidDataException e) { return new Invalid("file", e.Message); }
            File.Delete(uploaded);
            var root = FindModelRoot(extracted);
            if (root is null) return new Invalid("file", "the archive holds no config.json or adapter_config.json (at its top or in one top-level folder)");
            Inspection inspected;
            await using (var db = await dbs.CreateDbContextAsync(ct)) inspected = Inspect(root, name => Find(db, name));
            if (inspected.Error is { } err) return new Invalid("file", err);
            Directory.Move(root, final);
            var result = await AddAsync(Record(id!, inspected, relative), ct);
            if (result is not Registered) Directory.Delete(final, true);
            return result;
        }
        catch (FileService.TooLargeException) { return new TooLarge($"archive is larger than the upload limit of {options.MaxUploadBytes} bytes"); }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        }
    }

    ModelRecord Record(string id, Inspection i, string weightsPath) => new()
    {
        Id = id, CreatedAt = Ids.Now(), OwnedBy = "user", Architecture = i.Arch!.ModelType, ConfigJson = i.ConfigJson!,
        Tokenizer = i.Tokenizer!, WeightsPath = weightsPath, Parameters = i.Arch.Parameters(),
    };

    async Task<RegisterResult> AddAsync(ModelRecord m, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        if (await db.Models.AnyAsync(x => x.Id == m.Id, ct)) return new Conflict($"model \"{m.Id}\" already exists");
        db.Models.Add(m);
        try { await db.SaveChangesAsync(ct); }
        catch (DbUpdateException) { return new Conflict($"model \"{m.Id}\" already exists"); }
        return new Registered(m);
    }

    public sealed record Inspection(string? Error, ModelArchitecture? Arch = null, string? ConfigJson = null, string? Tokenizer = null);

    /// <summary>
    /// Checks an HF model folder: config.json parses to a supported architecture; the safetensors headers are valid
    /// and their element count equals the architecture's parameter count (mask buffers, rotary caches and a tied
    /// lm_head aside); the tokenizer files fit the vocabulary.
    /// </summary>
    public static Inspection Inspect(string folder, Func<string, ModelRecord?>? findModel = null)
    {
        if (PeftFolder.Is(folder)) return InspectAdapter(folder, findModel ?? (_ => null));
        var configPath = Path.Combine(folder, "config.json");
        if (!File.Exists(configPath)) return new("no config.json");
        var json = File.ReadAllText(configPath);
        ModelArchitecture arch;
        try { arch = ModelArchitecture.Parse(json); }
        catch (InvalidDataException e) { return new(e.Message); }
        IReadOnlyList<string> files;
        try { files = SafeTensorsFolder.Files(folder); }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException) { return new(e.Message); }
        if (files.Count == 0)
            return new(File.Exists(Path.Combine(folder, "pytorch_model.bin"))
                ? "weights are in pytorch_model.bin; AlignHub reads safetensors (convert with save_pretrained(..., safe_serialization=True))"
                : "no model.safetensors or model.safetensors.index.json");
        long count = 0;
        foreach (var f in files)
        {
            try
            {
                using var s = File.OpenRead(f);
                var (entries, _, _) = SafeTensorsHeader.Read(s, Path.GetFileName(f));
                foreach (var e in entries)
                {
                    if (arch.IsIgnoredHfKey(e.Name)) continue;
                    count += e.Shape.Aggregate(1L, (a, b) => a * b);
                }
            }
            catch (Exception e) when (e is InvalidDataException or JsonException or EndOfStreamException or KeyNotFoundException or InvalidOperationException)
            {
                return new($"{Path.GetFileName(f)} is not a valid safetensors file: {e.Message}");
            }
        }
        if (count != arch.Parameters())
            return new($"the weights hold {count} parameters; config.json describes a {arch.ModelType} model of {arch.Parameters()}");
        var tokenizer = TokenizerFiles.Detect(folder);
        if (tokenizer == TokenizerFiles.Byte && TokenizerFiles.TokenizerJsonModel(folder) is { } tjModel)
            return new(tjModel == "unreadable" ? "tokenizer.json is not a readable tokenizers file"
                : $"tokenizer.json has a {tjModel} model; AlignHub reads BPE models (byte-level, or SentencePiece-style with byte fallback)");
        if (tokenizer == TokenizerFiles.Byte && arch.VocabSize < ModelPresets.ByteVocab)
            return new($"no tokenizer files (tokenizer.json, vocab.json + merges.txt, tokenizer.model or *.tiktoken), and vocab_size {arch.VocabSize} is too small for the byte tokenizer");
        return new(null, arch, json, tokenizer);
    }

    /// <summary>
    /// A PEFT LoRA adapter folder: its base (<c>base_model_name_or_path</c>, a registered model id) gives the architecture,
    /// parameter count and tokenizer (the folder's own tokenizer files win, its config.json too where it describes the
    /// same decoder, as a reward model's does); its tensors must fit the base's layers.
    /// </summary>
    static Inspection InspectAdapter(string folder, Func<string, ModelRecord?> findModel)
    {
        string baseId;
        try { baseId = PeftFolder.BaseModel(folder); }
        catch (InvalidDataException e) { return new(e.Message); }
        var b = findModel(baseId);
        if (b is null) return new($"the adapter's base model \"{baseId}\" (base_model_name_or_path) is not registered; register it under that id first");
        var arch = ModelArchitecture.Parse(b.ConfigJson);
        var json = b.ConfigJson;
        var own = Path.Combine(folder, "config.json");
        if (File.Exists(own))
        {
            try
            {
                var mine = ModelArchitecture.Parse(File.ReadAllText(own));
                if (mine with { IsRewardModel = false, BosTokenId = null, EosTokenId = null, PadTokenId = null, MaxPositions = 0 }
                    != arch with { IsRewardModel = false, BosTokenId = null, EosTokenId = null, PadTokenId = null, MaxPositions = 0 })
                    return new($"config.json describes another model than the base \"{baseId}\"");
                (arch, json) = (mine, File.ReadAllText(own));
            }
            catch (InvalidDataException e) { return new(e.Message); }
        }
        if (PeftFolder.Check(folder, arch) is { } err) return new(err);
        var tokenizer = TokenizerFiles.Detect(folder) is var t && t != TokenizerFiles.Byte ? t : b.Tokenizer;
        return new(null, arch, json, tokenizer);
    }

    static string? FindModelRoot(string extracted)
    {
        static bool Root(string d) => File.Exists(Path.Combine(d, "config.json")) || PeftFolder.Is(d);
        if (Root(extracted)) return extracted;
        var dirs = Directory.GetDirectories(extracted);
        return dirs.Length == 1 && Root(dirs[0]) ? dirs[0] : null;
    }

    /// <summary>
    /// Unpacks regular files only; every path must stay inside <paramref name="into"/> (no '..', absolute paths or
    /// links), and the unpacked size is capped (no archive bombs). The format is told by the first bytes.
    /// </summary>
    public static void Extract(string archive, string fileName, string into, long maxBytes)
    {
        var root = Path.GetFullPath(into) + Path.DirectorySeparatorChar;
        long total = 0;
        string Target(string name)
        {
            var clean = name.Replace('\\', '/').TrimStart('/');
            var full = Path.GetFullPath(Path.Combine(root, clean));
            if (!full.StartsWith(root, StringComparison.Ordinal) || name.StartsWith('/') || name.Split('/', '\\').Contains(".."))
                throw new InvalidDataException($"archive entry \"{name}\" points outside the archive");
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            return full;
        }
        void Copy(Stream from, string to, string name)
        {
            using var dest = File.Create(to);
            var buffer = new byte[1 << 16];
            int n;
            while ((n = from.Read(buffer)) > 0)
            {
                total += n;
                if (total > maxBytes) throw new InvalidDataException($"the archive unpacks to more than {maxBytes} bytes");
                dest.Write(buffer, 0, n);
            }
        }
        var head = new byte[4];
        int read;
        using (var probe = File.OpenRead(archive)) read = probe.Read(head);
        try
        {
            if (read >= 4 && head[0] == 'P' && head[1] == 'K')
            {
                using var zip = ZipFile.OpenRead(archive);
                foreach (var e in zip.Entries)
                {
                    if (e.FullName.EndsWith('/')) continue;
                    using var s = e.Open();
                    Copy(s, Target(e.FullName), e.FullName);
                }
                return;
            }
            using var file = File.OpenRead(archive);
            Stream tarStream = read >= 2 && head[0] == 0x1f && head[1] == 0x8b ? new GZipStream(file, CompressionMode.Decompress) : file;
            using (tarStream)
            {
                using var tar = new TarReader(tarStream);
                TarEntry? entry;
                bool any = false;
                while ((entry = tar.GetNextEntry()) is not null)
                {
                    any = true;
                    switch (entry.EntryType)
                    {
                        case TarEntryType.Directory or TarEntryType.GlobalExtendedAttributes or TarEntryType.ExtendedAttributes:
                            continue;
                        case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                            if (entry.DataStream is null) continue;
                            Copy(entry.DataStream, Target(entry.Name), entry.Name);
                            break;
                        default:
                            throw new InvalidDataException($"archive entry \"{entry.Name}\" is a {entry.EntryType}; only regular files are accepted");
                    }
                }
                if (!any) throw new InvalidDataException("the archive is empty");
            }
        }
        catch (Exception e) when (e is not InvalidDataException && e is (IOException or FormatException or ArgumentException))
        {
            throw new InvalidDataException($"\"{fileName}\" is not a readable .tar.gz, .tar or .zip archive ({e.Message})");
        }
    }

    /// <summary>The files a model or checkpoint folder shares as an HF model: config, weights, tokenizer and generation files.</summary>
    public static IEnumerable<string> HfFiles(string folder)
    {
        foreach (var f in Directory.EnumerateFiles(folder).OrderBy(f => f, StringComparer.Ordinal))
        {
            var name = Path.GetFileName(f);
            if (name == "config.json" || name.EndsWith(".safetensors") || name == "model.safetensors.index.json" || name == PeftFolder.ConfigFile
                || TokenizerFiles.Companions.Contains(name) || name.EndsWith(".tiktoken"))
                yield return f;
        }
    }

    /// <summary>Writes a .tar.gz of the folder's HF files under a top-level folder named <paramref name="name"/>.</summary>
    public static async Task WriteArchiveAsync(string folder, string name, Stream output, CancellationToken ct)
    {
        await using var gz = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true);
        await using var tar = new TarWriter(gz, TarEntryFormat.Pax, leaveOpen: true);
        foreach (var f in HfFiles(folder))
            await tar.WriteEntryAsync(f, $"{name}/{Path.GetFileName(f)}", ct);
    }
}
