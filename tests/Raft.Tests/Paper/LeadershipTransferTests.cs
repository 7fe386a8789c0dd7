using Raft.Tests.Core;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Paper;

/// <summary>
/// Raft dissertation §3.10, leadership transfer: the leader brings the target's log up to date,
/// then sends it TimeoutNow; the target starts an election at once and wins it.
/// </summary>
public sealed class LeadershipTransferTests
{
    private static Network Cluster(bool preVote = true, bool checkQuorum = true) =>
        Network.Create(3, options: (id, members) => Options(id, members, preVote: preVote, checkQuorum: checkQuorum));

    // Raft dissertation §3.10: "the prior leader sends a TimeoutNow request to the target server ...
    // causing it to start a new election ... very likely to [win]". With PreVote and CheckQuorum on
    // (the defaults), the voters' leader lease must not stand in the way.
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void TransferToACaughtUpFollower_SendsTimeoutNow_AndTheTargetWins(bool preVote, bool checkQuorum)
    {
        var net = Cluster(preVote, checkQuorum);
        net.Campaign(1);
        net.Propose(1, "x");

        Assert.True(net[1].Core.TransferLeadership(3));
        net.Stabilize();

        Assert.Contains(new TimeoutNow(1, 3, 1), net.Delivered);
        Assert.Equal(RaftRole.Leader, net[3].Core.Role);
        Assert.Equal(2, net[3].Core.Term);
        Assert.Equal(RaftRole.Follower, net[1].Core.Role);
        Assert.Equal(3, net[1].Core.LeaderId);
        Assert.Equal(3, net[2].Core.LeaderId);
        Assert.Equal(0, net[1].Core.LeadTransferee);
    }

    // Raft dissertation §3.10 step 1: "The prior leader ... transfers any missing log entries to the
    // target" before telling it to time out: TimeoutNow follows the acknowledgement that the
    // target's log matches the leader's.
    [Fact]
    public void TransferToALaggingFollower_CatchesItUpBeforeTimeoutNow()
    {
        var net = Cluster();
        net.Campaign(1);
        net.Isolate(3);
        for (var i = 0; i < 4; i++)
            net.Propose(1, $"x{i}");
        net.Heal();
        var last = net[1].Core.LastIndex;

        Assert.True(net[1].Core.TransferLeadership(3));
        net.Stabilize();

        var timeoutAt = net.Delivered.FindIndex(m => m is TimeoutNow);
        var caughtUpAt = net.Delivered.FindIndex(m => m is AppendEntriesResponse { From: 3, Success: true } r && r.MatchIndex == last);
        Assert.InRange(caughtUpAt, 0, int.MaxValue);
        Assert.True(timeoutAt > caughtUpAt, "TimeoutNow went out before the target had caught up.");
        Assert.Equal(RaftRole.Leader, net[3].Core.Role);
        Assert.Equal(5, ReadAll(net[3].Store).Count(e => e.Term == 1)); // the no-op and the four commands
    }

    // Raft dissertation §3.10 step 1: "the prior leader stops accepting new client requests" during the transfer.
    [Fact]
    public void DuringATransfer_TheLeaderRefusesProposals()
    {
        var net = Cluster();
        net.Campaign(1);
        net.Isolate(3);

        Assert.True(net[1].Core.TransferLeadership(3));
        net.Stabilize();

        Assert.Equal(ProposeResult.TransferInProgress, net[1].Core.Propose(Bytes("x"), out var index));
        Assert.Equal(0, index);
        Assert.Equal(3, net[1].Core.LeadTransferee);
    }

    // Raft dissertation §3.10: "If the transfer does not complete after about an election timeout, the
    // prior leader aborts the transfer and resumes accepting client requests."
    [Fact]
    public void TransferThatDoesNotCompleteWithinAnElectionTimeout_IsAbandoned()
    {
        var net = Cluster();
        net.Campaign(1);
        net.Isolate(3);
        net[1].Core.TransferLeadership(3);
        net.Stabilize();

        net.Tick(1, net[1].Options.ElectionTicksMin);

        Assert.Equal(RaftRole.Leader, net[1].Core.Role);
        Assert.Equal(0, net[1].Core.LeadTransferee);
        Assert.Equal(ProposeResult.Accepted, net[1].Core.Propose(Bytes("x"), out _));
    }

    // Raft dissertation §3.10: the target must be another member of the cluster.
    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(0)]
    public void TransferToItselfOrANonMember_IsRefused(int target)
    {
        var leader = SteadyLeader();

        Assert.False(leader.Core.TransferLeadership(target));
        Assert.Equal(0, leader.Core.LeadTransferee);
        Assert.Equal(ProposeResult.Accepted, leader.Core.Propose(Bytes("x"), out _));
    }

    // Raft dissertation §3.10: only a leader can transfer leadership.
    [Fact]
    public void Follower_CannotTransferLeadership()
    {
        var follower = NewCore(1, [1, 2, 3]);

        Assert.False(follower.Core.TransferLeadership(2));
    }

    // Raft dissertation §3.10 / §9.6: TimeoutNow starts a real election at once, skipping the pre-vote
    // (the leader itself asked), and the requests say so, so voters ignore their leader lease.
    [Fact]
    public void TimeoutNow_MakesTheTargetCampaignAtOnce_WithoutAPreVote()
    {
        var target = NewCore(Options(3, [1, 2, 3], preVote: true, checkQuorum: true));
        target.Step(new AppendEntries(1, 3, 1, 0, 0, [], 0));

        var output = target.Step(new TimeoutNow(1, 3, 1));

        Assert.Equal(RaftRole.Candidate, target.Core.Role);
        Assert.Equal(2, target.Core.Term);
        var requests = output.Of<RequestVote>().ToArray();
        Assert.Equal(2, requests.Length);
        Assert.All(requests, r => Assert.True(r.LeadershipTransfer && !r.PreVote && r.Term == 2));
    }
}
