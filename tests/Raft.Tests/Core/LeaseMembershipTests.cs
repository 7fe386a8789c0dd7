using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Core;

/// <summary>
/// Lease reads under membership changes: the lease stands on the same quorum as ReadIndex, voters
/// only, so learners' acknowledgements never give a leader a lease.
/// </summary>
public sealed class LeaseMembershipTests
{
    private static RaftOptions LeaseOptions() => new()
    {
        NodeId = 1,
        Members = [1, 2, 3],
        ElectionTicksMin = 10,
        ElectionTicksMax = 20,
        HeartbeatTicks = 2,
        PreVote = false,
        CheckQuorum = true,
        LeaseReads = true,
        Random = new Random(1),
    };

    [Fact]
    public void Acknowledgements_of_learners_alone_give_no_lease()
    {
        var leader = SteadyLeader(LeaseOptions());
        foreach (var (learner, index) in new[] { (4, 2L), (5, 3L) })
        {
            Assert.Equal(ProposeResult.Accepted, leader.Core.ProposeMembershipChange(MembershipChange.AddLearner(learner), out _, out _));
            leader.Drain();
            foreach (var voter in new[] { 2, 3 })
                leader.Step(new AppendEntriesResponse(voter, 1, 1, Success: true, MatchIndex: index));
            Assert.Equal(index, leader.Core.CommitIndex);
        }
        Assert.Equal([4, 5], leader.Core.Configuration.Learners);

        // Heartbeat rounds past the lease: only the two learners answer them. Counted with the leader,
        // they would be three of five members; they are no voters, so no lease.
        for (var tick = 0; tick < 9; tick++)
        {
            foreach (var heartbeat in leader.Tick().Of<AppendEntries>().Where(a => a.To is 4 or 5))
                leader.Step(new AppendEntriesResponse(heartbeat.To, 1, 1, Success: true, MatchIndex: 3, ReadSequence: heartbeat.ReadSequence));
        }
        Assert.Equal(RaftRole.Leader, leader.Core.Role);
        Assert.False(leader.Core.HasLease, "learners' acknowledgements gave the leader a read lease");

        // One voter's acknowledgement of the newest round makes a majority of the voters: the lease is back.
        var round = leader.Tick(2).Of<AppendEntries>().Where(a => a.To == 2).Max(a => a.ReadSequence);
        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 3, ReadSequence: round));
        Assert.True(leader.Core.HasLease);
    }
}
