namespace Raft;

/// <summary>The settings of a <see cref="RaftNode"/>. Every property has a documented default except <see cref="NodeId"/> and <see cref="Members"/>.</summary>
/// <remarks>
/// <para>Settings only: the services a node uses (clock, logger factory, meter factory) are
/// constructor parameters of <see cref="RaftNode"/>, so these options can be bound from
/// configuration (<c>ConfigurationBinder</c>, <c>services.Configure&lt;RaftNodeOptions&gt;(...)</c>)
/// and copied with <c>with</c>. A <c>with</c> copy shares <see cref="Members"/>,
/// <see cref="MemberAddresses"/> and <see cref="Sessions"/> with the original (it copies references);
/// assign new ones in the <c>with</c> to change them for one copy only.</para>
/// <para><see cref="NodeId"/> and <see cref="Members"/> are <c>required</c> in code; a binder or an
/// options factory that creates the object without them leaves 0 and null, which
/// <see cref="Validate"/> (and the node's constructor) reports naming the setting.</para>
/// <para>The node copies the options it is given (with <see cref="Members"/>,
/// <see cref="MemberAddresses"/> and <see cref="Sessions"/>) when it is constructed, validates the
/// copy and uses only that: changing the object afterwards changes nothing in a running node.</para>
/// </remarks>
public sealed record RaftNodeOptions
{
    /// <summary>The local node's id. Must be positive and one of <see cref="Members"/> (unless <see cref="Join"/> is set).</summary>
    public required int NodeId { get; set; }

    /// <summary>
    /// The bootstrap configuration: every voting member's id, the local node included. Ids are
    /// positive and distinct. Used only until the node's log or snapshot holds a configuration
    /// (after the first membership change, <see cref="RaftNode.ChangeMembershipAsync"/>): from then
    /// on the log wins, so a restarted node knows its peers from its log. To start a cluster that
    /// grows later, start one node with itself as the only member, then add the others (see
    /// docs/membership.md). Empty when <see cref="Join"/> is set.
    /// </summary>
    public required IReadOnlyList<int> Members { get; set; }

    /// <summary>The bootstrap members' addresses ("host:port" for the TCP transport), recorded in the bootstrap configuration and passed to <see cref="ITransport.UpdatePeers"/>. Keys must be members. The default is null.</summary>
    public IReadOnlyDictionary<int, string>? MemberAddresses { get; set; }

    /// <summary>
    /// Whether the node starts without a configuration, to be added to a running cluster: it never
    /// campaigns and accepts the log and snapshots of a leader it does not know yet, until its log
    /// holds a configuration listing it (the leader adds it with
    /// <see cref="RaftNode.ChangeMembershipAsync"/>, typically as a learner first). Its log and
    /// snapshot store must be empty the first time; on a restart, the configuration in its log wins.
    /// The default is false.
    /// </summary>
    public bool Join { get; set; }

    /// <summary>How many entries a learner may lag behind the leader and still be promoted to voter (see <see cref="RaftOptions.MaxPromotionLag"/>). The default is 1,000.</summary>
    public long MaxPromotionLag { get; set; } = 1000;

