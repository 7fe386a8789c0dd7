using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Raft.Tests.Integration;

/// <summary>
/// Nodes on 127.0.0.1 over <see cref="TcpTransport"/> (with a cluster secret), each with a
/// <see cref="FileLogStore"/> and a <see cref="FileSnapshotStore"/> in its own directories and a
/// <see cref="KvMachine"/>, for membership tests. Every node id gets a fixed port, reserved up front,
/// so a node restarted from its directories listens where the configuration entries say it does.
/// </summary>
internal sealed class TcpMemberCluster : IAsyncDisposable
{
    /// <summary>How long an "eventually" waits: generous, for a loaded 2-core machine.</summary>
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    public const long SnapshotInterval = 100;
    public const long SnapshotTrailingEntries = 20;

    private readonly ITestOutputHelper _output;
    private readonly string _root = Path.Combine(Path.GetTempPath(), "raft-membership-tcp-tests", Guid.NewGuid().ToString("N"));
    private readonly Dictionary<int, int> _ports = [];
    private readonly byte[] _secret = RandomNumberGenerator.GetBytes(32);

    public TcpMemberCluster(ITestOutputHelper output, IEnumerable<int> ids)
    {
        _output = output;
        Directory.CreateDirectory(_root);
        foreach (var (id, port) in ids.Zip(ReservePorts(ids.Count())))
            _ports[id] = port;
    }

    public string ClusterId { get; } = $"membership-tcp-{Guid.NewGuid():N}";

    public Stopwatch Clock { get; } = Stopwatch.StartNew();

    public ClusterLog Logs { get; } = new();

    /// <summary>The running nodes (members and removed ones alike), by id.</summary>
    public ConcurrentDictionary<int, TcpMember> Nodes { get; } = new();

    /// <summary>The "host:port" address node <paramref name="id"/> listens on, as configuration entries record it.</summary>
    public string Address(int id) => $"127.0.0.1:{_ports[id]}";

    public void Print(string line) => _output.WriteLine($"[{Clock.ElapsedMilliseconds,6} ms] {line}");

    /// <summary>
    /// Opens (or reopens) node <paramref name="id"/>'s stores and starts it on its port.
    /// <paramref name="members"/> and <paramref name="join"/> are its <see cref="RaftNodeOptions"/>
    /// (with <see cref="RaftNodeOptions.MemberAddresses"/> from the reserved ports);
    /// <paramref name="peers"/> are the only addresses its transport's options give it.
    /// </summary>
    public async Task<TcpMember> StartAsync(int id, int[] members, bool join, IEnumerable<int> peers)
    {
        var logs = Logs.For(id);
        var directory = Path.Combine(_root, $"node{id}");
        var log = await FileLogStore.OpenAsync(Path.Combine(directory, "log"), loggerFactory: logs);
        var snapshots = await FileSnapshotStore.OpenAsync(Path.Combine(directory, "snapshots"), logs);
        var transport = new TcpTransport(new TcpTransportOptions
        {
            ListenEndPoint = new IPEndPoint(IPAddress.Loopback, _ports[id]),
            ClusterId = ClusterId,
            ClusterSecret = _secret,
            Peers = peers.Where(p => p != id).ToDictionary(p => p, p => (EndPoint)new IPEndPoint(IPAddress.Loopback, _ports[p])),
            ReconnectBackoffMax = TimeSpan.FromMilliseconds(500),
            ShutdownTimeout = TimeSpan.FromSeconds(1),
        }, logs);
        var machine = new KvMachine();
        var node = new RaftNode(
            new RaftNodeOptions
            {
                NodeId = id,
                Members = members,
                MemberAddresses = join ? null : members.ToDictionary(m => m, Address),
                Join = join,
                // Generous timeouts: fsync stalls on a loaded 2-core machine must not look like a dead leader.
                HeartbeatInterval = TimeSpan.FromMilliseconds(50),
                ElectionTimeoutMin = TimeSpan.FromMilliseconds(500),
                ElectionTimeoutMax = TimeSpan.FromMilliseconds(1000),
                SnapshotInterval = SnapshotInterval,
                SnapshotTrailingEntries = SnapshotTrailingEntries,
                MaxSnapshotChunkBytes = 1024, // several chunks per snapshot
                ForwardToLeader = true,
                ForwardTimeout = TimeSpan.FromSeconds(3),
                ProposalTimeout = TimeSpan.FromSeconds(3),
                ReadTimeout = TimeSpan.FromSeconds(3),
                RandomSeed = id * 7919,
            },
            transport,
            log,
            machine,
            snapshots,
            logs);
        var member = new TcpMember(id, log, snapshots, transport, machine, node);
        try
        {
            await node.StartAsync();
        }
        catch
        {
            await member.DisposeAsync();
            throw;
        }
        Nodes[id] = member;
        return member;
    }

    /// <summary>Stops node <paramref name="id"/> and closes its stores (its directories stay).</summary>
    public async Task StopAsync(int id)
    {
        if (Nodes.TryRemove(id, out var member))
            await member.DisposeAsync();
    }

    /// <summary>The running node that leads in the highest term among <paramref name="among"/> (default: all), if any.</summary>
    public TcpMember? Leader(IEnumerable<int>? among = null) =>
        (among is null ? Nodes.Values : among.Select(id => Nodes.GetValueOrDefault(id)).OfType<TcpMember>())
            .Select(n => (Node: n, Status: n.Node.Status))
            .Where(x => x.Status.Role == RaftRole.Leader && !x.Status.IsRemoved)
            .OrderByDescending(x => x.Status.Term)
            .Select(x => x.Node)
            .FirstOrDefault();

