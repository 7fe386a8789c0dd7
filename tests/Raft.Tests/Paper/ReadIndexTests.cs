using Raft.Tests.Core;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Paper;

/// <summary>
/// Raft dissertation §6.4, linearizable reads without writing to the log (ReadIndex): the leader
/// records its commit index, confirms with a round of heartbeats that a majority still follows it,
/// and only then releases the read, which is served once that index is applied.
/// </summary>
public sealed class ReadIndexTests
{
    private static AppendEntriesResponse Echo(AppendEntries heartbeat, long match) =>
        new(heartbeat.To, heartbeat.From, heartbeat.Term, Success: true, MatchIndex: match, ReadSequence: heartbeat.ReadSequence);

    // Raft paper §8 and dissertation §6.4 step 3: "The leader sends heartbeats ... once it receives acknowledgments
    // from a majority of the cluster, it knows that it was still the leader at the time it sent the
    // heartbeats" — and only then may the read proceed.
    [Fact]
    public void Read_IsReleasedOnlyOnceAMajorityAcknowledgesTheLeadersHeartbeat()
    {
        var leader = SteadyLeader(size: 5);

        Assert.True(leader.Core.ReadIndex(42));
        var output = leader.Drain();

        Assert.Empty(output.ReadStates);
        var beats = output.Of<AppendEntries>().ToDictionary(b => b.To);
        Assert.Equal([2, 3, 4, 5], beats.Keys.Order());
        Assert.Empty(leader.Step(Echo(beats[2], 1)).ReadStates); // leader + 1 of 5
        var released = leader.Step(Echo(beats[3], 1)).ReadStates; // leader + 2 of 5: a majority
        Assert.Equal([new ReadState(42, 1)], released);
        Assert.Empty(leader.Step(Echo(beats[4], 1)).ReadStates); // released once only
    }

    // Raft paper §8 and dissertation §6.4 step 1: "If the leader has not yet marked an entry from its current term
    // committed, it waits until it has done so." A new leader does not know the latest commit index.
    [Fact]
    public void Read_IsNotReleasedBeforeTheLeaderCommitsAnEntryOfItsTerm()
    {
        var leader = NewCore(Options(1, [1, 2, 3]), terms: [1, 1], hardState: new HardState(1, 0, 1));
        leader.Campaign();
        leader.Step(new RequestVoteResponse(2, 1, 2, Granted: true));
        Assert.Equal(RaftRole.Leader, leader.Core.Role);
        Assert.Equal(3, leader.Core.LastIndex); // the no-op of term 2, not committed yet

        Assert.True(leader.Core.ReadIndex(7));
        Assert.Empty(leader.Drain().ReadStates);
        var output = leader.Tick(leader.Options.HeartbeatTicks); // heartbeats, answered below
        foreach (var beat in output.Of<AppendEntries>())
            Assert.Empty(leader.Step(Echo(beat, 0)).ReadStates);
        Assert.Equal(1, leader.Core.CommitIndex);

        // The no-op commits; then the read is confirmed with a fresh round of heartbeats.
        var afterCommit = leader.Step(new AppendEntriesResponse(2, 1, 2, Success: true, MatchIndex: 3));
        Assert.Equal(3, leader.Core.CommitIndex);
        Assert.Empty(afterCommit.ReadStates);
        var confirm = afterCommit.To<AppendEntries>(3).Last(a => a.Entries.Count == 0);
        var released = leader.Step(Echo(confirm, 0)).ReadStates;

        Assert.Equal([new ReadState(7, 3)], released);
    }

