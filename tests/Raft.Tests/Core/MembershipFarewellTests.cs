using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Core;

/// <summary>
/// Once a removal commits, the leader sends the removed member one last append so it learns it was
/// removed. Its answer is expected: it is ignored, not refused as something "no correct member sends"
/// (which a node logs as a hostile peer and counts in <see cref="RaftCore.RejectedMessages"/>).
/// A response from a node that was never a member is still refused.
/// </summary>
public sealed class MembershipFarewellTests
{
    [Fact]
    public void The_answer_of_a_removed_member_to_the_leaders_last_append_is_ignored_not_refused()
    {
        var net = Network.Create(3);
        net.Campaign(1);
        var leader = net[1];
        leader.Propose("x");
        net.Stabilize();
        Assert.Equal(ProposeResult.Accepted, leader.Core.ProposeMembershipChange(MembershipChange.Remove(3), out _, out _));
        net.Stabilize();
        net.Tick(1, 4); // heartbeats after the commit

        Assert.True(net[3].Core.IsRemoved);
        Assert.Contains(net.Delivered, m => m is AppendEntriesResponse { From: 3, To: 1 });
        Assert.Equal(0, leader.Core.RejectedMessages);

        // Even a late or repeated one changes nothing and is not counted.
        var commit = leader.Core.CommitIndex;
        leader.Step(new AppendEntriesResponse(3, 1, leader.Core.Term, Success: true, MatchIndex: 1000));
        leader.Step(new InstallSnapshotResponse(3, 1, leader.Core.Term, 5, 0, Success: true, Done: true));
        Assert.Equal(0, leader.Core.RejectedMessages);
        Assert.Equal(commit, leader.Core.CommitIndex);
        Assert.False(leader.Core.Status.Progress.ContainsKey(3));

        // A stranger's answer is refused as before, and so is anything but an answer from the removed member.
        leader.Step(new AppendEntriesResponse(9, 1, leader.Core.Term, Success: true, MatchIndex: 1000));
        Assert.Equal(1, leader.Core.RejectedMessages);
        leader.Step(new TimeoutNow(3, 1, leader.Core.Term));
        Assert.Equal(2, leader.Core.RejectedMessages);
        Assert.Equal(RaftRole.Leader, leader.Core.Role);
    }
}
