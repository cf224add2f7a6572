using System.Formats.Tar;
using System.IO.Compression;
using System.Net;
using System.Text.Json;
using AlignHub.Training.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlignHub.Tests;

/// <summary>Models as resources through a real AlignHub process: register (archive, server path, config), list, download, generate, fine-tune.</summary>
public class ModelsApiTests
{
    static string TempDir() => Directory.CreateTempSubdirectory("alignhub-models-").FullName;
    static readonly string Gpt2Files = Path.Combine(AppContext.BaseDirectory, "data", "gpt2");

    /// <summary>A tiny Llama-shaped model with GPT-2's tokenizer files, in the HF layout.</summary>
    static (string Folder, CausalLM Model) TinyLlamaWithGpt2Tokenizer()
    {
        var dir = Path.Combine(TempDir(), "tiny-llama");
        Directory.CreateDirectory(dir);
        var config = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["model_type"] = "llama", ["architectures"] = new[] { "LlamaForCausalLM" }, ["vocab_size"] = 50257, ["hidden_size"] = 32,
            ["intermediate_size"] = 64, ["num_hidden_layers"] = 2, ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2,
            ["max_position_embeddings"] = 128, ["tie_word_embeddings"] = true, ["bos_token_id"] = 50256, ["eos_token_id"] = 50256,
        });
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        var model = TinyConfigs.Create(config, 21);
        HfWeights.Save(model, dir);
        File.Copy(Path.Combine(Gpt2Files, "vocab.json"), Path.Combine(dir, "vocab.json"));
        File.Copy(Path.Combine(Gpt2Files, "merges.txt"), Path.Combine(dir, "merges.txt"));
        return (dir, model);
    }

    internal static byte[] TarGz(string folder, string top, IEnumerable<(string Name, byte[] Data)>? extra = null)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gz))
        {
            foreach (var f in Directory.GetFiles(folder)) tar.WriteEntry(f, $"{top}/{Path.GetFileName(f)}");
            foreach (var (name, data) in extra ?? [])
                tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data) });
        }
        return ms.ToArray();
    }

    internal static async Task<(HttpStatusCode, JsonElement)> UploadModel(AlignHubProcess app, byte[] archive, string id, string name = "model.tar.gz")
    {
        using var form = new MultipartFormDataContent { { new ByteArrayContent(archive), "file", name }, { new StringContent(id), "id" } };
        var r = await app.Http.PostAsync("/v1/models", form);
        return (r.StatusCode, JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    static float[] Logits(CausalLM m)
    {
        using var _ = no_grad();
        using var ids = tensor(new long[] { 50256, 15496, 995, 11, 314 }, [1, 5]);
        using var l = m.forward(ids);
        return l.data<float>().ToArray();
    }

    [Fact]
    public async Task Register_download_generate_and_fine_tune_a_model_in_the_HF_layout()
    {
        var (folder, model) = TinyLlamaWithGpt2Tokenizer();
        using var _m = model;
        var importRoot = TempDir();
        await using var app = await AlignHubProcess.StartAsync(TempDir(), env: new Dictionary<string, string> { ["AlignHub__ModelImportRoots"] = importRoot });

        // Upload an archive of the folder.
        var (status, body) = await UploadModel(app, TarGz(folder, "tiny-llama"), "me/tiny-llama");
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        Assert.Equal("model", body.GetProperty("object").GetString());
        Assert.Equal("llama", body.GetProperty("architecture").GetString());
        Assert.Equal("gpt2-bpe", body.GetProperty("tokenizer").GetString());
        Assert.True(body.GetProperty("has_weights").GetBoolean());
        Assert.Equal(model.parameters().Sum(p => p.numel()), body.GetProperty("parameters").GetInt64());
        var list = await app.GetJson("/v1/models");
        Assert.Equal("list", list.GetProperty("object").GetString());
        Assert.Contains(list.GetProperty("data").EnumerateArray(), m => m.GetProperty("id").GetString() == "me/tiny-llama");
        Assert.Equal("me/tiny-llama", (await app.GetJson("/v1/models/me/tiny-llama")).GetProperty("id").GetString());
        var (dup, dupBody) = await UploadModel(app, TarGz(folder, "x"), "me/tiny-llama");
        Assert.Equal(HttpStatusCode.Conflict, dup);
        Assert.Contains("already exists", dupBody.GetProperty("error").GetProperty("message").GetString());

        // Download it back as an HF folder: the weights load and give the same logits, bit for bit.
        var download = await app.Http.GetAsync("/v1/models/me/tiny-llama/content");
        Assert.Equal(HttpStatusCode.OK, download.StatusCode);
        var unpacked = TempDir();
        await using (var gz = new GZipStream(await download.Content.ReadAsStreamAsync(), CompressionMode.Decompress))
            await TarFile.ExtractToDirectoryAsync(gz, unpacked, overwriteFiles: false);
        var root = Directory.GetDirectories(unpacked).Single();
        Assert.Equal(["config.json", "merges.txt", "model.safetensors", "vocab.json"], Directory.GetFiles(root).Select(f => Path.GetFileName(f)).Order().ToArray());
        using (var back = HfWeights.LoadModel(root)) { back.eval(); Assert.Equal(Logits(model), Logits(back)); }

        // Generate two completions per prompt into a new file.
        var prompts = string.Join("\n", new[] { "Hello world", "The weather today", "Once upon a time" }.Select(p => JsonSerializer.Serialize(new { prompt = p })));
        var (upStatus, promptFile) = await app.Upload(prompts, "prompts.jsonl");
        Assert.True(upStatus == HttpStatusCode.OK, promptFile.ToString());
        Assert.Equal("prompts", promptFile.GetProperty("format").GetString());
        var (genStatus, gen) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = "me/tiny-llama", training_file = promptFile.GetProperty("id").GetString(), seed = 3,
            method = new { type = "generate", generate = new { hyperparameters = new { n = 2, max_new_tokens = 8, temperature = 0.9, batch_size = 4 } } },
        });
        Assert.True(genStatus == HttpStatusCode.OK, gen.ToString());
        var genJob = await app.WaitForStatus(gen.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(2));
        Assert.Equal("generate", genJob.GetProperty("method").GetProperty("type").GetString());
        Assert.Equal(2, genJob.GetProperty("total_steps").GetInt32()); // 6 sequences in batches of 4
        var resultFile = genJob.GetProperty("result_files")[0].GetString()!;
        var meta = await app.GetJson($"/v1/files/{resultFile}");
        Assert.Equal("fine-tune-results", meta.GetProperty("purpose").GetString());
        Assert.Equal(3, meta.GetProperty("line_count").GetInt32());
        var rows = (await app.Http.GetStringAsync($"/v1/files/{resultFile}/content")).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Equal("Hello world", rows[0].GetProperty("prompt").GetString());
        Assert.All(rows, r =>
        {
            Assert.Equal(2, r.GetProperty("completions").GetArrayLength());
            Assert.All(r.GetProperty("completions").EnumerateArray(), c =>
            {
                Assert.InRange(c.GetProperty("tokens").GetInt32(), 0, 8);
                Assert.True(c.GetProperty("logprob").GetDouble() <= 0);
            });
        });

        // Fine-tune it (GPT-2 BPE tokens, Llama architecture); the checkpoint downloads as an HF folder with the tokenizer.
        var (sftUp, sftFile) = await app.Upload(TestData.Jsonl(16));
        Assert.Equal(HttpStatusCode.OK, sftUp);
        var jobId = await app.CreateSftJob(sftFile.GetProperty("id").GetString()!, new { max_steps = 3, batch_size = 4, save_steps = 3 }, model: "me/tiny-llama");
        var job = await app.WaitForStatus(jobId, "succeeded", TimeSpan.FromMinutes(2));
        Assert.StartsWith("ft:me/tiny-llama:", job.GetProperty("fine_tuned_model").GetString());
        var ckptObject = (await app.GetJson($"/v1/fine_tuning/jobs/{jobId}/checkpoints")).GetProperty("data")[0];
        var ckpt = ckptObject.GetProperty("id").GetString();
        var ckptDownload = await app.Http.GetAsync($"/v1/fine_tuning/jobs/{jobId}/checkpoints/{ckpt}/content");
        Assert.Equal(HttpStatusCode.OK, ckptDownload.StatusCode);
        var names = new List<string>();
        await using (var gz = new GZipStream(await ckptDownload.Content.ReadAsStreamAsync(), CompressionMode.Decompress))
        {
            using var tar = new TarReader(gz);
            while (tar.GetNextEntry() is { } e) names.Add(Path.GetFileName(e.Name));
        }
        Assert.Equal(["config.json", "merges.txt", "model.safetensors", "vocab.json"], names.Order().ToArray());

        // A checkpoint's model name (OpenAI's ft:...:ckpt-step-N) works wherever a model does: retrieve, generate.
        var ckptModel = ckptObject.GetProperty("fine_tuned_model_checkpoint").GetString()!;
        Assert.EndsWith(":ckpt-step-3", ckptModel);
        Assert.Equal("llama", (await app.GetJson($"/v1/models/{ckptModel}")).GetProperty("architecture").GetString());
        var (g2Status, g2) = await app.PostJson("/v1/fine_tuning/jobs", new
        {
            model = ckptModel, training_file = promptFile.GetProperty("id").GetString(), seed = 4,
            method = new { type = "generate", generate = new { hyperparameters = new { n = 1, max_new_tokens = 4, temperature = 0 } } },
        });
        Assert.True(g2Status == HttpStatusCode.OK, g2.ToString());
        await app.WaitForStatus(g2.GetProperty("id").GetString()!, "succeeded", TimeSpan.FromMinutes(1));

        // A server-side folder under the allowed root registers in place; one outside does not.
        var inRoot = Path.Combine(importRoot, "copy");
        Directory.CreateDirectory(inRoot);
        foreach (var f in Directory.GetFiles(folder)) File.Copy(f, Path.Combine(inRoot, Path.GetFileName(f)));
        var (pathOk, pathBody) = await app.PostJson("/v1/models", new { id = "me/from-path", path = inRoot });
        Assert.True(pathOk == HttpStatusCode.OK, pathBody.ToString());
        var (pathBad, pathBadBody) = await app.PostJson("/v1/models", new { id = "me/outside", path = folder });
        Assert.Equal(HttpStatusCode.BadRequest, pathBad);
        Assert.Equal("path", pathBadBody.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task Bad_models_are_refused_with_a_reason_and_leave_nothing_behind()
    {
        var (folder, model) = TinyLlamaWithGpt2Tokenizer();
        model.Dispose();
        var data = TempDir();
        await using var app = await AlignHubProcess.StartAsync(data);
        async Task<string> Refused(byte[] archive, string id, HttpStatusCode expected = HttpStatusCode.BadRequest)
        {
            var (status, body) = await UploadModel(app, archive, id);
            Assert.True(status == expected, body.ToString());
            return body.GetProperty("error").GetProperty("message").GetString()!;
        }

        // Path traversal inside the archive.
        Assert.Contains("outside the archive", await Refused(TarGz(folder, "m", [("../../evil.txt", "x"u8.ToArray())]), "me/evil"));
        Assert.False(File.Exists(Path.Combine(data, "evil.txt")));
        // Weights that do not match the config.
        var wrong = Path.Combine(TempDir(), "wrong");
        Directory.CreateDirectory(wrong);
        foreach (var f in Directory.GetFiles(folder)) File.Copy(f, Path.Combine(wrong, Path.GetFileName(f)));
        var cfg = JsonDocument.Parse(File.ReadAllText(Path.Combine(wrong, "config.json"))).RootElement;
        var bigger = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(cfg.GetRawText())!;
        bigger["num_hidden_layers"] = JsonDocument.Parse("3").RootElement;
        File.WriteAllText(Path.Combine(wrong, "config.json"), JsonSerializer.Serialize(bigger));
        Assert.Contains("parameters", await Refused(TarGz(wrong, "w"), "me/wrong"));
        // Not an archive; no config.json; a bad id; an unsupported architecture.
        Assert.Contains("not a readable", await Refused("hello, not an archive"u8.ToArray(), "me/junk"));
        File.Delete(Path.Combine(wrong, "config.json"));
        Assert.Contains("no config.json", await Refused(TarGz(wrong, "w"), "me/noconfig"));
        Assert.Contains("reserved", await Refused(TarGz(folder, "m"), "alignhub/mine"));
        var (bert, bertBody) = await app.PostJson("/v1/models", new { id = "me/bert", config = new { model_type = "bert" } });
        Assert.Equal(HttpStatusCode.BadRequest, bert);
        Assert.Contains("model_type \"bert\"", bertBody.GetProperty("error").GetProperty("message").GetString());
        var (off, offBody) = await app.PostJson("/v1/models", new { id = "me/p", path = folder });
        Assert.Equal(HttpStatusCode.BadRequest, off);
        Assert.Contains("ModelImportRoots", offBody.GetProperty("error").GetProperty("message").GetString());

        // Nothing was registered and no model folder is left over.
        var ids = (await app.GetJson("/v1/models")).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToList();
        Assert.All(ids, id => Assert.StartsWith("alignhub/", id));
        Assert.Empty(Directory.Exists(Path.Combine(data, "models")) ? Directory.GetFileSystemEntries(Path.Combine(data, "models")) : []);

        // A model made from a config only has no weights to download, trains, and its result downloads.
        var (made, madeBody) = await app.PostJson("/v1/models", new
        {
            id = "me/random-llama",
            config = new { model_type = "llama", vocab_size = 259, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1, num_attention_heads = 4, num_key_value_heads = 1, max_position_embeddings = 64 },
        });
        Assert.True(made == HttpStatusCode.OK, madeBody.ToString());
        Assert.False(madeBody.GetProperty("has_weights").GetBoolean());
        Assert.Equal("byte", madeBody.GetProperty("tokenizer").GetString());
        Assert.Equal(HttpStatusCode.Conflict, (await app.Http.GetAsync("/v1/models/me/random-llama/content")).StatusCode);
        var (up, file) = await app.Upload(TestData.Jsonl(8));
        var jobId = await app.CreateSftJob(file.GetProperty("id").GetString()!, new { max_steps = 2, batch_size = 4 }, model: "me/random-llama");
        var job = await app.WaitForStatus(jobId, "succeeded", TimeSpan.FromMinutes(1));
        var ft = job.GetProperty("fine_tuned_model").GetString()!;
        Assert.Equal(HttpStatusCode.OK, (await app.Http.GetAsync($"/v1/models/{ft}/content")).StatusCode);
        var del = await app.Http.DeleteAsync("/v1/models/me/random-llama");
        Assert.Equal(HttpStatusCode.OK, del.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await app.Http.GetAsync("/v1/models/me/random-llama")).StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, (await app.Http.DeleteAsync("/v1/models/alignhub/tiny")).StatusCode);
    }
}
