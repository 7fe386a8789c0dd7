using System.Text;
using Microsoft.Extensions.Time.Testing;
using Raft.Testing;

namespace Raft.Tests.Node;

/// <summary>
/// Three <see cref="RaftNode"/>s on an <see cref="InMemoryNetwork"/> with a <see cref="FakeTimeProvider"/>.
/// Virtual time moves in small steps while a condition is awaited; nothing depends on real
/// timing except generous guards against hangs.
/// </summary>
internal sealed class NodeCluster : IAsyncDisposable
{
    public static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan RealTimeGuard = TimeSpan.FromSeconds(30);
    private readonly Dictionary<int, RaftNode> _nodes = [];

    private NodeCluster(int seed) => Network = new InMemoryNetwork(seed, Time);

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public InMemoryNetwork Network { get; }

    public Dictionary<int, ListStateMachine> Machines { get; } = [];

    public Dictionary<int, InMemoryLogStore> Stores { get; } = [];

    public List<RaftStateChange> Changes { get; } = [];

    public IEnumerable<RaftNode> Running => _nodes.Values;

    public RaftNode this[int id] => _nodes[id];

    /// <summary>Whether the nodes forward to the leader (<see cref="RaftNodeOptions.ForwardToLeader"/>).</summary>
    public bool ForwardToLeader { get; private init; }

    public TimeSpan ForwardTimeout { get; private init; } = TimeSpan.FromSeconds(5);

    public int MaxUncommittedEntries { get; private init; } = 100_000;

    public static RaftNodeOptions Options(int id, int[] members, int seed) => Options(id, members, seed, null);

    private static RaftNodeOptions Options(int id, int[] members, int seed, NodeCluster? cluster) => new()
    {
        NodeId = id,
        Members = members,
        TickInterval = Tick,
        HeartbeatInterval = TimeSpan.FromMilliseconds(50),
        ElectionTimeoutMin = TimeSpan.FromMilliseconds(300),
        ElectionTimeoutMax = TimeSpan.FromMilliseconds(600),
        RandomSeed = seed * 31 + id,
        ForwardToLeader = cluster?.ForwardToLeader ?? false,
        ForwardTimeout = cluster?.ForwardTimeout ?? TimeSpan.FromSeconds(5),
        MaxUncommittedEntries = cluster?.MaxUncommittedEntries ?? 100_000,
    };

    public static async Task<NodeCluster> StartAsync(int size = 3, int seed = 1, bool forwardToLeader = false, TimeSpan? forwardTimeout = null, int maxUncommittedEntries = 100_000)
    {
        var cluster = new NodeCluster(seed)
        {
            ForwardToLeader = forwardToLeader,
            ForwardTimeout = forwardTimeout ?? TimeSpan.FromSeconds(5),
            MaxUncommittedEntries = maxUncommittedEntries,
        };
        var members = Enumerable.Range(1, size).ToArray();
        foreach (var id in members)
        {
            var machine = new ListStateMachine();
            var store = new InMemoryLogStore();
            var node = new RaftNode(Options(id, members, seed, cluster), cluster.Network.CreateTransport(id), store, machine, timeProvider: cluster.Time);
            node.StateChanged += (_, change) =>
            {
                lock (cluster.Changes)
                    cluster.Changes.Add(change);
            };
            cluster._nodes[id] = node;
            cluster.Machines[id] = machine;
            cluster.Stores[id] = store;
        }
        foreach (var node in cluster._nodes.Values)
            await node.StartAsync();
        return cluster;
    }

    /// <summary>Advances virtual time a tick at a time until <paramref name="condition"/> holds.</summary>
    public Task RunUntilAsync(Func<bool> condition, string what, double maxVirtualSeconds = 30) =>
        VirtualTime.RunUntilAsync(Time, Tick, condition, what, TimeSpan.FromSeconds(maxVirtualSeconds), RealTimeGuard);

    /// <summary>Advances virtual time by <paramref name="duration"/>, a tick at a time, letting the nodes run.</summary>
    public async Task AdvanceAsync(TimeSpan duration)
    {
        for (var elapsed = TimeSpan.Zero; elapsed < duration; elapsed += Tick)
        {
            Time.Advance(Tick);
            await Task.Delay(1);
        }
    }

