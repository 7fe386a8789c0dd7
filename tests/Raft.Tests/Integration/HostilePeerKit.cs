using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Raft.Testing;
using Raft.Tests.Transport;
using Xunit.Abstractions;

namespace Raft.Tests.Integration;

/// <summary>The hostile-peer tests run alone: they measure memory and flood sockets, which parallel tests would skew (and suffer from).</summary>
[CollectionDefinition(nameof(HostilePeerCollection), DisableParallelization = true)]
public sealed class HostilePeerCollection;

/// <summary>
/// Three <see cref="RaftNode"/>s on <see cref="TcpTransport"/> (127.0.0.1, port 0) with in-memory
/// stores and a <see cref="StrictMachine"/> (which throws on any command it cannot decode, so a
/// poison pill that reached it would stop the node), and a background client proposing through
/// whoever leads, from start to <see cref="StopWritesAsync"/>.
/// </summary>
internal sealed class HostileCluster : IAsyncDisposable
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    public static readonly int[] Members = [1, 2, 3];
    public const int MaxFrameBytes = 2 * 1024 * 1024;
    public const long SendQueueMaxBytes = 4 * 1024 * 1024;

    private readonly ITestOutputHelper _output;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly ConcurrentBag<long> _acknowledged = [];
    private CancellationTokenSource? _writesStop;
    private Task? _writes;
    private long _nextValue;

    private HostileCluster(ITestOutputHelper output, string clusterId, byte[]? secret)
    {
        _output = output;
        ClusterId = clusterId;
        Secret = secret;
    }

    public string ClusterId { get; }

    public byte[]? Secret { get; }

    public Dictionary<int, Member> Nodes { get; } = [];

    /// <summary>Values whose proposal completed (committed and applied by the leader).</summary>
    public IReadOnlyCollection<long> Acknowledged => _acknowledged;

    public static async Task<HostileCluster> StartAsync(ITestOutputHelper output, byte[]? secret = null)
    {
        var cluster = new HostileCluster(output, $"hostile-{Guid.NewGuid():N}", secret);
        foreach (var id in Members)
            cluster.Nodes[id] = await Member.StartAsync(id, cluster.ClusterId, secret);
        foreach (var node in cluster.Nodes.Values)
        {
            foreach (var other in cluster.Nodes.Values.Where(o => o.Id != node.Id))
                node.Transport.SetPeer(other.Id, other.Transport.LocalEndPoint!);
        }
        var leader = await cluster.WaitForLeaderAsync();
        cluster.Print($"cluster {string.Join(", ", cluster.Nodes.Values.Select(n => $"{n.Id}@{n.Transport.LocalEndPoint}"))}; node {leader.Id} leads term {leader.Node.Status.Term}");
        cluster.StartWrites();
        // Some history before the attack, so there is something to diverge from.
        await cluster.WaitUntilAsync(() => cluster._acknowledged.Count >= 50, "50 writes commit");
        return cluster;
    }

    public void Print(string line) => _output.WriteLine($"[{_clock.ElapsedMilliseconds,6} ms] {line}");

    public Member? Leader() =>
        Nodes.Values
            .Select(n => (Node: n, Status: n.Node.Status))
            .Where(x => x.Status.Role == RaftRole.Leader)
            .OrderByDescending(x => x.Status.Term)
            .Select(x => x.Node)
            .FirstOrDefault();

    public async Task<Member> WaitForLeaderAsync()
    {
        Member? leader = null;
        await WaitUntilAsync(() => (leader = Leader()) is not null, "a leader is elected");
        return leader!;
    }

    /// <summary>A follower of the current leader (the attack's usual victim), and that leader.</summary>
    public async Task<(Member Leader, Member Follower, Member Other)> RolesAsync()
    {
        var leader = await WaitForLeaderAsync();
        var followers = Nodes.Values.Where(n => n.Id != leader.Id).OrderBy(n => n.Id).ToArray();
        return (leader, followers[0], followers[1]);
    }

    public async Task WaitUntilAsync(Func<bool> condition, string what, TimeSpan? patience = null)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            AssertNoneStopped(what);
            if (deadline.Elapsed > (patience ?? Patience))
                throw new TimeoutException($"Waited {patience ?? Patience} for: {what}. {Describe()}");
            await Task.Delay(10);
        }
    }

    public void AssertNoneStopped(string when)
    {
        foreach (var node in Nodes.Values)
        {
            var status = node.Node.Status;
            Assert.True(status.Fault is null && !node.Node.Completion.IsCompleted,
                $"node {node.Id} stopped ({when}): {status.Fault ?? node.Node.Completion.Exception}");
        }
    }

    public string Describe() =>
        string.Join("; ", Nodes.Values.Select(n => $"node {n.Id}: {n.Node.Status with { Progress = new Dictionary<int, long>() }}"));

    private void StartWrites()
    {
        _writesStop = new CancellationTokenSource();
        var token = _writesStop.Token;
        _writes = Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            while (!token.IsCancellationRequested)
            {
                var value = Interlocked.Increment(ref _nextValue);
                if (await TryProposeAsync(value, token))
                    _acknowledged.Add(value);
                await Task.Delay(2, CancellationToken.None);
            }
        }, CancellationToken.None)));
    }

    public async Task StopWritesAsync()
    {
        if (_writesStop is null)
            return;
        await _writesStop.CancelAsync();
        await _writes!;
        _writesStop.Dispose();
        _writesStop = null;
    }

    private async Task<bool> TryProposeAsync(long value, CancellationToken token)
    {
        var leader = Leader();
        if (leader is null)
            return false;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(token);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            await leader.Node.ProposeAsync(StrictMachine.Encode(value), timeout.Token);
            return true;
        }
        catch (Exception ex) when (ex is RaftException or OperationCanceledException or ObjectDisposedException)
        {
            return false; // not the leader any more, busy, or stopped: the next one retries
        }
    }

    /// <summary>
    /// What every case must show afterwards: every node runs, a new write commits, and every node
    /// applies it; the applied histories of all nodes are one sequence (each a prefix of the
    /// longest), and no acknowledged write is missing.
    /// </summary>
    /// <param name="checkAgreement">False only for the one forgery that authentication alone prevents: then a majority applying the new write is enough, and agreement is printed, not asserted.</param>
    public async Task AssertHealthyAsync(bool checkAgreement = true)
    {
        AssertNoneStopped("after the attack");
        var marker = Interlocked.Increment(ref _nextValue) + 1_000_000_000;
        using (var timeout = new CancellationTokenSource(Patience))
        {
            while (!await TryProposeAsync(marker, timeout.Token))
            {
                AssertNoneStopped("proposing the post-attack write");
                timeout.Token.ThrowIfCancellationRequested();
                await Task.Delay(20, CancellationToken.None);
            }
        }
        await StopWritesAsync();
        if (!checkAgreement)
        {
            await WaitUntilAsync(() => Nodes.Values.Count(n => n.Machine.Contains(marker)) * 2 > Nodes.Count, $"a majority applies the post-attack write {marker}");
            AssertNoneStopped("at the end");
            Print($"applied: {string.Join(", ", Nodes.Values.Select(n => $"node {n.Id} index {n.Node.Status.AppliedIndex} ({n.Machine.Count} commands, term {n.Node.Status.Term}, has the post-attack write: {n.Machine.Contains(marker)})"))}");
            return;
        }
        await WaitUntilAsync(() => Nodes.Values.All(n => n.Machine.Contains(marker)), $"every node applies the post-attack write {marker}");
        // Let every node apply the same index, then compare.
        await WaitUntilAsync(
            () => Nodes.Values.Select(n => n.Node.Status.AppliedIndex).Distinct().Count() == 1,
            "every node applies up to the same index");
        AssertNoneStopped("at the end");
        var histories = Nodes.Values.Select(n => (n.Id, Values: n.Machine.Values())).ToList();
        Print($"applied: {string.Join(", ", Nodes.Values.Select(n => $"node {n.Id} index {n.Node.Status.AppliedIndex} ({n.Machine.Count} commands, term {n.Node.Status.Term})"))}; acknowledged writes {_acknowledged.Count}");
        var longest = histories.OrderByDescending(h => h.Values.Length).First();
        foreach (var (id, values) in histories)
        {
            for (var i = 0; i < values.Length; i++)
                Assert.True(values[i] == longest.Values[i], $"node {id} applied {values[i]} as command #{i}, node {longest.Id} applied {longest.Values[i]}");
        }
        var applied = longest.Values.ToHashSet();
        var lost = _acknowledged.Where(v => !applied.Contains(v)).Take(10).ToList();
        Assert.True(lost.Count == 0, $"acknowledged writes missing from the applied history: {string.Join(", ", lost)}");
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopWritesAsync();
        }
        finally
        {
            foreach (var node in Nodes.Values)
                await node.DisposeAsync();
        }
    }

    /// <summary>One member: node, transport, stores, state machine and its own log capture.</summary>
    internal sealed class Member : IAsyncDisposable
    {
        private Member(int id, TcpTransport transport, StrictMachine machine, RaftNode node, NodeLog logs)
        {
            Id = id;
            Transport = transport;
            Machine = machine;
            Node = node;
            Logs = logs;
        }

        public int Id { get; }

        public TcpTransport Transport { get; }

        public StrictMachine Machine { get; }

        public RaftNode Node { get; }

        public NodeLog Logs { get; }

        public long Term => Node.Status.Term;

        public static async Task<Member> StartAsync(int id, string clusterId, byte[]? secret)
        {
            var logs = new NodeLog();
            var transport = new TcpTransport(new TcpTransportOptions
            {
                ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
                ClusterId = clusterId,
                ClusterSecret = secret,
                MaxFrameBytes = MaxFrameBytes,
                SendQueueMaxBytes = SendQueueMaxBytes,
                ReconnectBackoffMax = TimeSpan.FromMilliseconds(500),
                ShutdownTimeout = TimeSpan.FromSeconds(1),
                HandshakeTimeout = TimeSpan.FromSeconds(3),
                WriteTimeout = TimeSpan.FromSeconds(3),
            }, logs);
            var machine = new StrictMachine();
            var node = new RaftNode(
                new RaftNodeOptions
                {
                    NodeId = id,
                    Members = Members,
                    HeartbeatInterval = TimeSpan.FromMilliseconds(50),
                    ElectionTimeoutMin = TimeSpan.FromMilliseconds(500),
                    ElectionTimeoutMax = TimeSpan.FromMilliseconds(1000),
                    SnapshotInterval = 300,
                    SnapshotTrailingEntries = 50,
                    MaxSnapshotChunkBytes = 4 * 1024,
                },
                transport,
                new InMemoryLogStore(),
                machine,
                new InMemorySnapshotStore(),
                logs);
            await node.StartAsync();
            return new Member(id, transport, machine, node, logs);
        }

        public async ValueTask DisposeAsync()
        {
            await Node.DisposeAsync();
            await Transport.DisposeAsync();
        }
    }
}

