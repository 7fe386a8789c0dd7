using Raft.Tests.Core;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Paper;

/// <summary>Raft paper §5.3, Log replication (plus the replication flow control of DESIGN.md §2).</summary>
public sealed class Section5_3_ReplicationTests
{
    /// <summary>The appends to <paramref name="to"/> that carry entries (heartbeats left out).</summary>
    private static AppendEntries[] Appends(Output output, int to) => [.. output.To<AppendEntries>(to).Where(a => a.Entries.Count > 0)];

    private static (long Index, long Term, string Text)[] Shape(IEnumerable<LogEntry> entries) => [.. entries.Select(e => (e.Index, e.Term, Text(e)))];

    private static AppendEntriesResponse Ack(int from, long match, long term = 1) => new(from, 1, term, Success: true, MatchIndex: match);

    // Raft paper §5.3: "The leader appends the command to its log as a new entry, then issues
    // AppendEntries RPCs in parallel to each of the other servers to replicate the entry."
    [Fact]
    public void LeaderAppendsAProposalToItsLog_AndSendsItToEveryFollowerWithPrevIndexAndTerm()
    {
        var leader = SteadyLeader();

        var index = leader.Propose("x");
        var ready = leader.Core.GetReady();

        Assert.Equal(2, index);
        var entry = Assert.Single(ready.Entries);
        Assert.Equal((2L, 1L, EntryKind.Command, "x"), (entry.Index, entry.Term, entry.Kind, Text(entry)));
        var appends = ready.Messages.OfType<AppendEntries>().OrderBy(m => m.To).ToArray();
        Assert.Equal([2, 3], appends.Select(a => a.To));
        Assert.All(appends, a =>
        {
            Assert.Equal((1L, 1L, 1L, 1L), (a.Term, a.PrevLogIndex, a.PrevLogTerm, a.LeaderCommit));
            Assert.Equal(entry, Assert.Single(a.Entries));
        });
    }

    // Raft dissertation §10.2.1 (DESIGN.md §1): the leader may send its appends before its own write
    // is durable, so they are in Ready.Messages, never in MessagesAfterPersist.
    [Fact]
    public void LeaderAppends_AreInMessages_SentBeforePersistence()
    {
        var leader = SteadyLeader();
        leader.Propose("x");

        var ready = leader.Core.GetReady();

        Assert.NotEmpty(ready.Entries);
        Assert.Equal(2, ready.Messages.OfType<AppendEntries>().Count());
        Assert.DoesNotContain(ready.MessagesAfterPersist, m => m is AppendEntries);
    }

