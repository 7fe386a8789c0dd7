namespace Raft;

/// <summary>Settings of the consensus core (<see cref="RaftCore"/>), in logical ticks. Hosts that use <see cref="RaftNode"/> set <see cref="RaftNodeOptions"/> instead.</summary>
public sealed class RaftOptions
{
    /// <summary>The local node's id. Must be positive and one of <see cref="Members"/> (unless <see cref="Join"/> is set).</summary>
    public required int NodeId { get; init; }

    /// <summary>
    /// The bootstrap configuration: every voting member's id, the local node included. Ids are
    /// positive and distinct. It is used only while the node's log and snapshot hold no
    /// configuration: once they do (after a membership change), that configuration wins. Ignored
    /// (and may be empty) when <see cref="Join"/> is set.
    /// </summary>
    public required IReadOnlyList<int> Members { get; init; }

    /// <summary>
    /// The addresses of the bootstrap members (<see cref="Members"/>), recorded in the bootstrap
    /// configuration so a transport can be told them (<see cref="ITransport.UpdatePeers"/>). Keys
    /// must be members. The default is null (no addresses).
    /// </summary>
    public IReadOnlyDictionary<int, string>? MemberAddresses { get; init; }

    /// <summary>
    /// Whether this node starts with no configuration, to be added to an existing cluster (with
    /// <see cref="RaftNode.ChangeMembershipAsync"/> on its leader): it never campaigns, and accepts
    /// the log and snapshots of a leader it does not know yet. Once the log it receives holds a
    /// configuration that lists it, it takes part like any member. Only for a node whose log and
    /// snapshot store are empty; a node that restarts with a configuration in its log ignores it.
    /// The default is false.
    /// </summary>
    public bool Join { get; init; }

    /// <summary>
    /// How many entries a learner may lag behind the leader's last index and still be promoted to
    /// voter: a promotion of a learner further behind is refused with
    /// <see cref="ProposeResult.LearnerNotCaughtUp"/>, because a voter that must first catch up can
    /// stall commits (with three voters and one down, a lagging new voter is needed for every commit).
    /// The default is 1,000.
    /// </summary>
    public long MaxPromotionLag { get; init; } = 1000;

    /// <summary>The lower bound (inclusive) of the randomized election timeout, in ticks. The default is 10.</summary>
    public int ElectionTicksMin { get; init; } = 10;

    /// <summary>The upper bound (exclusive) of the randomized election timeout, in ticks. The default is 20.</summary>
    public int ElectionTicksMax { get; init; } = 20;

    /// <summary>How many ticks pass between a leader's heartbeats. Must be well below <see cref="ElectionTicksMin"/> (at most half). The default is 2.</summary>
    public int HeartbeatTicks { get; init; } = 2;

    /// <summary>How many AppendEntries a leader keeps unacknowledged per follower while replicating (pipelining). The default is 64.</summary>
    public int MaxInflightAppends { get; init; } = 64;

    /// <summary>The soft limit on the entry bytes in one AppendEntries. The default is 1 MiB.</summary>
    public long MaxAppendBytes { get; init; } = 1 << 20;

    /// <summary>The size of the chunks a leader streams a snapshot in (one chunk in flight per follower). The default is 1 MiB.</summary>
    public int MaxSnapshotChunkBytes { get; init; } = 1 << 20;

    /// <summary>
    /// The limit on proposed entries a leader holds that are not yet committed; beyond it proposals
    /// are refused with <see cref="ProposeResult.Backpressure"/>, so a stalled cluster cannot eat
    /// the leader's memory. The default is 1,000,000.
    /// </summary>
    public int MaxUncommittedEntries { get; init; } = 1_000_000;

    /// <summary>
    /// The largest step by which a message may raise this node's term. A message whose term exceeds
    /// the current term by more is dropped (and counted in <see cref="RaftCore.RejectedMessages"/>):
    /// a buggy or hostile peer cannot push the cluster's terms to the end of the <see cref="long"/>
    /// range with one message, where no node could campaign again.
    /// </summary>
    /// <remarks>
    /// Honest terms grow by at most one per election timeout (with <see cref="PreVote"/>, a node
    /// cut off from a majority does not raise its term at all), so the default never refuses an
    /// honest peer: even without PreVote, a node campaigning every 10 ms alone in a partition needs
    /// more than a year to get this far ahead. Term arithmetic never overflows whatever the bound:
    /// a node whose term has reached <see cref="long.MaxValue"/> stays a follower instead of
    /// campaigning. A peer that can send authenticated messages could still raise terms step by
    /// step (about 2^31 messages at the default); keeping such peers out is the transport's job.
    /// The default is 2^32.
    /// </remarks>
    public long MaxTermJump { get; init; } = 1L << 32;

