using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using Xunit;

namespace AlignHub.Tests;

/// <summary>A real AlignHub host process (the built AlignHub.Api), started with environment settings as a user would.</summary>
public sealed class AlignHubProcess : IAsyncDisposable
{
    public static string RepoRoot { get; } = FindRepoRoot();
    /// <summary>The admin key every test process is configured with (<c>AlignHub__AdminKey</c>); <see cref="Http"/> sends it.</summary>
    public const string AdminKey = "ahk-test-admin-0123456789";
    public int Port { get; }
    /// <summary>The current process's id (a worker's lease names it: host:pid:...).</summary>
    public int Pid => process.Id;
    public string LogPath { get; }
    public HttpClient Http { get; }
    Process process;
    readonly ProcessStartInfo start;

    AlignHubProcess(ProcessStartInfo start, int port, string logPath)
    {
        this.start = start;
        Port = port;
        LogPath = logPath;
        Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
        Http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminKey);
        process = Launch();
    }

    public static async Task<AlignHubProcess> StartAsync(string dataDir, string roles = "api,web,worker", string? postgres = null,
        int leaseSeconds = 60, bool waitReady = true, IReadOnlyDictionary<string, string>? env = null)
    {
        int port = FreePort();
        var config = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name; // bin/<Configuration>/net10.0
        var dll = Path.Combine(RepoRoot, "Api", "AlignHub.Api", "bin", config, "net10.0", "AlignHub.Api.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException("build the solution first (dotnet test AlignHub.sln builds it)", dll);
        var psi = new ProcessStartInfo("dotnet", [dll])
        {
            WorkingDirectory = Path.GetDirectoryName(dll)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.Environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Development";
        psi.Environment["AlignHub__DataDir"] = dataDir;
        psi.Environment["AlignHub__Roles"] = roles;
        psi.Environment["AlignHub__LeaseSeconds"] = leaseSeconds.ToString();
        psi.Environment["AlignHub__TorchThreads"] = "1";
        psi.Environment["ConnectionStrings__AlignHub"] = postgres ?? "";
        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        psi.Environment["AlignHub__AdminKey"] = AdminKey;
        psi.Environment["AlignHub__RateLimitPerMinute"] = "0";
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        Directory.CreateDirectory(dataDir);
        var log = Path.Combine(dataDir, $"process-{roles.Replace(',', '-')}-{port}.log");
        var p = new AlignHubProcess(psi, port, log);
        if (waitReady) await p.WaitReadyAsync();
        return p;
    }

    Process Launch()
    {
        var p = Process.Start(start)!;
        var writer = new StreamWriter(LogPath, append: true) { AutoFlush = true };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    public async Task WaitReadyAsync()
    {
        var until = DateTime.UtcNow.AddSeconds(90);
        while (DateTime.UtcNow < until)
        {
            if (process.HasExited) throw new Xunit.Sdk.XunitException($"AlignHub exited with {process.ExitCode}:\n{Log()}");
            try
            {
                if ((await Http.GetAsync("/healthz")).IsSuccessStatusCode) return;
            }
            catch (HttpRequestException) { }
            await Task.Delay(250);
        }
        throw new Xunit.Sdk.XunitException("AlignHub did not become ready:\n" + Log());
    }

    /// <summary>SIGTERM, as a container runtime or systemd stops a service; returns the seconds until the process exited.</summary>
    public async Task<double> TerminateAsync(TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString()])!) await kill.WaitForExitAsync();
        using var cts = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(cts.Token);
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>SIGKILL: no shutdown hook runs.</summary>
    public void Kill()
    {
        process.Kill(entireProcessTree: true);
        process.WaitForExit();
    }

    /// <summary>Starts the same command again (same port, data folder and settings).</summary>
    public async Task RestartAsync()
    {
        process = Launch();
        await WaitReadyAsync();
    }

    public string Log() => File.Exists(LogPath) ? string.Join('\n', File.ReadLines(LogPath).TakeLast(60)) : "";

    readonly Dictionary<(string, string), HttpClient> clients = [];

    /// <summary>A client with its own new key of <paramref name="role"/> named <paramref name="name"/> (one per pair, reused).</summary>
    public async Task<HttpClient> ClientAs(string role, string name)
    {
        lock (clients) if (clients.TryGetValue((role, name), out var c)) return c;
        var key = await CreateKey(role, name);
        var http = new HttpClient { BaseAddress = Http.BaseAddress, Timeout = Http.Timeout };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        lock (clients) return clients.TryAdd((role, name), http) ? http : clients[(role, name)];
    }

    /// <summary>Creates a key through the admin API and returns its secret.</summary>
    public async Task<string> CreateKey(string role, string name)
    {
        var (status, body) = await PostJson("/v1/api_keys", new { name, role });
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        return body.GetProperty("key").GetString()!;
    }

    public async Task<JsonElement> GetJson(string path)
    {
        var r = await Http.GetAsync(path);
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"GET {path}: {(int)r.StatusCode} {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    public async Task<(HttpStatusCode Status, JsonElement Body)> PostJson(string path, object body)
    {
        var r = await Http.PostAsJsonAsync(path, body);
        var text = await r.Content.ReadAsStringAsync();
        return (r.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    public async Task<(HttpStatusCode Status, JsonElement Body)> Upload(string content, string filename = "train.jsonl", string purpose = "fine-tune")
    {
        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(content)), "file", filename },
            { new StringContent(purpose), "purpose" },
        };
        // Large bodies ask first (Expect: 100-continue, as curl does): a body over the server's limit is refused before
        // it is sent, instead of the server closing the connection while the client still writes (a broken pipe).
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/files") { Content = form };
        if (content.Length > 1 << 20) request.Headers.ExpectContinue = true;
        var r = await Http.SendAsync(request);
        return (r.StatusCode, JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    public async Task<string> CreateSftJob(string fileId, object hyperparameters, string model = "alignhub/tiny", int seed = 1)
    {
        var (status, body) = await PostJson("/v1/fine_tuning/jobs", new
        {
            model, training_file = fileId, seed,
            method = new { type = "supervised", supervised = new { hyperparameters } },
        });
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        return body.GetProperty("id").GetString()!;
    }

    public async Task<JsonElement> WaitForJob(string jobId, Func<JsonElement, bool> done, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        JsonElement job = default;
        while (DateTime.UtcNow < until)
        {
            job = await GetJson($"/v1/fine_tuning/jobs/{jobId}");
            if (done(job)) return job;
            await Task.Delay(250);
        }
        throw new Xunit.Sdk.XunitException($"job {jobId} timed out: {job}\n{Log()}");
    }

    /// <summary>Waits for the status (or for a failure, which ends the wait early) and asserts the status reached.</summary>
    public async Task<JsonElement> WaitForStatus(string jobId, string status, TimeSpan timeout)
    {
        var job = await WaitForJob(jobId, j => j.GetProperty("status").GetString() == status || (status != "failed" && j.GetProperty("status").GetString() == "failed"), timeout);
        Assert.True(job.GetProperty("status").GetString() == status, $"job {jobId} ended {job.GetProperty("status").GetString()}, expected {status}: {job}");
        return job;
    }

    public async ValueTask DisposeAsync()
    {
        if (!process.HasExited)
        {
            try { process.Kill(entireProcessTree: true); await process.WaitForExitAsync(); } catch (InvalidOperationException) { }
        }
        Http.Dispose();
        foreach (var c in clients.Values) c.Dispose();
    }

    static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    static string FindRepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "AlignHub.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("AlignHub.sln not found above " + AppContext.BaseDirectory);
    }
}