    /// <summary>Drives virtual time until <paramref name="task"/> completes, then returns its result.</summary>
    public async Task<T> RunAsync<T>(Task<T> task, string what)
    {
        await RunUntilAsync(() => task.IsCompleted, what);
        return await task.WaitAsync(RealTimeGuard);
    }

    /// <summary>Drives virtual time until the proposal completes, then returns its result.</summary>
    public Task<T> RunAsync<T>(ValueTask<T> task, string what) => RunAsync(task.AsTask(), what);

    public async Task RunAsync(Task task, string what)
    {
        await RunUntilAsync(() => task.IsCompleted, what);
        await task.WaitAsync(RealTimeGuard);
    }

    /// <summary>Waits until the running nodes agree on one leader, and returns it.</summary>
    public async Task<RaftNode> LeaderAsync()
    {
        RaftNode? leader = null;
        await RunUntilAsync(() => (leader = VirtualTime.AgreedLeader(_nodes.Values)) is not null, "a leader that every running node follows");
        return leader!;
    }

    public IEnumerable<RaftNode> Followers(RaftNode leader) => _nodes.Values.Where(n => n != leader);

    /// <summary>Starts node <paramref name="id"/> again over its surviving store, with an empty state machine (replayed from the log).</summary>
    public async Task<RaftNode> RestartAsync(int id, int seed = 99)
    {
        var members = Stores.Keys.Order().ToArray();
        var machine = new ListStateMachine();
        var node = new RaftNode(Options(id, members, seed, this), Network.CreateTransport(id), Stores[id], machine, timeProvider: Time);
        Machines[id] = machine;
        _nodes[id] = node;
        await node.StartAsync();
        return node;
    }

    public async Task StopAsync(int id)
    {
        var node = _nodes[id];
        _nodes.Remove(id);
        await node.DisposeAsync().AsTask().WaitAsync(RealTimeGuard);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes.Values)
            await node.DisposeAsync().AsTask().WaitAsync(RealTimeGuard);
        _nodes.Clear();
    }
}

public sealed class RaftNodeTests
{
    private static ReadOnlyMemory<byte> Command(string text) => Encoding.UTF8.GetBytes(text);

    [Fact]
    public async Task ThreeNodes_ElectExactlyOneLeader_ThatEveryoneFollows()
    {
        await using var cluster = await NodeCluster.StartAsync();

        var leader = await cluster.LeaderAsync();

        Assert.Single(cluster.Running, n => n.Status.Role == RaftRole.Leader);
        Assert.All(cluster.Followers(leader), f => Assert.Equal(RaftRole.Follower, f.Status.Role));
        Assert.All(cluster.Running, n => Assert.Equal(leader.Id, n.Status.LeaderId));
        Assert.True(leader.Status.Term >= 1);
    }

    [Fact]
    public async Task ProposeAsync_ReturnsTheStateMachinesResult_AndEveryNodeAppliesTheCommand()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();

        var first = await cluster.RunAsync(leader.ProposeAsync(Command("a")), "the first proposal");
        var second = await cluster.RunAsync(leader.ProposeAsync(Command("b")), "the second proposal");

