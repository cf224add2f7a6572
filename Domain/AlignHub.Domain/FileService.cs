using Microsoft.EntityFrameworkCore;

namespace AlignHub.Domain;

/// <summary>Stores uploads under the data folder after validating every line; nothing is written for a bad file.</summary>
public sealed class FileService(IDbContextFactory<AlignHubDb> dbs, AlignHubOptions options)
{
    public static readonly string[] Purposes = ["fine-tune"];
    /// <summary>Purpose of files that jobs write (OpenAI's name for result files).</summary>
    public const string ResultsPurpose = "fine-tune-results";

    public abstract record UploadResult;
    public sealed record Stored(FileRecord File) : UploadResult;
    public sealed record Invalid(string Field, string Message) : UploadResult;
    /// <summary>Over <see cref="AlignHubOptions.MaxUploadBytes"/>: the API answers 413.</summary>
    public sealed record TooLarge(string Message) : UploadResult;

    /// <summary>Every file, newest first (the API's list and the dashboard's Files page).</summary>
    public async Task<List<FileRecord>> ListAsync(CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Files.AsNoTracking().OrderByDescending(f => f.CreatedAt).ThenBy(f => f.Id).ToListAsync(ct);
    }

    public async Task<FileRecord?> GetAsync(string id, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await db.Files.AsNoTracking().FirstOrDefaultAsync(x => x.Id == id, ct);
    }

    /// <summary>The first <paramref name="count"/> lines of a stored file (each cut at <paramref name="maxChars"/>).</summary>
    public async Task<List<string>> HeadAsync(FileRecord file, int count, int maxChars, CancellationToken ct)
    {
        var lines = new List<string>();
        using var reader = new StreamReader(options.Resolve(file.StoragePath));
        while (lines.Count < count && await reader.ReadLineAsync(ct) is { } line)
            if (line.Length > 0) lines.Add(line.Length > maxChars ? line[..maxChars] + "…" : line);
        return lines;
    }

    public async Task<UploadResult> UploadAsync(Stream content, string? filename, string? purpose, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(purpose))
            return new Invalid("purpose", "purpose is required (\"fine-tune\")");
        if (!Purposes.Contains(purpose))
            return new Invalid("purpose", $"purpose \"{purpose}\" is not one of: {string.Join(", ", Purposes)}");
        var name = SanitizeFileName(filename);

        var id = Ids.New("file-");
        var relative = Path.Combine("files", id + ".jsonl");
        var final = options.Resolve(relative);
        Directory.CreateDirectory(Path.GetDirectoryName(final)!);
        var temp = final + ".upload";
        try
        {
            long bytes;
            await using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                await CopyLimitedAsync(content, fs, options.MaxUploadBytes, ct);
                bytes = fs.Length;
            }
            int rows; string format;
            try
            {
                await using var read = File.OpenRead(temp);
                (rows, format) = JsonlRows.Validate(read);
            }
            catch (JsonlFormatException e)
            {
                return new Invalid("file", $"Invalid JSONL at line {e.Line}: {e.Reason}");
            }
            File.Move(temp, final);
            var record = new FileRecord
            {
                Id = id, Filename = name, Purpose = purpose, Bytes = bytes, CreatedAt = Ids.Now(),
                StoragePath = relative, LineCount = rows, Format = format,
            };
            await using var db = await dbs.CreateDbContextAsync(ct);
            db.Files.Add(record);
            try { await db.SaveChangesAsync(ct); }
            catch { File.Delete(final); throw; }
            return new Stored(record);
        }
        catch (TooLargeException)
        {
            return new TooLarge($"file is larger than the upload limit of {options.MaxUploadBytes} bytes");
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    public sealed class TooLargeException : Exception;

    /// <summary>
    /// Registers a JSONL file a worker wrote (a generation job's output): moved into the files folder and recorded.
    /// Synchronous: workers run on their own thread.
    /// </summary>
    public FileRecord AddProduced(string writtenPath, string filename, string purpose, string format, int rows)
    {
        var id = Ids.New("file-");
        var relative = Path.Combine("files", id + ".jsonl");
        var final = options.Resolve(relative);
        Directory.CreateDirectory(Path.GetDirectoryName(final)!);
        File.Move(writtenPath, final);
        var record = new FileRecord
        {
            Id = id, Filename = SanitizeFileName(filename), Purpose = purpose, Bytes = new FileInfo(final).Length, CreatedAt = Ids.Now(),
            StoragePath = relative, LineCount = rows, Format = format,
        };
        using var db = dbs.CreateDbContext();
        db.Files.Add(record);
        try { db.SaveChanges(); }
        catch { File.Delete(final); throw; }
        return record;
    }

    public static async Task CopyLimitedAsync(Stream from, Stream to, long limit, CancellationToken ct)
    {
        var buffer = new byte[81920];
        long total = 0;
        int n;
        while ((n = await from.ReadAsync(buffer, ct)) > 0)
        {
            total += n;
            if (total > limit) throw new TooLargeException();
            await to.WriteAsync(buffer.AsMemory(0, n), ct);
        }
    }

    /// <summary>Keeps the last path component, replaces control and path characters, caps the length.</summary>
    public static string SanitizeFileName(string? name)
    {
        if (string.IsNullOrWhiteSpace(name)) return "upload.jsonl";
        name = name.Replace('\\', '/');
        name = name[(name.LastIndexOf('/') + 1)..];
        var chars = name.Select(c => char.IsControl(c) || c is '/' or '\\' or ':' or '*' or '?' or '"' or '<' or '>' or '|' ? '_' : c).ToArray();
        var clean = new string(chars).Trim().TrimStart('.');
        if (clean.Length == 0) clean = "upload.jsonl";
        return clean.Length > 200 ? clean[..200] : clean;
    }
}
