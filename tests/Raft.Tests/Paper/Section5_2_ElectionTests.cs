using Raft.Tests.Core;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Paper;

/// <summary>Raft paper §5.2, Leader election. PreVote and CheckQuorum are off: these are the plain rules.</summary>
public sealed class Section5_2_ElectionTests
{
    private static readonly int[] Three = [1, 2, 3];

    /// <summary>Ticks a lone follower until it campaigns; returns how many ticks that took.</summary>
    private static int TicksUntilCampaign(TestCore node, int limit = 1000)
    {
        var startTerm = node.Core.Term;
        for (var ticks = 1; ticks <= limit; ticks++)
        {
            node.Tick();
            if (node.Core.Term != startTerm)
                return ticks;
        }
        throw new InvalidOperationException("The node never campaigned.");
    }

    // Raft paper §5.2: "If a follower receives no communication over a period of time called the
    // election timeout, then it ... begins an election ... it increments its current term and
    // transitions to candidate state. It then votes for itself and issues RequestVote RPCs in
    // parallel to each of the other servers."
    [Fact]
    public void FollowerWhoseElectionTimeoutExpires_BecomesCandidate_BumpsItsTerm_VotesForItself_AndAsksEveryone()
    {
        var node = NewCore(1, [1, 2, 3, 4, 5], terms: [1, 1, 2], hardState: new HardState(2, 0, 0));

        var output = new Output();
        for (var i = 0; i < node.Options.ElectionTicksMax && node.Core.Role == RaftRole.Follower; i++)
        {
            node.Core.Tick();
            node.Drain(output);
        }

        Assert.Equal(RaftRole.Candidate, node.Core.Role);
        Assert.Equal(3, node.Core.Term);
        Assert.Equal(1, node.Core.VotedFor);
        var requests = output.Of<RequestVote>().OrderBy(m => m.To).ToArray();
        Assert.Equal(
            [2, 3, 4, 5],
            requests.Select(r => r.To));
        Assert.All(requests, r => Assert.Equal(new RequestVote(1, r.To, 3, LastLogIndex: 3, LastLogTerm: 2), r));
        // The vote for itself and the new term are durable before anyone is asked.
        Assert.Equal(new HardState(3, 1, 0), node.Store.HardState);
        Assert.All(requests, r => Assert.Contains(r, output.MessagesAfterPersist));
    }

    // Raft paper §5.2: "election timeouts are chosen randomly from a fixed interval".
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    public void ElectionTimeout_LiesWithinMinAndMax(int seed)
    {
        var node = NewCore(Options(1, Three, seed, electionMin: 10, electionMax: 20));

        var ticks = TicksUntilCampaign(node);

        Assert.InRange(ticks, 10, 19);
    }

    // Raft paper §5.2: the timeouts differ between nodes (here: seeds), which is what splits ties.
    [Fact]
    public void ElectionTimeout_DiffersAcrossSeeds()
    {
        var timeouts = Enumerable.Range(0, 20)
            .Select(seed => TicksUntilCampaign(NewCore(Options(1, Three, seed, electionMin: 10, electionMax: 20))))
            .ToHashSet();

        Assert.True(timeouts.Count >= 4, $"Only {timeouts.Count} distinct timeouts over 20 seeds: {string.Join(",", timeouts)}.");
        Assert.All(timeouts, t => Assert.InRange(t, 10, 19));
    }

    // Raft paper §5.2: "each candidate restarts its randomized election timeout at the start of an
    // election": a candidate that does not win times out again after a freshly drawn timeout.
    [Fact]
    public void CandidateThatNeitherWinsNorLoses_StartsANewElectionWithAFreshRandomTimeout()
    {
        var node = NewCore(Options(1, [1, 2, 3, 4, 5], seed: 3, electionMin: 10, electionMax: 20));
        TicksUntilCampaign(node);
        var timeouts = new List<int>();
        for (var election = 0; election < 15; election++)
        {
            var term = node.Core.Term;
            var ticks = TicksUntilCampaign(node);
            Assert.Equal(RaftRole.Candidate, node.Core.Role);
            Assert.Equal(term + 1, node.Core.Term);
            timeouts.Add(ticks);
        }

        Assert.All(timeouts, t => Assert.InRange(t, 10, 19));
        Assert.True(timeouts.Distinct().Count() > 1, $"The timeout was never redrawn: {string.Join(",", timeouts)}.");
    }

