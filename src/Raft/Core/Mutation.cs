#if RAFT_MUTANTS
namespace Raft;

/// <summary>
/// Deliberate bugs, compiled only into the test-only mutant build (RAFT_MUTANTS), so the
/// simulator can prove it catches them. Never part of a shipped assembly.
/// </summary>
[Flags]
public enum Mutation
{
    /// <summary>No bug.</summary>
    None = 0,

    /// <summary>Grant votes without the up-to-date log check (breaks Raft §5.4.1).</summary>
    VoteWithoutLogCheck = 1,

    /// <summary>Commit an entry of an older term by counting replicas (the Figure 8 bug, Raft §5.4.2).</summary>
    CommitOldTermByCounting = 2,

    /// <summary>Do not persist the vote: the hard state handed to the host omits it (breaks Raft §5.2 across restarts).</summary>
    ForgetVote = 4,

    /// <summary>The host (<c>RaftNode</c>) sends acknowledgements and votes (<c>MessagesAfterPersist</c>) before its write is durable, on both the in-place and the pipelined path (breaks DESIGN.md §4's ordering).</summary>
    AckBeforePersist = 8,

    /// <summary>The commit hint saved with the hard state is the commit index itself, not capped at what is durable (the bug the core's <c>DurableCommitHint</c> comment describes).</summary>
    CommitHintNotDurable = 16,

    /// <summary>The core releases a ReadIndex read at once with its commit index, without the heartbeat round that confirms it still leads (a stale leader serves stale reads).</summary>
    ReadWithoutQuorum = 32,

    /// <summary><c>RaftNode.ReadBarrierAsync</c> on the leader completes at once: no heartbeat round, no wait for apply.</summary>
    ReadBarrierAtOnce = 64,

    /// <summary><c>RaftNode</c> releases a confirmed read without waiting until its read index is applied.</summary>
    ReadBeforeApply = 128,

    /// <summary><c>FileLogStore</c> never fsyncs (its data may be lost on power failure while the store claims durability).</summary>
    FileLogNoFsync = 256,

    /// <summary>A configuration is in force only once its entry is committed, not as soon as it is appended (breaks the overlap argument of dissertation §4.3: a leader of C(new) may be elected by a majority that knows only C(old)).</summary>
    ConfigAtCommit = 512,

    /// <summary>Learners' acknowledgements count toward the commit, CheckQuorum and read quorums like voters' (elections still count voters only, as a correct implementation does): an entry can commit without a majority of the voters, who then elect a leader without it.</summary>
    LearnerCounted = 1024,

    /// <summary>A change of voters goes to C(new) in one step (no joint configuration), and a change may start while an earlier one is uncommitted or before the leader committed an entry of its term.</summary>
    NoJointConsensus = 2048,

    /// <summary><c>RaftNode</c> leaves the session table out of its snapshots: a node restored from one answers a retried session command by applying it again.</summary>
    SessionsNotInSnapshot = 4096,

    /// <summary>The core's lease read lasts the whole <c>ElectionTicksMin</c>: no clock-drift margin (<c>RaftOptions.LeaseClockDriftBound</c>), so a leader whose clock runs slow serves stale reads.</summary>
    LeaseWithoutDriftBound = 8192,
}
#endif
