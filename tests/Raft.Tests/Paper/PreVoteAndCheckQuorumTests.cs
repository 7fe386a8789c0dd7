using Raft.Tests.Core;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Paper;

/// <summary>
/// Raft dissertation §9.6 (PreVote) and §6.2 / §4.2.3 (CheckQuorum and the leader lease): the
/// extensions that keep a partitioned node from disrupting a working cluster.
/// </summary>
public sealed class PreVoteAndCheckQuorumTests
{
    private static readonly int[] Three = [1, 2, 3];

    private static Network Cluster(bool preVote, bool checkQuorum, int size = 3, int seed = 1) =>
        Network.Create(size, options: (id, members) => Options(id, members, seed, preVote: preVote, checkQuorum: checkQuorum));

    /// <summary>Node 1 leads; node 3 is cut off and ticks for several election timeouts while the others commit entries.</summary>
    private static void PartitionNode3AndLetItTimeOut(Network net, bool proposeWhilePartitioned)
    {
        net.Campaign(1);
        Assert.Equal(RaftRole.Leader, net[1].Core.Role);
        net.Isolate(3);
        for (var round = 0; round < 60; round++)
        {
            net.TickAll(1);
            if (proposeWhilePartitioned && round % 10 == 0)
                net.Propose(1, $"p{round}");
        }
    }

    // Raft dissertation §9.6: "a candidate would first ask other servers whether its log was up-to-date
    // enough to get their vote ... the candidate would not increment its term". The pre-candidate's
    // term and vote stay as they were, and nothing needs persisting.
    [Fact]
    public void PreCandidate_DoesNotBumpItsTerm_AndAsksWithTheTermItWouldUse()
    {
        var node = NewCore(Options(1, Three, preVote: true), terms: [1, 1], hardState: new HardState(3, 0, 0));

        var output = node.Campaign();

        Assert.Equal(RaftRole.PreCandidate, node.Core.Role);
        Assert.Equal(3, node.Core.Term);
        Assert.Empty(output.HardStates);
        Assert.Equal(new HardState(3, 0, 0), node.Store.HardState);
        var requests = output.Of<RequestVote>().OrderBy(r => r.To).ToArray();
        Assert.Equal([2, 3], requests.Select(r => r.To));
        Assert.All(requests, r => Assert.Equal(new RequestVote(1, r.To, 4, 2, 1, PreVote: true), r));
    }

    // Raft dissertation §9.6: answering a pre-vote changes nothing on the voter: no term, no vote.
    [Fact]
    public void AnsweringAPreVote_ChangesNeitherTheVotersTermNorItsVote()
    {
        var voter = NewCore(Options(2, Three, preVote: true), terms: [1], hardState: new HardState(3, 0, 0));

        var output = voter.Step(new RequestVote(1, 2, 4, 1, 1, PreVote: true));

        var response = Assert.Single(output.Of<RequestVoteResponse>());
        Assert.True(response.Granted);
        Assert.True(response.PreVote);
        Assert.Equal(4, response.Term);
        Assert.Equal(3, voter.Core.Term);
        Assert.Equal(0, voter.Core.VotedFor);
        Assert.Empty(output.HardStates);
    }

    // Raft dissertation §9.6: a pre-vote is refused to a log that is not up to date, like a real vote.
    [Fact]
    public void PreVote_IsRefusedToAStaleLog()
    {
        var voter = NewCore(Options(2, Three, preVote: true), terms: [1, 2], hardState: new HardState(3, 0, 0));

        var output = voter.Step(new RequestVote(1, 2, 4, 5, 1, PreVote: true));

        Assert.False(Assert.Single(output.Of<RequestVoteResponse>()).Granted);
        Assert.Equal(3, voter.Core.Term);
    }

    // Raft dissertation §9.6: "If the candidate learned from a majority of the cluster that it could
    // win, it would then increment its term and start a normal election".
    [Fact]
    public void PreCandidateWithAMajorityOfPreVotes_RunsARealElectionAndWins()
    {
        var net = Cluster(preVote: true, checkQuorum: true);

        net.Campaign(2);

        Assert.Equal(RaftRole.Leader, net[2].Core.Role);
        Assert.Equal(1, net[2].Core.Term);
        Assert.Contains(net.Delivered, m => m is RequestVote { PreVote: true });
        Assert.Contains(net.Delivered, m => m is RequestVote { PreVote: false });
    }