    // Raft paper §5.2: "A candidate wins an election if it receives votes from a majority of the
    // servers in the full cluster for the same term"; a majority of refusals sends it back to follower.
    [Theory]
    [InlineData(1, 0, 0, RaftRole.Leader)]
    [InlineData(3, 1, 0, RaftRole.Leader)]
    [InlineData(3, 0, 1, RaftRole.Candidate)]
    [InlineData(3, 0, 2, RaftRole.Follower)]
    [InlineData(5, 2, 0, RaftRole.Leader)]
    [InlineData(5, 1, 2, RaftRole.Candidate)]
    [InlineData(5, 1, 3, RaftRole.Follower)]
    [InlineData(5, 0, 2, RaftRole.Candidate)]
    public void CandidateWithVotesFromAMajority_BecomesLeader(int size, int grants, int rejections, RaftRole expected)
    {
        var node = NewCore(1, Ids(size));
        node.Campaign();
        var voter = 2;
        for (var i = 0; i < grants; i++)
            node.Step(new RequestVoteResponse(voter++, 1, 1, Granted: true));
        for (var i = 0; i < rejections; i++)
            node.Step(new RequestVoteResponse(voter++, 1, 1, Granted: false));

        Assert.Equal(expected, node.Core.Role);
        Assert.Equal(1, node.Core.Term);
    }

    // Raft paper §5.2: the same voter answering twice is one vote.
    [Fact]
    public void DuplicateGrantFromOneVoter_CountsOnce()
    {
        var node = NewCore(1, [1, 2, 3, 4, 5]);
        node.Campaign();

        node.Step(new RequestVoteResponse(2, 1, 1, Granted: true));
        node.Step(new RequestVoteResponse(2, 1, 1, Granted: true));

        Assert.Equal(RaftRole.Candidate, node.Core.Role);
    }

    // Raft paper §5.2: a network election: everyone learns the winner and its term.
    [Fact]
    public void ElectionInAConnectedCluster_GivesOneLeaderThatEveryoneFollows()
    {
        var net = Network.Create(5);

        net.Campaign(3);

        Assert.Equal(RaftRole.Leader, net[3].Core.Role);
        Assert.All(net.Nodes, n => Assert.Equal(1, n.Core.Term));
        Assert.All(net.Nodes, n => Assert.Equal(3, n.Core.LeaderId));
        Assert.Single(net.Leaders);
    }

    // Raft paper §5.2: "Each server will vote for at most one candidate in a given term, on a
    // first-come-first-served basis."
    [Fact]
    public void Voter_GrantsAtMostOneVotePerTerm()
    {
        var node = NewCore(1, Three);

        var first = node.Step(new RequestVote(2, 1, 1, 0, 0));
        var second = node.Step(new RequestVote(3, 1, 1, 0, 0));
        var again = node.Step(new RequestVote(2, 1, 1, 0, 0));

        Assert.True(Assert.Single(first.Of<RequestVoteResponse>()).Granted);
        Assert.False(Assert.Single(second.Of<RequestVoteResponse>()).Granted);
        // A retransmitted request from the candidate it voted for is granted again (the same vote).
        Assert.True(Assert.Single(again.Of<RequestVoteResponse>()).Granted);
        Assert.Equal(2, node.Core.VotedFor);
    }

    // Raft paper §5.2 and Figure 2 ("Persistent state ... updated on stable storage before
    // responding to RPCs"): the grant leaves only after the vote is durable. The Ready whose
    // MessagesAfterPersist carry the grant holds the vote in its HardState, and the grant is never
    // among the messages that may be sent before persisting.
    [Fact]
    public void Vote_IsInTheHardStateOfTheReadyThatCarriesTheGrant_AndTheGrantWaitsForPersistence()
    {
        var node = NewCore(1, Three, hardState: new HardState(1, 0, 0));

        node.Core.Step(new RequestVote(2, 1, 2, 0, 0));
        var ready = node.Core.GetReady();

        Assert.Equal(new HardState(2, 2, 0), ready.HardState);
        Assert.True(ready.MustSync);
        Assert.DoesNotContain(ready.Messages, m => m is RequestVoteResponse);
        var grant = Assert.IsType<RequestVoteResponse>(Assert.Single(ready.MessagesAfterPersist));
        Assert.True(grant.Granted);
        Assert.Equal(2, grant.Term);
        node.HandleReady(ready);
        Assert.Equal(new HardState(2, 2, 0), node.Store.HardState);
    }

