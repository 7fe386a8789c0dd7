using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>
/// Three (or <c>nodeCount</c>) sample nodes as separate processes on loopback: free ports, one data
/// folder and one log file per node under <see cref="Root"/>.
/// </summary>
internal sealed class LocalCluster : IDisposable
{
    private readonly List<NodeProcess> _nodes;

    private LocalCluster(string root, List<NodeProcess> nodes)
    {
        Root = root;
        _nodes = nodes;
    }

    /// <summary>The folder holding every node's data folder and log file.</summary>
    public string Root { get; }

    public IReadOnlyList<NodeProcess> Nodes => _nodes;

    public IReadOnlyList<Uri> Urls => [.. _nodes.Select(n => n.Url)];

    /// <summary>
    /// Starts the nodes of <paramref name="kind"/>: the sample as <c>host dll --id N --listen ... --http ... --peers ...
    /// --http-peers ... --data ... --secret-file ...</c>; the DotNext service with the same options but the secret; the
    /// floor with <c>--id N --http ...</c> only.
    /// </summary>
    public static LocalCluster Start(ServiceKind kind, string host, string sampleDll, int nodeCount, string root, string? forward = null)
    {
        Directory.CreateDirectory(root);
        var ports = FreePorts(2 * nodeCount);
        var ids = Enumerable.Range(1, nodeCount).ToArray();
        var peers = string.Join(',', ids.Select(i => string.Create(CultureInfo.InvariantCulture, $"{i}=127.0.0.1:{ports[i - 1]}")));
        var httpPeers = string.Join(',', ids.Select(i => string.Create(CultureInfo.InvariantCulture, $"{i}=127.0.0.1:{ports[nodeCount + i - 1]}")));
        // The nodes authenticate each other on their Raft ports with a secret made for this run.
        var secretFile = WriteSecretFile(Path.Combine(root, "cluster.secret"));
        var nodes = new List<NodeProcess>();
        var cluster = new LocalCluster(root, nodes);
        try
        {
            foreach (var id in ids)
            {
                var node = new NodeProcess(id, ports[nodeCount + id - 1], Path.Combine(root, $"node{id}.log"));
                nodes.Add(node);
                var http = string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{ports[nodeCount + id - 1]}");
                if (kind == ServiceKind.Floor)
                {
                    node.Start(host, [sampleDll, "--id", id.ToString(CultureInfo.InvariantCulture), "--http", http]);
                    continue;
                }
                // Ours and the DotNext-based service share this command line; ours also takes the
                // cluster secret and the forwarding mode.
                string[] extra = kind == ServiceKind.DotNext
                    ? []
                    : ["--secret-file", secretFile, .. (forward is null ? Array.Empty<string>() : ["--forward", forward])];
                node.Start(host,
                [
                    sampleDll,
                    "--id", id.ToString(CultureInfo.InvariantCulture),
                    "--listen", string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{ports[id - 1]}"),
                    "--http", http,
                    "--peers", peers,
                    "--http-peers", httpPeers,
                    "--data", Path.Combine(root, $"node{id}"),
                    .. extra,
                ]);
            }
            return cluster;
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    /// <summary>Writes a new random cluster secret (32 bytes, base64), readable by this user only; replaces an old one (a kept data folder).</summary>
    private static string WriteSecretFile(string path)
    {
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var file = new StreamWriter(path, options))
            file.WriteLine(Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)));
        return path;
    }

    /// <summary>The nodes that exited although nobody asked them to.</summary>
    public IReadOnlyList<NodeProcess> Exited => [.. _nodes.Where(n => n.ExitedUnexpectedly)];

    /// <summary>The last <paramref name="lines"/> lines of every node's log (or of <paramref name="only"/>'s).</summary>
    public string Tails(int lines, IEnumerable<NodeProcess>? only = null) =>
        string.Join(Environment.NewLine, (only ?? _nodes).Select(n =>
            $"----- node {n.Id} ({n.LogFile}), last {lines} lines -----{Environment.NewLine}{n.Tail(lines)}"));

    /// <summary>Sends SIGTERM to every node, then waits up to <paramref name="timeout"/> for each; kills the ones still running. Returns one line per node.</summary>
    public IReadOnlyList<string> Stop(TimeSpan timeout)
    {
        foreach (var node in _nodes)
            node.RequestStop();
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        var lines = new List<string>();
        foreach (var node in _nodes)
        {
            var left = TimeSpan.FromSeconds(Math.Max(0, (deadline - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency));
            lines.Add(node.WaitForStop(left));
        }
        return lines;
    }

    public void Dispose()
    {
        foreach (var node in _nodes)
            node.Dispose();
    }

    /// <summary>Distinct free loopback TCP ports (all held open at once while choosing, so none repeats).</summary>
    private static int[] FreePorts(int count)
    {
        var listeners = new List<TcpListener>();
        try
        {
            for (var i = 0; i < count; i++)
            {
                var listener = new TcpListener(IPAddress.Loopback, 0);
                listener.Start();
                listeners.Add(listener);
            }
            return [.. listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port)];
        }
        finally
        {
            foreach (var listener in listeners)
                listener.Stop();
        }
    }
}

