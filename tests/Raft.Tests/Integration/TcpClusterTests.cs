using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Raft.Tests.Integration;

/// <summary>Runs the cluster tests alone: they load the CPU and the disk, which would skew timing-sensitive tests running beside them.</summary>
[CollectionDefinition(nameof(TcpClusterCollection), DisableParallelization = true)]
public sealed class TcpClusterCollection;

/// <summary>
/// A real cluster in one process: three <see cref="RaftNode"/>s on 127.0.0.1 over
/// <see cref="TcpTransport"/>, each with a <see cref="FileLogStore"/> and a
/// <see cref="FileSnapshotStore"/> in its own temporary directories.
/// </summary>
[Collection(nameof(TcpClusterCollection))]
public sealed class TcpClusterTests(ITestOutputHelper output) : IAsyncLifetime, IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private static readonly int[] Members = [1, 2, 3];

    private const int InFlight = 64;
    private const long SnapshotInterval = 500;
    private const long SnapshotTrailingEntries = 50;

    private readonly string _root = Path.Combine(Path.GetTempPath(), "raft-integration-tests", Guid.NewGuid().ToString("N"));
    private readonly string _clusterId = $"tcp-cluster-{Guid.NewGuid():N}";
    private readonly WarningCollector _logs = new();
    // Workers read it while the test thread stops and restarts nodes.
    private readonly ConcurrentDictionary<int, ClusterNode> _nodes = new();
    private readonly Stopwatch _clock = new();
    private long _retries;

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(_root);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var node in _nodes.Values)
            await node.DisposeAsync();
        _nodes.Clear();
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    public void Dispose() => _logs.Dispose();

    [Fact]
    public async Task Three_nodes_replicate_over_TCP_survive_the_leader_stopping_and_catch_up_a_restarted_node_through_a_snapshot()
    {
        try
        {
            await RunScenarioAsync();
        }
        finally
        {
            Print($"retried proposals: {Interlocked.Read(ref _retries)}");
            var warnings = _logs.Records;
            Print($"warnings and errors logged: {warnings.Count}");
            foreach (var record in warnings.Take(40))
                Print("  " + record);
        }
    }

    private async Task RunScenarioAsync()
    {
        _clock.Start();

        // 1. Start three nodes on port 0, then tell each where the others listen.
        foreach (var id in Members)
            _nodes[id] = await ClusterNode.StartAsync(id, _root, _clusterId, _logs);
        foreach (var node in _nodes.Values)
        {
            foreach (var other in _nodes.Values.Where(o => o.Id != node.Id))
                node.Transport.SetPeer(other.Id, other.Transport.LocalEndPoint!);
        }
        Print($"started 3 nodes on {string.Join(", ", _nodes.Values.Select(n => $"{n.Id}@{n.Transport.LocalEndPoint}"))}");

        var leader = await WaitForLeaderAsync(except: 0);
        Print($"node {leader.Id} elected leader at term {leader.Node.Status.Term}");

        // 2. Replicate 10,000 commands, 64 in flight.
        var phase = Stopwatch.StartNew();
        await ProposeAsync(first: 1, count: 10_000);
        Print($"10,000 commands committed in {phase.ElapsedMilliseconds} ms ({10_000 / phase.Elapsed.TotalSeconds:F0}/s)");
        var commit = ReplicatedIndex();
        await WaitUntilAsync(() => _nodes.Values.All(n => n.Node.Status.AppliedIndex >= commit), $"every node applies up to {commit}");
        AssertSameState(_nodes.Values, mustContain: 10_000);
        foreach (var node in _nodes.Values)
        {
            // Snapshots were taken and the logs compacted behind them.
            Assert.True(node.Snapshots.Latest?.Index >= 10_000 - SnapshotInterval, $"node {node.Id} has snapshot {node.Snapshots.Latest?.Index}");
            Assert.True(node.Log.FirstIndex > 1, $"node {node.Id}'s log was not compacted");
        }
        Print($"all 3 nodes applied {commit}; snapshots at {string.Join(", ", _nodes.Values.Select(n => $"{n.Id}:{n.Snapshots.Latest!.Index}"))}");

        // 3. Stop the leader while 64 clients are writing; the other two elect a new one, and every
        // client retries what was in flight (sessions make each retry take effect once).
        var stopped = Leader()!;
        var stoppedId = stopped.Id;
        phase.Restart();
        var writing = ProposeAsync(first: 10_001, count: 2_000);
        await WaitUntilAsync(() => stopped.Machine.Capture().Count >= 10_300 || writing.IsCompleted, "300 commands applied on the leader");
        await stopped.Node.DisposeAsync();
        var stoppedLastIndex = stopped.Log.LastIndex; // read once nothing more can be appended
        await stopped.DisposeAsync();
        _nodes.TryRemove(stoppedId, out _);
        Print($"stopped leader {stoppedId} (last log index {stoppedLastIndex}) with writes in flight");

        var newLeader = await WaitForLeaderAsync(except: stoppedId);
        Print($"node {newLeader.Id} elected leader at term {newLeader.Node.Status.Term} after {phase.ElapsedMilliseconds} ms");

        await writing;
        Print($"2,000 more commands committed across the leader change in {phase.ElapsedMilliseconds} ms");
        // The survivors compact past everything the stopped node holds, so it can only catch up from a snapshot.
        await WaitUntilAsync(
            () => _nodes.Values.All(n => n.Log.FirstIndex > stoppedLastIndex + 1),
            $"the survivors compact their logs past index {stoppedLastIndex + 1}");

        // 4. Restart the stopped node from its directories, on a new port.
        phase.Restart();
        var restarted = await ClusterNode.StartAsync(stoppedId, _root, _clusterId, _logs);
        var restoredAtStart = restarted.Machine.Restores;
        Print($"restarted node {stoppedId} on {restarted.Transport.LocalEndPoint}: log {restarted.Log.FirstIndex}..{restarted.Log.LastIndex}, snapshot {restarted.Snapshots.Latest?.Index}, applied {restarted.Node.Status.AppliedIndex}");
        Assert.Equal(1, restoredAtStart); // from its own latest snapshot
        foreach (var other in _nodes.Values)
        {
            other.Transport.SetPeer(stoppedId, restarted.Transport.LocalEndPoint!);
            restarted.Transport.SetPeer(other.Id, other.Transport.LocalEndPoint!);
        }
        _nodes[stoppedId] = restarted;

        commit = ReplicatedIndex();
        await WaitUntilAsync(() => restarted.Node.Status.AppliedIndex >= commit, $"the restarted node applies up to {commit}");
        Print($"restarted node caught up to {commit} in {phase.ElapsedMilliseconds} ms");
        Assert.True(restarted.Machine.Restores > restoredAtStart, "the restarted node caught up through InstallSnapshot");
        Assert.True(restarted.Log.FirstIndex > stoppedLastIndex + 1, $"the restarted node's log starts after the leader's snapshot (first index {restarted.Log.FirstIndex})");

        // 5. The whole cluster keeps going, and every node holds the same state.
        phase.Restart();
        await ProposeAsync(first: 12_001, count: 500);
        commit = ReplicatedIndex();
        await WaitUntilAsync(() => _nodes.Values.All(n => n.Node.Status.AppliedIndex >= commit), $"every node applies up to {commit}");
        Print($"500 more commands on the full cluster in {phase.ElapsedMilliseconds} ms");
        AssertSameState(_nodes.Values, mustContain: 12_500);
        Assert.All(_nodes.Values, n => Assert.False(n.Node.Completion.IsFaulted, $"node {n.Id} failed: {n.Node.Completion.Exception}"));
        Print($"total {_clock.ElapsedMilliseconds} ms");
    }

    /// <summary>
    /// Proposes commands first..first+count-1 (each a distinct number), <see cref="InFlight"/> at a
    /// time, to whoever leads. Each worker is a client with its own exactly-once session: a command
    /// refused or of unknown outcome is retried, through whichever node leads then, under the same
    /// sequence number, so it takes effect once however often it is sent.
    /// </summary>
    private async Task ProposeAsync(long first, long count)
    {
        using var timeout = new CancellationTokenSource(Patience);
        var next = first - 1;
        var last = first + count - 1;
        var workers = Enumerable.Range(0, InFlight).Select(_ => Task.Run(async () =>
        {
            var client = new Client();
            while (true)
            {
                var value = Interlocked.Increment(ref next);
                if (value > last)
                    return;
                var command = new byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(command, value);
                await ProposeOneAsync(client, command, timeout.Token);
            }
        }));
        try
        {
            await Task.WhenAll(workers);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            throw new TimeoutException($"Proposing {first}..{last} did not finish within {Patience}. {Describe()}");
        }
    }

    private async Task ProposeOneAsync(Client client, byte[] command, CancellationToken cancellationToken)
    {
        var sequence = ++client.LastSequence;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var leader = Leader();
            if (leader is not null)
            {
                try
                {
                    if (client.Id == 0)
                        client.Id = (await leader.Node.OpenSessionAsync(cancellationToken)).ClientId;
                    await leader.Node.ResumeSession(client.Id, sequence).ProposeAsync(command, sequence, cancellationToken);
                    return;
                }
                catch (RaftException ex) when (ex is not (SessionExpiredException or SessionSequenceException))
                {
                    // Not the leader any more, busy, dropped or of unknown outcome: send it again under
                    // the same sequence number (a session that failed to open is opened again: an
                    // unused one only expires).
                }
                catch (ObjectDisposedException)
                {
                }
            }
            Interlocked.Increment(ref _retries);
            await Task.Delay(5, cancellationToken);
        }
    }

    /// <summary>A worker's session: its client id (0 until opened) and the last sequence number it used.</summary>
    private sealed class Client
    {
        public long Id { get; set; }

        public long LastSequence { get; set; }
    }

    /// <summary>
    /// An index every node must apply to hold every command proposed so far: the leader's applied
    /// index is past every completed proposal. (Not the leader's Status.CommitIndex alone: it is
    /// published at the end of a loop iteration, so it can lag behind a proposal that already
    /// completed.) Every index here is committed, so every node applies up to it.
    /// </summary>
    private long ReplicatedIndex() =>
        _nodes.Values.Select(n => n.Node.Status).Max(s => Math.Max(s.CommitIndex, s.AppliedIndex));

    /// <summary>The running node that believes it leads in the highest term, if any.</summary>
    private ClusterNode? Leader() =>
        _nodes.Values
            .Select(n => (Node: n, Status: n.Node.Status))
            .Where(x => x.Status.Role == RaftRole.Leader)
            .OrderByDescending(x => x.Status.Term)
            .Select(x => x.Node)
            .FirstOrDefault();

    private async Task<ClusterNode> WaitForLeaderAsync(int except)
    {
        ClusterNode? leader = null;
        await WaitUntilAsync(() => (leader = Leader()) is not null && leader.Id != except, "a leader is elected");
        return leader!;
    }

    private async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            if (deadline.Elapsed > Patience)
                throw new TimeoutException($"Waited {Patience} for: {what}. {Describe()}");
            foreach (var node in _nodes.Values.Where(n => n.Node.Completion.IsFaulted))
                throw new InvalidOperationException($"Node {node.Id} stopped while waiting for: {what}", node.Node.Completion.Exception);
            await Task.Delay(10);
        }
    }

    private string Describe() =>
        string.Join("; ", _nodes.Values.Select(n => $"node {n.Id}: {n.Node.Status with { Progress = new Dictionary<int, long>() }} log {n.Log.FirstIndex}..{n.Log.LastIndex} snapshot {n.Snapshots.Latest?.Index}"));

    private static void AssertSameState(IEnumerable<ClusterNode> nodes, long mustContain)
    {
        var states = nodes.Select(n => (n.Id, State: n.Machine.Capture())).ToList();
        var (firstId, reference) = states[0];
        foreach (var (id, state) in states.Skip(1))
        {
            Assert.True(reference.Count == state.Count && reference.Hash == state.Hash,
                $"node {id} holds {state.Count} commands (hash {state.Hash:x16}), node {firstId} holds {reference.Count} (hash {reference.Hash:x16})");
        }
        // Every command took effect exactly once: retries went through sessions.
        var distinct = reference.Values.ToHashSet();
        var missing = Enumerable.Range(1, (int)mustContain).Where(v => !distinct.Contains(v)).Take(10).ToList();
        Assert.True(missing.Count == 0, $"commands never applied: {string.Join(", ", missing)}");
        var duplicates = reference.Values.GroupBy(v => v).Where(g => g.Count() > 1).Select(g => g.Key).Take(10).ToList();
        Assert.True(duplicates.Count == 0, $"commands applied more than once: {string.Join(", ", duplicates)}");
        Assert.Equal(mustContain, reference.Count);
    }

    private void Print(string line) => output.WriteLine($"[{_clock.ElapsedMilliseconds,6} ms] {line}");

    /// <summary>One member: its node, transport, stores and state machine, in directories that outlive it.</summary>
    private sealed class ClusterNode : IAsyncDisposable
    {
        private ClusterNode(int id, FileLogStore log, FileSnapshotStore snapshots, TcpTransport transport, HistoryStateMachine machine, RaftNode node)
        {
            Id = id;
            Log = log;
            Snapshots = snapshots;
            Transport = transport;
            Machine = machine;
            Node = node;
        }

        public int Id { get; }

        public FileLogStore Log { get; }

        public FileSnapshotStore Snapshots { get; }

        public TcpTransport Transport { get; }

        public HistoryStateMachine Machine { get; }

        public RaftNode Node { get; }

        /// <summary>Opens (or reopens) the stores under <paramref name="root"/>/node{id} and starts the node on a fresh port.</summary>
        public static async Task<ClusterNode> StartAsync(int id, string root, string clusterId, ILoggerFactory logs)
        {
            var log = await FileLogStore.OpenAsync(Path.Combine(root, $"node{id}", "log"), loggerFactory: logs);
            var snapshots = await FileSnapshotStore.OpenAsync(Path.Combine(root, $"node{id}", "snapshots"), logs);
            var transport = new TcpTransport(new TcpTransportOptions
            {
                ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
                ClusterId = clusterId,
                ReconnectBackoffMax = TimeSpan.FromSeconds(1),
                ShutdownTimeout = TimeSpan.FromSeconds(1),
            }, logs);
            var machine = new HistoryStateMachine();
            var node = new RaftNode(
                new RaftNodeOptions
                {
                    NodeId = id,
                    Members = Members,
                    // Generous timeouts: fsync stalls on a loaded 2-core machine must not look like a dead leader.
                    HeartbeatInterval = TimeSpan.FromMilliseconds(50),
                    ElectionTimeoutMin = TimeSpan.FromMilliseconds(500),
                    ElectionTimeoutMax = TimeSpan.FromMilliseconds(1000),
                    SnapshotInterval = SnapshotInterval,
                    SnapshotTrailingEntries = SnapshotTrailingEntries,
                    MaxSnapshotChunkBytes = 16 * 1024, // several chunks per snapshot
                },
                transport,
                log,
                machine,
                snapshots,
                logs);
            await node.StartAsync();
            return new ClusterNode(id, log, snapshots, transport, machine, node);
        }

        /// <summary>Stops the node (and its transport), then closes the stores, as a host shutting down would.</summary>
        public async ValueTask DisposeAsync()
        {
            await Node.DisposeAsync();
            await Transport.DisposeAsync();
            await Log.DisposeAsync();
            Snapshots.Dispose();
        }
    }

    /// <summary>
    /// A deterministic state machine: the ordered list of the numbers it was given and a hash of
    /// that order. Its snapshot is the whole list (about 100 KB here, so several chunks).
    /// </summary>
    private sealed class HistoryStateMachine : IStateMachine
    {
        private readonly Lock _gate = new();
        private readonly List<long> _values = [];
        private ulong _hash = 14695981039346656037UL;
        private int _restores;

        public int Restores => Volatile.Read(ref _restores);

        public (int Count, ulong Hash, long[] Values) Capture()
        {
            lock (_gate)
                return (_values.Count, _hash, _values.ToArray());
        }

        public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
        {
            var value = BinaryPrimitives.ReadInt64LittleEndian(entry.Data.Span);
            lock (_gate)
            {
                _values.Add(value);
                _hash = (_hash ^ (ulong)value) * 1099511628211UL;
                return ValueTask.FromResult<object?>(_values.Count);
            }
        }

        public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default)
        {
            byte[] bytes;
            lock (_gate)
            {
                bytes = new byte[12 + (8 * _values.Count)];
                BinaryPrimitives.WriteInt32LittleEndian(bytes, _values.Count);
                BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(4), _hash);
                for (var i = 0; i < _values.Count; i++)
                    BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(12 + (8 * i)), _values[i]);
            }
            await destination.WriteAsync(bytes, cancellationToken);
        }

        public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
        {
            var head = new byte[12];
            await source.ReadExactlyAsync(head, cancellationToken);
            var count = BinaryPrimitives.ReadInt32LittleEndian(head);
            var body = new byte[8 * count];
            await source.ReadExactlyAsync(body, cancellationToken);
            Assert.Equal(0, await source.ReadAsync(new byte[1], cancellationToken));
            lock (_gate)
            {
                _values.Clear();
                for (var i = 0; i < count; i++)
                    _values.Add(BinaryPrimitives.ReadInt64LittleEndian(body.AsSpan(8 * i)));
                _hash = BinaryPrimitives.ReadUInt64LittleEndian(head.AsSpan(4));
            }
            Interlocked.Increment(ref _restores);
        }
    }

    /// <summary>Keeps the warnings and errors every component logs, to print with the test's output.</summary>
    private sealed class WarningCollector : ILoggerFactory
    {
        private readonly ConcurrentQueue<string> _records = new();
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public IReadOnlyList<string> Records => _records.ToArray();

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }

        private sealed class Logger(WarningCollector owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel))
                    owner._records.Enqueue($"{owner._clock.ElapsedMilliseconds,6} ms {logLevel} {eventId.Id} {category.Split('.')[^1]}: {formatter(state, exception)}{(exception is null ? "" : $" ({exception.GetType().Name}: {exception.Message})")}");
            }
        }
    }
}
