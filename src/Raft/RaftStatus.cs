namespace Raft;

/// <summary>A point-in-time picture of one node, for diagnostics and status pages.</summary>
/// <param name="Id">The node's id.</param>
/// <param name="Role">The node's role.</param>
/// <param name="Term">The node's current term.</param>
/// <param name="LeaderId">The leader the node knows in <paramref name="Term"/>, or 0 when it knows none.</param>
/// <param name="CommitIndex">The highest log index known to be committed.</param>
/// <param name="AppliedIndex">The highest log index applied to the state machine.</param>
/// <param name="LastLogIndex">The index of the last entry in the node's log.</param>
/// <param name="LastLogTerm">The term of the last entry in the node's log.</param>
public readonly record struct RaftStatus(
    int Id,
    RaftRole Role,
    long Term,
    int LeaderId,
    long CommitIndex,
    long AppliedIndex,
    long LastLogIndex,
    long LastLogTerm)
{
    /// <summary>When the node is the leader: each follower's match index (highest entry known replicated there). Otherwise empty.</summary>
    public IReadOnlyDictionary<int, long> Progress { get; init; } = EmptyProgress;

    /// <summary>
    /// The error that stopped the node (a store, transport or state machine failure), or null while
    /// it runs. A node with a fault does nothing more: every call throws
    /// <see cref="RaftNodeFaultedException"/> carrying this exception.
    /// </summary>
    public Exception? Fault { get; init; }

    private static readonly IReadOnlyDictionary<int, long> EmptyProgress = new Dictionary<int, long>();
}
