using System.Text;
using Microsoft.Extensions.Time.Testing;
using Raft.Testing;
using Raft.Tests.Storage;

namespace Raft.Tests.Node;

/// <summary>
/// <see cref="RaftNodeOptions"/> is a settings object the host may keep, bind and change: the node
/// copies it (lists, address map and session limits included) when it is constructed, and
/// <see cref="RaftNodeOptions.RandomSeed"/> makes its election timeouts reproducible.
/// </summary>
public sealed class NodeOptionsTests
{
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan RealTimeGuard = TimeSpan.FromSeconds(60);

    private static FakeTimeProvider NewTime() => new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    private static ReadOnlyMemory<byte> Command(string text) => Encoding.UTF8.GetBytes(text);

    private static Task<TimeSpan> RunUntilAsync(FakeTimeProvider time, Func<bool> condition, string what) =>
        VirtualTime.RunUntilAsync(time, Tick, condition, what, TimeSpan.FromSeconds(60), RealTimeGuard);

    private static async Task<T> RunAsync<T>(FakeTimeProvider time, Task<T> task, string what)
    {
        await RunUntilAsync(time, () => task.IsCompleted, what);
        return await task;
    }

    [Fact]
    public async Task Changing_the_members_and_addresses_after_construction_changes_nothing_in_the_node()
    {
        // The host keeps mutable collections in its options and changes them after handing them over.
        var members = new List<int> { 1 };
        var addresses = new Dictionary<int, string> { [1] = "node1:7001" };
        var options = new RaftNodeOptions { NodeId = 1, Members = members, MemberAddresses = addresses, RandomSeed = 5 };
        var time = NewTime();
        var log = new ListLogger();
        await using var node = new RaftNode(options, new InMemoryNetwork(1, time).CreateTransport(1), new InMemoryLogStore(), new ListStateMachine(), loggerFactory: log.AsFactory(), timeProvider: time);

        members.Add(2); // a second voter that never answers: a node reading this list could not win alone
        addresses[1] = "elsewhere:9999";
        options.NodeId = 2;
        options.Members = [3];

        await node.StartAsync();
        await RunUntilAsync(time, () => node.Status.Role == RaftRole.Leader, "the single member to lead");
        Assert.Equal(1, node.Id);
        var member = Assert.Single(node.Configuration.Members);
        Assert.Equal((1, "node1:7001", MemberRole.Voter), (member.Id, member.Address, member.Role));
        var started = Assert.Single(log.Entries, e => e.EventId.Id == 1000);
        Assert.EndsWith("with members 1", started.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_nodes_copy_shares_no_collection_or_nested_options_with_the_hosts()
    {
        var members = new List<int> { 1, 2 };
        var addresses = new Dictionary<int, string> { [1] = "node1:7001" };
        var options = new RaftNodeOptions { NodeId = 1, Members = members, MemberAddresses = addresses, Sessions = new SessionOptions { MaxSessions = 10 } };
        var copy = options.DeepCopy();

        members.Add(3);
        addresses[1] = "elsewhere:9999";
        options.Sessions.MaxSessions = 1;

        Assert.Equal([1, 2], copy.Members);
        Assert.Equal("node1:7001", copy.MemberAddresses![1]);
        Assert.Equal(10, copy.Sessions.MaxSessions);
        Assert.Equal(options with { Members = copy.Members, MemberAddresses = copy.MemberAddresses, Sessions = copy.Sessions }, copy); // everything else copied
    }

    [Fact]
    public async Task Changing_a_setting_after_construction_changes_nothing_in_the_node()
    {
        var options = new RaftNodeOptions { NodeId = 1, Members = [1], SnapshotInterval = 0, RandomSeed = 5 };
        var time = NewTime();
        var snapshots = new InMemorySnapshotStore();
        await using var node = new RaftNode(options, new InMemoryNetwork(1, time).CreateTransport(1), new InMemoryLogStore(), new ListStateMachine(), snapshots, timeProvider: time);
        options.SnapshotInterval = 1; // read on every apply by a node that kept the host's object

        await node.StartAsync();
        await RunUntilAsync(time, () => node.Status.Role == RaftRole.Leader, "the single member to lead");
        for (var i = 0; i < 3; i++)
            await RunAsync(time, node.ProposeAsync(Command($"c{i}")).AsTask(), $"command {i}");

        Assert.Equal(4, node.Status.AppliedIndex); // the leader's no-op and three commands
        Assert.Null(snapshots.Latest); // snapshots stayed off
    }

    [Fact]
    public async Task Changing_the_session_limits_after_construction_changes_nothing_in_the_node()
    {
        var options = new RaftNodeOptions { NodeId = 1, Members = [1], RandomSeed = 5, Sessions = new SessionOptions { MaxSessions = 10 } };
        var time = NewTime();
        await using var node = new RaftNode(options, new InMemoryNetwork(1, time).CreateTransport(1), new InMemoryLogStore(), new ListStateMachine(), timeProvider: time);
        options.Sessions.MaxSessions = 1; // the nested object, not the property: a shallow copy would share it

        await node.StartAsync();
        await RunUntilAsync(time, () => node.Status.Role == RaftRole.Leader, "the single member to lead");
        var first = await RunAsync(time, node.OpenSessionAsync(), "the first session");
        await RunAsync(time, node.OpenSessionAsync(), "the second session");

        // With a limit of one, the second registration would have evicted the first.
        await RunAsync(time, first.ProposeAsync(Command("still registered")), "the first session's command");
    }

    [Fact]
    public async Task The_same_seed_gives_the_same_election_timeout_and_seeds_differ()
    {
        var ticks = new List<int>();
        foreach (var seed in new[] { 1, 2, 3, 4, 5 })
        {
            var first = await TicksToLeadAsync(seed);
            Assert.Equal(first, await TicksToLeadAsync(seed));
            ticks.Add(first);
        }
        Assert.True(ticks.Distinct().Count() > 1, $"five seeds all took {ticks[0]} ticks: the seed is not used");
    }

    // A single member campaigns when its randomized election timeout runs out, so the ticks until it
    // leads are that timeout. The node's rounds run here, one tick at a time (as the simulator runs
    // them), so the count does not depend on thread scheduling.
    private static async Task<int> TicksToLeadAsync(int seed)
    {
        var options = new RaftNodeOptions { NodeId = 1, Members = [1], RandomSeed = seed, ManualScheduling = true };
        await using var node = new RaftNode(options, new InMemoryNetwork().CreateTransport(1), new InMemoryLogStore(), new ListStateMachine());
        await node.StartAsync();
        for (var tick = 1; tick <= 1000; tick++)
        {
            node.TickForSimulation();
            while (node.HasInboxWork || node.HasWriterWork || node.HasApplyWork)
            {
                if (node.HasInboxWork)
                    await node.RunEventRoundAsync();
                if (node.HasWriterWork)
                    await node.RunWriterRoundAsync();
                if (node.HasApplyWork)
                    await node.RunApplyRoundAsync();
            }
            if (node.Status.Role == RaftRole.Leader)
                return tick;
        }
        throw new TimeoutException($"The member seeded {seed} did not lead within 1,000 ticks.");
    }

    [Fact]
    public void A_with_copy_changes_only_what_it_sets()
    {
        var original = new RaftNodeOptions { NodeId = 1, Members = [1, 2, 3], ElectionTimeoutMin = TimeSpan.FromMilliseconds(400), RandomSeed = 9 };
        var copy = original with { NodeId = 2, ForwardToLeader = true };

        Assert.Equal((2, true), (copy.NodeId, copy.ForwardToLeader));
        Assert.Equal((1, false), (original.NodeId, original.ForwardToLeader));
        Assert.Equal(original.Members, copy.Members);
        Assert.Equal((TimeSpan.FromMilliseconds(400), 9), (copy.ElectionTimeoutMin, copy.RandomSeed));
        Assert.Equal(original, copy with { NodeId = 1, ForwardToLeader = false }); // value equality
    }

    [Fact]
    public void Options_made_without_members_fail_validation_and_construction_naming_them()
    {
        // What a binder or an options factory leaves when the configuration lacks the section.
        var options = Activator.CreateInstance<RaftNodeOptions>();

        var error = Assert.ThrowsAny<ArgumentException>(options.Validate);
        Assert.Equal("NodeId", error.ParamName);
        options.NodeId = 1;
        error = Assert.ThrowsAny<ArgumentException>(options.Validate);
        Assert.Equal("Members", error.ParamName);
        error = Assert.ThrowsAny<ArgumentException>(() => new RaftNode(options, new InMemoryNetwork().CreateTransport(1), new InMemoryLogStore(), new ListStateMachine()));
        Assert.Equal("Members", error.ParamName);
    }
}