/// <summary>One sample node as an operating-system process, its output appended to a log file.</summary>
internal sealed class NodeProcess : IDisposable
{
    private readonly Lock _logGate = new();
    private readonly StreamWriter _log;
    private Process? _process;
    private volatile bool _stopRequested;
    private volatile bool _exitedUnexpectedly;

    public NodeProcess(int id, int httpPort, string logFile)
    {
        Id = id;
        Url = new Uri(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{httpPort}/"));
        LogFile = logFile;
        _log = new StreamWriter(new FileStream(logFile, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
    }

    public int Id { get; }

    public Uri Url { get; }

    public string LogFile { get; }

    /// <summary>Whether the process exited before <see cref="RequestStop"/>.</summary>
    public bool ExitedUnexpectedly => _exitedUnexpectedly;

    /// <summary>The CPU time the process has used so far; null when it is not running.</summary>
    public TimeSpan? CpuTime
    {
        get
        {
            var process = _process;
            try
            {
                if (process is null || process.HasExited)
                    return null;
                process.Refresh();
                return process.TotalProcessorTime;
            }
            catch (InvalidOperationException)
            {
                return null;
            }
        }
    }

    /// <summary>
    /// The CPU time (user + system) the process has used so far, from <c>/proc/PID/stat</c> (utime + stime, in
    /// USER_HZ ticks of 10 ms) on Linux, else <see cref="Process.TotalProcessorTime"/>; null when it is not running.
    /// </summary>
    public TimeSpan? ProcStatCpuTime
    {
        get
        {
            var process = _process;
            if (process is null || !OperatingSystem.IsLinux())
                return CpuTime;
            return CpuSample.ProcStatCpuTime(process.Id) ?? CpuTime;
        }
    }

    public string ExitDescription => _process is { HasExited: true } p ? $"exited with code {p.ExitCode}" : "running";

    public void Start(string executable, IReadOnlyList<string> arguments)
    {
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        start.Environment.Remove("RAFT_CLUSTER_SECRET"); // the sample refuses the variable and --secret-file together
        start.Environment["DOTNET_gcServer"] = "0";
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => Log(e.Data);
        process.ErrorDataReceived += (_, e) => Log(e.Data);
        process.Exited += (_, _) =>
        {
            if (!_stopRequested)
            {
                _exitedUnexpectedly = true;
                Log($"### load generator: node {Id} exited unexpectedly ({ExitDescription})");
            }
        };
        Log($"### load generator: starting node {Id}: {executable} {string.Join(' ', arguments)}");
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
    }

    /// <summary>Asks the node to stop: SIGTERM (the sample stops HTTP, then Raft, then its stores). On Windows, kills it.</summary>
    public void RequestStop()
    {
        _stopRequested = true;
        var process = _process;
        if (process is null || process.HasExited)
            return;
        Log($"### load generator: SIGTERM node {Id}");
        if (OperatingSystem.IsWindows())
        {
            process.Kill();
            return;
        }
        using var kill = Process.Start(new ProcessStartInfo("kill")
        {
            ArgumentList = { "-TERM", process.Id.ToString(CultureInfo.InvariantCulture) },
            UseShellExecute = false,
        });
        kill?.WaitForExit(5_000);
    }

    /// <summary>Waits up to <paramref name="timeout"/> for the exit after <see cref="RequestStop"/>, then kills the process. Returns what happened.</summary>
    public string WaitForStop(TimeSpan timeout)
    {
        var process = _process;
        if (process is null)
            return $"node {Id}: not started";
        if (process.WaitForExit(timeout))
        {
            process.WaitForExit(); // drains the redirected output
            return $"node {Id}: {ExitDescription}";
        }
        Log($"### load generator: node {Id} still running {timeout.TotalSeconds:0.#} s after SIGTERM: killing it");
        process.Kill(entireProcessTree: true);
        process.WaitForExit(10_000);
        return $"node {Id}: did not stop within {timeout.TotalSeconds:0.#} s of SIGTERM, killed";
    }

    /// <summary>The last <paramref name="lines"/> lines of the node's log file.</summary>
    public string Tail(int lines)
    {
        lock (_logGate)
        {
            try
            {
                using var stream = new FileStream(LogFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                using var reader = new StreamReader(stream);
                var all = reader.ReadToEnd().TrimEnd('\n').Split('\n');
                return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
            }
            catch (IOException ex)
            {
                return ex.Message;
            }
        }
    }

    private void Log(string? line)
    {
        if (line is null)
            return;
        lock (_logGate)
        {
            try
            {
                _log.WriteLine(line);
            }
            catch (ObjectDisposedException)
            {
                // Output that arrives after Dispose is dropped.
            }
        }
    }

    /// <summary>Kills the process if it still runs (a fallback: <see cref="LocalCluster.Stop"/> stops it cleanly first) and closes the log.</summary>
    public void Dispose()
    {
        var process = _process;
        if (process is not null)
        {
            _stopRequested = true;
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    process.WaitForExit(10_000);
                }
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
            process.Dispose();
            _process = null;
        }
        lock (_logGate)
            _log.Dispose();
    }
}
