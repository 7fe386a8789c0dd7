namespace Raft;

/// <summary>
/// What a <see cref="RaftCore"/> asks its host to do, in one batch. The host must carry it out in
/// this order, then call <see cref="RaftCore.Advance"/>:
/// </summary>
/// <remarks>
/// <list type="number">
/// <item><see cref="Messages"/> may be sent at once, in parallel with persisting (a leader's appends; dissertation §10.2.1).</item>
/// <item><see cref="HardState"/> (when not null) must be made durable; then, when <see cref="SnapshotChunks"/> is not empty, each chunk is written at its offset into the snapshot being received (a chunk at offset 0 starts it over); then, when <see cref="SnapshotToRestore"/> is set, that snapshot is committed to the <see cref="ISnapshotStore"/> and the log store is reset to it (<see cref="ILogStore.ResetAsync"/>); then <see cref="Entries"/> (when not empty) are appended durably.</item>
/// <item>Only then may <see cref="MessagesAfterPersist"/> be sent: votes and append acknowledgements that promise what was just persisted.</item>
/// <item>When <see cref="SnapshotToRestore"/> is set, the state machine is restored from it; then <see cref="CommittedEntries"/> are applied to the state machine in order (they may be handed to another thread, in order).</item>
/// <item><see cref="ReadStates"/> are released once the applied index reaches their index.</item>
/// </list>
/// The lists belong to the host after <see cref="RaftCore.GetReady"/>; the core never touches them again.
/// </remarks>
public sealed class Ready
{
    internal Ready() { }

    /// <summary>The hard state to persist before <see cref="MessagesAfterPersist"/> are sent, or null when it did not change.</summary>
    public HardState? HardState { get; internal set; }

    /// <summary>Entries to append durably (see <see cref="ILogStore.AppendAsync"/>: an entry at or below the store's last index replaces the suffix from there). Empty when there are none.</summary>
    public IReadOnlyList<LogEntry> Entries { get; internal set; } = [];

    /// <summary>Messages that may be sent immediately, before or while the entries are persisted.</summary>
    public IReadOnlyList<RaftMessage> Messages { get; internal set; } = [];

    /// <summary>Messages to send only after <see cref="HardState"/> and <see cref="Entries"/> are durable.</summary>
    public IReadOnlyList<RaftMessage> MessagesAfterPersist { get; internal set; } = [];

    /// <summary>Committed entries to apply, contiguous and in index order.</summary>
    public IReadOnlyList<LogEntry> CommittedEntries { get; internal set; } = [];

    /// <summary>Linearizable reads that are now safe once the state machine has applied up to their index.</summary>
    public IReadOnlyList<ReadState> ReadStates { get; internal set; } = [];

    /// <summary>The role and leader, when either changed since the previous <see cref="Ready"/>; otherwise null.</summary>
    public SoftState? SoftState { get; internal set; }

    /// <summary>
    /// Chunks of a snapshot the leader is streaming to this node, in order. Write each at its
    /// <see cref="InstallSnapshot.Offset"/>; a chunk at offset 0 discards any partial snapshot and
    /// starts a new one. When a chunk with <see cref="InstallSnapshot.Done"/> is here but
    /// <see cref="SnapshotToRestore"/> is null, the log already held the snapshot's entries:
    /// discard the partial snapshot.
    /// </summary>
    public IReadOnlyList<InstallSnapshot> SnapshotChunks { get; internal set; } = [];

    /// <summary>
    /// When not null, the snapshot received through <see cref="SnapshotChunks"/> is complete and
    /// replaces this node's log and state: commit it, reset the log store to its index and term, and
    /// restore the state machine from it before applying <see cref="CommittedEntries"/>.
    /// </summary>
    public SnapshotMetadata? SnapshotToRestore { get; internal set; }

    /// <summary>
    /// The configuration now in force, when it changed since the previous Ready (a configuration
    /// entry was appended or rolled back, or a snapshot replaced the log); otherwise null. The host
    /// tells its transport the new members (<see cref="ITransport.UpdatePeers"/>). The configuration
    /// in force at start is <see cref="RaftCore.Configuration"/>.
    /// </summary>
    public ClusterConfiguration? Configuration { get; internal set; }

    /// <summary>Whether the members the core sends to changed (<see cref="RaftCore.PeerAddresses"/>): RaftNode then updates its transport.</summary>
    internal bool PeersChanged { get; set; }

    /// <summary>
    /// True when this Ready only appends <see cref="Entries"/> after everything already written or
    /// being written (no hard state, no snapshot, nothing overwritten): the host may then call
    /// <see cref="RaftCore.AdvanceBeforePersisting"/> instead of <see cref="RaftCore.Advance"/>, keep
    /// stepping the core while the entries are written, and call <see cref="RaftCore.Persisted"/>
    /// once they are durable (see there).
    /// </summary>
    public bool CanPersistAsynchronously { get; internal set; }

    /// <summary>True when the host must fsync before sending <see cref="MessagesAfterPersist"/> (that is, when something is to be persisted).</summary>
    public bool MustSync => HardState is not null || Entries.Count > 0 || SnapshotChunks.Count > 0 || SnapshotToRestore is not null;
}

/// <summary>The volatile part of a node's state: its role and the leader it knows.</summary>
/// <param name="Role">The node's role.</param>
/// <param name="LeaderId">The leader it knows, or 0.</param>
/// <param name="Term">The current term.</param>
public readonly record struct SoftState(RaftRole Role, int LeaderId, long Term);

/// <summary>A read request that the leader has confirmed: it is linearizable once the state machine has applied <paramref name="Index"/>.</summary>
/// <param name="RequestId">The id the host gave to <see cref="RaftCore.ReadIndex"/>.</param>
/// <param name="Index">The commit index at the time the read was requested.</param>
public readonly record struct ReadState(long RequestId, long Index);

/// <summary>The outcome of <see cref="RaftCore.Propose"/>.</summary>
public enum ProposeResult
{
    /// <summary>The entry was appended to the leader's log; it commits once a majority persists it.</summary>
    Accepted = 0,

    /// <summary>This node is not the leader; nothing was appended.</summary>
    NotLeader = 1,

    /// <summary>Too many entries are waiting to commit (<see cref="RaftOptions.MaxUncommittedEntries"/>); nothing was appended.</summary>
    Backpressure = 2,

    /// <summary>A leadership transfer is in progress; nothing was appended.</summary>
    TransferInProgress = 3,

    /// <summary>A membership change: an earlier change is not committed yet (its joint configuration, or its final one), or this leader has not yet committed an entry of its own term; nothing was appended. Retry later.</summary>
    MembershipChangePending = 4,

    /// <summary>A membership change that does not fit the configuration in force (adding a member twice, removing a non-member, leaving no voter, changing nothing); nothing was appended.</summary>
    InvalidMembershipChange = 5,

    /// <summary>A membership change promotes a learner that lags more than <see cref="RaftOptions.MaxPromotionLag"/> entries behind the leader; nothing was appended. Retry once it has caught up.</summary>
    LearnerNotCaughtUp = 6,
}
