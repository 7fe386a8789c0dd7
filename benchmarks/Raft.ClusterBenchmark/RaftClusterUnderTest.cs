using System.Buffers.Binary;
using System.Net;
using System.Runtime.CompilerServices;

namespace Raft.ClusterBenchmark;

/// <summary>
/// Three <see cref="RaftNode"/>s of this library: <see cref="TcpTransport"/> on loopback (port 0,
/// peers set once bound), <see cref="FileLogStore"/> with its defaults (fsync on),
/// <see cref="FileSnapshotStore"/>, and every other option at its default.
/// </summary>
internal sealed class RaftClusterUnderTest(string directory) : IClusterUnderTest
{
    public const string Durability =
        "FileLogStore, LogDurability.Fsync (the default): every node, leader included, fsyncs an entry before it counts "
        + "toward the commit quorum (a follower fsyncs before it acknowledges; the leader counts itself only once its own "
        + "write is fsynced), so a committed, acknowledged proposal is on the disk of a majority (2 of 3). New segment and "
        + "snapshot files are made durable with a directory fsync. CRC32C on every record. Snapshots every 16,384 entries "
        + "(RaftNodeOptions default) with log compaction.";

    private readonly List<Member> _members = [];
    private RaftNode? _leader; // Volatile.Read / Interlocked only
    private int _leaderChanges;

    public string Side => "ours";

    public int LeaderChanges => Volatile.Read(ref _leaderChanges);

    public IReadOnlyList<long> AppliedCommands => [.. _members.Select(m => m.State.Commands)];

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        int[] ids = [1, 2, 3];
        foreach (var id in ids)
        {
            var root = Path.Combine(directory, $"node{id}");
            var log = await FileLogStore.OpenAsync(Path.Combine(root, "log"), new FileLogStoreOptions(), loggerFactory: null, cancellationToken);
            var snapshots = await FileSnapshotStore.OpenAsync(Path.Combine(root, "snapshots"), cancellationToken: cancellationToken);
            var transport = new TcpTransport(new TcpTransportOptions
            {
                ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
                ClusterId = "raft-cluster-benchmark",
            });
            var state = new CountingState();
            // RAFT_BENCH_SYNC_WRITES=1: each node waits for its log write before its next batch (no pipelining), for comparison.
            var pipeline = Environment.GetEnvironmentVariable("RAFT_BENCH_SYNC_WRITES") != "1";
            // RAFT_BENCH_SNAPSHOT_INTERVAL=N: another snapshot interval (0: none), to measure what snapshots and compaction cost.
            var interval = long.TryParse(Environment.GetEnvironmentVariable("RAFT_BENCH_SNAPSHOT_INTERVAL"), out var n) ? n : new RaftNodeOptions { NodeId = 1, Members = ids }.SnapshotInterval;
            var options = new RaftNodeOptions { NodeId = id, Members = ids, PipelineLogWrites = pipeline, SnapshotInterval = interval };
            var node = new RaftNode(options, transport, log, new StateMachine(state), snapshots);
            node.StateChanged += OnStateChanged;
            _members.Add(new Member(node, transport, log, snapshots, state));
        }
        foreach (var member in _members)
            await member.Node.StartAsync(cancellationToken);
        // Bound now: tell every transport where the others listen (before the first election timeout).
        foreach (var member in _members)
        {
            foreach (var other in _members)
            {
                if (other != member)
                    member.Transport.SetPeer(other.Node.Id, other.Transport.LocalEndPoint!);
            }
        }
        var leaderId = await _members[0].Node.WaitForLeaderAsync(cancellationToken);
        Volatile.Write(ref _leader, _members.Single(m => m.Node.Id == leaderId).Node);
        foreach (var member in _members)
            await member.Node.WaitForLeaderAsync(cancellationToken);
        Volatile.Write(ref _leaderChanges, 0);
    }

    // RaftNode.ProposeAsync allocates nothing per proposal; the pooling builder keeps this wrapper allocation-free too.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ProposeAsync(ReadOnlyMemory<byte> payload) =>
        await Volatile.Read(ref _leader)!.ProposeAsync(payload);

    public void OnProposeFailed(Exception error)
    {
        if (error is not NotLeaderException { LeaderId: > 0 } notLeader)
            return;
        var current = Volatile.Read(ref _leader);
        var next = _members.FirstOrDefault(m => m.Node.Id == notLeader.LeaderId)?.Node;
        if (next is not null && next != current && Interlocked.CompareExchange(ref _leader, next, current) == current)
            Interlocked.Increment(ref _leaderChanges);
    }

    private void OnStateChanged(object? sender, RaftStateChange change)
    {
        if (change.Role == RaftRole.Leader && sender is RaftNode node && Volatile.Read(ref _leader) is { } current && current != node
            && Interlocked.CompareExchange(ref _leader, node, current) == current)
        {
            Interlocked.Increment(ref _leaderChanges);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var member in _members)
        {
            member.Node.StateChanged -= OnStateChanged;
            await member.Node.DisposeAsync();
            await member.Log.DisposeAsync();
            await member.Snapshots.DisposeAsync();
        }
        _members.Clear();
    }

    private sealed record Member(RaftNode Node, TcpTransport Transport, FileLogStore Log, FileSnapshotStore Snapshots, CountingState State);

    /// <summary>Counts commands and bytes; the snapshot is those two numbers.</summary>
    private sealed class StateMachine(CountingState state) : IStateMachine
    {
        public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
        {
            state.Apply(entry.Data.Length);
            return ValueTask.FromResult<object?>(null);
        }

        public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default)
        {
            var buffer = new byte[16];
            BinaryPrimitives.WriteInt64LittleEndian(buffer, state.Commands);
            BinaryPrimitives.WriteInt64LittleEndian(buffer.AsSpan(8), state.Bytes);
            await destination.WriteAsync(buffer, cancellationToken);
        }

        public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
        {
            var buffer = new byte[16];
            await source.ReadExactlyAsync(buffer, cancellationToken);
            state.Restore(BinaryPrimitives.ReadInt64LittleEndian(buffer), BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(8)));
        }
    }
}
