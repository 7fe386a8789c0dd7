using System.Text;

namespace Raft.Tests.Node;

/// <summary>
/// <see cref="RaftNodeOptions.ForwardToLeader"/>: followers hand proposals and read barriers to the
/// leader over the transport, and complete them on their own state machine.
/// </summary>
public sealed class ForwardingTests
{
    private static ReadOnlyMemory<byte> Command(string text) => Encoding.UTF8.GetBytes(text);

    [Fact]
    public async Task AProposalOnAFollower_IsAppendedByTheLeader_AndCompletesWithTheFollowersResult()
    {
        await using var cluster = await NodeCluster.StartAsync(forwardToLeader: true);
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();

        var result = await cluster.RunAsync(follower.ProposeAsync(Command("a")), "a forwarded proposal");

        Assert.Equal(1L, result);
        Assert.Equal(["a"], cluster.Machines[follower.Id].Commands);
        await cluster.RunUntilAsync(() => cluster.Machines.Values.All(m => m.Commands.Length == 1), "every node to apply it");
        Assert.All(cluster.Machines.Values, m => Assert.Equal(["a"], m.Commands));
    }

    [Fact]
    public async Task ConcurrentProposals_OnEveryNode_EachGetTheirOwnResult()
    {
        await using var cluster = await NodeCluster.StartAsync(forwardToLeader: true);
        await cluster.LeaderAsync();

        var proposals = cluster.Running
            .SelectMany(node => Enumerable.Range(0, 40).Select(i => (Node: node.Id, Command: $"n{node.Id}-{i}", Task: node.ProposeAsync(Command($"n{node.Id}-{i}")).AsTask())))
            .ToArray();
        await cluster.RunAsync(Task.WhenAll(proposals.Select(p => p.Task)), "120 proposals on three nodes");

        foreach (var (node, command, task) in proposals)
        {
            // The result is the command's position on the proposing node's own state machine.
            var position = (long)(await task)!;
            Assert.Equal(command, cluster.Machines[node].Commands[position - 1]);
        }
        await cluster.RunUntilAsync(() => cluster.Machines.Values.All(m => m.Commands.Length == 120), "every node to apply all 120");
        var order = cluster.Machines[1].Commands;
        Assert.All(cluster.Machines.Values, m => Assert.Equal(order, m.Commands));
        Assert.Equal(120, order.Distinct().Count());
    }

    [Fact]
    public async Task AReadBarrierOnAFollower_WaitsUntilItHasAppliedEveryEarlierWrite()
    {
        await using var cluster = await NodeCluster.StartAsync(forwardToLeader: true);
        var leader = await cluster.LeaderAsync();
        var followers = cluster.Followers(leader).ToArray();
        var (lagging, other) = (followers[0], followers[1]);

        // The lagging follower stops receiving entries; the write commits with the other follower.
        cluster.Network.SetFilter(m => !(m is AppendEntries && m.To == lagging.Id));
        await cluster.RunAsync(leader.ProposeAsync(Command("a")), "a write committed without the lagging follower");
        Assert.Empty(cluster.Machines[lagging.Id].Commands);

        var read = lagging.ReadBarrierAsync();
        await cluster.AdvanceAsync(TimeSpan.FromSeconds(1));
        Assert.False(read.IsCompleted, "a follower's read must wait until it has applied the leader's read index");

        cluster.Network.SetFilter(null);
        await cluster.RunAsync(read, "the read, once the follower catches up");
        Assert.Equal(["a"], cluster.Machines[lagging.Id].Commands);
        Assert.Equal(["a"], cluster.Machines[other.Id].Commands);
    }

    [Fact]
    public async Task AForwardedBatchDeliveredTwice_IsAppendedOnce()
    {
        await using var cluster = await NodeCluster.StartAsync(forwardToLeader: true);
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();
        cluster.Network.SetLoss(dropRate: 0, duplicateRate: 1); // every message arrives twice

        var results = await cluster.RunAsync(Task.WhenAll(follower.ProposeAsync(Command("a")).AsTask(), follower.ProposeAsync(Command("b")).AsTask()), "two forwarded proposals");
        await cluster.RunAsync(leader.ProposeAsync(Command("c")), "a later proposal on the leader");
        await cluster.RunUntilAsync(() => cluster.Machines.Values.All(m => m.Commands.Length >= 3), "every node to apply three commands");
        await cluster.AdvanceAsync(TimeSpan.FromSeconds(1));

        Assert.Equal([1L, 2L], results.Select(r => (long)r!).Order());
        Assert.All(cluster.Machines.Values, m => Assert.Equal(["a", "b", "c"], m.Commands.Order()));
    }

