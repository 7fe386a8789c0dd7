using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Raft.Samples.KeyValueStore.E2E.Tests;

/// <summary>One node of the sample as an operating-system process, restartable from its data directory.</summary>
internal sealed class NodeProcess : IDisposable
{
    private readonly string _executable;
    private readonly string[] _prefixArgs;
    private readonly Lock _logLock = new();
    private readonly StreamWriter _log;
    private Process? _process;
    private bool _stopped;

    public NodeProcess(int id, string executable, string[] prefixArgs, int raftPort, int httpPort, string peers, string httpPeers, string dataDir, string logFile, string secretFile)
    {
        SecretFile = secretFile;
        Id = id;
        _executable = executable;
        _prefixArgs = prefixArgs;
        RaftPort = raftPort;
        HttpPort = httpPort;
        Peers = peers;
        HttpPeers = httpPeers;
        DataDir = dataDir;
        LogFile = logFile;
        _log = new StreamWriter(logFile, append: true) { AutoFlush = true };
    }

    public int Id { get; }

    public int RaftPort { get; }

    public int HttpPort { get; }

    public string Peers { get; }

    public string HttpPeers { get; }

    public string DataDir { get; }

    public string LogFile { get; }

    /// <summary>Arguments added after the standard ones on every start (e.g. --join).</summary>
    public IReadOnlyList<string> ExtraArgs { get; init; } = [];

    /// <summary>The cluster secret file every node is started with (--secret-file).</summary>
    public string SecretFile { get; }

    public Uri BaseUri => new($"http://127.0.0.1:{HttpPort}/");

    /// <summary>How many times the process exited while the test did not expect it to.</summary>
    public int UnexpectedExits { get; private set; }

    /// <summary>Whether the process is running (and was not stopped on purpose).</summary>
    public bool IsRunning => _process is { HasExited: false };

    public bool IsSuspended => _stopped;

    /// <summary>After <see cref="Dispose"/>: whether the last process was still alive.</summary>
    public bool LeftRunning { get; private set; }

    public int? Pid => _process?.Id;

    // Per started process: whether its exit is expected (the Exited event of a killed process may run after a restart).
    private StrongBox<bool> _expectExit = new(false);

