using Raft.Testing;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Core;

/// <summary>
/// "No message can stop a node": every message a correct member could never send (a second leader
/// in one term, malformed entries, terms near <see cref="long.MaxValue"/>, forged acknowledgements,
/// non-members...) is refused without an exception, changes nothing, and is counted in
/// <see cref="RaftCore.RejectedMessages"/> with a reason. Each test: init, act, check.
/// </summary>
public sealed class HostileMessageTests
{
    private static readonly int[] Three = [1, 2, 3];

    /// <summary>Harness-style options (PreVote and CheckQuorum off unless asked) with the new bounds set.</summary>
    private static RaftOptions Bounded(long maxTermJump = 1L << 32, long maxSnapshotBytes = 4L << 30, bool preVote = false) => new()
    {
        NodeId = 1, Members = Three, PreVote = preVote, CheckQuorum = false, MaxTermJump = maxTermJump, MaxSnapshotBytes = maxSnapshotBytes, Random = new Random(1),
    };

    /// <summary>Everything a refused message must leave alone.</summary>
    private static (long Term, int Vote, RaftRole Role, int Leader, long Last, long LastTerm, long Commit, string Log) State(TestCore node) =>
        (node.Core.Term, node.Core.VotedFor, node.Core.Role, node.Core.LeaderId, node.Core.LastIndex, node.Core.LastTerm, node.Core.CommitIndex,
            string.Join(",", ReadAll(node.Store).Select(e => $"{e.Index}@{e.Term}")));

    /// <summary>Node 1 following node 2 in term 2, log [1@1, 2@1, 3@2], index 2 committed.</summary>
    private static TestCore FollowerOf2(RaftOptions? options = null)
    {
        var node = NewCore(options ?? Options(1, Three), terms: [1, 1, 2], hardState: new HardState(2, 0, 0));
        node.Step(new AppendEntries(2, 1, 2, 3, 2, [], 2));
        Assert.Equal((RaftRole.Follower, 2, 2L, 0L), (node.Core.Role, node.Core.LeaderId, node.Core.CommitIndex, node.Core.RejectedMessages));
        return node;
    }