    /// <summary>
    /// The largest snapshot, in bytes, this node accepts from a leader. Chunks that would take the
    /// snapshot being received beyond it are refused (and counted in
    /// <see cref="RaftCore.RejectedMessages"/>), so a leader cannot fill this node's disk. Set it
    /// above the largest state machine snapshot the cluster can produce. The default is 4 GiB.
    /// </summary>
    public long MaxSnapshotBytes { get; init; } = 4L << 30;

    /// <summary>
    /// Whether a node first asks a majority whether it could win before it bumps its term
    /// (dissertation §9.6), so a node rejoining after a partition does not depose a working leader.
    /// The default is true.
    /// </summary>
    public bool PreVote { get; init; } = true;

    /// <summary>
    /// Whether a leader that has not heard from a majority within an election timeout steps down,
    /// and followers that heard from a leader within the minimum election timeout ignore votes
    /// (dissertation §6.2, §4.2.3). The default is true.
    /// </summary>
    public bool CheckQuorum { get; init; } = true;

    /// <summary>
    /// Whether a leader tells its followers of a new commit index at once (in the same round: with
    /// the next entries, or an empty AppendEntries when none go out), rather than with the next
    /// entries or at the next tick. It costs an extra message and acknowledgement per follower per
    /// commit when no entries are flowing, and saves up to a tick of latency for work that completes
    /// on a follower (forwarded proposals and reads). The default is false.
    /// </summary>
    public bool EagerCommitPropagation { get; init; }

    /// <summary>
    /// Whether the leader serves <see cref="RaftCore.ReadIndex"/> from its lease, without a round of
    /// heartbeats, while a majority acknowledged a heartbeat it sent less than
    /// <see cref="LeaseTicks"/> ago (dissertation §6.4.1). Needs <see cref="CheckQuorum"/> (followers
    /// that heard from the leader then ignore candidates for <see cref="ElectionTicksMin"/>), and
    /// clocks whose rates differ by at most <see cref="LeaseClockDriftBound"/>: a node paused or a
    /// clock running slower than that may serve a stale read. With it on, a node also ignores
    /// candidates for its first <see cref="ElectionTicksMin"/> ticks, so a follower that restarts
    /// cannot end an acknowledged lease early. The default is false.
    /// </summary>
    public bool LeaseReads { get; init; }

    /// <summary>
    /// With <see cref="LeaseReads"/>, the largest relative difference between two nodes' clock
    /// rates (0.1: one node's 10 ticks may last as long as another's 9): the lease is cut by it, see
    /// <see cref="LeaseTicks"/>. From 0 up to, not including, 1. The default is 0.1.
    /// </summary>
    public double LeaseClockDriftBound { get; init; } = 0.1;

    /// <summary>
    /// How many of the leader's ticks a lease lasts after the heartbeat round a majority acknowledged
    /// started: <see cref="ElectionTicksMin"/> × (1 − <see cref="LeaseClockDriftBound"/>), rounded
    /// down, less 2 ticks (one for the follower's tick that may come at once after it heard the
    /// heartbeat, one for the leader's). Must be at least 1 when <see cref="LeaseReads"/> is on.
    /// </summary>
    public int LeaseTicks => (int)Math.Floor(ElectionTicksMin * (1 - LeaseClockDriftBound)) - 2;