    /// <summary>The resolution of the node's logical clock. Other intervals are rounded to whole ticks. The default is 10 ms.</summary>
    public TimeSpan TickInterval { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>How often a leader sends heartbeats. Must be at most half of <see cref="ElectionTimeoutMin"/>. The default is 50 ms.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <summary>The lower bound of the randomized election timeout. The default is 300 ms.</summary>
    public TimeSpan ElectionTimeoutMin { get; set; } = TimeSpan.FromMilliseconds(300);

    /// <summary>The upper bound (exclusive) of the randomized election timeout. The default is 600 ms.</summary>
    public TimeSpan ElectionTimeoutMax { get; set; } = TimeSpan.FromMilliseconds(600);

    /// <summary>How many AppendEntries a leader keeps unacknowledged per follower. The default is 64.</summary>
    public int MaxInflightAppends { get; set; } = 64;

    /// <summary>The soft limit on entry bytes per AppendEntries. The default is 1 MiB.</summary>
    public long MaxAppendBytes { get; set; } = 1 << 20;

    /// <summary>The limit on proposed entries not yet committed; beyond it proposals fail with <see cref="RaftBusyException"/>. The default is 100,000.</summary>
    public int MaxUncommittedEntries { get; set; } = 100_000;

    /// <summary>
    /// How many entries are applied between two snapshots; after each snapshot the log is compacted,
    /// keeping <see cref="SnapshotTrailingEntries"/>. 0 disables snapshots. Needs an
    /// <see cref="ISnapshotStore"/>. The default is 16,384 (etcd takes one every 10,000 entries,
    /// hashicorp/raft checks every 8,192): a snapshot costs the whole state's size in I/O, so it should
    /// be rare next to the writes it saves replaying.
    /// </summary>
    public long SnapshotInterval { get; set; } = 16_384;

    /// <summary>
    /// How many entries before a snapshot stay in the log, so a follower that lags a little (a slow
    /// disk, a pause, a restart) catches up from the log rather than through a snapshot, which would
    /// cost a whole state transfer and leave its forwarded proposals without their results. The
    /// default is 10,240 (hashicorp/raft's TrailingLogs; etcd keeps 5,000): at 10,000 writes per second
    /// a follower may lag one second.
    /// </summary>
    public long SnapshotTrailingEntries { get; set; } = 10_240;

    /// <summary>The size of the chunks a leader streams a snapshot in. Keep it below the transport's frame limit. The default is 1 MiB.</summary>
    public int MaxSnapshotChunkBytes { get; set; } = 1 << 20;

    /// <summary>Whether elections start with a pre-vote round (dissertation §9.6). The default is true.</summary>
    public bool PreVote { get; set; } = true;

    /// <summary>Whether a leader steps down when it loses contact with a majority, and followers ignore disruptive candidates while they hear from a leader. The default is true.</summary>
    public bool CheckQuorum { get; set; } = true;

    /// <summary>
    /// Whether the node keeps handling messages and proposals while its log write is being made
    /// durable, when the log store allows it (<see cref="ILogStore.SupportsReadsDuringAppend"/>).
    /// Acknowledgements and the leader's own vote toward a commit still wait for the write; what no
    /// longer waits is everything else (the next batch, heartbeats, reads). The default is true.
    /// </summary>
    public bool PipelineLogWrites { get; set; } = true;

    /// <summary>
    /// Whether a follower forwards <see cref="RaftNode.ProposeAsync"/> and
    /// <see cref="RaftNode.ReadBarrierAsync"/> to the leader it knows, over the Raft transport, instead
    /// of failing them with <see cref="NotLeaderException"/>. Each round of the node's loop sends the
    /// commands (and, separately, the reads) that arrived as one message. A forwarded command
    /// completes when this node applies it, with this node's state machine's result; a forwarded read
    /// completes when this node has applied the leader's read index, so reading the local state
    /// machine then is linearizable. With no leader known, calls still fail with
    /// <see cref="NotLeaderException"/>. A leader with this setting also tells its followers of each
    /// commit at once (<see cref="RaftOptions.EagerCommitPropagation"/>), so set it on every member.
    /// The default is false.
    /// </summary>
    public bool ForwardToLeader { get; set; }

    /// <summary>
    /// How long a forwarded request waits for the leader's answer (see <see cref="ForwardToLeader"/>).
    /// Past it, or when the known leader changes first, a command fails with
    /// <see cref="ProposalOutcomeUnknownException"/> (the leader may have appended it) and a read with
    /// <see cref="NotLeaderException"/>. The default is 5 seconds.
    /// </summary>
    public TimeSpan ForwardTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long <see cref="RaftNode.ProposeAsync"/> waits for its command to be applied before it
    /// fails with <see cref="RaftTimeoutException"/>, so a proposal on a deposed or partitioned leader
    /// does not wait until the partition heals. <see cref="RaftTimeoutException.OutcomeKnown"/> says
    /// whether the command may still take effect (it was appended) or cannot (it never was).
    /// <see cref="Timeout.InfiniteTimeSpan"/> waits for ever (then only the caller's token ends the
    /// wait). Measured with <see cref="TimeProvider"/>, checked once per <see cref="TickInterval"/>.
    /// The default is 30 seconds.
    /// </summary>
    public TimeSpan ProposalTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long <see cref="RaftNode.ReadBarrierAsync"/>, <see cref="RaftNode.QueryAsync{TState, TResult}"/>
    /// and <see cref="RaftNode.WaitForAppliedAsync"/> wait before they fail with
    /// <see cref="RaftTimeoutException"/> (a read changes nothing: retry it).
    /// <see cref="Timeout.InfiniteTimeSpan"/> waits for ever. The default is 10 seconds.
    /// </summary>
    public TimeSpan ReadTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Whether the leader serves reads (<see cref="RaftNode.ReadBarrierAsync"/>,
    /// <see cref="RaftNode.QueryAsync{TState, TResult}"/>) from a lease, without a round of
    /// heartbeats, while a majority acknowledged a heartbeat it sent within
    /// <see cref="ElectionTimeoutMin"/> × (1 − <see cref="LeaseClockDriftBound"/>) less two ticks.
    /// Needs <see cref="CheckQuorum"/>. <b>It trusts clocks</b>: a read is stale if a member's clock
    /// runs slower than another's by more than <see cref="LeaseClockDriftBound"/>, or if the leader's
    /// process pauses (GC, VM suspension) between checking the lease and reading; the default
    /// ReadIndex protocol trusts no clock. Turn it on only where that is acceptable. The default is false.
    /// </summary>
    public bool LeaseReads { get; set; }

    /// <summary>
    /// With <see cref="LeaseReads"/>, the largest relative difference between the members' clock
    /// rates the lease tolerates (0.1 = 10 %); the lease is shortened by it. From 0 up to, not
    /// including, 1. The default is 0.1.
    /// </summary>
    public double LeaseClockDriftBound { get; set; } = 0.1;

    /// <summary>
    /// The largest term increase a message may carry; a message whose term is further ahead of this
    /// node's is refused (logged, counted), so one forged message cannot push the cluster's term to
    /// the end of the range. The default is the core's, <see cref="RaftOptions.MaxTermJump"/> (2^32),
    /// which honest clusters never come near.
    /// </summary>
    public long MaxTermJump { get; set; } = 1L << 32;

    /// <summary>
    /// The largest snapshot this node accepts from a leader; chunks beyond it are refused (logged),
    /// so a hostile or buggy peer cannot fill the disk. The default is the core's,
    /// <see cref="RaftOptions.MaxSnapshotBytes"/> (4 GiB).
    /// </summary>
    public long MaxSnapshotBytes { get; set; } = 4L << 30;

    /// <summary>The default of <see cref="MaxInboxBytes"/>: 64 MiB.</summary>
    public const long DefaultMaxInboxBytes = 64L << 20;

    /// <summary>
    /// The most bytes of inbound messages (entry, snapshot and forwarded command payloads, plus a
    /// fixed overhead per message) that may wait in the node's inbox. Beyond it,
    /// <see cref="RaftNode.DeliverAsync"/> waits until the event loop has taken messages out, so a
    /// transport that awaits it stops reading from the network and a flood of large messages cannot
    /// exhaust memory. A message is always admitted into an inbox under the budget, so one message
    /// larger than the budget still gets through. At least 64 KiB. The default is
    /// <see cref="DefaultMaxInboxBytes"/> (64 MiB).
    /// </summary>
    public long MaxInboxBytes { get; set; } = DefaultMaxInboxBytes;

    /// <summary>The default of <see cref="MaxUnpersistedBytes"/>: 64 MiB.</summary>
    public const long DefaultMaxUnpersistedBytes = 64L << 20;

    /// <summary>
    /// With <see cref="PipelineLogWrites"/>, the most bytes of entries handed to the log writer and
    /// not yet durable. Beyond it, the node stops pipelining and waits for the disk before it takes
    /// more work, so a slow disk under a flood of appends cannot exhaust memory. At least 64 KiB. The
    /// default is <see cref="DefaultMaxUnpersistedBytes"/> (64 MiB).
    /// </summary>
    public long MaxUnpersistedBytes { get; set; } = DefaultMaxUnpersistedBytes;

    /// <summary>
    /// Test-only (the deterministic simulator): the node starts no loop task and no timer; the
    /// simulator runs each loop's rounds itself on one thread. Never set by hosts.
    /// </summary>
    internal bool ManualScheduling { get; init; }

#if RAFT_MUTANTS
    /// <summary>Deliberate bugs for the mutant build's tests (core and node).</summary>
    public Mutation Mutations { get; set; }

#endif

    /// <summary>The limits of exactly-once client sessions (<see cref="RaftNode.OpenSessionAsync"/>); the leader writes them into each registration. The default is <see cref="SessionOptions"/>' defaults.</summary>
    public SessionOptions Sessions { get; set; } = new();

    /// <summary>
    /// The seed of the node's source of randomness (its election timeouts, and the first id of the
    /// requests it forwards). The default, null, seeds unpredictably (<see cref="Random.Shared"/>),
    /// which is what production wants: members must not draw the same timeouts. Set it only for
    /// reproducible runs (tests, the deterministic simulator), and then differently on each member.
    /// </summary>
    public int? RandomSeed { get; set; }

    /// <summary>
    /// A copy that shares nothing mutable with this one: <see cref="Members"/>,
    /// <see cref="MemberAddresses"/> and <see cref="Sessions"/> are copied too (<c>with</c> copies
    /// only references). The node takes such a copy when it is constructed.
    /// </summary>
    internal RaftNodeOptions DeepCopy() => this with
    {
        Members = Members is null ? null! : [.. Members],
        MemberAddresses = MemberAddresses is null ? null : new Dictionary<int, string>(MemberAddresses),
        Sessions = Sessions is null ? null! : Sessions with { },
    };

    /// <summary>Checks the settings and throws, naming the values, when they cannot work.</summary>
    /// <exception cref="ArgumentException">A setting is invalid.</exception>
    public void Validate() => ToCoreOptions().Validate();

    internal int ToTicks(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");
        if (value < TickInterval)
            throw new ArgumentException($"{name} ({value.TotalMilliseconds} ms) is shorter than TickInterval ({TickInterval.TotalMilliseconds} ms).", name);
        return (int)Math.Round(value / TickInterval);
    }

    // Checks the node-level settings (the core checks the rest) and returns the intervals in ticks.
    private (int HeartbeatTicks, int ElectionTicksMin, int ElectionTicksMax) CheckSettings()
    {
        if (TickInterval <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(TickInterval), TickInterval, "TickInterval must be positive.");
        if (HeartbeatInterval * 2 > ElectionTimeoutMin)
        {
            throw new ArgumentException(
                $"HeartbeatInterval ({HeartbeatInterval.TotalMilliseconds} ms) must be at most half of ElectionTimeoutMin ({ElectionTimeoutMin.TotalMilliseconds} ms), or followers time out between heartbeats.",
                nameof(HeartbeatInterval));
        }
        if (ElectionTimeoutMax <= ElectionTimeoutMin)
        {
            throw new ArgumentException(
                $"ElectionTimeoutMax ({ElectionTimeoutMax.TotalMilliseconds} ms) must be greater than ElectionTimeoutMin ({ElectionTimeoutMin.TotalMilliseconds} ms).",
                nameof(ElectionTimeoutMax));
        }
        if (ProposalTimeout <= TimeSpan.Zero && ProposalTimeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(ProposalTimeout), ProposalTimeout, "ProposalTimeout must be positive, or Timeout.InfiniteTimeSpan to wait for ever.");
        if (ReadTimeout <= TimeSpan.Zero && ReadTimeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(ReadTimeout), ReadTimeout, "ReadTimeout must be positive, or Timeout.InfiniteTimeSpan to wait for ever.");
        if (ForwardTimeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(ForwardTimeout), ForwardTimeout, "ForwardTimeout must be positive.");
        if (MaxInboxBytes < 64 * 1024)
            throw new ArgumentOutOfRangeException(nameof(MaxInboxBytes), MaxInboxBytes, "MaxInboxBytes must be at least 64 KiB (65536).");
        if (MaxUnpersistedBytes < 64 * 1024)
            throw new ArgumentOutOfRangeException(nameof(MaxUnpersistedBytes), MaxUnpersistedBytes, "MaxUnpersistedBytes must be at least 64 KiB (65536).");
        ArgumentNullException.ThrowIfNull(Sessions);
        Sessions.Validate();
        if (SnapshotInterval < 0)
            throw new ArgumentOutOfRangeException(nameof(SnapshotInterval), SnapshotInterval, "SnapshotInterval must be 0 (no snapshots) or positive.");
        if (SnapshotTrailingEntries < 0)
            throw new ArgumentOutOfRangeException(nameof(SnapshotTrailingEntries), SnapshotTrailingEntries, "SnapshotTrailingEntries must not be negative.");
        var heartbeatTicks = ToTicks(HeartbeatInterval, nameof(HeartbeatInterval));
        var electionTicksMin = ToTicks(ElectionTimeoutMin, nameof(ElectionTimeoutMin));
        var electionTicksMax = ToTicks(ElectionTimeoutMax, nameof(ElectionTimeoutMax));
        // The rules again after rounding to whole ticks, so the error names the settings the host set.
        if (heartbeatTicks * 2 > electionTicksMin)
        {
            throw new ArgumentException(
                $"HeartbeatInterval ({HeartbeatInterval.TotalMilliseconds} ms) must be at most half of ElectionTimeoutMin ({ElectionTimeoutMin.TotalMilliseconds} ms) once both are rounded to whole ticks of TickInterval ({TickInterval.TotalMilliseconds} ms): {heartbeatTicks} and {electionTicksMin} ticks.",
                nameof(HeartbeatInterval));
        }
        if (electionTicksMax <= electionTicksMin)
        {
            throw new ArgumentException(
                $"ElectionTimeoutMax ({ElectionTimeoutMax.TotalMilliseconds} ms) must exceed ElectionTimeoutMin ({ElectionTimeoutMin.TotalMilliseconds} ms) by at least one TickInterval ({TickInterval.TotalMilliseconds} ms): both round to {electionTicksMin} ticks.",
                nameof(ElectionTimeoutMax));
        }
        return (heartbeatTicks, electionTicksMin, electionTicksMax);
    }

    // The node passes the Random it made from RandomSeed, and draws from the same instance, so a
    // seed replays the same run; Validate passes none.
    internal RaftOptions ToCoreOptions(Random? random = null)
    {
        var (heartbeatTicks, electionTicksMin, electionTicksMax) = CheckSettings();
        var options = new RaftOptions
        {
            NodeId = NodeId,
            Members = Members,
            MemberAddresses = MemberAddresses,
            Join = Join,
            MaxPromotionLag = MaxPromotionLag,
            HeartbeatTicks = heartbeatTicks,
            ElectionTicksMin = electionTicksMin,
            ElectionTicksMax = electionTicksMax,
            MaxInflightAppends = MaxInflightAppends,
            MaxAppendBytes = MaxAppendBytes,
            MaxUncommittedEntries = MaxUncommittedEntries,
            MaxSnapshotChunkBytes = MaxSnapshotChunkBytes,
            PreVote = PreVote,
            CheckQuorum = CheckQuorum,
            LeaseReads = LeaseReads,
            LeaseClockDriftBound = LeaseClockDriftBound,
            // Forwarded work completes on the follower: it should not wait a tick to learn of a commit.
            EagerCommitPropagation = ForwardToLeader,
            Random = random,
            MaxTermJump = MaxTermJump,
            MaxSnapshotBytes = MaxSnapshotBytes,
#if RAFT_MUTANTS
            Mutations = Mutations,
#endif
        };
        options.Validate();
        return options;
    }
}
