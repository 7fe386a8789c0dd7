using System.Text;

namespace Raft.Tests.Node;

/// <summary>RaftNode.StopAsync: a stopping leader hands leadership over first.</summary>
public sealed class NodeStopTests
{
    [Fact]
    public async Task A_stopping_leader_hands_leadership_to_a_follower_before_an_election_timeout()
    {
        await using var cluster = await NodeCluster.StartAsync(seed: 5);
        var leader = await cluster.LeaderAsync();
        await cluster.RunAsync(leader.ProposeAsync(Encoding.UTF8.GetBytes("x")), "a write");
        var term = leader.Status.Term;
        var started = cluster.Time.GetUtcNow();

        await cluster.RunAsync(leader.StopAsync(), "the leader to stop");
        var id = leader.Id;
        await cluster.StopAsync(id); // already stopped: idempotent

        var successor = await cluster.LeaderAsync();
        Assert.NotEqual(id, successor.Id);
        // Handed over (TimeoutNow), not elected after an election timeout (300 ms minimum here).
        Assert.True(cluster.Time.GetUtcNow() - started < TimeSpan.FromMilliseconds(300), $"the new leader took {(cluster.Time.GetUtcNow() - started).TotalMilliseconds} ms");
        Assert.Equal(term + 1, successor.Status.Term);
    }

    [Fact]
    public async Task StopAsync_without_transfer_leaves_the_election_to_the_others()
    {
        await using var cluster = await NodeCluster.StartAsync(seed: 6);
        var leader = await cluster.LeaderAsync();
        var id = leader.Id;

        await leader.StopAsync(transferLeadership: false);
        await cluster.StopAsync(id);

        var successor = await cluster.LeaderAsync();
        Assert.NotEqual(id, successor.Id);
    }
}