    public async Task<TcpMember> WaitForLeaderAsync(IEnumerable<int>? among = null, int except = 0)
    {
        TcpMember? leader = null;
        await WaitUntilAsync(() => (leader = Leader(among)) is not null && leader.Id != except, "a leader is elected");
        return leader!;
    }

    public async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            foreach (var node in Nodes.Values.Where(n => n.Node.Completion.IsFaulted))
                throw new InvalidOperationException($"Node {node.Id} stopped while waiting for: {what}", node.Node.Completion.Exception);
            if (deadline.Elapsed > Patience)
                throw new TimeoutException($"Waited {Patience} for: {what}. {Describe()}");
            await Task.Delay(10);
        }
    }

    /// <summary>
    /// Runs <paramref name="change"/> on whoever leads until the configuration satisfies
    /// <paramref name="done"/> and is committed (the change may have taken effect even when a try
    /// failed: a leader change, a removed leader that did not hear of the commit). Refusals that say
    /// "later" are retried.
    /// </summary>
    public async Task<ClusterConfiguration> ChangeAsync(MembershipChange change, Func<ClusterConfiguration, bool> done)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (deadline.Elapsed > Patience)
                throw new TimeoutException($"The membership change ({change}) did not complete within {Patience}. {Describe()}");
            var leader = Leader();
            if (leader is not null)
            {
                var status = leader.Node.Status;
                if (done(status.Configuration) && !status.Configuration.IsJoint && status.CommitIndex >= status.LastLogIndex)
                    return status.Configuration;
                if (!done(status.Configuration))
                {
                    using var attempt = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                    try
                    {
                        var result = await leader.Node.ChangeMembershipAsync(change, attempt.Token);
                        Print($"change ({change}) committed by node {leader.Id}: {result}");
                        Assert.True(done(result), $"the change ({change}) completed with {result}");
                        return result;
                    }
                    catch (Exception ex) when (ex is NotLeaderException or MembershipChangeException or RaftBusyException or ProposalDroppedException or OperationCanceledException or RaftTimeoutException)
                    {
                        Print($"change ({change}) on node {leader.Id}: {ex.GetType().Name}: {ex.Message}");
                    }
                }
            }
            await Task.Delay(50);
        }
    }

    public string Describe() =>
        string.Join("; ", Nodes.Values.OrderBy(n => n.Id).Select(n => n.Describe()));

    public async ValueTask DisposeAsync()
    {
        foreach (var id in Nodes.Keys.ToList())
            await StopAsync(id);
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Distinct free loopback ports: bound at once (so they differ), then released for the nodes.</summary>
    private static int[] ReservePorts(int count)
    {
        var sockets = Enumerable.Range(0, count).Select(_ => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)).ToList();
        try
        {
            foreach (var socket in sockets)
                socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            return [.. sockets.Select(s => ((IPEndPoint)s.LocalEndPoint!).Port)];
        }
        finally
        {
            foreach (var socket in sockets)
                socket.Dispose();
        }
    }
}

/// <summary>One node: its <see cref="RaftNode"/>, transport, stores and state machine.</summary>
internal sealed class TcpMember(int id, FileLogStore log, FileSnapshotStore snapshots, TcpTransport transport, KvMachine machine, RaftNode node) : IAsyncDisposable
{
    public int Id { get; } = id;

    public FileLogStore Log { get; } = log;

    public FileSnapshotStore Snapshots { get; } = snapshots;

    public TcpTransport Transport { get; } = transport;

    public KvMachine Machine { get; } = machine;

    public RaftNode Node { get; } = node;

    public string Describe()
    {
        var s = Node.Status;
        return $"node {Id}: {s.Role} term {s.Term} leader {s.LeaderId} commit {s.CommitIndex} applied {s.AppliedIndex} last {s.LastLogIndex} removed {s.IsRemoved} config {s.Configuration} log {Log.FirstIndex}..{Log.LastIndex} snapshot {Snapshots.Latest?.Index}";
    }

    /// <summary>Stops the node and its transport, then closes the stores, as a host shutting down would.</summary>
    public async ValueTask DisposeAsync()
    {
        await Node.DisposeAsync();
        await Transport.DisposeAsync();
        await Log.DisposeAsync();
        Snapshots.Dispose();
    }
}

/// <summary>
/// Keeps what every node logs at Information and above, each line tagged with the node, to print
/// the warnings and the membership story with a test's output.
/// </summary>
internal sealed class ClusterLog
{
    private readonly ConcurrentQueue<Record> _records = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    public IReadOnlyList<Record> Records => [.. _records];

    public ILoggerFactory For(int nodeId) => new Factory(this, nodeId);

    public sealed record Record(long Milliseconds, int NodeId, LogLevel Level, int EventId, string Category, string Message)
    {
        public override string ToString() => $"{Milliseconds,6} ms n{NodeId} {Level} {EventId} {Category}: {Message}";
    }

    private sealed class Factory(ClusterLog owner, int nodeId) : ILoggerFactory
    {
        public ILogger CreateLogger(string categoryName) => new Logger(owner, nodeId, categoryName.Split('.')[^1]);

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }
    }

    private sealed class Logger(ClusterLog owner, int nodeId, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                var text = formatter(state, exception) + (exception is null ? "" : $" ({exception.GetType().Name}: {exception.Message})");
                owner._records.Enqueue(new Record(owner._clock.ElapsedMilliseconds, nodeId, logLevel, eventId.Id, category, text));
            }
        }
    }
}
