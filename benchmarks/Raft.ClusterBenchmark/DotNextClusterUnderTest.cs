using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using DotNext.IO;
using DotNext.Net.Cluster.Consensus.Raft;
using DotNext.Net.Cluster.Consensus.Raft.Membership;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using DotNextLogEntry = DotNext.Net.Cluster.Consensus.Raft.StateMachine.LogEntry;
using DotNextNotLeaderException = DotNext.Net.Cluster.Consensus.Raft.NotLeaderException;

namespace Raft.ClusterBenchmark;

/// <summary>
/// Three DotNext.Net.Cluster 6.12.0 nodes: <see cref="RaftCluster"/> with its TCP transport
/// (<see cref="RaftCluster.TcpConfiguration"/>) on loopback, and <see cref="WriteAheadLog"/> over a
/// <see cref="SimpleStateMachine"/> (the 6.x WAL; its docs call <c>PersistentState</c> /
/// <c>MemoryBasedStateMachine</c> the old one, kept for bug fixes only).
/// </summary>
/// <remarks>
/// Configured for throughput as DotNext documents it: <see cref="WriteAheadLog.MemoryManagementStrategy.PrivateMemory"/>
/// ("provides the best write performance"), 512 KiB chunks (DotNext's own WAL benchmark), and
/// <see cref="WriteAheadLog.Options.ConcurrencyLevel"/> raised to the number of concurrent
/// proposers ("the expected number of concurrent users of the log"). Election timeouts match
/// this library's defaults (300-600 ms); every other setting is DotNext's default.
/// </remarks>
internal sealed class DotNextClusterUnderTest(string directory, int proposers) : IClusterUnderTest
{
    /// <summary>DotNext's own WAL benchmark uses 512 KiB chunks (the default is one OS page, 4 KiB).</summary>
    public const int ChunkSize = 512 * 1024;

    public const string Durability =
        "WriteAheadLog 6.12.0, MemoryManagement = PrivateMemory, ChunkSize = 512 KiB, HashAlgorithm = None (default). "
        + "An append lands in process-private memory; a background flusher writes it to the chunk files with O_DSYNC "
        + "(FileOptions.WriteThrough) soon after. CommitAsync waits for that flush (Options.FlushOnCommit and FlushInterval "
        + "are obsolete in 6.12: always on / no effect), so the leader has an entry on disk before ReplicateAsync returns. "
        + "But a follower acknowledges AppendEntries after appending to memory and committing only up to the leader's "
        + "(older) commit index, without flushing the new entries: an acknowledged proposal is guaranteed on the disk of "
        + "the leader only (1 of 3), not of a majority, and with PrivateMemory a follower process crash (not only a power "
        + "loss) loses what it acknowledged but had not flushed. Term and vote are written with O_DSYNC. No directory "
        + "fsync for new chunk files. Snapshots every 10,000 entries (same as ours).";

    private readonly List<Member> _members = [];
    private int _leaderChanges;
    private RaftCluster? _leader; // Volatile.Read / Interlocked only

    public string Side => "DotNext";

    public int LeaderChanges => Volatile.Read(ref _leaderChanges);

