using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Raft.Hosting.Tests;

/// <summary>A state machine that records what it applied; it can hold applies back and fail on a command.</summary>
public sealed class RecordingStateMachine : IStateMachine
{
    private readonly ConcurrentQueue<string> _applied = new();

    /// <summary>While unset, applies wait (to build an apply lag).</summary>
    public ManualResetEventSlim Gate { get; } = new(initialState: true);

    public IReadOnlyCollection<string> Applied => _applied;

    public async ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
    {
        var text = System.Text.Encoding.UTF8.GetString(entry.Data.Span);
        while (!Gate.IsSet)
            await Task.Delay(5, cancellationToken);
        if (text == "poison")
            throw new InvalidOperationException("the state machine cannot apply 'poison'");
        _applied.Enqueue(text);
        return _applied.Count;
    }

    public ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
}

/// <summary>Keeps every log entry written through the host's logging.</summary>
public sealed class ListLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<(string Category, LogLevel Level, string Message, Exception? Exception)> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new ListLogger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class ListLogger(ListLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            provider.Entries.Enqueue((category, logLevel, formatter(state, exception), exception));
    }
}

public static class TestHosts
{
    /// <summary>Free loopback ports (bound and released; good enough on a test machine).</summary>
    public static int[] FreePorts(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToArray();
        foreach (var l in listeners)
            l.Start();
        var ports = listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
        foreach (var l in listeners)
            l.Stop();
        return ports;
    }

    public static string TempDirectory()
    {
        var path = Path.Combine(Path.GetTempPath(), "raft-hosting-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>Settings for one member of a loopback cluster, as configuration key/values under "Raft".</summary>
    public static Dictionary<string, string?> Settings(int nodeId, int[] ports, string dataRoot, TimeSpan electionMin, TimeSpan electionMax, TimeSpan heartbeat)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Raft:NodeId"] = nodeId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Raft:ClusterId"] = "hosting-tests",
            ["Raft:ClusterSecret"] = Convert.ToBase64String(new byte[32]),
            ["Raft:DataDirectory"] = Path.Combine(dataRoot, $"node-{nodeId}"),
            ["Raft:ForwardToLeader"] = "true",
            ["Raft:HeartbeatInterval"] = heartbeat.ToString(),
            ["Raft:ElectionTimeoutMin"] = electionMin.ToString(),
            ["Raft:ElectionTimeoutMax"] = electionMax.ToString(),
        };
        for (int i = 0; i < ports.Length; i++)
            settings[$"Raft:Members:{i + 1}"] = $"127.0.0.1:{ports[i]}";
        return settings;
    }

    public static IHost Build(Dictionary<string, string?> settings, RecordingStateMachine? stateMachine = null, ListLoggerProvider? logs = null, long maxApplyLag = RaftHealthCheck.DefaultMaxApplyLag)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        if (logs is not null)
            builder.Logging.AddProvider(logs);
        builder.Services.AddSingleton(stateMachine ?? new RecordingStateMachine());
        builder.Services.AddRaftNode<RecordingStateMachine>(builder.Configuration.GetSection("Raft"));
        builder.Services.AddHealthChecks().AddRaftHealthCheck(maxApplyLag: maxApplyLag);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        return builder.Build();
    }

    public static RaftNode Node(this IHost host) => host.Services.GetRequiredService<RaftNodeAccessor>().GetRequiredNode();

    public static async Task<T> Eventually<T>(Func<T?> probe, TimeSpan timeout, string what) where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (probe() is { } value)
                return value;
            await Task.Delay(20);
        }
        throw new TimeoutException($"Not within {timeout}: {what}");
    }

    public static async Task Eventually(Func<bool> probe, TimeSpan timeout, string what) =>
        await Eventually(() => probe() ? "ok" : null, timeout, what);
}