    // Raft paper §5.3, Figure 2 / DESIGN.md §4: a follower acknowledges an append only once the entries are
    // durable: the acknowledgement is in MessagesAfterPersist of the Ready that carries the entries.
    [Fact]
    public void FollowerAcknowledgement_IsInMessagesAfterPersist_OfTheReadyThatCarriesTheEntries()
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1]);

        follower.Core.Step(new AppendEntries(2, 1, 1, 1, 1, [Entry(2, 1), Entry(3, 1)], 1));
        var ready = follower.Core.GetReady();

        Assert.Equal([2L, 3L], ready.Entries.Select(e => e.Index));
        Assert.True(ready.MustSync);
        Assert.DoesNotContain(ready.Messages, m => m is AppendEntriesResponse);
        var ack = Assert.IsType<AppendEntriesResponse>(Assert.Single(ready.MessagesAfterPersist));
        Assert.Equal(Ack(1, 3) with { To = 2 }, ack);
    }

    // DESIGN.md §4: an acknowledgement that claims only what is already durable (the term, and entries
    // persisted by an earlier Ready) need not wait for the write in progress: a heartbeat (which also
    // confirms a leader's ReadIndex) is answered before the new entries of the same Ready are fsynced,
    // while the acknowledgement of those entries still waits for them.
    [Fact]
    public void HeartbeatAcknowledgement_ClaimingOnlyDurableEntries_IsSentBeforePersistence()
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1]);

        follower.Core.Step(new AppendEntries(2, 1, 1, 1, 1, [Entry(2, 1), Entry(3, 1)], 1, ReadSequence: 4));
        follower.Core.Step(new AppendEntries(2, 1, 1, 1, 1, [], 1, ReadSequence: 5));
        var ready = follower.Core.GetReady();

        Assert.True(ready.MustSync);
        var early = Assert.IsType<AppendEntriesResponse>(Assert.Single(ready.Messages));
        Assert.Equal(1, early.MatchIndex);
        Assert.Equal(5, early.ReadSequence);
        var late = Assert.IsType<AppendEntriesResponse>(Assert.Single(ready.MessagesAfterPersist));
        Assert.Equal(3, late.MatchIndex);
    }

    [Fact]
    public void HeartbeatAcknowledgement_InANewTerm_WaitsForTheTermToBeDurable()
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1]);

        follower.Core.Step(new AppendEntries(2, 1, 2, 1, 1, [], 1, ReadSequence: 1));
        var ready = follower.Core.GetReady();

        Assert.Equal(2, ready.HardState?.Term);
        Assert.DoesNotContain(ready.Messages, m => m is AppendEntriesResponse);
        Assert.Equal(1, Assert.IsType<AppendEntriesResponse>(Assert.Single(ready.MessagesAfterPersist)).MatchIndex);
    }

    // Raft dissertation §10.2.1: the leader counts itself toward a majority only once its own write
    // is durable. A single-node leader cannot commit an entry before the Ready that persists it has
    // been advanced.
    [Fact]
    public void SingleNodeLeader_CommitsItsEntryOnlyAfterAdvance()
    {
        var node = NewCore(1, [1]);
        node.Campaign();
        node.Drain();
        Assert.Equal(1, node.Core.CommitIndex);

        var index = node.Propose("x");
        var ready = node.Core.GetReady();

        Assert.Equal(index, Assert.Single(ready.Entries).Index);
        Assert.Empty(ready.CommittedEntries);
        Assert.Equal(1, node.Core.CommitIndex);
        node.HandleReady(ready);
        Assert.Equal(index, node.Core.CommitIndex);
        Assert.Equal(index, Assert.Single(node.Drain().Committed).Index);
    }

    // Raft dissertation §10.2.1: the leader's own match index is its durable last index: it moves
    // only when the Ready holding the entries is advanced.
    [Fact]
    public void LeaderOwnMatchIndex_MovesOnlyWhenItsWriteIsAdvanced()
    {
        var leader = SteadyLeader();
        var index = leader.Propose("x");

        Assert.Equal(1, leader.Core.Status.Progress[1]);
        var ready = leader.Core.GetReady();
        Assert.Equal(1, leader.Core.Status.Progress[1]);
        leader.HandleReady(ready);

        Assert.Equal(index, leader.Core.Status.Progress[1]);
        Assert.Equal(1, leader.Core.CommitIndex); // itself alone is not a majority of 3
        leader.Step(Ack(2, index));
        Assert.Equal(index, leader.Core.CommitIndex);
    }

    // Raft paper §5.3: "A log entry is committed once the leader that created the entry has
    // replicated it on a majority of the servers."
    [Theory]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(7)]
    public void Entry_IsCommittedExactlyWhenAMajorityHasStoredIt(int size)
    {
        var leader = SteadyLeader(size);
        var index = leader.Propose("x");
        leader.Drain();
        var majority = size / 2 + 1;

        for (var follower = 2; follower <= size; follower++)
        {
            var output = leader.Step(Ack(follower, index));
            var stored = follower; // the leader plus followers 2..follower
            Assert.Equal(stored >= majority ? index : 1, leader.Core.CommitIndex);
            if (stored == majority)
                Assert.Equal(index, Assert.Single(output.Committed).Index);
            else
                Assert.Empty(output.Committed);
        }
    }

    // Raft paper §5.3: "The leader keeps track of the highest index it knows to be committed, and it
    // includes that index in future AppendEntries RPCs (including heartbeats) so that the other
    // servers eventually find out. Once a follower learns that a log entry is committed, it applies
    // the entry to its local state machine."
    [Fact]
    public void Followers_LearnTheCommitIndexFromTheLeader_AndApplyTheEntry()
    {
        var net = Network.Create(3);
        net.Campaign(1);

        var index = net.Propose(1, "x");
        // The follower whose acknowledgement completed the majority hears the commit index at once;
        // the other one at the latest with the next heartbeat.
        net.Tick(1, net[1].Options.HeartbeatTicks);

        Assert.All(net.Nodes, n => Assert.Equal(index, n.Core.CommitIndex));
        Assert.All(net.Nodes, n => Assert.Equal("x", Text(n.Applied[^1])));
    }

    // Raft paper §5.3 says the commit index rides on "future AppendEntries RPCs (including heartbeats)".
    // A commit sends no message of its own: the next append carries it, and a follower that has not
    // heard it by the next tick gets a heartbeat for it (no extra message and ack per commit under load).
    [Fact]
    public void NewCommitIndex_SendsNothingAtOnce_AndReachesIdleFollowersOnTheNextTick()
    {
        var leader = SteadyLeader(size: 3);
        leader.Tick(leader.Options.HeartbeatTicks);
        var index = leader.Propose("x");
        leader.Drain();

        Assert.Empty(leader.Step(Ack(2, index)).Of<AppendEntries>());
        Assert.Equal(index, leader.Core.CommitIndex);

        var beats = leader.Tick(1).Of<AppendEntries>().ToArray();
        Assert.Equal([2, 3], beats.Select(b => b.To).Order());
        Assert.All(beats, b => Assert.Equal(index, b.LeaderCommit));
    }

    // EagerCommitPropagation (for work that completes on followers: forwarding): the commit goes out
    // in the same round, as an empty AppendEntries to each follower that was not told yet.
    [Fact]
    public void WithEagerCommitPropagation_ANewCommitIndex_GoesToEveryFollowerAtOnce()
    {
        var leader = SteadyLeader(Options(1, Ids(3), eagerCommit: true));
        leader.Tick(leader.Options.HeartbeatTicks);
        var index = leader.Propose("x");
        leader.Drain();

        var beats = leader.Step(Ack(2, index)).Of<AppendEntries>().ToArray();

        Assert.Equal(index, leader.Core.CommitIndex);
        Assert.Equal([2, 3], beats.Select(b => b.To).Order());
        Assert.All(beats, b => Assert.Equal(index, b.LeaderCommit));
        Assert.All(beats, b => Assert.Empty(b.Entries));
        // Told already: the next tick (before the heartbeat interval) sends nothing more.
        Assert.Empty(leader.Tick(1).Of<AppendEntries>());
    }

    [Fact]
    public void WithEagerCommitPropagation_AReadRoundThatCarriesTheCommit_SendsOneMessagePerFollower()
    {
        var leader = SteadyLeader(Options(1, Ids(3), eagerCommit: true));
        leader.Tick(leader.Options.HeartbeatTicks);
        var index = leader.Propose("x");
        leader.Drain();
        Assert.True(leader.Core.ReadIndex(requestId: 7));

        var sent = leader.Step(Ack(2, index)).Of<AppendEntries>().ToArray();

        Assert.Equal(index, leader.Core.CommitIndex);
        Assert.Equal([2, 3], sent.Select(b => b.To).Order());
        Assert.All(sent, b => Assert.Equal(index, b.LeaderCommit));
    }

    [Fact]
    public void NewCommitIndex_CarriedByTheNextAppend_NeedsNoHeartbeat()
    {
        var leader = SteadyLeader(size: 3);
        leader.Tick(leader.Options.HeartbeatTicks);
        var index = leader.Propose("x");
        leader.Drain();
        leader.Step(Ack(2, index));
        leader.Step(Ack(3, index));

        leader.Propose("y");
        var appends = leader.Drain().Of<AppendEntries>().ToArray();
        Assert.Equal([2, 3], appends.Select(a => a.To).Order());
        Assert.All(appends, a => Assert.Equal(index, a.LeaderCommit));
        Assert.Empty(leader.Tick(1).Of<AppendEntries>());
    }

    // Raft paper §5.3 / Figure 2: "If commitIndex > lastApplied: increment lastApplied, apply
    // log[lastApplied]": every node hands out each committed entry once, in index order, across
    // many Readies, even a follower that fell behind and caught up.
    [Fact]
    public void CommittedEntries_AreHandedOutInIndexOrderExactlyOnce()
    {
        var net = Network.Create(3);
        net.Campaign(1);
        for (var i = 0; i < 5; i++)
            net.Propose(1, $"a{i}");
        net.Isolate(3);
        for (var i = 0; i < 5; i++)
            net.Propose(1, $"b{i}");
        net.Heal();
        net.Tick(1, 2);
        for (var i = 0; i < 5; i++)
        {
            net[1].Propose($"c{i}-1");
            net[1].Propose($"c{i}-2");
            net.Stabilize();
        }
        net.Tick(1, net[1].Options.HeartbeatTicks); // the last commit index reaches every follower

        var leaderLog = ReadAll(net[1].Store);
        Assert.Equal(21, leaderLog.Count);
        Assert.All(net.Nodes, n =>
        {
            Assert.Equal(Enumerable.Range(1, 21).Select(i => (long)i), n.Applied.Select(e => e.Index));
            Assert.Equal(leaderLog.Select(e => (e.Term, Text(e))), n.Applied.Select(e => (e.Term, Text(e))));
        });
    }

    // Raft paper §5.3: "If the follower does not find an entry in its log with the same index and
    // term [as prevLogIndex/prevLogTerm], then it refuses the new entries." The rejection carries a
    // hint: the follower's last index + 1 when its log is too short.
    [Fact]
    public void FollowerLackingThePrevIndex_RejectsWithItsLastIndexAsTheHint()
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1, 1]);

        var output = follower.Step(new AppendEntries(2, 1, 2, PrevLogIndex: 5, PrevLogTerm: 2, [Entry(6, 2)], 5));

        var reject = Assert.Single(output.Of<AppendEntriesResponse>());
        Assert.Equal(new AppendEntriesResponse(1, 2, 2, Success: false, MatchIndex: 5, HintIndex: 3, HintTerm: 0), reject);
        Assert.Empty(output.Persisted);
        Assert.Equal([1L, 1L], Terms(follower.Store));
        Assert.Equal(0, follower.Core.CommitIndex);
    }

    // Raft paper §5.3: a follower whose entry at prevLogIndex has another term refuses; the hint is
    // its conflicting term and the first index it holds of that term (never at or below its commit
    // index), so the leader can skip the whole term (§5.3, "the follower can include the term of the
    // conflicting entry and the first index it stores for that term").
    [Theory]
    [InlineData(0, 2)]
    [InlineData(1, 2)]
    [InlineData(2, 3)]
    [InlineData(3, 4)]
    public void FollowerWithAnotherTermAtPrevIndex_RejectsWithTheConflictingTermAndItsFirstIndex(long commit, long expectedHint)
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1, 2, 2, 2], hardState: new HardState(2, 0, commit));

        var output = follower.Step(new AppendEntries(2, 1, 3, PrevLogIndex: 4, PrevLogTerm: 3, [Entry(5, 3)], 4));

        var reject = Assert.Single(output.Of<AppendEntriesResponse>());
        Assert.False(reject.Success);
        Assert.Equal((4L, expectedHint, 2L), (reject.MatchIndex, reject.HintIndex, reject.HintTerm));
        Assert.Equal([1L, 2L, 2L, 2L], Terms(follower.Store));
    }

    // Raft paper §5.3: "If an existing entry conflicts with a new one (same index but different
    // terms), delete the existing entry and all that follow it" (Figure 2, AppendEntries step 3).
    [Fact]
    public void FollowerWithConflictingUncommittedEntries_DeletesThemAndAppendsTheLeaders()
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1, 1, 2, 2, 2], hardState: new HardState(2, 0, 2));

        var output = follower.Step(new AppendEntries(2, 1, 3, 2, 1, [Entry(3, 3), Entry(4, 3)], 2));

        Assert.Equal([1L, 1L, 3L, 3L], Terms(follower.Store));
        Assert.Equal(Shape([Entry(3, 3), Entry(4, 3)]), Shape(output.Persisted));
        Assert.Equal(Ack(1, 4, 3) with { To = 2 }, Assert.Single(output.Of<AppendEntriesResponse>()));
        Assert.Equal(4, follower.Core.LastIndex);
    }

    // Raft paper §5.3, Figure 2, AppendEntries steps 3-4: only a conflict deletes entries. A delayed or
    // duplicated append whose entries the follower already has changes nothing and does not cut off
    // the newer entries after it.
    [Fact]
    public void StaleAppendWhoseEntriesAlreadyMatch_DoesNotTruncateTheFollower()
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1, 1, 1, 1]);

        var output = follower.Step(new AppendEntries(2, 1, 1, 1, 1, [Entry(2, 1)], 0));

        Assert.Empty(output.Persisted);
        Assert.Equal([1L, 1L, 1L, 1L], Terms(follower.Store));
        Assert.True(Assert.Single(output.Of<AppendEntriesResponse>()).Success);
    }

    // Raft paper §5.4 / Figure 2: committed entries are never deleted. A follower refuses to cut its
    // log below its commit index, even if an append (impossible from a correct leader) asks it to.
    [Fact]
    public void Follower_NeverTruncatesBelowItsCommitIndex()
    {
        var follower = NewCore(1, [1, 2, 3], terms: [1, 1, 1], hardState: new HardState(2, 0, 3));

        var output = follower.Step(new AppendEntries(2, 1, 2, 1, 1, [Entry(2, 2), Entry(3, 2)], 3));

        Assert.Equal([1L, 1L, 1L], Terms(follower.Store));
        Assert.Empty(output.Persisted);
        Assert.Equal(3, follower.Core.CommitIndex);
    }

    // Raft paper §5.3, Figure 2, AppendEntries step 5: "set commitIndex = min(leaderCommit, index of last
    // new entry)": a follower with a stale suffix must not commit it on the leader's word.
    [Fact]
    public void FollowerCommitIndex_IsCappedByTheLastEntryTheAppendMatched()
    {
        // Entries 4-5 come from a deposed leader of term 2; the real leader (term 3) committed 5 of its own.
        var follower = NewCore(1, [1, 2, 3], terms: [1, 1, 1, 2, 2], hardState: new HardState(3, 0, 1));

        var output = follower.Step(new AppendEntries(2, 1, 3, PrevLogIndex: 3, PrevLogTerm: 1, [], LeaderCommit: 5));

        Assert.Equal(3, follower.Core.CommitIndex);
        Assert.Equal([1L, 2L, 3L], output.Committed.Select(e => e.Index));
    }

    // Raft dissertation §10.2.2, DESIGN.md §2 (pipelining): with MaxInflightAppends = N, a leader in Replicate streams up to N
    // appends to a follower without waiting for acknowledgements, then pauses until one arrives.
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(5)]
    public void LeaderInReplicate_SendsUpToMaxInflightAppendsWithoutAcks_ThenPauses(int window)
    {
        var leader = SteadyLeader(maxInflight: window);
        var sent = new List<AppendEntries>();
        for (var i = 0; i < window; i++)
        {
            leader.Propose($"p{i}");
            sent.Add(Assert.Single(Appends(leader.Drain(), 2)));
        }
        Assert.Equal(Enumerable.Range(2, window).Select(i => (long)i), sent.Select(a => Assert.Single(a.Entries).Index));

        leader.Propose("over");
        var paused = leader.Drain();

        Assert.Empty(Appends(paused, 2));
        var resumed = leader.Step(Ack(2, sent[0].Entries[0].Index));
        var next = Assert.Single(Appends(resumed, 2));
        Assert.Equal(window + 2, next.Entries[0].Index);
    }

    // Raft dissertation §10.2.2, DESIGN.md §2: the window also caps one flush: with small messages the leader sends exactly N.
    [Fact]
    public void LeaderWithManyEntriesAndSmallMessages_SendsExactlyMaxInflightAppendsInOneFlush()
    {
        var leader = SteadyLeader(maxInflight: 3, maxAppendBytes: 1);
        for (var i = 0; i < 10; i++)
            leader.Propose($"p{i}");

        var output = leader.Drain();

        var appends = Appends(output, 2);
        Assert.Equal(3, appends.Length);
        Assert.Equal([2L, 3L, 4L], appends.Select(a => Assert.Single(a.Entries).Index));
    }

    // Raft dissertation §10.2.2, DESIGN.md §2: pipelining is not abandoned for a follower whose
    // append went out less than a heartbeat interval ago. A heartbeat tick while it is in flight
    // neither re-sends it nor turns the follower into a probe; the next entry streams right behind.
    [Fact]
    public void HeartbeatTickWhileAFreshAppendIsInFlight_DoesNotInterruptPipelining()
    {
        var leader = SteadyLeader();
        leader.Tick(leader.Options.HeartbeatTicks); // an idle heartbeat round: nothing in flight
        leader.Tick(leader.Options.HeartbeatTicks - 1); // the next tick is a heartbeat tick
        leader.Propose("a");
        Assert.Single(Appends(leader.Drain(), 2));

        var tick = leader.Tick(); // "a" has been in flight for one tick

        Assert.Empty(Appends(tick, 2));
        leader.Propose("b");
        var next = Assert.Single(Appends(leader.Drain(), 2));
        Assert.Equal(2, next.PrevLogIndex);
        Assert.Equal([3L], next.Entries.Select(e => e.Index));
    }

    // Raft paper §5.3 ("If followers ... network packets are lost, the leader retries AppendEntries
    // RPCs indefinitely"): appends left unacknowledged for a whole heartbeat interval are presumed
    // lost; the leader probes again from the follower's last known match.
    [Fact]
    public void AppendsUnacknowledgedForAWholeHeartbeatInterval_AreSentAgain()
    {
        var leader = SteadyLeader();
        leader.Propose("a");
        leader.Drain();
        var resent = new List<AppendEntries>();

        for (var i = 0; i < 2 * leader.Options.HeartbeatTicks + 1; i++)
            resent.AddRange(Appends(leader.Tick(), 2));

        var retry = Assert.Single(resent);
        Assert.Equal((1L, 1L), (retry.PrevLogIndex, retry.PrevLogTerm));
        Assert.Equal([2L], retry.Entries.Select(e => e.Index));
    }

    // Raft paper §5.3: "After a rejection, the leader decrements nextIndex and retries"; DESIGN.md §2:
    // after a rejection the leader falls back to probing one append at a time.
    [Fact]
    public void RejectionOfAPipelinedAppend_MovesTheFollowerToProbing()
    {
        var leader = SteadyLeader();
        leader.Propose("a"); // index 2: its append to follower 2 is lost
        leader.Drain();
        leader.Propose("b"); // index 3: prev (2, 1), which follower 2 lacks
        leader.Drain();

        var retry = leader.Step(new AppendEntriesResponse(2, 1, 1, Success: false, MatchIndex: 2, HintIndex: 2, HintTerm: 0));

        var probe = Assert.Single(Appends(retry, 2));
        Assert.Equal((1L, 1L), (probe.PrevLogIndex, probe.PrevLogTerm));
        Assert.Equal([2L, 3L], probe.Entries.Select(e => e.Index));
        // Probing: no further append to follower 2 until the probe is answered; follower 3 still streams.
        leader.Propose("c");
        var output = leader.Drain();
        Assert.Empty(Appends(output, 2));
        Assert.Single(Appends(output, 3));
        // The answer to the probe puts follower 2 back into Replicate and the rest streams.
        var resumed = leader.Step(Ack(2, 3));
        Assert.Equal([4L], Assert.Single(Appends(resumed, 2)).Entries.Select(e => e.Index));
    }

    // Raft paper §5.3: the optimization that skips a whole conflicting term per rejection.
    // Follower 2 holds five entries of term 2 the leader never had: the leader goes from prevIndex 6
    // (too long) to 5 (conflict, term 2 from index 2) straight to 1, not one index at a time.
    [Fact]
    public void FastBacktracking_SkipsAWholeTermTheLeaderDoesNotHave()
    {
        var net = Network.Create(3,
            terms: id => id == 2 ? [1, 2, 2, 2, 2] : [1, 3, 3, 3, 3, 3],
            hardState: _ => new HardState(4, 0, 1));

        net.Campaign(1);

        Assert.Equal(RaftRole.Leader, net[1].Core.Role);
        var probes = net.Delivered.OfType<AppendEntries>().Where(a => a.To == 2 && a.Entries.Count > 0).Select(a => a.PrevLogIndex).Distinct().ToArray();
        Assert.Equal([6L, 5L, 1L], probes);
        Assert.Equal(2, net.Delivered.OfType<AppendEntriesResponse>().Count(r => r.From == 2 && !r.Success));
        Assert.Equal([1L, 3L, 3L, 3L, 3L, 3L, 5L], Terms(net[2].Store));
        Assert.Equal(Terms(net[1].Store), Terms(net[2].Store));
    }

    // Raft paper §5.3: when the leader holds entries of the follower's conflicting term, it retries
    // just after its own last entry of that term.
    [Fact]
    public void FastBacktracking_JumpsToTheLeadersLastEntryOfTheConflictingTerm()
    {
        var net = Network.Create(3,
            terms: id => id == 2 ? [1, 2, 2, 2, 2, 2, 2] : [1, 2, 2, 4, 4],
            hardState: _ => new HardState(4, 0, 1));

        net.Campaign(1);

        var probes = net.Delivered.OfType<AppendEntries>().Where(a => a.To == 2 && a.Entries.Count > 0).Select(a => a.PrevLogIndex).Distinct().ToArray();
        Assert.Equal([5L, 3L], probes);
        Assert.Equal(1, net.Delivered.OfType<AppendEntriesResponse>().Count(r => r.From == 2 && !r.Success));
        Assert.Equal(Terms(net[1].Store), Terms(net[2].Store));
    }

    // Raft paper §5.3: "the leader ... forces the followers' logs to duplicate its own": a follower
    // that missed entries while partitioned is brought up to date once it is reachable.
    [Fact]
    public void LaggingFollower_IsBroughtUpToDateWhenItReturns()
    {
        var net = Network.Create(3);
        net.Campaign(1);
        net.Isolate(3);
        for (var i = 0; i < 6; i++)
            net.Propose(1, $"x{i}");
        Assert.Equal(1, net[3].Core.LastIndex);
        net.Heal();

        // The leader's appends to it were lost; the leader notices (on its heartbeat ticks) and
        // repairs the follower well within an election timeout.
        net.TickUntil(1, () => net[3].Core.CommitIndex == net[1].Core.CommitIndex, net[1].Options.ElectionTicksMin);

        Assert.Equal(Terms(net[1].Store), Terms(net[3].Store));
        Assert.Equal(net[1].Core.CommitIndex, net[3].Core.CommitIndex);
        Assert.Equal(7, net[3].Applied.Count);
    }

    // Raft paper §5.3 / Figure 3 (Leader Append-Only): "a leader never overwrites or deletes
    // entries in its own log", whatever its followers answer.
    [Fact]
    public void Leader_NeverChangesItsOwnLogWhileRepairingFollowers()
    {
        var net = Network.Create(3,
            terms: id => id == 1 ? [1, 3, 3] : [1, 2, 2, 2, 2, 2],
            hardState: _ => new HardState(3, 0, 1));
        net[1].Core.Campaign();
        var before = ReadAll(net[1].Store);
        net.Stabilize();

        Assert.Equal(RaftRole.Leader, net[1].Core.Role);
        Assert.Equal(before, ReadAll(net[1].Store).Take(before.Count));
        Assert.Equal(Terms(net[1].Store), Terms(net[2].Store));
    }
}
