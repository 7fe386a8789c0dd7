using Microsoft.Extensions.Time.Testing;
using Raft.Testing;
using Raft.Tests.Node;

namespace Raft.Tests.Typed;

/// <summary>
/// Nodes with any state machine and options, on an <see cref="InMemoryNetwork"/> and a
/// <see cref="FakeTimeProvider"/>: virtual time moves a tick at a time while a condition is awaited,
/// with a generous real-time guard against hangs.
/// </summary>
internal sealed class TestNodes : IAsyncDisposable
{
    public static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan RealTimeGuard = TimeSpan.FromSeconds(30);

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public InMemoryNetwork Network { get; }

    public Dictionary<int, RaftNode> Nodes { get; } = [];

    private TestNodes(int seed) => Network = new InMemoryNetwork(seed, Time);

    /// <summary>Options with the test clock and seeded randomness; <paramref name="configure"/> sets the rest.</summary>
    public static async Task<TestNodes> StartAsync(int size, Func<int, IStateMachine> stateMachine, Func<RaftNodeOptions, RaftNodeOptions>? configure = null, int seed = 1)
    {
        var nodes = new TestNodes(seed);
        int[] members = [.. Enumerable.Range(1, size)];
        foreach (var id in members)
        {
            var options = new RaftNodeOptions
            {
                NodeId = id,
                Members = members,
                TickInterval = Tick,
                HeartbeatInterval = TimeSpan.FromMilliseconds(50),
                ElectionTimeoutMin = TimeSpan.FromMilliseconds(300),
                ElectionTimeoutMax = TimeSpan.FromMilliseconds(600),
                RandomSeed = seed * 31 + id,
            };
            nodes.Nodes[id] = new RaftNode(configure?.Invoke(options) ?? options, nodes.Network.CreateTransport(id), new InMemoryLogStore(), stateMachine(id), timeProvider: nodes.Time);
        }
        foreach (var node in nodes.Nodes.Values)
            await node.StartAsync();
        return nodes;
    }

    /// <summary>A copy of <paramref name="o"/> with other timeouts, quorum check and lease settings.</summary>
    public static RaftNodeOptions With(RaftNodeOptions o, TimeSpan? proposalTimeout = null, TimeSpan? readTimeout = null, bool? checkQuorum = null, bool? leaseReads = null) => o with
    {
        ProposalTimeout = proposalTimeout ?? o.ProposalTimeout,
        ReadTimeout = readTimeout ?? o.ReadTimeout,
        CheckQuorum = checkQuorum ?? o.CheckQuorum,
        LeaseReads = leaseReads ?? o.LeaseReads,
    };

    /// <summary>Advances virtual time a tick at a time until <paramref name="condition"/> holds; returns the virtual time it took.</summary>
    public Task<TimeSpan> RunUntilAsync(Func<bool> condition, string what, double maxVirtualSeconds = 60) =>
        VirtualTime.RunUntilAsync(Time, Tick, condition, what, TimeSpan.FromSeconds(maxVirtualSeconds), RealTimeGuard);

    /// <summary>Drives virtual time until <paramref name="task"/> completes; returns it (completed, maybe faulted).</summary>
    public async Task<T> RunAsync<T>(T task, string what, double maxVirtualSeconds = 60) where T : Task
    {
        await RunUntilAsync(() => task.IsCompleted, what, maxVirtualSeconds);
        return task;
    }

    public async Task<RaftNode> LeaderAsync()
    {
        RaftNode? leader = null;
        // Its no-op committed too: reads are served.
        await RunUntilAsync(() => (leader = VirtualTime.AgreedLeader(Nodes.Values)) is { Status.CommitIndex: >= 1 }, "a leader every node follows");
        return leader!;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes.Values)
            await node.DisposeAsync().AsTask().WaitAsync(RealTimeGuard);
    }
}