    public IReadOnlyList<long> AppliedCommands => [.. _members.Select(m => m.State.Commands)];

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var endPoints = ReserveLoopbackEndPoints(3);
        for (var i = 0; i < endPoints.Length; i++)
        {
            var root = Path.Combine(directory, $"node{i + 1}");
            var state = new CountingState();
            var stateMachine = new CountingStateMachine(new DirectoryInfo(Path.Combine(root, "state")), state);
            // The WAL reads the state machine's restored snapshot in its constructor: restore first.
            await stateMachine.RestoreAsync(cancellationToken);
            var wal = new WriteAheadLog(
                new WriteAheadLog.Options
                {
                    Location = Path.Combine(root, "wal"),
                    MemoryManagement = WriteAheadLog.MemoryManagementStrategy.PrivateMemory,
                    ChunkSize = ChunkSize,
                    ConcurrencyLevel = Math.Max(proposers, (Environment.ProcessorCount * 2) + 1),
                },
                stateMachine);
            var configuration = new RaftCluster.TcpConfiguration(endPoints[i])
            {
                LowerElectionTimeout = 300,
                UpperElectionTimeout = 600,
                ColdStart = false,
                ConfigurationStorage = null!, // null: in-memory configuration storage, filled below
            };
            var members = ((InMemoryClusterConfigurationStorage<EndPoint>)configuration.ConfigurationStorage).CreateInitialConfigurationBuilder();
            foreach (var endPoint in endPoints)
                members.Add(endPoint);
            members.Build();
            var cluster = new RaftCluster(configuration) { AuditTrail = wal };
            cluster.LeaderChanged += OnLeaderChanged;
            _members.Add(new Member(cluster, wal, stateMachine, state));
        }
        foreach (var member in _members)
            await member.Cluster.StartAsync(cancellationToken);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        while (FindLeader() is null)
            await Task.Delay(20, timeout.Token);
        Volatile.Write(ref _leader, FindLeader());
        Volatile.Write(ref _leaderChanges, 0);
    }

    private RaftCluster? FindLeader() =>
        _members.Select(m => m.Cluster).FirstOrDefault(c => !c.LeadershipToken.IsCancellationRequested);

    public ValueTask ProposeAsync(ReadOnlyMemory<byte> payload) =>
        RaftClusterExtensions.ReplicateAsync(Volatile.Read(ref _leader)!, payload);

    public void OnProposeFailed(Exception error)
    {
        // ReplicateAsync throws NotLeaderException (or, per its docs, InvalidOperationException) off the leader.
        if (error is not (DotNextNotLeaderException or InvalidOperationException))
            return;
        var current = Volatile.Read(ref _leader);
        if (FindLeader() is { } next && next != current && Interlocked.CompareExchange(ref _leader, next, current) == current)
            Interlocked.Increment(ref _leaderChanges);
    }

    private void OnLeaderChanged(DotNext.Net.Cluster.ICluster sender, DotNext.Net.Cluster.IClusterMember? leader)
    {
        if (sender is RaftCluster cluster && !cluster.LeadershipToken.IsCancellationRequested
            && Volatile.Read(ref _leader) is { } current && current != cluster
            && Interlocked.CompareExchange(ref _leader, cluster, current) == current)
        {
            Interlocked.Increment(ref _leaderChanges);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var member in _members)
        {
            member.Cluster.LeaderChanged -= OnLeaderChanged;
            try
            {
                await member.Cluster.StopAsync(CancellationToken.None);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // Not started, or already failed: disposal below still releases everything.
            }
        }
        foreach (var member in _members)
        {
            await member.Cluster.DisposeAsync();
            await member.Wal.DisposeAsync();
            await member.StateMachine.DisposeAsync();
        }
        _members.Clear();
    }

    /// <summary>Binds three loopback ports at once (so they differ), then frees them for the nodes.</summary>
    private static IPEndPoint[] ReserveLoopbackEndPoints(int count)
    {
        var sockets = new Socket[count];
        try
        {
            for (var i = 0; i < count; i++)
            {
                sockets[i] = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                sockets[i].Bind(new IPEndPoint(IPAddress.Loopback, 0));
            }
            return [.. sockets.Select(s => (IPEndPoint)s.LocalEndPoint!)];
        }
        finally
        {
            foreach (var socket in sockets)
                socket?.Dispose();
        }
    }

    private sealed record Member(RaftCluster Cluster, WriteAheadLog Wal, CountingStateMachine StateMachine, CountingState State);

    /// <summary>Counts commands and bytes; asks for a snapshot (those two numbers) every 10,000 entries.</summary>
    private sealed class CountingStateMachine(DirectoryInfo location, CountingState state) : SimpleStateMachine(location)
    {
        protected override async ValueTask RestoreAsync(FileInfo snapshotFile, CancellationToken token)
        {
            var buffer = new byte[16];
            await using var stream = snapshotFile.OpenRead();
            await stream.ReadExactlyAsync(buffer, token);
            state.Restore(BinaryPrimitives.ReadInt64LittleEndian(buffer), BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(8)));
        }

        protected override ValueTask PersistAsync(IAsyncBinaryWriter writer, CancellationToken token)
        {
            var buffer = new byte[16];
            BinaryPrimitives.WriteInt64LittleEndian(buffer, state.Commands);
            BinaryPrimitives.WriteInt64LittleEndian(buffer.AsSpan(8), state.Bytes);
            return writer.WriteAsync(buffer, lengthFormat: null, token);
        }

        protected override ValueTask<bool> ApplyAsync(DotNextLogEntry entry, CancellationToken token)
        {
            // Commands only: the leader's empty entries and configuration entries are not proposals.
            if (!entry.IsConfiguration && entry.Length is { } length && length > 0)
                state.Apply(length);
            return ValueTask.FromResult(entry.Index % 10_000 == 0);
        }
    }
}
