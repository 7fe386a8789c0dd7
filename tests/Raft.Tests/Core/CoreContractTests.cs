using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Core;

/// <summary>The host contract of <see cref="RaftCore"/>: one Ready at a time, addressing, membership, recovery, back-pressure.</summary>
public sealed class CoreContractTests
{
    private static readonly int[] Three = [1, 2, 3];

    [Fact]
    public void WhileAReadyIsOutstanding_EveryInputThrows_UntilAdvance()
    {
        var node = NewCore(1, Three);
        node.Core.Campaign();
        var ready = node.Core.GetReady();

        Assert.Throws<InvalidOperationException>(() => node.Core.Tick());
        Assert.Throws<InvalidOperationException>(() => node.Core.Step(new RequestVoteResponse(2, 1, 1, Granted: true)));
        Assert.Throws<InvalidOperationException>(() => node.Core.Propose(Bytes("x"), out _));
        Assert.Throws<InvalidOperationException>(() => node.Core.Campaign());
        Assert.Throws<InvalidOperationException>(() => node.Core.ReadIndex(1));
        Assert.Throws<InvalidOperationException>(() => node.Core.TransferLeadership(2));
        Assert.Throws<InvalidOperationException>(() => node.Core.GetReady());
        Assert.Equal(RaftRole.Candidate, node.Core.Role); // read-only members still work

        node.HandleReady(ready);
        node.Step(new RequestVoteResponse(2, 1, 1, Granted: true));
        Assert.Equal(RaftRole.Leader, node.Core.Role);
    }

    [Fact]
    public void Advance_WithoutAnOutstandingReady_Throws()
    {
        var node = NewCore(1, Three);
        node.Core.Campaign();
        var ready = node.Core.GetReady();
        node.Core.Advance(ready);

        Assert.Throws<InvalidOperationException>(() => node.Core.Advance(ready));
    }

    [Fact]
    public void FreshFollower_HasNothingToDo()
    {
        var node = NewCore(1, Three, terms: [1, 1], hardState: new HardState(1, 0, 0));

        Assert.False(node.Core.HasReady);
    }

    [Fact]
    public void AMessageForAnotherNode_IsRejected()
    {
        var node = NewCore(1, Three);

        var error = Assert.Throws<ArgumentException>(() => node.Core.Step(new RequestVote(2, 3, 1, 0, 0)));

        Assert.Contains("node 3", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MessagesFromNonMembers_AreIgnored_WhateverTheirTerm()
    {
        var node = NewCore(1, Three);

        var output = node.Step(new AppendEntries(9, 1, 50, 0, 0, [], 0));

        Assert.Empty(output.Sent);
        Assert.Equal(0, node.Core.Term);
        Assert.Equal(0, node.Core.LeaderId);
    }

    [Fact]
    public void RestartedNode_RecoversTermVoteLogAndCommitFromItsStore()
    {
        var node = NewCore(1, Three, terms: [1, 2, 2], hardState: new HardState(3, 2, 2));

        Assert.Equal((3L, 2, 3L, 2L, 2L), (node.Core.Term, node.Core.VotedFor, node.Core.LastIndex, node.Core.LastTerm, node.Core.CommitIndex));
        Assert.Equal(RaftRole.Follower, node.Core.Role);
        // The committed entries are handed out again for the (empty) state machine, once.
        Assert.Equal([1L, 2L], node.Drain().Committed.Select(e => e.Index));
        Assert.Empty(node.Drain().Committed);
    }

    [Fact]
    public void SoftState_IsReportedOnlyWhenRoleLeaderOrTermChange()
    {
        var node = NewCore(1, Three);

        var campaign = node.Campaign();
        var again = node.Tick();
        var won = node.Step(new RequestVoteResponse(2, 1, 1, Granted: true));

        Assert.Equal([new SoftState(RaftRole.Candidate, 0, 1)], campaign.SoftStates);
        Assert.Empty(again.SoftStates);
        Assert.Equal([new SoftState(RaftRole.Leader, 1, 1)], won.SoftStates);
    }

    [Fact]
    public void Leader_RefusesProposalsBeyondMaxUncommittedEntries_UntilTheyCommit()
    {
        var leader = SteadyLeader(Options(1, Three, maxUncommitted: 3));
        for (var i = 0; i < 3; i++)
            leader.Propose($"p{i}");

        Assert.Equal(ProposeResult.Backpressure, leader.Core.Propose(Bytes("over"), out var refused));
        Assert.Equal(0, refused);
        leader.Drain();
        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 4));
        Assert.Equal(ProposeResult.Accepted, leader.Core.Propose(Bytes("after"), out var index));
        Assert.Equal(5, index);
    }

    [Fact]
    public void Follower_RefusesProposals()
    {
        var node = NewCore(1, Three);

        Assert.Equal(ProposeResult.NotLeader, node.Core.Propose(Bytes("x"), out var index));
        Assert.Equal(0, index);
        Assert.False(node.Core.HasReady);
    }

    [Fact]
    public void StatusEquals_TracksEveryFieldAndEachFollowersMatch()
    {
        var follower = NewCore(1, Three);
        Assert.True(follower.Core.StatusEquals(follower.Core.Status));
        Assert.False(follower.Core.StatusEquals(follower.Core.Status with { Term = 7 }));

        var leader = SteadyLeader(Options(1, Three));
        var before = leader.Core.Status;
        Assert.True(leader.Core.StatusEquals(before));
        leader.Propose("x");
        leader.Drain();
        var appended = leader.Core.Status;
        Assert.False(leader.Core.StatusEquals(before));
        Assert.True(leader.Core.StatusEquals(appended));

        // Only a follower's match index moves (commit moved too: compare progress alone by rebuilding).
        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 2));
        leader.Drain();
        var afterOne = leader.Core.Status;
        Assert.Equal(2, afterOne.Progress[2]);
        Assert.False(leader.Core.StatusEquals(afterOne with { Progress = appended.Progress }));
        Assert.True(leader.Core.StatusEquals(afterOne));
    }
}