        Assert.Equal(1L, first);
        Assert.Equal(2L, second);
        Assert.Equal(["a", "b"], cluster.Machines[leader.Id].Commands);
        await cluster.RunUntilAsync(() => cluster.Machines.Values.All(m => m.Commands.Length == 2), "every node to apply both commands");
        Assert.All(cluster.Machines.Values, m => Assert.Equal(["a", "b"], m.Commands));
    }

    [Fact]
    public async Task ManyConcurrentProposals_EachGetTheirOwnResult()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();

        var tasks = Enumerable.Range(0, 50).Select(i => leader.ProposeAsync(Command($"c{i}")).AsTask()).ToArray();
        await cluster.RunAsync(Task.WhenAll(tasks), "50 proposals");

        var commands = cluster.Machines[leader.Id].Commands;
        for (var i = 0; i < tasks.Length; i++)
        {
            var position = (long)(await tasks[i])!;
            Assert.Equal($"c{i}", commands[position - 1]);
        }
        Assert.Equal(50, tasks.Select(t => t.Result).Distinct().Count());
    }

    [Fact]
    public async Task PooledProposals_ReusedOneAfterAnother_NeverMixUpResults()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();

        // Each await returns its proposal object to the pool, so the next proposal reuses it.
        for (var i = 0; i < 40; i++)
        {
            var position = (long)(await cluster.RunAsync(leader.ProposeAsync(Command($"s{i}")), $"proposal {i}"))!;
            Assert.Equal($"s{i}", cluster.Machines[leader.Id].Commands[position - 1]);
        }
        // Waves of concurrent proposals over the reused objects, each with its own result.
        for (var wave = 0; wave < 3; wave++)
        {
            var tasks = Enumerable.Range(0, 20).Select(i => leader.ProposeAsync(Command($"w{wave}-{i}")).AsTask()).ToArray();
            await cluster.RunAsync(Task.WhenAll(tasks), $"wave {wave}");
            for (var i = 0; i < tasks.Length; i++)
                Assert.Equal($"w{wave}-{i}", cluster.Machines[leader.Id].Commands[(long)(await tasks[i])! - 1]);
        }
    }

    [Fact]
    public async Task AProposalsValueTask_AwaitedTwice_ThrowsAClearError()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();

        var proposal = leader.ProposeAsync(Command("once"));
        await cluster.RunUntilAsync(() => proposal.IsCompleted, "the proposal");
        Assert.Equal(1L, await proposal);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await proposal);
        Assert.Contains("awaited twice", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ProposeAsyncOnAFollower_ThrowsNotLeaderException_NamingTheLeader()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();

        var error = await Assert.ThrowsAsync<NotLeaderException>(() => cluster.RunAsync(follower.ProposeAsync(Command("x")), "the refusal"));

        Assert.Equal(leader.Id, error.LeaderId);
        Assert.Contains(leader.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), error.Message, StringComparison.Ordinal);
        Assert.Empty(cluster.Machines[leader.Id].Commands);
    }

    [Fact]
    public async Task Status_ReportsIdRoleTermLeaderCommitAndApplied()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        await cluster.RunAsync(leader.ProposeAsync(Command("a")), "a proposal");
        await cluster.RunUntilAsync(() => cluster.Running.All(n => n.Status.AppliedIndex == 2 && n.Status.CommitIndex == 2), "every node to apply index 2");

        var status = leader.Status;
        Assert.Equal(leader.Id, status.Id);
        Assert.Equal(RaftRole.Leader, status.Role);
        Assert.Equal(leader.Id, status.LeaderId);
        Assert.True(status.Term >= 1);
        Assert.Equal(2, status.CommitIndex); // the leader's no-op and "a"
        Assert.Equal(2, status.AppliedIndex);
        Assert.Equal(2, status.LastLogIndex);
        Assert.Equal([1, 2, 3], status.Progress.Keys.Order());
        foreach (var follower in cluster.Followers(leader))
        {
            var s = follower.Status;
            Assert.Equal((follower.Id, RaftRole.Follower, leader.Id, status.Term), (s.Id, s.Role, s.LeaderId, s.Term));
            Assert.Empty(s.Progress);
        }
    }

    [Fact]
    public async Task StateChanged_FiresForTheNewLeaderAndItsFollowers()
    {
        await using var cluster = await NodeCluster.StartAsync();

        var leader = await cluster.LeaderAsync();
        var term = leader.Status.Term;
        await cluster.RunUntilAsync(() =>
        {
            lock (cluster.Changes)
                return cluster.Changes.Count(c => c.Term == term && c.LeaderId == leader.Id) >= 3;
        }, "state changes from all three nodes");

        RaftStateChange[] changes;
        lock (cluster.Changes)
            changes = [.. cluster.Changes];
        Assert.Contains(new RaftStateChange(leader.Id, RaftRole.Leader, leader.Id, term), changes);
        foreach (var follower in cluster.Followers(leader))
            Assert.Contains(new RaftStateChange(follower.Id, RaftRole.Follower, leader.Id, term), changes);
    }

    [Fact]
    public async Task ReadBarrierAsync_CompletesOnTheLeader_WithEarlierWritesApplied()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        await cluster.RunAsync(leader.ProposeAsync(Command("a")), "a proposal");

        await cluster.RunAsync(leader.ReadBarrierAsync(), "a read barrier");

        Assert.Equal(["a"], cluster.Machines[leader.Id].Commands);
        Assert.True(leader.Status.AppliedIndex >= 2);
    }

    [Fact]
    public async Task ReadBarrierAsyncOnAFollower_ThrowsNotLeaderException()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();

        var error = await Assert.ThrowsAsync<NotLeaderException>(() => cluster.RunAsync(follower.ReadBarrierAsync(), "the refusal"));

        Assert.Equal(leader.Id, error.LeaderId);
    }

    [Fact]
    public async Task StoppingTheLeader_ElectsANewLeader_AndCommittedCommandsSurvive()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var old = await cluster.LeaderAsync();
        for (var i = 0; i < 3; i++)
            await cluster.RunAsync(old.ProposeAsync(Command($"before{i}")), "a proposal to the first leader");
        var oldTerm = old.Status.Term;

        await cluster.StopAsync(old.Id);
        var leader = await cluster.LeaderAsync();
        var result = await cluster.RunAsync(leader.ProposeAsync(Command("after")), "a proposal to the new leader");

        Assert.NotEqual(old.Id, leader.Id);
        Assert.True(leader.Status.Term > oldTerm);
        Assert.Equal(4L, result);
        Assert.Equal(["before0", "before1", "before2", "after"], cluster.Machines[leader.Id].Commands);
        await cluster.RunUntilAsync(() => cluster.Running.All(n => cluster.Machines[n.Id].Commands.Length == 4), "the surviving follower to apply everything");
        Assert.All(cluster.Running, n => Assert.Equal(["before0", "before1", "before2", "after"], cluster.Machines[n.Id].Commands));
    }

    [Fact]
    public async Task RestartedFollower_RecoversItsLogAndCatchesUp()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        await cluster.RunAsync(leader.ProposeAsync(Command("a")), "a proposal");
        var follower = cluster.Followers(leader).First();
        await cluster.RunUntilAsync(() => cluster.Machines[follower.Id].Commands.Length == 1, "the follower to apply the first command");
        await cluster.StopAsync(follower.Id);
        await cluster.RunAsync(leader.ProposeAsync(Command("b")), "a proposal while the follower is down");

        var restarted = await cluster.RestartAsync(follower.Id);
        await cluster.RunAsync(leader.ProposeAsync(Command("c")), "a proposal after the restart");

        await cluster.RunUntilAsync(() => cluster.Machines[restarted.Id].Commands.Length == 3, "the restarted follower to apply everything");
        Assert.Equal(["a", "b", "c"], cluster.Machines[restarted.Id].Commands);
        Assert.Equal(leader.Id, restarted.Status.LeaderId);
    }

    [Fact]
    public async Task TransferLeadershipAsync_HandsLeadershipToTheTarget()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        var target = cluster.Followers(leader).Last();
        await cluster.RunAsync(leader.ProposeAsync(Command("a")), "a proposal");

        await cluster.RunAsync(leader.TransferLeadershipAsync(target.Id), "the transfer");
        var next = await cluster.LeaderAsync();

        Assert.Equal(target.Id, next.Id);
        Assert.Equal(2L, await cluster.RunAsync(next.ProposeAsync(Command("b")), "a proposal to the new leader"));
    }

    [Fact]
    public async Task DisposeAsync_IsIdempotent_AndLaterCallsThrowObjectDisposedException()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        var node = cluster.Followers(leader).First();
        await cluster.StopAsync(node.Id);

        await node.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        await node.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));

        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await node.ProposeAsync(Command("x")));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await node.ReadBarrierAsync());
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await node.WaitForLeaderAsync());
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await node.StartAsync());
        Assert.True(node.Completion.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task PendingProposal_FailsWithObjectDisposedException_WhenTheNodeIsDisposed()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        foreach (var follower in cluster.Followers(leader))
            cluster.Network.Isolate(follower.Id); // the proposal cannot commit
        var pending = leader.ProposeAsync(Command("never")).AsTask();
        await cluster.RunUntilAsync(() => leader.Status.LastLogIndex == 2, "the proposal to be appended");

        await cluster.StopAsync(leader.Id);

        await Assert.ThrowsAsync<ObjectDisposedException>(() => pending.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    private static RaftNode Create(RaftNodeOptions options) =>
        new(options, new InMemoryNetwork().CreateTransport(options.NodeId), new InMemoryLogStore(), new ListStateMachine());

    [Fact]
    public void DuplicateMemberIds_ThrowArgumentException_NamingTheDuplicate()
    {
        var error = Assert.ThrowsAny<ArgumentException>(() => Create(new RaftNodeOptions { NodeId = 1, Members = [1, 2, 2] }));

        Assert.Contains("Member id 2", error.Message, StringComparison.Ordinal);
        Assert.Contains("1, 2, 2", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NodeMissingFromMembers_ThrowsArgumentException_NamingTheNodeAndTheMembers()
    {
        var error = Assert.ThrowsAny<ArgumentException>(() => Create(new RaftNodeOptions { NodeId = 4, Members = [1, 2, 3] }));

        Assert.Contains("NodeId 4", error.Message, StringComparison.Ordinal);
        Assert.Contains("1, 2, 3", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(200, 300)]
    [InlineData(300, 300)]
    [InlineData(151, 300)]
    public void HeartbeatNotWellBelowTheElectionTimeout_ThrowsArgumentException_NamingBothValues(int heartbeatMs, int electionMs)
    {
        var options = new RaftNodeOptions
        {
            NodeId = 1,
            Members = [1, 2, 3],
            HeartbeatInterval = TimeSpan.FromMilliseconds(heartbeatMs),
            ElectionTimeoutMin = TimeSpan.FromMilliseconds(electionMs),
            ElectionTimeoutMax = TimeSpan.FromMilliseconds(2 * electionMs),
        };

        var error = Assert.ThrowsAny<ArgumentException>(() => Create(options));

        Assert.Equal(nameof(RaftNodeOptions.HeartbeatInterval), error.ParamName);
        Assert.Contains($"{heartbeatMs} ms", error.Message, StringComparison.Ordinal);
        Assert.Contains($"{electionMs} ms", error.Message, StringComparison.Ordinal);
    }

    // The millisecond values pass the checks, but rounded to whole ticks they do not: the error
    // must still name the settings the host configured (and their values), not derived tick counts.
    [Theory]
    [InlineData(100, 150, 300, 600, nameof(RaftNodeOptions.HeartbeatInterval), "150 ms", "300 ms")] // 2 ticks vs 3 ticks
    [InlineData(100, 100, 300, 340, nameof(RaftNodeOptions.ElectionTimeoutMax), "340 ms", "300 ms")] // both 3 ticks
    public void TimeoutsThatFailOnlyOnceRoundedToTicks_ThrowArgumentException_NamingTheConfiguredSettings(
        int tickMs, int heartbeatMs, int minMs, int maxMs, string paramName, string value1, string value2)
    {
        var options = new RaftNodeOptions
        {
            NodeId = 1,
            Members = [1, 2, 3],
            TickInterval = TimeSpan.FromMilliseconds(tickMs),
            HeartbeatInterval = TimeSpan.FromMilliseconds(heartbeatMs),
            ElectionTimeoutMin = TimeSpan.FromMilliseconds(minMs),
            ElectionTimeoutMax = TimeSpan.FromMilliseconds(maxMs),
        };

        var error = Assert.ThrowsAny<ArgumentException>(() => Create(options));

        Assert.Equal(paramName, error.ParamName);
        Assert.Contains(value1, error.Message, StringComparison.Ordinal);
        Assert.Contains(value2, error.Message, StringComparison.Ordinal);
        Assert.Contains($"TickInterval ({tickMs} ms)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void HeartbeatAtHalfTheElectionTimeout_IsAccepted()
    {
        var options = new RaftNodeOptions
        {
            NodeId = 1,
            Members = [1, 2, 3],
            HeartbeatInterval = TimeSpan.FromMilliseconds(150),
            ElectionTimeoutMin = TimeSpan.FromMilliseconds(300),
            ElectionTimeoutMax = TimeSpan.FromMilliseconds(600),
        };

        options.Validate();
        Assert.Equal(1, Create(options).Id);
    }
}