    [Fact]
    public async Task AForwardedProposalTheLeaderNeverAnswers_FailsAsOutcomeUnknown_AfterTheTimeout()
    {
        await using var cluster = await NodeCluster.StartAsync(forwardToLeader: true, forwardTimeout: TimeSpan.FromSeconds(1));
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();
        cluster.Network.SetFilter(m => m is not ForwardResponse);

        var error = await Assert.ThrowsAsync<ProposalOutcomeUnknownException>(() => cluster.RunAsync(follower.ProposeAsync(Command("a")), "the timeout"));

        Assert.Contains("ForwardTimeout", error.Message, StringComparison.Ordinal);
        // Honestly unknown: the leader did append it, and it commits everywhere.
        await cluster.RunUntilAsync(() => cluster.Machines.Values.All(m => m.Commands.Length == 1), "the command to be applied anyway");
    }

    [Fact]
    public async Task AForwardedReadTheLeaderNeverAnswers_FailsWithNotLeader_AfterTheTimeout()
    {
        await using var cluster = await NodeCluster.StartAsync(forwardToLeader: true, forwardTimeout: TimeSpan.FromSeconds(1));
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();
        cluster.Network.SetFilter(m => m is not ForwardRequest);

        var error = await Assert.ThrowsAsync<NotLeaderException>(() => cluster.RunAsync(follower.ReadBarrierAsync(), "the timeout"));

        Assert.Contains("did not answer", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AForwardedProposal_WhoseLeaderIsReplacedBeforeAnswering_FailsAsOutcomeUnknown()
    {
        await using var cluster = await NodeCluster.StartAsync(forwardToLeader: true, forwardTimeout: TimeSpan.FromMinutes(10));
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();
        cluster.Network.SetFilter(m => m is not ForwardResponse);
        var proposal = follower.ProposeAsync(Command("a")).AsTask();
        await cluster.RunUntilAsync(() => cluster.Stores[leader.Id].LastIndex >= 2, "the leader to append the forwarded command");

        await cluster.StopAsync(leader.Id);
        var error = await Assert.ThrowsAsync<ProposalOutcomeUnknownException>(() => cluster.RunAsync(proposal, "a new leader"));

        Assert.Contains("stopped being the known leader", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABusyLeader_RefusesForwardedProposals_WithRaftBusyException_AndAppendsNothing()
    {
        await using var cluster = await NodeCluster.StartAsync(forwardToLeader: true, maxUncommittedEntries: 2);
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();
        await cluster.RunAsync(leader.ProposeAsync(Command("first")), "a committed command");
        var lastIndex = cluster.Stores[leader.Id].LastIndex;
        // Nothing commits any more: two uncommitted entries fill the leader's quota.
        cluster.Network.SetFilter(m => m is not AppendEntriesResponse);
        var stuck = new[] { leader.ProposeAsync(Command("x")).AsTask(), leader.ProposeAsync(Command("y")).AsTask() };

        await Assert.ThrowsAsync<RaftBusyException>(() => cluster.RunAsync(follower.ProposeAsync(Command("refused")), "the refusal"));

        Assert.Equal(lastIndex + 2, cluster.Stores[leader.Id].LastIndex);
        cluster.Network.SetFilter(null);
        await cluster.RunAsync(Task.WhenAll(stuck), "the leader's own commands, once acknowledgements flow");
        Assert.DoesNotContain("refused", cluster.Machines[leader.Id].Commands);
    }

    [Fact]
    public async Task AForwardingFollowerThatKnowsNoLeader_Refuses_WithNotLeaderException()
    {
        await using var cluster = await NodeCluster.StartAsync(forwardToLeader: true);
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();
        cluster.Network.Isolate(follower.Id);
        await cluster.RunUntilAsync(() => follower.Status.LeaderId == 0, "the isolated follower to lose its leader");

        var error = await Assert.ThrowsAsync<NotLeaderException>(() => cluster.RunAsync(follower.ProposeAsync(Command("a")), "the refusal"));
        var readError = await Assert.ThrowsAsync<NotLeaderException>(() => cluster.RunAsync(follower.ReadBarrierAsync(), "the read refusal"));

        Assert.Equal(0, error.LeaderId);
        Assert.Equal(0, readError.LeaderId);
    }

    [Fact]
    public void ForwardTimeout_MustBePositive()
    {
        var options = new RaftNodeOptions { NodeId = 1, Members = [1, 2, 3], ForwardToLeader = true, ForwardTimeout = TimeSpan.Zero };

        var error = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);

        Assert.Contains("ForwardTimeout", error.Message, StringComparison.Ordinal);
    }
}