    // Raft dissertation §6.4: only heartbeats sent after the read was requested prove leadership for it;
    // acknowledgements of earlier heartbeats do not.
    [Fact]
    public void AcknowledgementsOfHeartbeatsSentBeforeTheRead_DoNotReleaseIt()
    {
        var leader = SteadyLeader(size: 3);
        var oldBeats = leader.Tick(leader.Options.HeartbeatTicks).Of<AppendEntries>().ToArray();
        Assert.Equal([2, 3], oldBeats.Select(b => b.To).Distinct().Order());

        leader.Core.ReadIndex(9);
        var newBeats = leader.Drain().Of<AppendEntries>().ToArray();
        foreach (var beat in oldBeats)
            Assert.Empty(leader.Step(Echo(beat, 1)).ReadStates);

        Assert.Equal([new ReadState(9, 1)], leader.Step(Echo(newBeats[0], 1)).ReadStates);
    }

    // Raft dissertation §6.4 step 2: "the leader saves its current commit index in a local variable
    // readIndex": entries committed after the request do not change the read's index.
    [Fact]
    public void ReadStateIndex_IsTheCommitIndexWhenTheReadWasRequested()
    {
        var leader = SteadyLeader(size: 3);
        var index = leader.Propose("x");
        leader.Drain();
        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: index));
        Assert.Equal(2, leader.Core.CommitIndex);

        leader.Core.ReadIndex(5);
        var beat = leader.Drain().To<AppendEntries>(3).Single();
        leader.Propose("y");
        leader.Drain();
        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 3));
        Assert.Equal(3, leader.Core.CommitIndex);

        Assert.Equal([new ReadState(5, 2)], leader.Step(Echo(beat, 2)).ReadStates);
    }

    // Raft dissertation §6.4: a read needs the leader; a follower refuses (the host then forwards it).
    [Fact]
    public void Follower_RefusesAReadIndexRequest()
    {
        var follower = NewCore(1, [1, 2, 3]);
        follower.Step(new AppendEntries(2, 1, 1, 0, 0, [], 0));

        Assert.False(follower.Core.ReadIndex(1));
        Assert.False(follower.Core.HasReady);
    }

    // Raft dissertation §6.4: a leader deposed before the confirmation never releases the read, even if
    // the acknowledgements of its heartbeats still arrive.
    [Fact]
    public void LeaderDeposedBeforeConfirmation_NeverReleasesItsPendingRead()
    {
        var leader = SteadyLeader(size: 3);
        leader.Core.ReadIndex(3);
        var beats = leader.Drain().Of<AppendEntries>().ToArray();

        var deposed = leader.Step(new AppendEntries(2, 1, 2, 1, 1, [], 1));
        var late = beats.Select(b => leader.Step(Echo(b, 1))).SelectMany(o => o.ReadStates).ToArray();

        Assert.Equal(RaftRole.Follower, leader.Core.Role);
        Assert.Empty(deposed.ReadStates);
        Assert.Empty(late);
    }

    // Raft dissertation §6.4: in a single-node cluster the leader is its own majority.
    [Fact]
    public void SingleNodeLeader_ReleasesAReadWithoutMessages()
    {
        var node = NewCore(1, [1]);
        node.Campaign();
        node.Drain();

        Assert.True(node.Core.ReadIndex(11));
        var output = node.Drain();

        Assert.Equal([new ReadState(11, 1)], output.ReadStates);
        Assert.Empty(output.Sent);
    }

    // Raft dissertation §6.4: in a cluster, every read requested on the leader is released once, with an
    // index no lower than the entries committed before it was requested.
    [Fact]
    public void ReadsInterleavedWithWrites_AreEachReleasedOnceWithAnUpToDateIndex()
    {
        var net = Network.Create(3);
        net.Campaign(1);
        for (var i = 1; i <= 10; i++)
        {
            net.Propose(1, $"w{i}");
            var committedBefore = net[1].Core.CommitIndex;
            var releasedBefore = net.ReadStates(1).Count;
            Assert.True(net[1].Core.ReadIndex(i));

            net.Stabilize();

            var read = Assert.Single(net.ReadStates(1).Skip(releasedBefore));
            Assert.Equal(i, read.RequestId);
            Assert.True(read.Index >= committedBefore);
        }
    }
}