    // Raft paper §5.2 / Figure 2: votedFor is persistent state: a restarted node still refuses a
    // second candidate in the same term.
    [Fact]
    public void Vote_SurvivesARestart()
    {
        var node = NewCore(1, Three);
        node.Step(new RequestVote(2, 1, 1, 0, 0));

        var restarted = node.Restart();
        var output = restarted.Step(new RequestVote(3, 1, 1, 0, 0));

        Assert.Equal(2, restarted.Core.VotedFor);
        Assert.False(Assert.Single(output.Of<RequestVoteResponse>()).Granted);
    }

    // Raft paper §5.2: a node that knows the leader of the current term does not vote for another candidate in it.
    [Fact]
    public void FollowerOfAKnownLeader_DeniesAVoteInTheSameTerm()
    {
        var node = NewCore(1, Three);
        node.Step(new AppendEntries(2, 1, 1, 0, 0, [], 0));

        var output = node.Step(new RequestVote(3, 1, 1, 0, 0));

        Assert.False(Assert.Single(output.Of<RequestVoteResponse>()).Granted);
        Assert.Equal(0, node.Core.VotedFor);
    }

    // Raft paper §5.1/§5.2: a vote is never granted to a candidate whose term is lower than the voter's.
    [Fact]
    public void Vote_IsDeniedToALowerTerm()
    {
        var node = NewCore(1, Three, hardState: new HardState(4, 0, 0));

        var output = node.Step(new RequestVote(2, 1, 3, 0, 0));

        var response = Assert.Single(output.Of<RequestVoteResponse>());
        Assert.False(response.Granted);
        Assert.Equal(4, response.Term);
        Assert.Equal(0, node.Core.VotedFor);
    }

    // Raft paper §5.2: "If the leader's term ... is at least as large as the candidate's current
    // term, then the candidate recognizes the leader as legitimate and returns to follower state."
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void CandidateReceivingAppendEntriesOfTheCurrentOrANewerTerm_BecomesFollower(long leaderTerm)
    {
        var node = NewCore(1, Three, hardState: new HardState(1, 0, 0));
        node.Campaign();
        Assert.Equal(2, node.Core.Term);

        var output = node.Step(new AppendEntries(3, 1, leaderTerm, 0, 0, [], 0));

        Assert.Equal(RaftRole.Follower, node.Core.Role);
        Assert.Equal(leaderTerm, node.Core.Term);
        Assert.Equal(3, node.Core.LeaderId);
        Assert.True(Assert.Single(output.Of<AppendEntriesResponse>()).Success);
    }

    // Raft paper §5.2: "If the term in the RPC is smaller than the candidate's current term, then the
    // candidate rejects the RPC and continues in candidate state."
    [Fact]
    public void CandidateReceivingAppendEntriesOfAnOlderTerm_RejectsItAndStaysCandidate()
    {
        var node = NewCore(1, Three, hardState: new HardState(1, 0, 0));
        node.Campaign();

        var output = node.Step(new AppendEntries(3, 1, 1, 0, 0, [], 0));

        Assert.Equal(RaftRole.Candidate, node.Core.Role);
        Assert.False(Assert.Single(output.Of<AppendEntriesResponse>()).Success);
    }

    // Raft paper §5.2: "if many followers become candidates at the same time, votes could be split
    // so that no candidate obtains a majority. When this happens, each candidate will time out and
    // start a new election by incrementing its term".
    [Fact]
    public void SplitVote_IsResolvedByANewElectionWithAHigherTerm()
    {
        var net = Network.Create(4);
        // 1 and 3 campaign at once; 2 hears 1 first, 4 hears 3 first: 2 votes each, no majority of 4.
        net.Cut(1, 4);
        net.Cut(3, 2);
        net[1].Core.Campaign();
        net[3].Core.Campaign();
        net.Stabilize();
        net.Heal();
        Assert.Empty(net.Leaders);
        Assert.Equal(RaftRole.Candidate, net[1].Core.Role);
        Assert.Equal(RaftRole.Candidate, net[3].Core.Role);
        Assert.All(net.Nodes, n => Assert.Equal(1, n.Core.Term));

        // The candidates time out; the one whose timeout expires first wins the next term.
        for (var i = 0; i < 100 && !net.Leaders.Any(); i++)
            net.TickAll(1);

        var leader = Assert.Single(net.Leaders);
        Assert.True(leader.Core.Term >= 2);
        Assert.All(net.Nodes, n => Assert.Equal(leader.Core.Term, n.Core.Term));
    }