    // Raft dissertation §9.6: a node rejoining after a partition does not disrupt the cluster: while cut
    // off it never bumped its term, and on return it follows the leader, whose term is unchanged.
    [Theory]
    [InlineData(true, false, true)]  // PreVote alone, the partitioned node's log fell behind
    [InlineData(true, true, true)]   // PreVote and CheckQuorum
    [InlineData(true, true, false)]  // PreVote and CheckQuorum, logs still equal (the lease protects the leader)
    public void PartitionedNodeRejoining_DoesNotBumpTermsOrDeposeTheLeader(bool preVote, bool checkQuorum, bool proposeWhilePartitioned)
    {
        var net = Cluster(preVote, checkQuorum);
        PartitionNode3AndLetItTimeOut(net, proposeWhilePartitioned);
        Assert.Equal(1, net[3].Core.Term);
        Assert.Equal(RaftRole.PreCandidate, net[3].Core.Role);

        net.Heal();
        net.TickAll(60);

        Assert.Equal(RaftRole.Leader, net[1].Core.Role);
        Assert.All(net.Nodes, n => Assert.Equal(1, n.Core.Term));
        Assert.Equal(1, net[3].Core.LeaderId);
        Assert.Equal(net[1].Core.LastIndex, net[3].Core.LastIndex);
    }

    // Raft dissertation §9.6, the contrast that makes the test above meaningful: without PreVote the rejoining node has
    // bumped its term many times and deposes the working leader on return (§9.6's motivating case).
    [Fact]
    public void WithoutPreVote_APartitionedNodeRejoining_DeposesTheLeader()
    {
        var net = Cluster(preVote: false, checkQuorum: false);
        PartitionNode3AndLetItTimeOut(net, proposeWhilePartitioned: true);
        Assert.True(net[3].Core.Term > 1);

        net.Heal();
        net.TickAll(60);

        Assert.All(net.Nodes, n => Assert.True(n.Core.Term > 1));
    }

    // Raft dissertation §6.2: "a leader ... steps down if an election timeout elapses without a
    // successful round of heartbeats to a majority of its cluster". Quorum is checked every
    // ElectionTicksMin ticks, so an isolated leader steps down within two of those periods.
    [Fact]
    public void CheckQuorum_IsolatedLeaderStepsDown()
    {
        var net = Cluster(preVote: true, checkQuorum: true);
        net.Campaign(1);
        net.TickAll(7);
        net.Isolate(1);
        var min = net[1].Options.ElectionTicksMin;

        var ticks = 0;
        while (net[1].Core.Role == RaftRole.Leader && ticks < 10 * min)
        {
            net.Tick(1, 1);
            ticks++;
        }

        Assert.Equal(RaftRole.Follower, net[1].Core.Role);
        Assert.Equal(0, net[1].Core.LeaderId);
        Assert.InRange(ticks, 1, 2 * min);
        Assert.Equal(1, net[1].Core.Term); // stepping down does not bump the term
    }

    // Raft dissertation §6.2: a leader that keeps hearing from a majority stays leader, even with one
    // follower gone.
    [Fact]
    public void CheckQuorum_LeaderHearingFromAMajority_StaysLeader()
    {
        var net = Cluster(preVote: true, checkQuorum: true);
        net.Campaign(1);
        net.Isolate(3);

        net.Tick(1, 10 * net[1].Options.ElectionTicksMax);

        Assert.Equal(RaftRole.Leader, net[1].Core.Role);
    }

    // Raft dissertation §6.2, the contrast: without CheckQuorum an isolated leader never notices.
    [Fact]
    public void WithoutCheckQuorum_IsolatedLeaderStaysLeader()
    {
        var net = Cluster(preVote: false, checkQuorum: false);
        net.Campaign(1);
        net.Isolate(1);

        net.Tick(1, 10 * net[1].Options.ElectionTicksMax);

        Assert.Equal(RaftRole.Leader, net[1].Core.Role);
    }

    // Raft dissertation §4.2.3: "if a server receives a RequestVote request within the minimum election
    // timeout of hearing from a current leader, it does not update its term or grant its vote".
    [Fact]
    public void CheckQuorum_FollowerThatRecentlyHeardFromTheLeader_IgnoresAHigherTermVoteRequest()
    {
        var follower = NewCore(Options(2, Three, checkQuorum: true));
        follower.Step(new AppendEntries(1, 2, 1, 0, 0, [], 0));

        var output = follower.Step(new RequestVote(3, 2, 5, 10, 4));

        Assert.Empty(output.Sent);
        Assert.Equal(1, follower.Core.Term);
        Assert.Equal(1, follower.Core.LeaderId);
        Assert.Equal(0, follower.Core.VotedFor);
    }

    // Raft dissertation §4.2.3: once the minimum election timeout has passed without the leader, the
    // follower takes part in elections again.
    [Fact]
    public void CheckQuorum_FollowerWhoseLeaseExpired_GrantsAHigherTermVote()
    {
        var follower = NewCore(Options(2, Three, checkQuorum: true, electionMin: 10, electionMax: 1000));
        follower.Step(new AppendEntries(1, 2, 1, 0, 0, [], 0));
        follower.Tick(10);
        Assert.Equal((RaftRole.Follower, 1), (follower.Core.Role, follower.Core.LeaderId));

        var output = follower.Step(new RequestVote(3, 2, 5, 10, 4));

        Assert.True(Assert.Single(output.Of<RequestVoteResponse>()).Granted);
        Assert.Equal(5, follower.Core.Term);
    }
}
