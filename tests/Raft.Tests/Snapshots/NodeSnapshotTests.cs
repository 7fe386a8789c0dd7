using System.Buffers.Binary;
using Raft.Testing;

namespace Raft.Tests.Snapshots;

/// <summary>Snapshots, compaction and InstallSnapshot through RaftNode (Raft §7), on the in-memory network.</summary>
public class NodeSnapshotTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_follower_cut_off_past_the_compacted_log_catches_up_through_InstallSnapshot()
    {
        await using var cluster = await Cluster.StartAsync(snapshotInterval: 50, trailing: 5);
        var leader = await cluster.WaitForLeaderAsync();
        var lagging = cluster.Nodes.First(n => n.Id != leader.Id);
        cluster.Network.Isolate(lagging.Id);
        var others = cluster.Nodes.Where(n => n.Id != lagging.Id).ToArray();

        for (var i = 1; i <= 300; i++)
            await leader.ProposeAsync(Command(i)).AsTask().WaitAsync(Patience);
        Assert.True(cluster.Logs[leader.Id].FirstIndex > lagging.Status.LastLogIndex + 1, "the leader's log must be compacted past the follower's");
        Assert.True(cluster.Snapshots[leader.Id].Latest!.Index >= 250);

        cluster.Network.Heal();
        await WaitUntilAsync(() => lagging.Status.AppliedIndex >= leader.Status.CommitIndex);

        // The follower restored the leader's snapshot: its log starts after a snapshot, and its state is complete.
        Assert.NotNull(cluster.Snapshots[lagging.Id].Latest);
        Assert.Equal(cluster.Machines[leader.Id].Sum, cluster.Machines[lagging.Id].Sum);
        Assert.Equal(300 * 301 / 2, cluster.Machines[lagging.Id].Sum);
        Assert.All(others, n => Assert.Equal(cluster.Machines[leader.Id].Sum, cluster.Machines[n.Id].Sum));
    }

    [Fact]
    public async Task A_restarted_node_restores_its_latest_snapshot_and_replays_the_rest()
    {
        await using var cluster = await Cluster.StartAsync(snapshotInterval: 40, trailing: 0);
        var leader = await cluster.WaitForLeaderAsync();
        for (var i = 1; i <= 100; i++)
            await leader.ProposeAsync(Command(i)).AsTask().WaitAsync(Patience);
        var follower = cluster.Nodes.First(n => n.Id != leader.Id);
        await WaitUntilAsync(() => follower.Status.AppliedIndex >= leader.Status.CommitIndex);
        var snapshotIndex = cluster.Snapshots[follower.Id].Latest!.Index;
        Assert.True(cluster.Logs[follower.Id].FirstIndex > 1, "the follower compacted its log");

        var restarted = await cluster.RestartAsync(follower.Id);
        Assert.True(restarted.Status.AppliedIndex >= snapshotIndex);
        await WaitUntilAsync(() => restarted.Status.AppliedIndex >= leader.Status.CommitIndex);
        Assert.Equal(100 * 101 / 2, cluster.Machines[follower.Id].Sum);
    }

    [Fact]
    public async Task Compaction_keeps_the_trailing_entries()
    {
        await using var cluster = await Cluster.StartAsync(snapshotInterval: 30, trailing: 10);
        var leader = await cluster.WaitForLeaderAsync();
        for (var i = 1; i <= 70; i++)
            await leader.ProposeAsync(Command(i)).AsTask().WaitAsync(Patience);
        await WaitUntilAsync(() => cluster.Snapshots[leader.Id].Latest?.Index >= 60 && cluster.Logs[leader.Id].FirstIndex > 1);
        var snapshot = cluster.Snapshots[leader.Id].Latest!.Index;
        Assert.Equal(snapshot - 10 + 1, cluster.Logs[leader.Id].FirstIndex);
    }

    [Fact]
    public async Task A_node_that_stopped_between_committing_a_received_snapshot_and_resetting_its_log_finishes_the_reset_on_start()
    {
        // The log still holds entries 1..5 (1+2+3+4+5), but a snapshot of index 10 (sum 55) was committed.
        var log = new InMemoryLogStore();
        await log.AppendAsync([.. Enumerable.Range(1, 5).Select(i => new LogEntry(i, 1, EntryKind.Command, Command(i)))]);
        var snapshots = new InMemorySnapshotStore();
        var writer = await snapshots.CreateAsync(new SnapshotMetadata(10, 2, [1]));
        var sum = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(sum, 55);
        await writer.Stream.WriteAsync(sum);
        await writer.CommitAsync();
        var machine = new SumStateMachine();
        await using var node = new RaftNode(new RaftNodeOptions { NodeId = 1, Members = [1] }, new InMemoryNetwork().CreateTransport(1), log, machine, snapshots);

        await node.StartAsync();

        Assert.Equal(11, log.FirstIndex);
        Assert.Equal(10, log.LastIndex);
        Assert.Equal(55, machine.Sum);
        await node.WaitForLeaderAsync().WaitAsync(Patience);
        var result = await node.ProposeAsync(Command(1)).AsTask().WaitAsync(Patience);
        Assert.Equal(56L, result); // nothing older than the snapshot was replayed on top of it
        Assert.Equal(56, machine.Sum);
    }

    private static byte[] Command(int value)
    {
        var data = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(data, value);
        return data;
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException("The condition did not hold within the patience window.");
            await Task.Delay(10);
        }
    }

    /// <summary>Sums the commands; snapshots are the sum and the count.</summary>
    private sealed class SumStateMachine : IStateMachine
    {
        private long _sum;

        public long Sum => Interlocked.Read(ref _sum);

        public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
        {
            Interlocked.Add(ref _sum, BinaryPrimitives.ReadInt32LittleEndian(entry.Data.Span));
            return ValueTask.FromResult<object?>(Sum);
        }

        public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default)
        {
            var data = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(data, Sum);
            await destination.WriteAsync(data, cancellationToken);
        }

        public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
        {
            var data = new byte[8];
            await source.ReadExactlyAsync(data, cancellationToken);
            Interlocked.Exchange(ref _sum, BinaryPrimitives.ReadInt64LittleEndian(data));
        }
    }

    private sealed class Cluster : IAsyncDisposable
    {
        private readonly int[] _members = [1, 2, 3];
        private readonly long _interval;
        private readonly long _trailing;

        private Cluster(long interval, long trailing)
        {
            _interval = interval;
            _trailing = trailing;
        }

        public InMemoryNetwork Network { get; } = new(seed: 1);

        public Dictionary<int, InMemoryLogStore> Logs { get; } = [];

        public Dictionary<int, InMemorySnapshotStore> Snapshots { get; } = [];

        public Dictionary<int, SumStateMachine> Machines { get; } = [];

        public List<RaftNode> Nodes { get; } = [];

        public static async Task<Cluster> StartAsync(long snapshotInterval, long trailing)
        {
            var cluster = new Cluster(snapshotInterval, trailing);
            foreach (var id in cluster._members)
            {
                cluster.Logs[id] = new InMemoryLogStore();
                cluster.Snapshots[id] = new InMemorySnapshotStore();
                cluster.Nodes.Add(await cluster.StartNodeAsync(id));
            }
            return cluster;
        }

        public async Task<RaftNode> RestartAsync(int id)
        {
            var old = Nodes.Single(n => n.Id == id);
            await old.DisposeAsync();
            Nodes.Remove(old);
            var node = await StartNodeAsync(id);
            Nodes.Add(node);
            return node;
        }

        public async Task<RaftNode> WaitForLeaderAsync()
        {
            var deadline = DateTime.UtcNow + Patience;
            while (DateTime.UtcNow < deadline)
            {
                var leader = Nodes.FirstOrDefault(n => n.Status.Role == RaftRole.Leader);
                if (leader is not null)
                    return leader;
                await Task.Delay(10);
            }
            throw new TimeoutException("No leader.");
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var node in Nodes)
                await node.DisposeAsync();
        }

        private async Task<RaftNode> StartNodeAsync(int id)
        {
            Machines[id] = new SumStateMachine();
            var node = new RaftNode(
                new RaftNodeOptions
                {
                    NodeId = id,
                    Members = _members,
                    SnapshotInterval = _interval,
                    SnapshotTrailingEntries = _trailing,
                    MaxSnapshotChunkBytes = 3, // several chunks even for an 8-byte snapshot
                },
                Network.CreateTransport(id),
                Logs[id],
                Machines[id],
                Snapshots[id]);
            await node.StartAsync();
            return node;
        }
    }
}