/// <summary>
/// A state machine whose commands are "CMD1" + a little-endian int64 (+ optional padding): it
/// validates them before they are appended (<see cref="ICommandValidator"/>) and throws on
/// anything else in <see cref="ApplyAsync"/>, so a garbage command that got committed stops the node.
/// </summary>
internal sealed class StrictMachine : IStateMachine, ICommandValidator
{
    private static readonly byte[] Magic = "CMD1"u8.ToArray();
    private readonly Lock _gate = new();
    private readonly List<long> _values = [];
    private readonly HashSet<long> _set = [];

    public static byte[] Encode(long value, int padding = 0)
    {
        var bytes = new byte[12 + padding];
        Magic.CopyTo(bytes, 0);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(4), value);
        return bytes;
    }

    public int Count
    {
        get
        {
            lock (_gate)
                return _values.Count;
        }
    }

    public long[] Values()
    {
        lock (_gate)
            return [.. _values];
    }

    public bool Contains(long value)
    {
        lock (_gate)
            return _set.Contains(value);
    }

    public bool TryValidate(ReadOnlySpan<byte> command, [NotNullWhen(false)] out string? error)
    {
        error = command.Length >= 12 && command[..4].SequenceEqual(Magic) ? null : $"not a command: {command.Length} bytes not starting with CMD1";
        return error is null;
    }

    public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
    {
        if (!TryValidate(entry.Data.Span, out var error))
            throw new InvalidDataException($"Index {entry.Index}: {error}");
        var value = BinaryPrimitives.ReadInt64LittleEndian(entry.Data.Span[4..]);
        lock (_gate)
        {
            _values.Add(value);
            _set.Add(value);
            return ValueTask.FromResult<object?>(_values.Count);
        }
    }

    public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        byte[] bytes;
        lock (_gate)
        {
            bytes = new byte[4 + (8 * _values.Count)];
            BinaryPrimitives.WriteInt32LittleEndian(bytes, _values.Count);
            for (var i = 0; i < _values.Count; i++)
                BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(4 + (8 * i)), _values[i]);
        }
        await destination.WriteAsync(bytes, cancellationToken);
    }

    public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
    {
        var head = new byte[4];
        await source.ReadExactlyAsync(head, cancellationToken);
        var count = BinaryPrimitives.ReadInt32LittleEndian(head);
        if (count < 0 || count > 10_000_000)
            throw new InvalidDataException($"Snapshot claims {count} commands.");
        var body = new byte[8 * count];
        await source.ReadExactlyAsync(body, cancellationToken);
        if (await source.ReadAsync(new byte[1], cancellationToken) != 0)
            throw new InvalidDataException("Snapshot has trailing bytes.");
        lock (_gate)
        {
            _values.Clear();
            _set.Clear();
            for (var i = 0; i < count; i++)
            {
                var value = BinaryPrimitives.ReadInt64LittleEndian(body.AsSpan(8 * i));
                _values.Add(value);
                _set.Add(value);
            }
        }
    }
}