    // Raft paper §5.2: a leader that discovers a higher term (here: a candidate's request) reverts to follower.
    [Fact]
    public void LeaderReceivingAHigherTerm_StepsDown()
    {
        var net = Network.Create(3);
        net.Campaign(1);

        var output = net[1].Step(new RequestVote(2, 1, 5, 10, 5));

        Assert.Equal(RaftRole.Follower, net[1].Core.Role);
        Assert.Equal(5, net[1].Core.Term);
        Assert.True(Assert.Single(output.Of<RequestVoteResponse>()).Granted);
        Assert.Contains(output.SoftStates, s => s.Role == RaftRole.Follower && s.Term == 5);
    }

    // Raft paper §5.2 and §5.4.2 / §8: "a leader ... commit[s] a blank no-op entry into the log at the
    // start of its term". The new leader appends it at once and sends it to every follower.
    [Fact]
    public void NewLeader_AppendsANoOpOfItsTermAndReplicatesIt()
    {
        var node = NewCore(1, Three, terms: [1, 1], hardState: new HardState(1, 0, 0));
        node.Campaign();

        var output = node.Step(new RequestVoteResponse(2, 1, 2, Granted: true));

        Assert.Equal(RaftRole.Leader, node.Core.Role);
        var noop = Assert.Single(output.Persisted);
        Assert.Equal(new LogEntry(3, 2, EntryKind.NoOp, ReadOnlyMemory<byte>.Empty), noop);
        var appends = output.Of<AppendEntries>().OrderBy(m => m.To).ToArray();
        Assert.Equal([2, 3], appends.Select(a => a.To));
        Assert.All(appends, a =>
        {
            Assert.Equal(2, a.Term);
            Assert.Equal(2, a.PrevLogIndex);
            Assert.Equal(1, a.PrevLogTerm);
            Assert.Equal(noop, Assert.Single(a.Entries));
        });
    }

    // Raft paper §5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no log
    // entries) to all followers in order to maintain their authority": every HeartbeatTicks ticks.
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Leader_SendsHeartbeatsToEveryFollowerEveryHeartbeatTicks(int heartbeat)
    {
        var node = NewCore(Options(1, Three, heartbeat: heartbeat));
        node.Campaign();
        node.Step(new RequestVoteResponse(2, 1, 1, Granted: true));

        for (var round = 0; round < 4; round++)
        {
            if (heartbeat > 1)
                Assert.Empty(node.Tick(heartbeat - 1).Of<AppendEntries>());
            var beats = node.Tick().Of<AppendEntries>().OrderBy(m => m.To).ToArray();
            Assert.Equal([2, 3], beats.Select(b => b.To));
            Assert.All(beats, b => Assert.Empty(b.Entries));
            Assert.All(beats, b => Assert.Equal(1, b.Term));
        }
    }

    // Raft paper §5.2: "A server remains in follower state as long as it receives valid RPCs from a
    // leader": with heartbeats delivered, nobody starts an election for many timeouts.
    [Fact]
    public void FollowersHearingHeartbeats_NeverStartAnElection()
    {
        var net = Network.Create(3);
        net.Campaign(1);

        net.TickAll(200);

        Assert.All(net.Nodes, n => Assert.Equal(1, n.Core.Term));
        Assert.Equal(RaftRole.Leader, net[1].Core.Role);
    }

    // Raft paper §5.2: a follower whose leader is gone times out and a new leader is elected.
    [Fact]
    public void FollowersOfAVanishedLeader_ElectANewOne()
    {
        var net = Network.Create(3);
        net.Campaign(1);
        net.Isolate(1);

        for (var i = 0; i < 100 && !net.Leaders.Any(n => n.Id != 1); i++)
            net.TickAll(1);

        var leader = Assert.Single(net.Leaders, n => n.Id != 1);
        Assert.True(leader.Core.Term > 1);
    }
}
