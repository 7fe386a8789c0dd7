using System.Text.Json.Serialization;
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

    /// <summary>The README's typed example (RaftStateMachine, RaftClient, QueryAsync, WaitForAppliedAsync).</summary>
    [Fact]
    public async Task Readme_typed_example_runs()
    {
        int[] members = [1, 2, 3];
        var network = new InMemoryNetwork();
        var nodes = members.Select(id => new RaftNode(
            new RaftNodeOptions { NodeId = id, Members = members },
            network.CreateTransport(id),
            new InMemoryLogStore(),
            new RaftStateMachine<CounterCommand, long>(new Counter(), new JsonRaftSerializer<CounterCommand>(CounterJson.Default.CounterCommand)))).ToList();

        foreach (var node in nodes)
            await node.StartAsync();

        var leaderId = await nodes[0].WaitForLeaderAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var leader = nodes.Single(n => n.Id == leaderId);

        // Completes once the command is committed by a majority and applied; returns Apply's result.
        var client = new RaftClient<CounterCommand, long>(leader);
        long total = await client.ProposeAsync(new CounterCommand(Add: 5)).WaitAsync(TimeSpan.FromSeconds(30));

        // A linearizable read, run on the apply loop between two applies: Counter needs no locks.
        long read = await leader.QueryAsync((Counter c) => c.Total).WaitAsync(TimeSpan.FromSeconds(30));

        // A follower catches up: wait until it has applied what the leader committed.
        var follower = nodes.First(n => n.Id != leaderId);
        await follower.WaitForAppliedAsync(leader.Status.CommitIndex).WaitAsync(TimeSpan.FromSeconds(30));

        foreach (var node in nodes)
            await node.DisposeAsync();

        Assert.Equal(5L, total);
        Assert.Equal(5L, read);
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

/// <summary>The README typed example's command.</summary>
public sealed record CounterCommand(long Add);

/// <summary>The README typed example's JSON contract (source-generated: trimming and AOT safe).</summary>
[JsonSerializable(typeof(CounterCommand))]
internal sealed partial class CounterJson : JsonSerializerContext;

/// <summary>The README typed example's state machine.</summary>
internal sealed class Counter : IStateMachine<CounterCommand, long>
{
    public long Total { get; private set; }

    public long Apply(CounterCommand command, long index) => Total += command.Add;

    public ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) =>
        destination.WriteAsync(BitConverter.GetBytes(Total), cancellationToken);

    public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
    {
        var buffer = new byte[8];
        await source.ReadExactlyAsync(buffer, cancellationToken);
        Total = BitConverter.ToInt64(buffer);
    }
}