/// <summary>Keeps one node's warnings and errors, and the Debug entries that show a message was refused or dropped.</summary>
internal sealed class NodeLog : ILoggerFactory
{
    // Debug events kept: Misaddressed (1008), MessageRejectedAgain (1012), queued messages dropped (3014), send queue full (3022).
    private static readonly HashSet<int> KeptDebug = [1008, 1012, 3014, 3022];
    private readonly ConcurrentQueue<CollectingLoggerFactory.LogRecord> _records = new();

    public IReadOnlyList<CollectingLoggerFactory.LogRecord> Records => _records.ToArray();

    public int Count(int eventId, string? containing = null) =>
        _records.Count(r => r.EventId == eventId && (containing is null || r.Message.Contains(containing, StringComparison.OrdinalIgnoreCase)));

    /// <summary>Entries that show the core (or the node in front of it) refused a message: 1008 misaddressed, 1010 command refused, 1011/1012 rejected.</summary>
    public int CoreRefusals => _records.Count(r => r.EventId is 1008 or 1010 or 1011 or 1012);

    public async Task WaitForAsync(int eventId, string containing, TimeSpan? patience = null)
    {
        var deadline = Stopwatch.StartNew();
        while (Count(eventId, containing) == 0)
        {
            if (deadline.Elapsed > (patience ?? HostileCluster.Patience))
                throw new TimeoutException($"Event {eventId} containing '{containing}' was not logged. Log:\n{string.Join("\n", Records.TakeLast(40))}");
            await Task.Delay(10);
        }
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private sealed class Logger(NodeLog owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Warning || KeptDebug.Contains(eventId.Id))
                owner._records.Enqueue(new CollectingLoggerFactory.LogRecord(eventId.Id, logLevel, formatter(state, exception), exception));
        }
    }
}

