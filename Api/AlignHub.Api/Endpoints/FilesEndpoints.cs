using AlignHub.Domain;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;

namespace AlignHub.Api.Endpoints;

public static class FilesEndpoints
{
    public static void MapFiles(this RouteGroupBuilder v1)
    {
        var g = v1.MapGroup("/files").WithTags("Files");
        g.MapPost("/", Upload).DisableAntiforgery()
            .WithSummary("Upload a JSONL file (multipart: file, purpose=fine-tune); every line is validated. Role: trainer").RequireAuthorization(Auth.Train);
        g.MapGet("/", List).WithSummary("List files. Role: viewer").RequireAuthorization(Auth.Read);
        g.MapGet("/{id}", Get).WithSummary("Retrieve a file. Role: viewer").RequireAuthorization(Auth.Read);
        g.MapGet("/{id}/content", Content).WithSummary("Download a file's content. Role: viewer").RequireAuthorization(Auth.Read);
    }

    public static async Task<Results<Ok<FileObject>, ValidationProblem, ProblemHttpResult>> Upload(HttpRequest request, FileService files, AlignHubOptions options, CancellationToken ct)
    {
        if (!request.HasFormContentType)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["file"] = ["send multipart/form-data with fields file and purpose"] });
        IFormCollection form;
        try { form = await request.ReadFormAsync(ct); }
        catch (Exception e) when (ProblemShape.FormError(e, options) is { } problem) { return problem; }
        var file = form.Files.GetFile("file");
        if (file is null)
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["file"] = ["file is required"] });
        await using var stream = file.OpenReadStream();
        return await files.UploadAsync(stream, file.FileName, form["purpose"].ToString(), ct) switch
        {
            FileService.Stored s => TypedResults.Ok(FileObject.From(s.File)),
            FileService.Invalid i => TypedResults.ValidationProblem(new Dictionary<string, string[]> { [i.Field] = [i.Message] }, detail: i.Message),
            FileService.TooLarge t => TypedResults.Problem(statusCode: 413, title: "Upload too large", detail: t.Message),
            _ => throw new InvalidOperationException(),
        };
    }

    public static async Task<Ok<ListObject<FileObject>>> List(FileService files, CancellationToken ct) =>
        TypedResults.Ok(new ListObject<FileObject>((await files.ListAsync(ct)).Select(FileObject.From).ToList(), false));

    public static async Task<Results<Ok<FileObject>, ProblemHttpResult>> Get(string id, FileService files, CancellationToken ct) =>
        await files.GetAsync(id, ct) is { } f ? TypedResults.Ok(FileObject.From(f)) : ProblemShape.NotFound("file", id);

    public static async Task<Results<FileStreamHttpResult, ProblemHttpResult>> Content(string id, FileService files, AlignHubOptions options, CancellationToken ct)
    {
        var f = await files.GetAsync(id, ct);
        if (f is null) return ProblemShape.NotFound("file", id);
        return TypedResults.File(File.OpenRead(options.Resolve(f.StoragePath)), "application/jsonl", f.Filename);
    }
}
