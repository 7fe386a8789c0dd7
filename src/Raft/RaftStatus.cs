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
    /// <summary>When the node is the leader: its own durable last index and each other member's match index (highest entry known replicated there), learners included, so a host can tell when a learner has caught up. Otherwise empty.</summary>
    public IReadOnlyDictionary<int, long> Progress { get; init; } = EmptyProgress;

    /// <summary>
    /// The error that stopped the node (a store, transport or state machine failure), or null while
    /// it runs. A node with a fault does nothing more: every call throws
    /// <see cref="RaftNodeFaultedException"/> carrying this exception.
    /// </summary>
    public Exception? Fault { get; init; }

    /// <summary>
    /// The configuration in force on this node (the last in its log, committed or not): its voters
    /// and learners with their addresses, and, while a change of voters is under way, the outgoing
    /// voters (<see cref="ClusterConfiguration.IsJoint"/>). <see cref="ClusterConfiguration.Empty"/>
    /// for a node started with <see cref="RaftNodeOptions.Join"/> that was not added yet.
    /// </summary>
    public ClusterConfiguration Configuration { get; init; } = ClusterConfiguration.Empty;

    /// <summary>
    /// Whether the configuration in force does not list this node: it was removed and no longer
    /// campaigns (a node catching up from far behind may also show it until its log reaches the
    /// configuration that added it).
    /// </summary>
    public bool IsRemoved { get; init; }

    private static readonly IReadOnlyDictionary<int, long> EmptyProgress = new Dictionary<int, long>();
}