/// <summary>A raw TCP peer that knows the cluster id and member ids (authentication off) and sends hand-encoded frames.</summary>
internal static class Attacker
{
    /// <summary>Connects to <paramref name="victim"/> claiming to be <paramref name="claimedId"/>, sends a valid preface, then the frames.</summary>
    public static async Task SendAsync(HostileCluster cluster, HostileCluster.Member victim, int claimedId, params RaftMessage[] messages)
    {
        var lane = messages.All(m => m is InstallSnapshot) ? (byte)1 : (byte)0;
        await using var peer = await RawPeer.HandshakeAsync(victim.Transport.LocalEndPoint!, cluster.ClusterId, claimedId, victim.Id, lane);
        foreach (var message in messages)
            await peer.SendAsync(RawPeer.Frame(message));
        // Hold the connection briefly so the frames are read before we close it.
        await Task.Delay(100);
    }

    /// <summary>
    /// With authentication on: sends the preface (without the authenticated flag, or with it and
    /// a made-up proof) and then the frames regardless, ignoring the victim closing the connection.
    /// </summary>
    public static async Task SendWithoutSecretAsync(HostileCluster cluster, HostileCluster.Member victim, int claimedId, bool claimAuthenticated, params RaftMessage[] messages)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(victim.Transport.LocalEndPoint!);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        try
        {
            var preface = RawPeer.Preface(cluster.ClusterId, claimedId, victim.Id, flags: claimAuthenticated ? ConnectionPreface.AuthenticatedFlag : (byte)0);
            if (claimAuthenticated)
            {
                await stream.WriteAsync((byte[])[.. preface, .. new byte[PrefaceAuthentication.NonceSize]]);
                await Task.Delay(50);
                await stream.WriteAsync(new byte[PrefaceAuthentication.MacSize]); // a proof it cannot compute
            }
            else
            {
                await stream.WriteAsync(preface);
            }
            foreach (var message in messages)
                await stream.WriteAsync(RawPeer.Frame(message));
            // Read until the victim closes on us.
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var buffer = new byte[1024];
            while (await stream.ReadAsync(buffer, cts.Token) > 0)
            {
            }
        }
        catch (IOException)
        {
            // The victim reset the connection: what we want.
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException("The victim kept the unauthenticated connection open for 10 s.");
        }
    }
}