    /// <summary>Node 1 leading term 1 of three with [1 no-op, 2 "a", 3 "b"], all acknowledged and committed.</summary>
    private static TestCore Leader()
    {
        var leader = SteadyLeader();
        leader.Propose("a");
        leader.Propose("b");
        leader.Drain();
        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 3));
        leader.Step(new AppendEntriesResponse(3, 1, 1, Success: true, MatchIndex: 3));
        Assert.Equal((3L, 0L), (leader.Core.CommitIndex, leader.Core.RejectedMessages));
        return leader;
    }

    /// <summary>Steps <paramref name="message"/> and checks it was refused: no exception, no state change, nothing sent, one more rejection whose reason contains <paramref name="reason"/>.</summary>
    private static void AssertRefused(TestCore node, RaftMessage message, string reason)
    {
        var before = State(node);
        var rejected = node.Core.RejectedMessages;

        var output = node.Step(message);

        Assert.Equal(before, State(node));
        Assert.Empty(output.Sent);
        Assert.Empty(output.Committed);
        Assert.Empty(output.ReadStates);
        Assert.Equal(rejected + 1, node.Core.RejectedMessages);
        Assert.Contains(reason, node.Core.LastRejection, StringComparison.Ordinal);
        Assert.Contains($"{message.GetType().Name} from node {message.From}", node.Core.LastRejection, StringComparison.Ordinal);
    }

    // ------------------------------------------------------------------ terms near long.MaxValue

    // The attack that left a cluster leaderless forever: one AppendEntries at term 2^63 - 1 made the
    // next candidate's term++ overflow.
    [Fact]
    public void AnAppendEntriesAtTermLongMaxValue_IsRefused_AndTheNodeCanStillBeElected()
    {
        var node = FollowerOf2();

        AssertRefused(node, new AppendEntries(3, 1, long.MaxValue, 3, 2, [], 3), "MaxTermJump");

        for (var i = 0; i < 20 && node.Core.Role == RaftRole.Follower; i++)
            node.Tick(); // election timeout (PreVote off): campaigns in the next term
        Assert.Equal((RaftRole.Candidate, 3L), (node.Core.Role, node.Core.Term));
    }

    [Theory]
    [InlineData(0)] // AppendEntries
    [InlineData(1)] // RequestVote
    [InlineData(2)] // RequestVote, pre-vote
    [InlineData(3)] // InstallSnapshot
    [InlineData(4)] // AppendEntriesResponse
    [InlineData(5)] // RequestVoteResponse (rejection)
    [InlineData(6)] // InstallSnapshotResponse
    public void ATermJumpBeyondMaxTermJump_IsRefused_WhateverTheMessage_AndOneWithinItIsAdopted(int kind)
    {
        var options = Bounded(maxTermJump: 100);
        RaftMessage At(long term) => kind switch
        {
            0 => new AppendEntries(3, 1, term, 0, 0, [], 0),
            1 => new RequestVote(3, 1, term, 3, 2),
            2 => new RequestVote(3, 1, term, 3, 2, PreVote: true),
            3 => new InstallSnapshot(3, 1, term, 5, 2, Three, 0, new byte[] { 1 }, Done: false),
            4 => new AppendEntriesResponse(3, 1, term, Success: false, MatchIndex: 0),
            5 => new RequestVoteResponse(3, 1, term, Granted: false),
            _ => new InstallSnapshotResponse(3, 1, term, 0, 0, Success: false, Done: false),
        };
        var node = FollowerOf2(options);

        AssertRefused(node, At(2 + 101), "MaxTermJump (100)");

        node.Step(At(2 + 100));
        Assert.Equal(kind == 2 ? 2 : 102, node.Core.Term); // a pre-vote never moves the term
        Assert.Equal(1, node.Core.RejectedMessages);
    }

    // With the bound at its largest, a message may take the term to long.MaxValue itself; the node
    // then stays a follower rather than wrap to a negative term (checked arithmetic never throws).
    [Fact]
    public void AtTermLongMaxValue_TheNodeNeverCampaigns_AndNothingOverflows()
    {
        var node = FollowerOf2(Bounded(maxTermJump: long.MaxValue));
        node.Step(new AppendEntries(3, 1, long.MaxValue, 3, 2, [], 3));
        Assert.Equal((long.MaxValue, 3, 3L), (node.Core.Term, node.Core.LeaderId, node.Core.CommitIndex));

        node.Tick(100);
        node.Core.Campaign();
        node.Drain();
        node.Step(new TimeoutNow(3, 1, long.MaxValue));

        Assert.Equal((RaftRole.Follower, long.MaxValue), (node.Core.Role, node.Core.Term));
        Assert.Equal(long.MaxValue, node.Store.HardState.Term);
    }

    [Fact]
    public void APreCandidateAtTheLastTerm_NeverAsksForTermLongMaxValuePlusOne()
    {
        var node = NewCore(Bounded(maxTermJump: long.MaxValue, preVote: true), terms: [1], hardState: new HardState(long.MaxValue - 1, 0, 0));

        var output = node.Campaign();
        Assert.All(output.Of<RequestVote>(), r => Assert.Equal(long.MaxValue, r.Term));
        node.Step(new RequestVoteResponse(2, 1, long.MaxValue, Granted: true, PreVote: true));
        Assert.Equal((RaftRole.Candidate, long.MaxValue), (node.Core.Role, node.Core.Term));
        node.Step(new RequestVoteResponse(2, 1, long.MaxValue, Granted: true));
        Assert.Equal(RaftRole.Leader, node.Core.Role);
    }

    [Fact]
    public void ANegativeTerm_IsRefused()
    {
        AssertRefused(FollowerOf2(), new AppendEntries(2, 1, -1, 3, 2, [], 2), "negative term");
    }

    // ------------------------------------------------------------------ two leaders in one term

    // The attack that stopped a process: UnreachableException("Two leaders in term ...") from Step.
    [Fact]
    public void AnAppendEntriesAtTheLeadersOwnTerm_FromAnotherNode_IsRefused()
    {
        var leader = Leader();

        AssertRefused(leader, new AppendEntries(2, 1, 1, 3, 1, [Entry(4, 1)], 4), "two leaders in term 1: this node leads it");
        AssertRefused(leader, new AppendEntries(3, 1, 1, 0, 0, [], 0), "this node leads it"); // a heartbeat too
        Assert.Equal(RaftRole.Leader, leader.Core.Role);
    }

    [Fact]
    public void AnInstallSnapshotAtTheLeadersOwnTerm_FromAnotherNode_IsRefused()
    {
        AssertRefused(Leader(), new InstallSnapshot(2, 1, 1, 10, 1, Three, 0, new byte[] { 1, 2 }, Done: true), "two leaders in term 1");
    }

    [Fact]
    public void ASecondLeaderInTheTermAFollowerFollows_IsRefused()
    {
        var node = FollowerOf2();

        AssertRefused(node, new AppendEntries(3, 1, 2, 3, 2, [Entry(4, 2)], 4), "this node follows node 2");
        AssertRefused(node, new InstallSnapshot(3, 1, 2, 10, 2, Three, 0, new byte[] { 1 }, Done: true), "this node follows node 2");

        // Its real leader is still followed.
        node.Step(new AppendEntries(2, 1, 2, 3, 2, [Entry(4, 2)], 4));
        Assert.Equal((2, 4L, 4L), (node.Core.LeaderId, node.Core.LastIndex, node.Core.CommitIndex));
    }

    // ------------------------------------------------------------------ malformed AppendEntries

    public static TheoryData<string, AppendEntries> MalformedAppends => new()
    {
        // Follower of 2 in term 2, log [1@1, 2@1, 3@2], commit 2. Each would append or truncate something.
        { "follow the previous index", new AppendEntries(2, 1, 2, 3, 2, [Entry(5, 2)], 5) }, // gap
        { "follow the previous index", new AppendEntries(2, 1, 2, 3, 2, [Entry(4, 2), Entry(6, 2)], 6) }, // hole inside
        { "follow the previous index", new AppendEntries(2, 1, 2, 3, 2, [Entry(4, 2), Entry(4, 2)], 4) }, // repeated
        // This one used to truncate the committed index 1 and throw UnreachableException.
        { "follow the previous index", new AppendEntries(2, 1, 2, 3, 2, [Entry(1, 2)], 3) },
        { "terms never decrease", new AppendEntries(2, 1, 2, 3, 2, [Entry(4, 2), Entry(5, 1)], 5) },
        { "terms never decrease", new AppendEntries(2, 1, 2, 3, 2, [Entry(4, 1)], 4) }, // below prevLogTerm
        { "above the leader's term", new AppendEntries(2, 1, 2, 3, 2, [Entry(4, 3)], 4) },
        { "positive terms", new AppendEntries(2, 1, 2, 0, 0, [Entry(1, 0)], 0) },
        { "unknown kind", new AppendEntries(2, 1, 2, 3, 2, [new LogEntry(4, 2, (EntryKind)77, Bytes("x"))], 4) },
        { "negative previous index", new AppendEntries(2, 1, 2, -1, 0, [], 2) },
        { "negative previous index", new AppendEntries(2, 1, 2, 3, -2, [], 2) },
        { "negative previous index", new AppendEntries(2, 1, 2, 3, 2, [], -5) },
        { "previous entry's term is above", new AppendEntries(2, 1, 2, 3, 9, [], 3) },
        { "only index 0 has term 0", new AppendEntries(2, 1, 2, 0, 1, [], 3) },
        { "past the largest index", new AppendEntries(2, 1, 2, long.MaxValue, 2, [Entry(1, 2)], long.MaxValue) },
        { "no entry list", new AppendEntries(2, 1, 2, 3, 2, null!, 3) },
    };

    [Theory]
    [MemberData(nameof(MalformedAppends))]
    public void AMalformedAppendEntries_IsRefused_BeforeItTouchesTheLog(string reason, AppendEntries append)
    {
        AssertRefused(FollowerOf2(), append, reason);
    }

    // The forged-commit attack: whatever leaderCommit says, a follower commits only what the message
    // itself proved to match (prevLogIndex + entries), never a stale suffix beyond it.
    [Fact]
    public void ALeaderCommitBeyondWhatTheMessageVerified_CommitsOnlyTheVerifiedPrefix()
    {
        var node = NewCore(1, Three, terms: [1, 1, 1, 1], hardState: new HardState(1, 0, 0));

        node.Step(new AppendEntries(2, 1, 2, 1, 1, [], long.MaxValue));
        Assert.Equal(1, node.Core.CommitIndex); // entries 2..4 were not checked by this message
        node.Step(new AppendEntries(2, 1, 2, 1, 1, [Entry(2, 2)], long.MaxValue));

        Assert.Equal(2, node.Core.CommitIndex);
        Assert.Equal([1L, 2L], Terms(node.Store));
        Assert.Equal(0, node.Core.RejectedMessages);
    }

    // ------------------------------------------------------------------ non-members and self

    [Fact]
    public void MessagesFromNonMembersOrFromItself_ChangeNothing_AndAreCounted()
    {
        var node = FollowerOf2();
        RaftMessage[] forged =
        [
            new AppendEntries(4, 1, 3, 3, 2, [Entry(4, 3)], 4),
            new AppendEntries(1, 1, 3, 3, 2, [Entry(4, 3)], 4),
            new RequestVote(0, 1, 3, 9, 3),
            new RequestVote(-7, 1, 3, 9, 3, PreVote: true),
            new InstallSnapshot(9, 1, 3, 10, 3, Three, 0, new byte[] { 1 }, Done: true),
            new TimeoutNow(4, 1, 2),
            new AppendEntriesResponse(int.MaxValue, 1, 3, Success: true, MatchIndex: 3),
        ];

        foreach (var message in forged)
            AssertRefused(node, message, "not another member");
    }

    [Fact]
    public void AcknowledgementsAndVotesFromNonMembers_NeverCountTowardAQuorum()
    {
        var leader = SteadyLeader(); // three members; commit 1
        leader.Propose("a");
        leader.Drain();
        AssertRefused(leader, new AppendEntriesResponse(4, 1, 1, Success: true, MatchIndex: 2), "not another member");
        AssertRefused(leader, new AppendEntriesResponse(5, 1, 1, Success: true, MatchIndex: 2), "not another member");
        Assert.Equal(1, leader.Core.CommitIndex);

        var candidate = NewCore(1, Three);
        candidate.Campaign();
        AssertRefused(candidate, new RequestVoteResponse(4, 1, 1, Granted: true), "not another member");
        AssertRefused(candidate, new RequestVoteResponse(5, 1, 1, Granted: true), "not another member");
        Assert.Equal(RaftRole.Candidate, candidate.Core.Role);
    }

    [Fact]
    public void ForwardingMessages_SteppedIntoTheCore_AreRefused_WithoutTouchingTheTerm()
    {
        var node = FollowerOf2();

        AssertRefused(node, new ForwardRequest(2, 1, 50, 1, IsRead: true, []), "forwarding messages");
        AssertRefused(node, new ForwardResponse(2, 1, 50, 1, ForwardStatus.Accepted, 3, 0, 2), "forwarding messages");
    }

    // ------------------------------------------------------------------ forged answers to a leader

    // One follower acknowledging entries the leader never had used to move Next past the log and
    // throw from SendAppend (and, with a majority of liars, commit past the last index).
    [Fact]
    public void AnAcknowledgementBeyondTheLeadersLastIndex_IsRefused()
    {
        var leader = Leader();
        leader.Propose("c");
        leader.Drain();

        AssertRefused(leader, new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 1000), "beyond this leader's last index 4");
        AssertRefused(leader, new AppendEntriesResponse(3, 1, 1, Success: false, MatchIndex: 5, HintIndex: 5), "beyond this leader's last index 4");
        Assert.Equal(3, leader.Core.Status.Progress[2]);

        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 4));
        Assert.Equal(4, leader.Core.CommitIndex);
    }

    [Theory]
    [InlineData(-1L, 0L, 0L, "negative")]
    [InlineData(3L, -1L, 0L, "negative")]
    [InlineData(3L, 0L, -1L, "negative")]
    [InlineData(2L, 3L, 0L, "past the rejected index")]
    [InlineData(3L, 2L, 7L, "above the current term")]
    public void ARejectionHintThatMakesNoSense_IsRefused(long rejected, long hintIndex, long hintTerm, string reason)
    {
        var leader = Leader();

        AssertRefused(leader, new AppendEntriesResponse(2, 1, 1, Success: false, rejected, hintIndex, hintTerm), reason);
        Assert.Equal(3, leader.Core.Status.Progress[2]);
    }

    // With three members, one forged echo plus the leader itself is a majority: a read round the
    // leader never started must not confirm a read.
    [Fact]
    public void AnEchoOfAReadRoundNeverStarted_IsRefused_AndConfirmsNoRead()
    {
        var leader = Leader();
        Assert.True(leader.Core.ReadIndex(7));
        var round = leader.Drain();
        Assert.Empty(round.ReadStates);

        AssertRefused(leader, new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 3, ReadSequence: 1_000), "read round 1000");

        var beat = round.To<AppendEntries>(3).Single();
        var released = leader.Step(new AppendEntriesResponse(3, 1, 1, Success: true, MatchIndex: 3, ReadSequence: beat.ReadSequence)).ReadStates;
        Assert.Equal([new ReadState(7, 3)], released);
    }

    [Fact]
    public void AGrantedVoteForATermNeverCampaignedIn_IsRefused()
    {
        var candidate = NewCore(1, Three);
        candidate.Campaign(); // term 1

        AssertRefused(candidate, new RequestVoteResponse(2, 1, 5, Granted: true), "never campaigned in");
        Assert.Equal(RaftRole.Candidate, candidate.Core.Role);

        var preCandidate = NewCore(Options(1, Three, preVote: true));
        preCandidate.Campaign(); // would campaign in term 1
        AssertRefused(preCandidate, new RequestVoteResponse(2, 1, 4, Granted: true, PreVote: true), "never campaigned in");
        Assert.Equal(RaftRole.PreCandidate, preCandidate.Core.Role);
        preCandidate.Step(new RequestVoteResponse(2, 1, 1, Granted: true, PreVote: true));
        Assert.Equal((RaftRole.Candidate, 1L), (preCandidate.Core.Role, preCandidate.Core.Term));
    }

    [Fact]
    public void ASnapshotResponseForASnapshotNeverSent_IsRefused_AndAStaleOneIgnored()
    {
        var leader = Leader(); // no snapshot store: it never sends one

        AssertRefused(leader, new InstallSnapshotResponse(2, 1, 1, 1_000, 0, Success: true, Done: true), "none was sent");
        AssertRefused(leader, new InstallSnapshotResponse(2, 1, 1, -1, 0, Success: true, Done: true), "negative snapshot index");

        // A late answer about an index the leader holds (a transfer that may have ended) is no attack.
        var before = State(leader);
        Assert.Empty(leader.Step(new InstallSnapshotResponse(2, 1, 1, 2, 0, Success: true, Done: true)).Sent);
        Assert.Equal((before, 0L), (State(leader), leader.Core.RejectedMessages - 2));
    }

    // ------------------------------------------------------------------ TimeoutNow

    [Fact]
    public void ATimeoutNowFromANodeThatIsNotTheLeader_IsRefused()
    {
        AssertRefused(FollowerOf2(), new TimeoutNow(3, 1, 2), "not the leader (node 2 is)");
        AssertRefused(FollowerOf2(), new TimeoutNow(2, 1, 3), "has not reached"); // a later term: no leader it knows
        AssertRefused(Leader(), new TimeoutNow(2, 1, 1), "TimeoutNow");
        var voter = NewCore(1, Three, terms: [1], hardState: new HardState(1, 0, 0));
        AssertRefused(voter, new TimeoutNow(2, 1, 1), "knows no leader");

        var follower = FollowerOf2();
        follower.Step(new TimeoutNow(2, 1, 2)); // from its leader: campaigns at once
        Assert.Equal((RaftRole.Candidate, 3L), (follower.Core.Role, follower.Core.Term));
    }

    // ------------------------------------------------------------------ snapshots received

    private static InstallSnapshot Chunk(long offset, int length, bool done = false, long term = 2, int from = 2) =>
        new(from, 1, term, 10, 2, Three, offset, new byte[length], done);

    [Fact]
    public void SnapshotChunksWhoseOffsetsDoNotLineUp_AreAnsweredWithTheOffsetWanted_AndNotWritten()
    {
        var node = FollowerOf2();

        var stray = node.Step(Chunk(offset: 5, length: 5)); // no transfer started
        Assert.Equal(new InstallSnapshotResponse(1, 2, 2, 10, 0, Success: false, Done: false), stray.Sent.Single());
        var first = node.Step(Chunk(offset: 0, length: 10));
        Assert.Single(first.Readies.SelectMany(r => r.SnapshotChunks));
        var gap = node.Step(Chunk(offset: 50, length: 10));
        var overlap = node.Step(Chunk(offset: 4, length: 10));

        foreach (var output in new[] { gap, overlap })
        {
            Assert.Empty(output.Readies.SelectMany(r => r.SnapshotChunks));
            Assert.Equal(new InstallSnapshotResponse(1, 2, 2, 10, 10, Success: false, Done: false), output.Sent.Single());
        }
        Assert.Equal(State(FollowerOf2()), State(node));
        Assert.Equal(0, node.Core.RejectedMessages); // lost and reordered chunks are expected
    }

    [Fact]
    public void SnapshotChunksBeyondMaxSnapshotBytes_AreRefused()
    {
        var node = FollowerOf2(Bounded(maxSnapshotBytes: 100));
        Assert.Single(node.Step(Chunk(offset: 0, length: 60)).Readies.SelectMany(r => r.SnapshotChunks));

        AssertRefused(node, Chunk(offset: 60, length: 41), "MaxSnapshotBytes (100 bytes)");
        AssertRefused(node, Chunk(offset: long.MaxValue - 1, length: 40), "MaxSnapshotBytes"); // no overflow either
        AssertRefused(node, Chunk(offset: 0, length: 101), "MaxSnapshotBytes");

        Assert.Single(node.Step(Chunk(offset: 60, length: 40)).Readies.SelectMany(r => r.SnapshotChunks)); // exactly the limit
    }

    public static TheoryData<string, InstallSnapshot> MalformedChunks => new()
    {
        { "not positive", new InstallSnapshot(2, 1, 2, -3, 2, Three, 0, new byte[] { 1 }, Done: true) },
        { "not positive", new InstallSnapshot(2, 1, 2, 10, 0, Three, 0, new byte[] { 1 }, Done: true) },
        { "not positive", new InstallSnapshot(2, 1, 2, 10, 2, Three, -1, new byte[] { 1 }, Done: true) },
        { "above the leader's term", new InstallSnapshot(2, 1, 2, 10, 3, Three, 0, new byte[] { 1 }, Done: true) },
        { "lists no members", new InstallSnapshot(2, 1, 2, 10, 2, [], 0, new byte[] { 1 }, Done: true) },
        { "lists no members", new InstallSnapshot(2, 1, 2, 10, 2, (ClusterConfiguration)null!, 0, new byte[] { 1 }, Done: true) },
    };

    [Theory]
    [MemberData(nameof(MalformedChunks))]
    public void AMalformedSnapshotChunk_IsRefused(string reason, InstallSnapshot chunk)
    {
        AssertRefused(FollowerOf2(), chunk, reason);
    }

    [Theory]
    [InlineData(-1L, 2L)]
    [InlineData(2L, -1L)]
    public void ARequestVoteWithNegativeOrInconsistentLogPosition_IsRefused(long lastIndex, long lastTerm)
    {
        AssertRefused(FollowerOf2(), new RequestVote(3, 1, 3, lastIndex, lastTerm), "negative last log");
    }

    [Fact]
    public void ARequestVoteWhoseLastLogTermExceedsItsTerm_IsRefused()
    {
        AssertRefused(FollowerOf2(), new RequestVote(3, 1, 3, 9, 4), "above its term");
        AssertRefused(FollowerOf2(), new RequestVote(3, 1, 3, 9, 0), "only index 0 has term 0");
    }

    // ------------------------------------------------------------------ snapshots sent: bounded memory

    /// <summary>A leader of term 2 whose log was compacted to a 10 KiB snapshot at index 4; follower 3 needs it (its log is empty).</summary>
    private sealed class SnapshotLeader
    {
        private readonly TestCore _host;

        public SnapshotLeader()
        {
            Store = CoreHarness.Store([1, 1, 1, 1, 1], new HardState(1, 0, 4));
            Store.CompactAsync(4).AsTask().GetAwaiter().GetResult();
            var writer = Snapshots.CreateAsync(new SnapshotMetadata(4, 1, Three)).AsTask().GetAwaiter().GetResult();
            writer.Stream.Write(new byte[10 * 1024]);
            writer.CommitAsync().AsTask().GetAwaiter().GetResult();
            _host = new TestCore(Options, Store, Snapshots);
            Core.Campaign();
            Drain();
            Core.Step(new RequestVoteResponse(2, 1, 2, Granted: true));
            Drain();
            Assert.Equal(RaftRole.Leader, Core.Role);
            Core.Step(new AppendEntriesResponse(2, 1, 2, Success: true, MatchIndex: 6));
            Drain();
        }

        public RaftOptions Options { get; } = new()
        {
            NodeId = 1, Members = Three, ElectionTicksMin = 10, ElectionTicksMax = 20, HeartbeatTicks = 2,
            MaxSnapshotChunkBytes = 1024, PreVote = false, CheckQuorum = false, Random = new Random(5),
        };

        public InMemoryLogStore Store { get; }

        public InMemorySnapshotStore Snapshots { get; } = new();

        public RaftCore Core => _host.Core;

        public List<RaftMessage> Drain() => _host.Drain().Sent;

        public List<RaftMessage> Step(RaftMessage message)
        {
            Core.Step(message);
            return Drain();
        }

        public List<RaftMessage> Tick(int ticks)
        {
            var sent = new List<RaftMessage>();
            for (var i = 0; i < ticks; i++)
            {
                Core.Tick();
                sent.AddRange(Drain());
            }
            return sent;
        }

        /// <summary>Follower 3 rejects the leader's append: its log is empty. The leader starts streaming the snapshot.</summary>
        public InstallSnapshot StartTransfer()
        {
            var sent = Step(new AppendEntriesResponse(3, 1, 2, Success: false, MatchIndex: 5, HintIndex: 1));
            return sent.OfType<InstallSnapshot>().Single(m => m.To == 3);
        }
    }

    // A paused follower made a leader grow from 129 MB to 1.8 GB: a fresh chunk went out every heartbeat.
    [Fact]
    public void ALeaderKeepsOneSnapshotChunkInFlight_ToAFollowerThatDoesNotAnswer()
    {
        var leader = new SnapshotLeader();
        var first = leader.StartTransfer();
        Assert.Equal((4L, 0L, 1024), (first.SnapshotIndex, first.Offset, first.Data.Length));

        var sent = leader.Tick(200); // 100 heartbeat intervals, 10 election timeouts, no answer from 3

        Assert.Empty(sent.OfType<InstallSnapshot>());
        Assert.True(sent.OfType<AppendEntries>().Count(m => m.To == 3) >= 100, "heartbeats keep the follower from campaigning");
    }

    [Fact]
    public void ALostSnapshotChunk_IsSentAgain_OnceTheFollowerAnswersSomethingElse_AndTheTransferCompletes()
    {
        var leader = new SnapshotLeader();
        leader.StartTransfer(); // lost
        var beat = leader.Tick(2).OfType<AppendEntries>().Last(m => m.To == 3);
        leader.Step(new AppendEntriesResponse(3, 1, 2, Success: false, MatchIndex: beat.PrevLogIndex, HintIndex: 1));

        var resent = leader.Tick(leader.Options.ElectionTicksMin).OfType<InstallSnapshot>().ToList();

        Assert.Equal(0L, Assert.Single(resent).Offset);
        // The answers drive the rest of the transfer, one chunk per answer.
        var chunk = resent[0];
        while (!chunk.Done)
            chunk = leader.Step(new InstallSnapshotResponse(3, 1, 2, 4, chunk.Offset + chunk.Data.Length, Success: true, Done: false)).OfType<InstallSnapshot>().Single();
        var resumed = leader.Step(new InstallSnapshotResponse(3, 1, 2, 4, 10 * 1024, Success: true, Done: true));
        Assert.Equal(4, leader.Core.Status.Progress[3]);
        Assert.Contains(resumed, m => m is AppendEntries { To: 3, PrevLogIndex: 4 });
        Assert.Equal(0, leader.Core.RejectedMessages);
    }

    // Each answer may bring the next chunk, but repeating an answer (duplicated by the network, or
    // by a follower that floods) must not make the leader send the chunk in flight again and again.
    [Fact]
    public void RepeatedAnswersAskingForTheChunkInFlight_SendItOnlyOnce()
    {
        var leader = new SnapshotLeader();
        leader.StartTransfer();
        var restart = new InstallSnapshotResponse(3, 1, 2, 4, 0, Success: false, Done: false);
        var moveOn = new InstallSnapshotResponse(3, 1, 2, 4, 2048, Success: false, Done: false);

        var sent = Enumerable.Range(0, 50).SelectMany(_ => leader.Step(restart)).ToList();
        Assert.Empty(sent.OfType<InstallSnapshot>()); // offset 0 is the chunk already in flight

        var resumed = leader.Step(moveOn).Concat(leader.Step(moveOn)).Concat(leader.Step(moveOn)).OfType<InstallSnapshot>().ToList();
        Assert.Equal(2048L, Assert.Single(resumed).Offset);
        Assert.Equal(0, leader.Core.RejectedMessages); // a follower may ask to resume anywhere in the snapshot
    }

    [Fact]
    public void ASnapshotResponseAskingForAnOffsetBeyondTheSnapshot_IsRefused()
    {
        var leader = new SnapshotLeader();
        leader.StartTransfer();
        var rejected = leader.Core.RejectedMessages;

        var sent = leader.Step(new InstallSnapshotResponse(3, 1, 2, 4, 1L << 40, Success: false, Done: false));

        Assert.Empty(sent);
        Assert.Equal(rejected + 1, leader.Core.RejectedMessages);
        Assert.Contains("beyond the end of the snapshot (10240 bytes)", leader.Core.LastRejection, StringComparison.Ordinal);
    }

    // ------------------------------------------------------------------ options

    [Fact]
    public void TheNewBounds_MustBePositive()
    {
        Assert.Equal(1L << 32, new RaftOptions { NodeId = 1, Members = [1] }.MaxTermJump);
        Assert.Equal(4L << 30, new RaftOptions { NodeId = 1, Members = [1] }.MaxSnapshotBytes);
        var jump = Assert.Throws<ArgumentOutOfRangeException>(() => new RaftOptions { NodeId = 1, Members = [1], MaxTermJump = 0 }.Validate());
        Assert.Equal("MaxTermJump", jump.ParamName);
        var bytes = Assert.Throws<ArgumentOutOfRangeException>(() => new RaftOptions { NodeId = 1, Members = [1], MaxSnapshotBytes = -1 }.Validate());
        Assert.Equal("MaxSnapshotBytes", bytes.ParamName);
    }
}