    public void Start()
    {
        if (IsRunning)
            throw new InvalidOperationException($"node {Id} is already running");
        var psi = new ProcessStartInfo(_executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = false,
            UseShellExecute = false,
        };
        foreach (var a in _prefixArgs)
            psi.ArgumentList.Add(a);
        foreach (var a in new[]
        {
            "--id", Id.ToString(CultureInfo.InvariantCulture),
            "--listen", $"127.0.0.1:{RaftPort}",
            "--http", $"127.0.0.1:{HttpPort}",
            "--peers", Peers,
            "--http-peers", HttpPeers,
            "--data", DataDir,
            "--secret-file", SecretFile,
        })
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var a in ExtraArgs)
            psi.ArgumentList.Add(a);
        psi.Environment.Remove(SecretVariable); // the file is the one source of the secret
        psi.Environment["DOTNET_gcServer"] = "0";
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
        p.OutputDataReceived += (_, e) => Log(e.Data);
        p.ErrorDataReceived += (_, e) => Log(e.Data);
        var expectExit = new StrongBox<bool>(false);
        p.Exited += (_, _) =>
        {
            if (!expectExit.Value)
            {
                UnexpectedExits++;
                Log($"### E2E: node {Id} exited unexpectedly with code {SafeExitCode(p)}");
            }
        };
        _expectExit = expectExit;
        _stopped = false;
        Log($"### E2E: starting node {Id}");
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
    }

    /// <summary>SIGKILL, and waits until the process is gone.</summary>
    public void Kill9()
    {
        var p = _process ?? throw new InvalidOperationException("not started");
        _expectExit.Value = true;
        Log($"### E2E: SIGKILL node {Id}");
        if (!p.HasExited)
        {
            p.Kill(entireProcessTree: false);
            p.WaitForExit(10_000);
        }
        _stopped = false;
    }

    /// <summary>SIGTERM; waits up to <paramref name="timeout"/> for a clean exit, then SIGKILL. Returns whether it exited cleanly.</summary>
    public bool Terminate(TimeSpan timeout, out int? exitCode)
    {
        var p = _process ?? throw new InvalidOperationException("not started");
        exitCode = null;
        if (p.HasExited)
            return true;
        _expectExit.Value = true;
        if (_stopped)
            Signal("CONT");
        Log($"### E2E: SIGTERM node {Id}");
        Signal("TERM");
        if (p.WaitForExit((int)timeout.TotalMilliseconds))
        {
            p.WaitForExit();
            exitCode = SafeExitCode(p);
            Log($"### E2E: node {Id} exited with code {exitCode} after SIGTERM");
            return true;
        }
        Log($"### E2E: node {Id} did not exit within {timeout} of SIGTERM: SIGKILL");
        Kill9();
        return false;
    }

    public void Suspend()
    {
        Log($"### E2E: SIGSTOP node {Id}");
        Signal("STOP");
        _stopped = true;
    }

    public void Resume()
    {
        if (!_stopped)
            return;
        Signal("CONT");
        _stopped = false;
        Log($"### E2E: SIGCONT node {Id}");
    }

    public int? ExitCode => _process is { HasExited: true } p ? SafeExitCode(p) : null;

    public string Tail(int lines)
    {
        lock (_logLock)
        {
            try
            {
                using var fs = new FileStream(LogFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                using var reader = new StreamReader(fs);
                var all = reader.ReadToEnd().Split('\n');
                return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
            }
            catch (IOException e)
            {
                return e.Message;
            }
        }
    }

    private void Signal(string signal)
    {
        var pid = _process?.Id ?? throw new InvalidOperationException("not started");
        if (_process.HasExited)
            return;
        using var kill = Process.Start(new ProcessStartInfo("kill")
        {
            ArgumentList = { "-" + signal, pid.ToString(CultureInfo.InvariantCulture) },
            UseShellExecute = false,
            RedirectStandardError = true,
        })!;
        kill.WaitForExit(5_000);
    }

    private void Log(string? line)
    {
        if (line is null)
            return;
        lock (_logLock)
        {
            _log.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {line}");
        }
    }

    private static int SafeExitCode(Process p)
    {
        try
        {
            return p.ExitCode;
        }
        catch (InvalidOperationException)
        {
            return int.MinValue;
        }
    }

    public void Dispose()
    {
        var p = _process;
        if (p is not null)
        {
            _expectExit.Value = true;
            try
            {
                if (!p.HasExited)
                {
                    if (_stopped)
                        Signal("CONT");
                    p.Kill(entireProcessTree: true);
                    p.WaitForExit(10_000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            LeftRunning = !p.HasExited;
            p.Dispose();
            _process = null;
        }
        lock (_logLock)
            _log.Dispose();
    }

    /// <summary>The sample's environment variable for the secret (it refuses a file and the variable together).</summary>
    public const string SecretVariable = "RAFT_CLUSTER_SECRET";

    /// <summary>Writes a new random cluster secret (32 bytes, base64), readable by this user only, to <paramref name="path"/>.</summary>
    public static string WriteSecretFile(string path)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var file = new StreamWriter(path, options))
            file.WriteLine(Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        return path;
    }

    /// <summary>Free loopback TCP ports, all distinct.</summary>
    public static int[] FreePorts(int count)
    {
        var listeners = new List<TcpListener>();
        try
        {
            for (var i = 0; i < count; i++)
            {
                var l = new TcpListener(IPAddress.Loopback, 0);
                l.Start();
                listeners.Add(l);
            }
            return [.. listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port)];
        }
        finally
        {
            foreach (var l in listeners)
                l.Stop();
        }
    }
}