    /// <summary>The source of randomness for election timeouts. The default is <see cref="Random.Shared"/>; pass a seeded instance for reproducible runs.</summary>
    public Random? Random { get; init; }

#if RAFT_MUTANTS
    /// <summary>Deliberate bugs for the mutant build's tests.</summary>
    public Mutation Mutations { get; init; }

#endif
    /// <summary>Checks the settings and throws, naming the values, when they cannot work.</summary>
    /// <exception cref="ArgumentException">A setting is invalid.</exception>
    public void Validate()
    {
        if (NodeId <= 0)
            throw new ArgumentOutOfRangeException(nameof(NodeId), NodeId, "NodeId must be positive.");
        if (Members is null)
            throw new ArgumentException("Members must list at least the local node.", nameof(Members));
        if (MaxPromotionLag < 0)
            throw new ArgumentOutOfRangeException(nameof(MaxPromotionLag), MaxPromotionLag, "MaxPromotionLag must not be negative.");
        if (Join)
        {
            ValidateTimings();
            return;
        }
        if (Members.Count == 0)
            throw new ArgumentException("Members must list at least the local node (or set Join to start without a configuration).", nameof(Members));
        var seen = new HashSet<int>();
        foreach (var member in Members)
        {
            if (member <= 0)
                throw new ArgumentException($"Member id {member} is not positive; node ids must be positive.", nameof(Members));
            if (!seen.Add(member))
                throw new ArgumentException($"Member id {member} appears more than once in Members ({string.Join(", ", Members)}).", nameof(Members));
        }
        if (!seen.Contains(NodeId))
            throw new ArgumentException($"NodeId {NodeId} is not one of the Members ({string.Join(", ", Members)}).", nameof(Members));
        foreach (var (id, address) in MemberAddresses ?? new Dictionary<int, string>())
        {
            if (!seen.Contains(id))
                throw new ArgumentException($"MemberAddresses names node {id}, which is not one of the Members ({string.Join(", ", Members)}).", nameof(MemberAddresses));
            if (string.IsNullOrWhiteSpace(address) || System.Text.Encoding.UTF8.GetByteCount(address) > ClusterConfiguration.MaxAddressBytes)
                throw new ArgumentException($"MemberAddresses gives node {id} the address '{address}': it must be non-empty and at most {ClusterConfiguration.MaxAddressBytes} bytes.", nameof(MemberAddresses));
        }
        ValidateTimings();
    }

    /// <summary>The configuration the node starts from when its log and snapshot hold none.</summary>
    internal ClusterConfiguration BootstrapConfiguration() =>
        Join
            ? ClusterConfiguration.Empty
            : new ClusterConfiguration(Members.Select(id => ClusterMember.Voter(id, MemberAddresses is { } addresses && addresses.TryGetValue(id, out var address) ? address : null)));

    private void ValidateTimings()
    {
        if (HeartbeatTicks <= 0)
            throw new ArgumentOutOfRangeException(nameof(HeartbeatTicks), HeartbeatTicks, "HeartbeatTicks must be positive.");
        if (ElectionTicksMin <= 0)
            throw new ArgumentOutOfRangeException(nameof(ElectionTicksMin), ElectionTicksMin, "ElectionTicksMin must be positive.");
        if (ElectionTicksMax <= ElectionTicksMin)
            throw new ArgumentException($"ElectionTicksMax ({ElectionTicksMax}) must be greater than ElectionTicksMin ({ElectionTicksMin}).", nameof(ElectionTicksMax));
        if (HeartbeatTicks * 2 > ElectionTicksMin)
            throw new ArgumentException($"HeartbeatTicks ({HeartbeatTicks}) must be at most half of ElectionTicksMin ({ElectionTicksMin}), or followers time out between heartbeats.", nameof(HeartbeatTicks));
        if (MaxInflightAppends <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxInflightAppends), MaxInflightAppends, "MaxInflightAppends must be positive.");
        if (MaxAppendBytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxAppendBytes), MaxAppendBytes, "MaxAppendBytes must be positive.");
        if (MaxSnapshotChunkBytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxSnapshotChunkBytes), MaxSnapshotChunkBytes, "MaxSnapshotChunkBytes must be positive.");
        if (MaxUncommittedEntries <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxUncommittedEntries), MaxUncommittedEntries, "MaxUncommittedEntries must be positive.");
        if (MaxTermJump <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxTermJump), MaxTermJump, "MaxTermJump must be positive.");
        if (MaxSnapshotBytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxSnapshotBytes), MaxSnapshotBytes, "MaxSnapshotBytes must be positive.");
        if (double.IsNaN(LeaseClockDriftBound) || LeaseClockDriftBound < 0 || LeaseClockDriftBound >= 1)
            throw new ArgumentOutOfRangeException(nameof(LeaseClockDriftBound), LeaseClockDriftBound, "LeaseClockDriftBound must be at least 0 and less than 1.");
        if (LeaseReads && !CheckQuorum)
            throw new ArgumentException("LeaseReads needs CheckQuorum: without it, followers that heard from the leader still vote for a new one, and the lease proves nothing.", nameof(LeaseReads));
        if (LeaseReads && LeaseTicks < 1)
            throw new ArgumentException($"LeaseReads: ElectionTicksMin ({ElectionTicksMin}) × (1 − LeaseClockDriftBound ({LeaseClockDriftBound})) leaves a lease of {LeaseTicks} ticks after the 2-tick margin; it must be at least 1.", nameof(LeaseReads));
    }
}
