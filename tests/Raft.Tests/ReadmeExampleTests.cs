using Raft.Testing;

namespace Raft.Tests;

/// <summary>The README's usage example, compiled and run (keep the two in step).</summary>
public class ReadmeExampleTests
{
    [Fact]
    public async Task Readme_usage_example_runs()
    {
        int[] members = [1, 2, 3];
        var network = new InMemoryNetwork();
        var nodes = members.Select(id => new RaftNode(
            new RaftNodeOptions { NodeId = id, Members = members },
            network.CreateTransport(id),
            new InMemoryLogStore(),
            new CounterStateMachine())).ToList();

        foreach (var node in nodes)
            await node.StartAsync();

        var leaderId = await nodes[0].WaitForLeaderAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var leader = nodes.Single(n => n.Id == leaderId);

        var result = await leader.ProposeAsync(new byte[] { 1 }).AsTask().WaitAsync(TimeSpan.FromSeconds(30));

        await leader.ReadBarrierAsync().WaitAsync(TimeSpan.FromSeconds(30));

        foreach (var node in nodes)
            await node.DisposeAsync();

        Assert.Equal(1L, result);
    }

    private sealed class CounterStateMachine : IStateMachine
    {
        private long _count;

        public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult<object?>(++_count);

        public ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) =>
            destination.WriteAsync(BitConverter.GetBytes(_count), cancellationToken);

        public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
        {
            var buffer = new byte[8];
            await source.ReadExactlyAsync(buffer, cancellationToken);
            _count = BitConverter.ToInt64(buffer);
        }
    }
}
