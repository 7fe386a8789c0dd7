using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Core;

/// <summary>
/// Pipelined writes (<see cref="RaftCore.AdvanceBeforePersisting"/> / <see cref="RaftCore.Persisted"/>):
/// the core keeps running while a Ready's entries are written, never hands them out twice, counts
/// the leader's own copy only once it is durable, and sends acknowledgements only after the write.
/// </summary>
public sealed class PipelinedWriteTests
{
    private static AppendEntriesResponse Ack(int from, long match) => new(from, 1, 1, Success: true, MatchIndex: match);

    [Fact]
    public void LeaderWriteInFlight_ItsEntriesAreNotHandedOutAgain_AndNewOnesFollowThem()
    {
        var leader = SteadyLeader(size: 3);
        var first = leader.Propose("a");
        var ready = leader.Core.GetReady();
        Assert.True(ready.CanPersistAsynchronously);
        leader.Core.AdvanceBeforePersisting(ready);

        var second = leader.Propose("b");
        var next = leader.Core.GetReady();

        Assert.Equal([second], next.Entries.Select(e => e.Index));
        Assert.True(next.CanPersistAsynchronously);
        Assert.Equal(first + 1, second);
    }

    [Fact]
    public async Task LeaderCountsItself_OnlyOnceItsWriteIsPersisted()
    {
        var leader = SteadyLeader(size: 3);
        var index = leader.Propose("a");
        var ready = leader.Core.GetReady();
        leader.Core.AdvanceBeforePersisting(ready);

        leader.Step(Ack(2, index)); // with the leader's own copy this would be a majority, but it is not durable yet
        Assert.Equal(index - 1, leader.Core.CommitIndex);

        await leader.Store.AppendAsync(ready.Entries);
        leader.Core.Persisted(ready);
        Assert.Equal(index, leader.Core.CommitIndex);
    }

    [Fact]
    public void TwoFollowers_CommitTheEntry_WhileTheLeadersOwnWriteIsStillInFlight()
    {
        var leader = SteadyLeader(size: 3);
        var index = leader.Propose("a");
        leader.Core.AdvanceBeforePersisting(leader.Core.GetReady());

        leader.Step(Ack(2, index));
        leader.Step(Ack(3, index));

        Assert.Equal(index, leader.Core.CommitIndex);
    }

    [Fact]
    public void FollowerAcknowledgement_StaysInMessagesAfterPersist_OfTheReadyWrittenAsynchronously()
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1]);
        follower.Core.Step(new AppendEntries(2, 1, 1, 1, 1, [Entry(2, 1)], 1));
        var ready = follower.Core.GetReady();

        Assert.True(ready.CanPersistAsynchronously);
        Assert.DoesNotContain(ready.Messages, m => m is AppendEntriesResponse);
        Assert.Equal(2, Assert.IsType<AppendEntriesResponse>(Assert.Single(ready.MessagesAfterPersist)).MatchIndex);
        follower.Core.AdvanceBeforePersisting(ready);

        // While it is in flight, a heartbeat is answered at once, but only for what is durable.
        follower.Core.Step(new AppendEntries(2, 1, 1, 1, 1, [], 2, ReadSequence: 3));
        var beat = follower.Core.GetReady();
        Assert.Empty(beat.Entries);
        var early = Assert.IsType<AppendEntriesResponse>(Assert.Single(beat.Messages));
        Assert.Equal(1, early.MatchIndex);
        Assert.Empty(beat.MessagesAfterPersist);
    }

    [Fact]
    public void AReadyThatOverwritesAWriteInFlight_CannotBePersistedAsynchronously()
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1]);
        follower.Core.Step(new AppendEntries(2, 1, 1, 1, 1, [Entry(2, 1), Entry(3, 1)], 1));
        var inFlight = follower.Core.GetReady();
        follower.Core.AdvanceBeforePersisting(inFlight);

        // A new leader replaces index 3 while the write of 2..3 is in flight.
        follower.Core.Step(new AppendEntries(3, 1, 2, 2, 1, [Entry(3, 2)], 1));
        var replacing = follower.Core.GetReady();

        Assert.Equal([(3L, 2L)], replacing.Entries.Select(e => (e.Index, e.Term)));
        Assert.False(replacing.CanPersistAsynchronously);
        Assert.Throws<InvalidOperationException>(() => follower.Core.AdvanceBeforePersisting(replacing));
    }

    [Fact]
    public void AReadyWithAHardState_CannotBePersistedAsynchronously()
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1]);
        follower.Core.Step(new AppendEntries(2, 1, 2, 1, 1, [Entry(2, 2)], 1)); // a new term: the hard state changes

        var ready = follower.Core.GetReady();

        Assert.NotNull(ready.HardState);
        Assert.False(ready.CanPersistAsynchronously);
    }

    [Fact]
    public void Persisted_WhileAReadyIsOutstanding_Throws()
    {
        var leader = SteadyLeader(size: 3);
        leader.Propose("a");
        var ready = leader.Core.GetReady();
        leader.Core.AdvanceBeforePersisting(ready);
        leader.Propose("b");
        _ = leader.Core.GetReady();

        Assert.Throws<InvalidOperationException>(() => leader.Core.Persisted(ready));
    }
}
