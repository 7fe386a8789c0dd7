using System.Diagnostics;

namespace Raft;

/// <summary>
/// The Raft consensus state machine of one node: pure and deterministic. It does no I/O, reads no
/// clock, starts no thread and allocates no task: the host drives it with <see cref="Tick"/>,
/// <see cref="Step"/> and <see cref="Propose"/>, and carries out what <see cref="GetReady"/>
/// returns (persist, send, apply) before calling <see cref="Advance"/>.
/// </summary>
/// <remarks>
/// <para><b>Not thread-safe</b>: call it from one thread at a time (<see cref="RaftNode"/> does so
/// from its event loop).</para>
/// <para><b>One Ready at a time</b>: after <see cref="GetReady"/>, the host must call
/// <see cref="Advance"/> before it calls any other member except the read-only properties. This
/// keeps the durable log and the core's view of it in step.</para>
/// <para>The core reads the durable log synchronously through <see cref="ILogStore"/>; it never
/// writes to it.</para>
/// </remarks>
public sealed partial class RaftCore
{
    private readonly RaftOptions _options;
    private readonly Random _random;
    // Every member of the configuration in force (both halves of a joint one), and all but this
    // node: recomputed whenever the configuration in force changes (RaftCore.Membership.cs).
    private int[] _members = [];
    private int[] _peers = [];
    private readonly RaftLog _log;
    private readonly ISnapshotStore? _snapshots;

    // Persistent state (Raft Figure 2), mirrored in the store once the host persists the Ready.
    private long _term;
    private int _votedFor;
    private HardState _persistedHardState;

    // Volatile state.
    private RaftRole _role;
    private int _leader;
    private int _electionElapsed;
    private int _heartbeatElapsed;
    // Invariant: ElectionTicksMin <= _randomizedElectionTimeout < ElectionTicksMax.
    private int _randomizedElectionTimeout;
    private readonly Dictionary<int, bool> _votes = [];

    // Leader state.
    private readonly Dictionary<int, Progress> _progress = [];
    private bool _broadcastPending;
    private bool _commitBroadcastPending;
    private int _leadTransferee;
    private int _transferElapsed;

    // Linearizable reads (leader only). Invariant: _pendingReads is ordered by Sequence.
    private long _readSequence;
    private bool _readBroadcastPending;
    private readonly List<(long RequestId, long Index, long Sequence)> _pendingReads = [];
    private readonly List<long> _readsAwaitingCommit = [];
    private List<ReadState> _readStates = [];
    // Lease reads (RaftOptions.LeaseReads): the core's tick count, and the read rounds this leader
    // started in its term with the tick each started at, oldest first. Every message carrying a
    // round's sequence was sent at or after that tick. Invariant: ordered by Sequence and by Tick.
    private long _ticks;
    private readonly List<(long Sequence, long Tick)> _leaseRounds = [];

    // Output of the current step batch.
    private List<RaftMessage> _messages = [];
    private List<RaftMessage> _messagesAfterPersist = [];
    private SoftState _reportedSoftState;
    private bool _readyOutstanding;

    private readonly List<LogEntry> _scratch = [];

    // Follower: the snapshot being received (from one leader in one term), and what it produced this round.
    private IncomingSnapshot? _incoming;
    private List<InstallSnapshot> _snapshotChunks = [];
    private SnapshotMetadata? _snapshotToRestore;

    // Messages refused as impossible or hostile (see RejectedMessages).
    private long _rejectedMessages;
    private string? _lastRejection;

    /// <summary>Creates the core of one node, recovering its term, vote and log from <paramref name="store"/>.</summary>
    /// <param name="options">The settings; validated here.</param>
    /// <param name="store">The node's log store. The core reads it; the host writes it.</param>
    /// <param name="appliedIndex">
    /// The highest index the host's state machine already reflects (from a restored snapshot), or -1
    /// for the compaction point (<see cref="ILogStore.FirstIndex"/> - 1).
    /// </param>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    public RaftCore(RaftOptions options, ILogStore store, long appliedIndex = -1)
        : this(options, store, snapshots: null, appliedIndex)
    {
    }

    /// <summary>Creates the core of one node that can stream snapshots to lagging followers.</summary>
    /// <param name="options">The settings; validated here.</param>
    /// <param name="store">The node's log store. The core reads it; the host writes it.</param>
    /// <param name="snapshots">
    /// The node's snapshot store, read (synchronously) to send a snapshot to a follower that needs
    /// entries the log no longer holds. Null when the host never compacts its log.
    /// </param>
    /// <param name="appliedIndex">
    /// The highest index the host's state machine already reflects, or -1 for "restored from the
    /// latest snapshot, or empty when there is none".
    /// </param>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    /// <exception cref="InvalidOperationException">The log was compacted past the state the state machine can be rebuilt from.</exception>
    public RaftCore(RaftOptions options, ILogStore store, ISnapshotStore? snapshots, long appliedIndex = -1)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(store);
        options.Validate();
        _options = options;
        _snapshots = snapshots;
        _random = options.Random ?? Random.Shared;
        Id = options.NodeId;

        var hardState = store.HardState;
        _term = hardState.Term;
        _votedFor = hardState.VotedFor;
        _persistedHardState = hardState;
        var applied = appliedIndex >= 0 ? appliedIndex : snapshots?.Latest?.Index ?? 0;
        if (applied > store.LastIndex)
        {
            throw new InvalidOperationException(
                $"The state machine reflects index {applied}, but the log store ends at index {store.LastIndex}: reset the log store to the snapshot (ILogStore.ResetAsync) before starting.");
        }
        if (applied < store.FirstIndex - 1)
        {
            throw new InvalidOperationException(
                $"The log store starts at index {store.FirstIndex}, but the state machine reflects only index {applied}: entries {applied + 1} to {store.FirstIndex - 1} were compacted without a snapshot covering them.");
        }
        // The stored commit index is a lower bound of what was committed; never below what is applied.
        _log = new RaftLog(store, Math.Max(hardState.Commit, applied), applied);
        LoadConfiguration(options, store, snapshots);

        BecomeFollower(_term, 0);
        _reportedSoftState = new SoftState(_role, _leader, _term);
    }

    /// <summary>This node's id.</summary>
    public int Id { get; }

    /// <summary>The current term.</summary>
    public long Term => _term;

    /// <summary>The current role.</summary>
    public RaftRole Role => _role;

    /// <summary>The leader known in the current term, or 0.</summary>
    public int LeaderId => _leader;

    /// <summary>The member voted for in the current term, or 0.</summary>
    public int VotedFor => _votedFor;

    /// <summary>The highest index known committed.</summary>
    public long CommitIndex => _log.Committed;

    /// <summary>The highest index reported applied through <see cref="ReportApplied"/>.</summary>
    public long AppliedIndex => _log.Applied;

    /// <summary>The index of the last entry in the log (durable or not).</summary>
    public long LastIndex => _log.LastIndex;

    /// <summary>The term of the last entry in the log.</summary>
    public long LastTerm => _log.LastTerm;

    /// <summary>The members the node replicates to and hears from: those of the configuration in force (voters and learners, both halves while joint) and of any configuration after the last committed one (a member the newest configuration removes stays until it commits), this node included when listed.</summary>
    public IReadOnlyList<int> Members => _members;

    /// <summary>The member a leadership transfer is under way to, or 0.</summary>
    public int LeadTransferee => _leadTransferee;

    /// <summary>
    /// How many messages this core refused since it was created, because no correct member could
    /// have sent them: a sender that is not a member, a malformed message (negative indexes, entries
    /// that do not follow <see cref="AppendEntries.PrevLogIndex"/>, terms out of order), a term that
    /// jumps more than <see cref="RaftOptions.MaxTermJump"/>, a second leader in one term, an
    /// acknowledgement of entries or reads this leader never sent, a snapshot beyond
    /// <see cref="RaftOptions.MaxSnapshotBytes"/>, a TimeoutNow from a node that is not the leader.
    /// A refused message changes nothing (no term, vote, log or commit change) and gets no answer.
    /// </summary>
    /// <remarks>
    /// The core does no logging: a host compares this count before and after <see cref="Step"/>
    /// and, when it grew, logs <see cref="LastRejection"/> (a warning: it means a buggy or hostile
    /// peer, or a misconfigured cluster) and counts it in its metrics. Late, duplicated or
    /// reordered messages, which the protocol expects, are ignored without being counted.
    /// </remarks>
    public long RejectedMessages => _rejectedMessages;

    /// <summary>Why the last refused message (see <see cref="RejectedMessages"/>) was refused, naming its type, sender and term; null when none was.</summary>
    public string? LastRejection => _lastRejection;

    /// <summary>A snapshot of the node's state.</summary>
    public RaftStatus Status
    {
        get
        {
            var status = new RaftStatus(Id, _role, _term, _leader, _log.Committed, _log.Applied, _log.LastIndex, _log.LastTerm)
            {
                Configuration = _config,
                IsRemoved = IsRemoved,
            };
            if (_role != RaftRole.Leader)
                return status;
            var progress = new Dictionary<int, long>(_members.Length) { [Id] = _log.StableLastIndex };
            foreach (var (id, pr) in _progress)
                progress[id] = pr.Match;
            return status with { Progress = progress };
        }
    }

    /// <summary>Whether <see cref="Status"/> would equal <paramref name="status"/>, progress included, without building it (allocation-free).</summary>
    internal bool StatusEquals(in RaftStatus status)
    {
        if (status.Id != Id || status.Role != _role || status.Term != _term || status.LeaderId != _leader
            || status.CommitIndex != _log.Committed || status.AppliedIndex != _log.Applied
            || status.LastLogIndex != _log.LastIndex || status.LastLogTerm != _log.LastTerm
            || !ReferenceEquals(status.Configuration, _config) || status.IsRemoved != IsRemoved)
            return false;
        if (_role != RaftRole.Leader)
            return status.Progress.Count == 0;
        if (status.Progress.Count != _progress.Count + 1 || !status.Progress.TryGetValue(Id, out var own) || own != _log.StableLastIndex)
            return false;
        foreach (var (id, pr) in _progress)
        {
            if (!status.Progress.TryGetValue(id, out var match) || match != pr.Match)
                return false;
        }
        return true;
    }

    /// <summary>Whether <see cref="GetReady"/> has anything for the host to do.</summary>
    public bool HasReady =>
        _messages.Count > 0
        || _messagesAfterPersist.Count > 0
        || _log.HasUnstable
        || _log.Committed > _log.Applying
        || _readStates.Count > 0
        || _snapshotChunks.Count > 0
        || _snapshotToRestore is not null
        || _configurationChanged || _peersChanged
        || CurrentHardState() != _persistedHardState
        || new SoftState(_role, _leader, _term) != _reportedSoftState
        || (_role == RaftRole.Leader && (_broadcastPending || _readBroadcastPending || _commitBroadcastPending));

    // ------------------------------------------------------------------ inputs

    /// <summary>Advances the logical clock by one tick: election timeouts for followers and candidates, heartbeats and quorum checks for leaders.</summary>
    public void Tick()
    {
        EnsureNoReadyOutstanding();
        _ticks++;
        if (_role == RaftRole.Leader)
            TickLeader();
        else
            TickElection();
    }

    /// <summary>Starts an election now, as if the election timer had expired (with PreVote when enabled).</summary>
    public void Campaign()
    {
        EnsureNoReadyOutstanding();
        if (_role != RaftRole.Leader)
            StartCampaign(CampaignKind.PreElection);
    }

    /// <summary>Appends a command to the log when this node is the leader.</summary>
    /// <param name="data">The command. The core keeps a reference; the caller must never modify the buffer afterwards.</param>
    /// <param name="index">The index the entry got, when accepted; otherwise 0.</param>
    /// <returns>Whether the entry was appended.</returns>
    public ProposeResult Propose(ReadOnlyMemory<byte> data, out long index) => ProposeEntry(EntryKind.Command, data, out index);

    /// <summary>Appends an entry of the given kind (<see cref="EntryKind.Command"/> or <see cref="EntryKind.Session"/>) when this node is the leader.</summary>
    internal ProposeResult ProposeEntry(EntryKind kind, ReadOnlyMemory<byte> data, out long index)
    {
        EnsureNoReadyOutstanding();
        index = 0;
        if (_role != RaftRole.Leader)
            return ProposeResult.NotLeader;
        if (_leadTransferee != 0)
            return ProposeResult.TransferInProgress;
        if (_log.LastIndex - _log.Committed >= _options.MaxUncommittedEntries)
            return ProposeResult.Backpressure;
        index = _log.LastIndex + 1;
        _log.Append(new LogEntry(index, _term, kind, data));
        _broadcastPending = true;
        if (_peers.Length == 0)
            MaybeCommit();
        return ProposeResult.Accepted;
    }

    /// <summary>
    /// Asks for a linearizable read: once a majority confirms this node is still the leader, a
    /// <see cref="ReadState"/> with <paramref name="requestId"/> appears in a <see cref="Ready"/>;
    /// the read is safe once the state machine has applied its index (Raft §6.4, dissertation §6.4).
    /// </summary>
    /// <param name="requestId">The host's id for the request, echoed in the <see cref="ReadState"/>.</param>
    /// <returns>False when this node is not the leader (nothing queued).</returns>
    public bool ReadIndex(long requestId)
    {
        EnsureNoReadyOutstanding();
        if (_role != RaftRole.Leader)
            return false;
        if (!CommittedInCurrentTerm())
        {
            // A new leader does not know the commit index until its no-op commits (§6.4 step 1).
            _readsAwaitingCommit.Add(requestId);
            return true;
        }
        if (HoldsLease())
        {
            // Dissertation §6.4.1: no other leader can have been elected yet, so this node's commit
            // index is the latest; no heartbeat round needed.
            LeaseReadsServed++;
            _readStates.Add(new ReadState(requestId, _log.Committed));
            return true;
        }
        IssueRead(requestId);
        return true;
    }

    /// <summary>How many reads this core confirmed from its lease, without a heartbeat round (the simulator's coverage count).</summary>
    internal long LeaseReadsServed { get; private set; }

    /// <summary>Whether this leader holds a read lease now (<see cref="RaftOptions.LeaseReads"/>); always false when lease reads are off.</summary>
    public bool HasLease => _role == RaftRole.Leader && HoldsLease();

    // A majority acknowledged a read round this leader started less than LeaseTicks ago; those
    // followers ignore candidates for ElectionTicksMin of their ticks after they heard it (CheckQuorum),
    // so no other leader can exist before the lease ends, given the clock drift bound. Not while a
    // leadership transfer is under way: the transferee campaigns without waiting for the lease.
    private bool HoldsLease()
    {
        if (!_options.LeaseReads || !_options.CheckQuorum || _leadTransferee != 0)
            return false;
        var confirmed = PruneLeaseRounds();
        if (_leaseRounds.Count == 0 || _leaseRounds[0].Sequence > confirmed)
            return false;
        var lease = _options.LeaseTicks;
#if RAFT_MUTANTS
        if ((_options.Mutations & Mutation.LeaseWithoutDriftBound) != 0)
            lease = _options.ElectionTicksMin;
#endif
        return _ticks - _leaseRounds[0].Tick < lease;
    }

    private void AddLeaseRound()
    {
        _leaseRounds.Add((_readSequence, _ticks));
        PruneLeaseRounds();
    }

    // Drops the rounds older than the newest one a majority acknowledged; returns that round's sequence.
    private long PruneLeaseRounds()
    {
        var confirmed = ConfirmedReadSequence();
        var drop = 0;
        while (drop + 1 < _leaseRounds.Count && _leaseRounds[drop + 1].Sequence <= confirmed)
            drop++;
        if (drop > 0)
            _leaseRounds.RemoveRange(0, drop);
        return confirmed;
    }

    /// <summary>Starts handing leadership to <paramref name="transferee"/> (dissertation §3.10). Proposals are refused until it completes or times out after an election timeout.</summary>
    /// <param name="transferee">The member to hand leadership to.</param>
    /// <returns>False when this node is not the leader or <paramref name="transferee"/> is not another member.</returns>
    public bool TransferLeadership(int transferee)
    {
        EnsureNoReadyOutstanding();
        if (_role != RaftRole.Leader || transferee == Id || !_progress.TryGetValue(transferee, out var pr) || !_config.IsVoter(transferee))
            return false;
        _leadTransferee = transferee;
        _transferElapsed = 0;
        if (pr.Match == _log.LastIndex)
            Send(new TimeoutNow(Id, transferee, _term), afterPersist: false);
        else
            SendAppend(pr, sendIfEmpty: true);
        return true;
    }

    /// <summary>Records that the host's state machine has applied every entry up to <paramref name="index"/>.</summary>
    /// <param name="index">An index at or below the highest committed index handed out in a <see cref="Ready"/>.</param>
    public void ReportApplied(long index) => _log.AppliedTo(index);

    /// <summary>Handles a message from another node.</summary>
    /// <param name="message">
    /// The message; <see cref="RaftMessage.To"/> must be this node. Whatever else it holds, it never
    /// makes the core throw: a message no correct member could send (from a non-member, malformed,
    /// a second leader in one term...) is refused and counted in <see cref="RejectedMessages"/>.
    /// </param>
    /// <exception cref="ArgumentException">The message is addressed to another node (a host bug, not network input).</exception>
    public void Step(RaftMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        EnsureNoReadyOutstanding();
        if (message.To != Id)
            throw new ArgumentException($"Message addressed to node {message.To} was stepped into node {Id}.", nameof(message));
        if (message.From == Id || message.From <= 0 || (Array.IndexOf(_members, message.From) < 0 && !AcceptsFromOutsideConfiguration(message)))
        {
            if (IsAnswerFromDeparted(message))
                return; // a removed member answering the leader's last append: expected, and it changes nothing
            Reject(message, "the sender is not another member of the cluster");
            return;
        }
        if (Malformed(message) is { } problem)
        {
            Reject(message, problem);
            return;
        }

        // Raft §5.1: the term rules, in one place.
        if (message.Term > _term)
        {
            if (message is RequestVote vote)
            {
                // CheckQuorum lease (dissertation §4.2.3): a node that heard from a live leader within the
                // minimum election timeout ignores disruptive candidates, unless the leader itself asked.
                var inLease = _options.CheckQuorum && _leader != 0 && _electionElapsed < _options.ElectionTicksMin;
                // With lease reads, a node that just started may have acknowledged a leader's lease
                // before it stopped: it ignores candidates for an election timeout too.
                inLease |= _options.LeaseReads && _ticks < _options.ElectionTicksMin;
                if (inLease && !vote.LeadershipTransfer)
                    return;
                if (!vote.PreVote)
                {
                    // Figure 2: the election timer restarts on granting a vote (HandleRequestVote),
                    // not on merely seeing a newer term. Otherwise a candidate that cannot win (its
                    // log is behind) but times out first keeps resetting the one that could, and a
                    // two-voter configuration (a joint one, say) never elects (simulator seed 200711).
                    var elapsed = _electionElapsed;
                    BecomeFollower(message.Term, 0);
                    _electionElapsed = elapsed;
                }
            }
            else if (message is RequestVoteResponse { PreVote: true, Granted: true })
            {
                // A granted pre-vote carries the term we would campaign in; it is not a newer term.
            }
            else
            {
                var leader = message is AppendEntries or InstallSnapshot or TimeoutNow ? message.From : 0;
                BecomeFollower(message.Term, leader);
            }
        }
        else if (message.Term < _term)
        {
            switch (message)
            {
                case AppendEntries:
                    // Tell a stale leader about the newer term so it steps down.
                    Send(new AppendEntriesResponse(Id, message.From, _term, Success: false, MatchIndex: 0), afterPersist: true);
                    break;
                case InstallSnapshot:
                    Send(new InstallSnapshotResponse(Id, message.From, _term, 0, 0, Success: false, Done: false), afterPersist: true);
                    break;
                case RequestVote vote:
                    Send(new RequestVoteResponse(Id, message.From, _term, Granted: false, vote.PreVote), afterPersist: true);
                    break;
            }
            return;
        }

        switch (message)
        {
            case RequestVote vote:
                HandleRequestVote(vote);
                return;
            case RequestVoteResponse response:
                if (_role is RaftRole.Candidate or RaftRole.PreCandidate)
                    HandleVoteResponse(response);
                return;
            case AppendEntries append:
                if (SecondLeader(append) is { } twoLeaders)
                {
                    Reject(append, twoLeaders);
                    return;
                }
                if (_role != RaftRole.Follower || _leader != append.From)
                    BecomeFollower(_term, append.From);
                _electionElapsed = 0;
                HandleAppendEntries(append);
                return;
            case AppendEntriesResponse response:
                if (_role == RaftRole.Leader)
                    HandleAppendResponse(response);
                return;
            case TimeoutNow:
                // Only the leader of this term may hand leadership over. A pre-candidate has forgotten
                // who led (its election timer fired), so the leader's TimeoutNow is still welcome there.
                if (!(_role == RaftRole.Follower && _leader == message.From) && _role != RaftRole.PreCandidate)
                {
                    Reject(message, _leader == 0 ? "TimeoutNow, but this node knows no leader in this term" : $"TimeoutNow from a node that is not the leader (node {_leader} is)");
                    return;
                }
                StartCampaign(CampaignKind.Transfer);
                return;
            case InstallSnapshot chunk:
                if (SecondLeader(chunk) is { } secondLeader)
                {
                    Reject(chunk, secondLeader);
                    return;
                }
                if (_role != RaftRole.Follower || _leader != chunk.From)
                    BecomeFollower(_term, chunk.From);
                _electionElapsed = 0;
                HandleInstallSnapshot(chunk);
                return;
            case InstallSnapshotResponse response:
                if (_role == RaftRole.Leader)
                    HandleSnapshotResponse(response);
                return;
        }
    }

    /// <summary>Why an AppendEntries or InstallSnapshot of the current term cannot come from the leader of that term, or null when it can.</summary>
    private string? SecondLeader(RaftMessage message)
    {
        // Election safety (§5.2): one leader per term. Two of them mean a bug or a forgery, and
        // following the second would let it overwrite what the first replicated.
        if (_role == RaftRole.Leader)
            return $"two leaders in term {_term}: this node leads it";
        if (_role == RaftRole.Follower && _leader != 0 && _leader != message.From)
            return $"two leaders in term {_term}: this node follows node {_leader}";
        return null;
    }

    /// <summary>Why no correct member could have sent <paramref name="message"/>, or null when one could. Checked before the message changes anything.</summary>
    private string? Malformed(RaftMessage message)
    {
        if (message.Term < 0)
            return "negative term";
        // Both are non-negative, so the difference cannot overflow.
        if (message.Term > _term && message.Term - _term > _options.MaxTermJump)
            return $"the term jumps by more than MaxTermJump ({_options.MaxTermJump})";
        switch (message)
        {
            case RequestVote vote:
                if (vote.LastLogIndex < 0 || vote.LastLogTerm < 0)
                    return "negative last log index or term";
                if (vote.LastLogTerm > vote.Term)
                    return "the candidate's last log term is above its term";
                if ((vote.LastLogIndex == 0) != (vote.LastLogTerm == 0))
                    return "the candidate's last log index and term disagree (only index 0 has term 0)";
                return null;
            case RequestVoteResponse { Granted: true } response:
                // A vote is granted in the candidate's own term, a pre-vote in the term it would campaign in.
                if (response.PreVote ? response.Term - 1 > _term : response.Term > _term)
                    return "a vote granted for a term this node never campaigned in";
                return null;
            case AppendEntries append:
                return MalformedAppend(append);
            case AppendEntriesResponse response:
                if (response.MatchIndex < 0 || response.HintIndex < 0 || response.HintTerm < 0 || response.ReadSequence < 0)
                    return "negative index, term or read sequence";
                if (!response.Success && response.HintIndex > response.MatchIndex)
                    return "a rejection hint past the rejected index";
                return null;
            case InstallSnapshot chunk:
                if (chunk.SnapshotIndex <= 0 || chunk.SnapshotTerm <= 0 || chunk.Offset < 0)
                    return "snapshot index, term or offset not positive";
                if (chunk.SnapshotTerm > chunk.Term)
                    return "the snapshot's term is above the leader's term";
                if (chunk.Configuration is null || chunk.Configuration.IsEmpty)
                    return "the snapshot lists no members";
                if (chunk.Offset > _options.MaxSnapshotBytes - chunk.Data.Length)
                    return $"the snapshot would grow beyond MaxSnapshotBytes ({_options.MaxSnapshotBytes} bytes)";
                return null;
            case InstallSnapshotResponse response:
                if (response.SnapshotIndex < 0 || response.NextOffset < 0)
                    return "negative snapshot index or offset";
                return null;
            case TimeoutNow:
                // The leader sends it to a follower that acknowledged everything in the leader's term,
                // so the follower is already in that term.
                if (message.Term > _term)
                    return "TimeoutNow of a term this node has not reached: it comes from no leader it knows";
                return null;
            case ForwardRequest or ForwardResponse:
                return "forwarding messages are for the host (RaftNode), not the consensus core";
            default:
                return null;
        }
    }

    private static string? MalformedAppend(AppendEntries append)
    {
        if (append.PrevLogIndex < 0 || append.PrevLogTerm < 0 || append.LeaderCommit < 0)
            return "negative previous index, previous term or commit index";
        if (append.PrevLogTerm > append.Term)
            return "the previous entry's term is above the leader's term";
        if ((append.PrevLogIndex == 0) != (append.PrevLogTerm == 0))
            return "the previous index and term disagree (only index 0 has term 0)";
        var entries = append.Entries;
        if (entries is null)
            return "no entry list";
        if (entries.Count > long.MaxValue - append.PrevLogIndex)
            return "the entries would run past the largest index";
        var term = append.PrevLogTerm;
        for (var i = 0; i < entries.Count; i++)
        {
            var entry = entries[i];
            if (entry.Index != append.PrevLogIndex + 1 + i)
                return $"entry {i} has index {entry.Index}, not {append.PrevLogIndex + 1 + i}: entries must follow the previous index contiguously";
            if (entry.Term <= 0)
                return $"entry {entry.Index} has term {entry.Term}: entries have positive terms";
            if (entry.Term < term)
                return $"entry {entry.Index} has term {entry.Term}, below the term {term} before it: terms never decrease along a log";
            if (entry.Term > append.Term)
                return $"entry {entry.Index} has term {entry.Term}, above the leader's term";
            if (!Enum.IsDefined(entry.Kind))
                return $"entry {entry.Index} has an unknown kind ({(int)entry.Kind})";
            if (entry.Kind == EntryKind.Configuration)
            {
                if (!ClusterConfiguration.TryDecode(entry.Data.Span, out var configuration, out var why))
                    return $"entry {entry.Index} is a configuration entry that cannot be decoded ({why})";
                if (configuration.IsEmpty)
                    return $"entry {entry.Index} is a configuration entry that lists no members";
            }
            term = entry.Term;
        }
        return null;
    }

    private void Reject(RaftMessage message, string reason)
    {
        _rejectedMessages++;
        _lastRejection = $"Node {Id} (term {_term}, {_role}) refused {message.GetType().Name} from node {message.From} at term {message.Term}: {reason}.";
    }

    // ------------------------------------------------------------------ Ready

    /// <summary>Collects what the host must do now. Call <see cref="Advance"/> once it is done.</summary>
    /// <returns>The batch of effects.</returns>
    public Ready GetReady()
    {
        EnsureNoReadyOutstanding();
        if (_role == RaftRole.Leader)
            FlushLeaderSends();

        var ready = new Ready();
        var overwrites = _log.NextWriteOverwrites;
        if (_log.HasUnstable)
            ready.Entries = _log.UnstableEntries();
        var hardState = CurrentHardState();
        if (hardState != _persistedHardState)
            ready.HardState = hardState;
        if (_messages.Count > 0)
        {
            ready.Messages = _messages;
            _messages = [];
        }
        if (_messagesAfterPersist.Count > 0)
        {
            ready.MessagesAfterPersist = _messagesAfterPersist;
            _messagesAfterPersist = [];
        }
        ready.CommittedEntries = _log.NextCommittedEntries(long.MaxValue);
        if (_readStates.Count > 0)
        {
            ready.ReadStates = _readStates;
            _readStates = [];
        }
        if (_snapshotChunks.Count > 0)
        {
            ready.SnapshotChunks = _snapshotChunks;
            _snapshotChunks = [];
        }
        ready.SnapshotToRestore = _snapshotToRestore;
        _snapshotToRestore = null;
        if (_configurationChanged)
        {
            ready.Configuration = _config;
            _configurationChanged = false;
        }
        ready.PeersChanged = _peersChanged;
        _peersChanged = false;
        ready.CanPersistAsynchronously = ready.Entries.Count > 0 && !overwrites && ready.HardState is null
            && ready.SnapshotChunks.Count == 0 && ready.SnapshotToRestore is null && !_log.HasPendingSnapshot;
        var soft = new SoftState(_role, _leader, _term);
        if (soft != _reportedSoftState)
        {
            ready.SoftState = soft;
            _reportedSoftState = soft;
        }
        _readyOutstanding = true;
        return ready;
    }

    /// <summary>Tells the core that the host has carried out <paramref name="ready"/>: its hard state and entries are durable, its messages sent, its committed entries handed to the state machine.</summary>
    /// <param name="ready">The value the last <see cref="GetReady"/> returned.</param>
    public void Advance(Ready ready)
    {
        ArgumentNullException.ThrowIfNull(ready);
        if (!_readyOutstanding)
            throw new InvalidOperationException("Advance was called without an outstanding Ready.");
        _readyOutstanding = false;
        if (ready.HardState is { } hs)
            _persistedHardState = hs;
        if (ready.SnapshotToRestore is not null)
            _log.SnapshotPersisted();
        if (ready.Entries.Count > 0)
            _log.HandedOut(ready.Entries[^1].Index);
        if (ready.CommittedEntries.Count > 0)
            _log.ApplyingTo(ready.CommittedEntries[^1].Index);
        if (ready.Entries.Count > 0)
            MarkStable(ready.Entries[^1]);
    }

    /// <summary>
    /// Pipelined writes: tells the core that the host has sent <paramref name="ready"/>'s
    /// <see cref="Ready.Messages"/>, handed its <see cref="Ready.CommittedEntries"/> to the state
    /// machine and started writing its <see cref="Ready.Entries"/>, which are not durable yet. The
    /// core takes input again and will not hand those entries out again. Only for a Ready whose
    /// <see cref="Ready.CanPersistAsynchronously"/> is true.
    /// </summary>
    /// <remarks>
    /// The host keeps <see cref="Ready.MessagesAfterPersist"/> until the entries are durable, sends
    /// them then, and calls <see cref="Persisted"/>; writes complete in the order of their Readies. A
    /// later Ready that cannot be written asynchronously must wait until every earlier write is
    /// durable (and its messages sent) before its own persistence starts.
    /// </remarks>
    /// <param name="ready">The value the last <see cref="GetReady"/> returned.</param>
    /// <exception cref="InvalidOperationException">No Ready is outstanding, or this one cannot be written asynchronously.</exception>
    public void AdvanceBeforePersisting(Ready ready)
    {
        ArgumentNullException.ThrowIfNull(ready);
        if (!_readyOutstanding)
            throw new InvalidOperationException("AdvanceBeforePersisting was called without an outstanding Ready.");
        if (!ready.CanPersistAsynchronously)
            throw new InvalidOperationException("This Ready holds a hard state, a snapshot or entries that overwrite others: persist it, then call Advance.");
        _readyOutstanding = false;
        _log.HandedOut(ready.Entries[^1].Index);
        if (ready.CommittedEntries.Count > 0)
            _log.ApplyingTo(ready.CommittedEntries[^1].Index);
    }

    /// <summary>Pipelined writes: the entries of a Ready passed to <see cref="AdvanceBeforePersisting"/> are durable.</summary>
    /// <param name="ready">That Ready.</param>
    /// <exception cref="InvalidOperationException">A Ready is outstanding (call this between Readies).</exception>
    public void Persisted(Ready ready)
    {
        ArgumentNullException.ThrowIfNull(ready);
        EnsureNoReadyOutstanding();
        if (ready.Entries.Count > 0)
            MarkStable(ready.Entries[^1]);
    }

    private void MarkStable(LogEntry last)
    {
        _log.StableTo(last.Index, last.Term);
        if (_role == RaftRole.Leader)
        {
            // The leader counts itself toward a majority only once its own write is durable (§10.2.1).
            MaybeCommit();
        }
    }

    // ------------------------------------------------------------------ roles

    private void BecomeFollower(long term, int leader)
    {
        if (term > _term)
        {
            _term = term;
            _votedFor = 0;
        }
        _role = RaftRole.Follower;
        _leader = leader;
        ResetRoleState();
    }

    private void BecomePreCandidate()
    {
        // The term does not move: a pre-vote changes nothing on anyone (dissertation §9.6).
        _role = RaftRole.PreCandidate;
        _leader = 0;
        ResetRoleState();
        _votes[Id] = true;
    }

    private void BecomeCandidate()
    {
        _term = checked(_term + 1); // StartCampaign never gets here at long.MaxValue
        _votedFor = Id;
        _role = RaftRole.Candidate;
        _leader = 0;
        ResetRoleState();
        _votes[Id] = true;
    }

    private void BecomeLeader()
    {
        Debug.Assert(_role == RaftRole.Candidate);
        _role = RaftRole.Leader;
        _leader = Id;
        ResetRoleState();
        var next = _log.LastIndex + 1;
        foreach (var peer in _peers)
            _progress[peer] = new Progress(peer, next, _options.MaxInflightAppends) { RecentActive = true };
        if (_options.LeaseReads)
            AddLeaseRound(); // acknowledged in this term: sent from now on
        // A new leader commits a no-op of its own term at once (§5.4.2), which also commits every earlier entry.
        _log.Append(new LogEntry(next, _term, EntryKind.NoOp, ReadOnlyMemory<byte>.Empty));
        _broadcastPending = true;
        if (_peers.Length == 0)
            MaybeCommit();
    }

    private void ResetRoleState()
    {
        _electionElapsed = 0;
        _heartbeatElapsed = 0;
        _randomizedElectionTimeout = _random.Next(_options.ElectionTicksMin, _options.ElectionTicksMax);
        _votes.Clear();
        _progress.Clear();
        _broadcastPending = false;
        _commitBroadcastPending = false;
        _readBroadcastPending = false;
        _leadTransferee = 0;
        _transferElapsed = 0;
        _pendingReads.Clear();
        _readsAwaitingCommit.Clear();
        _leaseRounds.Clear();
    }

    // ------------------------------------------------------------------ elections (§5.2)

    private void TickElection()
    {
        _electionElapsed++;
        if (_electionElapsed < _randomizedElectionTimeout)
            return;
        if (!MayCampaign())
        {
            // A node that may not campaign (a learner, a removed or joining node) still times out:
            // it forgets the leader it no longer hears from, so it neither keeps refusing votes for
            // a lease that ended nor refuses the leader of a configuration it has not received.
            _electionElapsed = _randomizedElectionTimeout;
            _leader = 0;
            return;
        }
        StartCampaign(CampaignKind.PreElection);
    }

    private enum CampaignKind
    {
        PreElection,
        Election,
        Transfer,
    }

    private void StartCampaign(CampaignKind kind)
    {
        if (!MayCampaign())
            return; // a learner, a node whose removal is committed, or one that joins: never campaigns
        if (_term == long.MaxValue)
        {
            // No term is left to campaign in (only reachable by raising terms MaxTermJump at a time):
            // stay a follower rather than wrap around to a negative term.
            _electionElapsed = 0;
            return;
        }
        var transfer = kind == CampaignKind.Transfer;
        if (_options.PreVote && kind == CampaignKind.PreElection)
        {
            BecomePreCandidate();
            if (Tally() == VoteResult.Won)
            {
                StartCampaign(CampaignKind.Election);
                return;
            }
            foreach (var peer in _voterPeers)
                Send(new RequestVote(Id, peer, checked(_term + 1), _log.LastIndex, _log.LastTerm, PreVote: true), afterPersist: false);
            return;
        }

        BecomeCandidate();
        if (Tally() == VoteResult.Won)
        {
            BecomeLeader();
            return;
        }
        // The vote for itself must be durable before anyone can count on this candidacy.
        foreach (var peer in _voterPeers)
            Send(new RequestVote(Id, peer, _term, _log.LastIndex, _log.LastTerm, PreVote: false, LeadershipTransfer: transfer), afterPersist: true);
    }

    private void HandleRequestVote(RequestVote vote)
    {
        // Here vote.Term == _term, or vote.Term > _term for a pre-vote (which changed nothing).
        var canVote =
            _votedFor == vote.From
            || (_votedFor == 0 && _leader == 0)
            || (vote.PreVote && vote.Term > _term);
        var upToDate = _log.IsUpToDate(vote.LastLogIndex, vote.LastLogTerm);
#if RAFT_MUTANTS
        if ((_options.Mutations & Mutation.VoteWithoutLogCheck) != 0)
            upToDate = true;
#endif
        if (canVote && upToDate)
        {
            if (vote.PreVote)
            {
                Send(new RequestVoteResponse(Id, vote.From, vote.Term, Granted: true, PreVote: true), afterPersist: true);
                return;
            }
            _votedFor = vote.From;
            _electionElapsed = 0;
            // Granted only once the vote is durable (Raft §5.2, Figure 2).
            Send(new RequestVoteResponse(Id, vote.From, _term, Granted: true), afterPersist: true);
            return;
        }
        Send(new RequestVoteResponse(Id, vote.From, _term, Granted: false, vote.PreVote), afterPersist: true);
    }

    private void HandleVoteResponse(RequestVoteResponse response)
    {
        if (_role == RaftRole.PreCandidate)
        {
            if (!response.PreVote)
                return;
            if (response.Granted ? response.Term - 1 != _term : response.Term != _term)
                return;
        }
        else if (response.PreVote || response.Term != _term)
        {
            return;
        }

        _votes.TryAdd(response.From, response.Granted);
        switch (Tally())
        {
            case VoteResult.Won:
                if (_role == RaftRole.PreCandidate)
                    StartCampaign(CampaignKind.Election);
                else
                    BecomeLeader();
                break;
            case VoteResult.Lost:
                BecomeFollower(_term, 0);
                break;
        }
    }

    private VoteResult Tally()
    {
        // Joint consensus (dissertation §4.3): a majority of each half; learners never count.
        var incoming = TallyHalf(_voters);
        if (!_config.IsJoint)
            return incoming;
        var outgoing = TallyHalf(_outgoingVoters);
        if (incoming == VoteResult.Lost || outgoing == VoteResult.Lost)
            return VoteResult.Lost;
        return incoming == VoteResult.Won && outgoing == VoteResult.Won ? VoteResult.Won : VoteResult.Pending;
    }

    private VoteResult TallyHalf(int[] voters)
    {
        var granted = 0;
        var rejected = 0;
        foreach (var voter in voters)
        {
            if (_votes.TryGetValue(voter, out var yes))
            {
                if (yes)
                    granted++;
                else
                    rejected++;
            }
        }
        return Quorum.Tally(voters.Length, granted, rejected);
    }

    // ------------------------------------------------------------------ follower (§5.3)

    private void HandleAppendEntries(AppendEntries append)
    {
        if (append.PrevLogIndex < _log.Committed)
        {
            // Everything up to the commit index already matches; say how far we are.
            Send(new AppendEntriesResponse(Id, append.From, _term, Success: true, MatchIndex: _log.Committed, ReadSequence: append.ReadSequence), afterPersist: !IsDurable(_log.Committed));
            return;
        }

        if (_log.MatchTerm(append.PrevLogIndex, append.PrevLogTerm))
        {
            var entries = append.Entries;
            var lastNew = append.PrevLogIndex + entries.Count;
            var conflict = entries.Count;
            for (var i = 0; i < entries.Count; i++)
            {
                if (_log.TryTerm(entries[i].Index) != entries[i].Term)
                {
                    conflict = i;
                    break;
                }
            }
            if (conflict < entries.Count)
            {
                _log.TruncateAndAppend(entries, conflict);
                OnEntriesReplaced(entries, conflict);
            }
            // Only what this message proved to match may be committed (never a stale suffix beyond it).
            _log.CommitTo(Math.Min(append.LeaderCommit, lastNew));
            OnCommitted();
            Send(new AppendEntriesResponse(Id, append.From, _term, Success: true, MatchIndex: lastNew, ReadSequence: append.ReadSequence), afterPersist: !IsDurable(lastNew));
            return;
        }

        // Reject with a hint so the leader skips back a term at a time (§5.3, "fast backtracking").
        long hintIndex;
        long hintTerm;
        if (append.PrevLogIndex > _log.LastIndex)
        {
            hintIndex = _log.LastIndex + 1;
            hintTerm = 0;
        }
        else
        {
            hintTerm = _log.Term(append.PrevLogIndex);
            hintIndex = _log.FirstIndexOfTermRun(append.PrevLogIndex, _log.Committed + 1);
        }
        Send(new AppendEntriesResponse(Id, append.From, _term, Success: false, MatchIndex: append.PrevLogIndex, hintIndex, hintTerm, append.ReadSequence), afterPersist: true);
    }

    private void HandleInstallSnapshot(InstallSnapshot chunk)
    {
        if (chunk.SnapshotIndex <= _log.Committed || (chunk.Offset == 0 && _log.MatchTerm(chunk.SnapshotIndex, chunk.SnapshotTerm)))
        {
            // Already hold everything it covers (§7: keep the entries that follow it).
            _incoming = null;
            _log.CommitTo(Math.Max(_log.Committed, Math.Min(chunk.SnapshotIndex, _log.LastIndex)));
            OnCommitted();
            Send(new InstallSnapshotResponse(Id, chunk.From, _term, chunk.SnapshotIndex, 0, Success: true, Done: true), afterPersist: true);
            return;
        }
        if (chunk.Offset == 0)
            _incoming = new IncomingSnapshot(chunk.From, chunk.Term, chunk.SnapshotIndex, chunk.SnapshotTerm);
        var incoming = _incoming;
        if (incoming is null || incoming.Leader != chunk.From || incoming.Term != chunk.Term || incoming.Index != chunk.SnapshotIndex || incoming.NextOffset != chunk.Offset)
        {
            // Out of order, or a transfer this node does not know (it restarted, or the leader changed): say where to resume.
            var resume = incoming is not null && incoming.Leader == chunk.From && incoming.Term == chunk.Term && incoming.Index == chunk.SnapshotIndex ? incoming.NextOffset : 0;
            Send(new InstallSnapshotResponse(Id, chunk.From, _term, chunk.SnapshotIndex, resume, Success: false, Done: false), afterPersist: true);
            return;
        }
        incoming.NextOffset += chunk.Data.Length;
        _snapshotChunks.Add(chunk);
        if (chunk.Done)
        {
            _incoming = null;
            if (_log.MatchTerm(chunk.SnapshotIndex, chunk.SnapshotTerm))
            {
                // Appends caught this node up while the snapshot streamed: keep the log, skip the restore.
                _log.CommitTo(Math.Max(_log.Committed, chunk.SnapshotIndex));
                OnCommitted();
            }
            else
            {
                // The log diverges from the leader's committed prefix at or before the snapshot's end, so
                // nothing after that point can be committed: replace the whole log with the snapshot.
                _log.RestoreSnapshot(chunk.SnapshotIndex, chunk.SnapshotTerm);
                ResetConfiguration(chunk.SnapshotIndex, chunk.Configuration);
                _snapshotToRestore = new SnapshotMetadata(chunk.SnapshotIndex, chunk.SnapshotTerm, chunk.Configuration);
            }
        }
        Send(new InstallSnapshotResponse(Id, chunk.From, _term, chunk.SnapshotIndex, incoming.NextOffset, Success: true, chunk.Done), afterPersist: true);
    }

    private sealed class IncomingSnapshot(int leader, long term, long index, long snapshotTerm)
    {
        public int Leader { get; } = leader;

        public long Term { get; } = term;

        public long Index { get; } = index;

        public long SnapshotTerm { get; } = snapshotTerm;

        public long NextOffset { get; set; }
    }

    // ------------------------------------------------------------------ leader (§5.3, §5.4)

    private void TickLeader()
    {
        _heartbeatElapsed++;
        _electionElapsed++;
        if (_leadTransferee != 0 && ++_transferElapsed >= _options.ElectionTicksMin)
        {
            _leadTransferee = 0;
            _transferElapsed = 0;
            if (LeavingCommitted())
            {
                // Removed by a committed configuration and the hand-over did not happen in time:
                // step down anyway; the remaining voters elect a leader.
                BecomeFollower(_term, 0);
                return;
            }
        }
        if (_electionElapsed >= _options.ElectionTicksMin)
        {
            _electionElapsed = 0;
            if (_options.CheckQuorum)
            {
                var quorumActive = QuorumActive();
                foreach (var (_, pr) in _progress)
                    pr.RecentActive = false;
                if (!quorumActive)
                {
                    // Cannot reach a majority: stop claiming leadership (dissertation §6.2).
                    BecomeFollower(_term, 0);
                    return;
                }
            }
        }
        foreach (var (_, pr) in _progress)
        {
            if (pr.State == ProgressState.Snapshot && pr.SnapshotChunkInFlight && pr.SnapshotSilentTicks < int.MaxValue)
                pr.SnapshotSilentTicks++;
        }
        if (_heartbeatElapsed < _options.HeartbeatTicks)
        {
            foreach (var (_, pr) in _progress)
            {
                if (pr.State != ProgressState.Snapshot && pr.CommitSent < _log.Committed)
                    _commitBroadcastPending = true;
            }
        }
        else
        {
            _heartbeatElapsed = 0;
            if (_options.LeaseReads)
            {
                // Each heartbeat round is a read round too, so the lease renews with the heartbeats.
                _readSequence++;
                AddLeaseRound();
            }
            foreach (var (_, pr) in _progress)
            {
                if (pr.State == ProgressState.Snapshot)
                {
                    // Heartbeats keep the follower from campaigning while the snapshot streams. One
                    // chunk is in flight at a time (a follower that stopped answering must not get
                    // a fresh chunk every heartbeat): a chunk is sent again only when it went
                    // unanswered for an election timeout although the follower answered something
                    // sent after it, so it was probably lost.
                    SendHeartbeat(pr);
                    if (!pr.SnapshotChunkInFlight || (pr.HeardSinceChunk && pr.SnapshotSilentTicks >= _options.ElectionTicksMin))
                        SendSnapshotChunk(pr);
                    continue;
                }
                SendHeartbeat(pr);
                if (pr.State == ProgressState.Replicate && pr.Match < _log.LastIndex && pr.Match == pr.MatchAtLastCheck)
                {
                    // Entries were in flight for a whole heartbeat interval without any acknowledgement:
                    // some were probably lost. Fall back to probing from the last known match.
                    pr.BecomeProbe();
                    SendAppend(pr, sendIfEmpty: true);
                }
                // Only a window that already held unacknowledged entries at this check can be found
                // stalled at the next one; an append sent just before the next check is not overdue.
                pr.MatchAtLastCheck = pr.Match < _log.LastIndex ? pr.Match : -1;
            }
        }
    }

    private void FlushLeaderSends()
    {
        if (_readBroadcastPending)
        {
            _readBroadcastPending = false;
            _readSequence++;
            if (_options.LeaseReads)
                AddLeaseRound();
            foreach (var (_, pr) in _progress)
                SendHeartbeat(pr);
            if (_peers.Length == 0)
                ReleaseReads();
        }
        if (_broadcastPending || _commitBroadcastPending)
        {
            foreach (var (_, pr) in _progress)
            {
                var sent = false;
                while (SendAppend(pr, sendIfEmpty: false))
                    sent = true;
                // Not again to a follower told of this commit already (by a read's heartbeat this round).
                if (!sent && _commitBroadcastPending && pr.CommitSent < _log.Committed)
                    SendHeartbeat(pr);
            }
            _broadcastPending = false;
            _commitBroadcastPending = false;
        }
    }

    private void SendHeartbeat(Progress pr)
    {
        // A heartbeat checks the log at the follower's known match point and commits at most up to it.
        var prev = pr.Match;
        var prevTerm = _log.TryTerm(prev);
        if (prevTerm < 0)
        {
            prev = _log.FirstIndex - 1;
            prevTerm = _log.Term(prev);
        }
        pr.CommitSent = _log.Committed;
        Send(new AppendEntries(Id, pr.Id, _term, prev, prevTerm, [], _log.Committed, _readSequence), afterPersist: false);
    }

    /// <summary>Sends the next AppendEntries to <paramref name="pr"/> if its flow allows; returns whether one carrying entries was sent.</summary>
    private bool SendAppend(Progress pr, bool sendIfEmpty)
    {
        if (pr.IsPaused)
            return false;
        var prev = pr.Next - 1;
        var prevTerm = _log.TryTerm(prev);
        if (prevTerm < 0)
        {
            // The entries it needs were compacted into a snapshot: stream the snapshot instead (Raft §7).
            if (_snapshots?.Latest is not { } snapshot || snapshot.Index < _log.FirstIndex - 1)
                throw new InvalidOperationException($"Follower {pr.Id} needs entries from index {pr.Next}, but the log starts at {_log.FirstIndex} and no snapshot covers the gap.");
            pr.BecomeSnapshot(snapshot.Index);
            SendSnapshotChunk(pr);
            return false;
        }
        _scratch.Clear();
        if (pr.Next <= _log.LastIndex)
            _log.Entries(pr.Next, _log.LastIndex + 1, _options.MaxAppendBytes, _scratch);
        if (_scratch.Count == 0 && !sendIfEmpty)
            return false;
        LogEntry[] entries = _scratch.Count == 0 ? [] : _scratch.ToArray();
        pr.CommitSent = _log.Committed;
        Send(new AppendEntries(Id, pr.Id, _term, prev, prevTerm, entries, _log.Committed, _readSequence), afterPersist: false);
        if (entries.Length == 0)
        {
            if (pr.State == ProgressState.Probe)
                pr.ProbeSent = true;
            return false;
        }
        var last = entries[^1].Index;
        if (pr.State == ProgressState.Replicate)
        {
            pr.Next = last + 1;
            pr.Inflights.Add(last);
        }
        else
        {
            pr.ProbeSent = true;
        }
        return true;
    }

    private void HandleAppendResponse(AppendEntriesResponse response)
    {
        if (!_progress.TryGetValue(response.From, out var pr))
            return;
        // Checked before anything is counted: a forged acknowledgement must not commit entries a
        // majority does not hold, nor confirm a read (with 3 members, one liar plus the leader is a majority).
        if (response.MatchIndex > _log.LastIndex)
        {
            Reject(response, response.Success
                ? $"acknowledges index {response.MatchIndex}, beyond this leader's last index {_log.LastIndex}"
                : $"rejects index {response.MatchIndex}, beyond this leader's last index {_log.LastIndex}: no AppendEntries went there");
            return;
        }
        if (response.ReadSequence > _readSequence)
        {
            Reject(response, $"echoes read round {response.ReadSequence}, but this leader started only {_readSequence}");
            return;
        }
        if (!response.Success && response.HintTerm > _term)
        {
            Reject(response, $"the rejection hint names term {response.HintTerm}, above the current term");
            return;
        }
        pr.RecentActive = true;
        pr.HeardSinceChunk = true;
        if (response.ReadSequence > pr.AckedReadSequence)
        {
            pr.AckedReadSequence = response.ReadSequence;
            ReleaseReads();
        }

        if (!response.Success)
        {
            if (pr.MaybeDecrementTo(response.MatchIndex, RetryIndex(response)))
            {
                if (pr.State == ProgressState.Replicate)
                    pr.BecomeProbe();
                SendAppend(pr, sendIfEmpty: true);
            }
            else if (pr.State == ProgressState.Probe)
            {
                // A rejected heartbeat (or a late rejection): the outstanding probe may be lost; probe again.
                pr.ProbeSent = false;
                SendAppend(pr, sendIfEmpty: true);
            }
            return;
        }

        if (pr.MaybeUpdate(response.MatchIndex))
        {
            if (pr.State == ProgressState.Probe)
                pr.BecomeReplicate();
            else if (pr.State == ProgressState.Replicate)
                pr.Inflights.FreeLE(response.MatchIndex);
            else if (pr.Match >= pr.PendingSnapshot)
                pr.BecomeProbe(); // caught up some other way: the snapshot is no longer needed
            MaybeCommit();
            if (_role != RaftRole.Leader)
                return;
            if (_leadTransferee == pr.Id && pr.Match == _log.LastIndex)
            {
                SendTimeoutNow(pr.Id);
                if (_role != RaftRole.Leader)
                    return;
            }
            while (SendAppend(pr, sendIfEmpty: false))
            {
            }
            return;
        }

        // No progress: a heartbeat's answer or a duplicate.
        if (pr.State == ProgressState.Probe)
        {
            // The outstanding probe may be lost: probe again.
            pr.ProbeSent = false;
            if (pr.Match < _log.LastIndex)
                SendAppend(pr, sendIfEmpty: true);
        }
        else if (pr.State == ProgressState.Replicate)
        {
            // Only send what was never sent; appends merely in flight are left alone (a stalled
            // window is detected on heartbeat ticks, see TickLeader). Answering every heartbeat
            // response with an empty append would multiply messages while the leader's own fsync runs.
            if (pr.Inflights.Full)
                pr.Inflights.FreeFirstOne();
            while (SendAppend(pr, sendIfEmpty: false))
            {
            }
        }
    }

    private long RetryIndex(AppendEntriesResponse response)
    {
        if (response.HintTerm <= 0)
            return response.HintIndex;
        // If we hold entries of the follower's conflicting term, retry just after our last one;
        // otherwise skip the follower's whole run of that term.
        var candidate = _log.LastIndexWithTermAtMost(response.MatchIndex, response.HintTerm);
        return _log.TryTerm(candidate) == response.HintTerm ? candidate + 1 : response.HintIndex;
    }

    private void SendSnapshotChunk(Progress pr)
    {
        var snapshot = _snapshots?.Latest;
        if (snapshot is null || snapshot.Index < _log.FirstIndex - 1)
            throw new InvalidOperationException($"Follower {pr.Id} needs a snapshot, but the snapshot store has none covering index {_log.FirstIndex - 1}.");
        if (snapshot.Index != pr.PendingSnapshot)
        {
            // A newer snapshot replaced the one being sent: start over with it.
            pr.BecomeSnapshot(snapshot.Index);
        }
        var length = _snapshots!.LatestLength;
        var offset = Math.Clamp(pr.SnapshotOffset, 0, length);
        var buffer = new byte[(int)Math.Min(_options.MaxSnapshotChunkBytes, length - offset)];
        var read = _snapshots.Read(snapshot.Index, offset, buffer);
        if (read < 0)
        {
            // Replaced between the two calls; the next heartbeat tick retries with the new one.
            pr.BecomeSnapshot(0);
            return;
        }
        var done = offset + read >= length;
        pr.SnapshotChunkInFlight = true;
        pr.SnapshotSilentTicks = 0;
        pr.HeardSinceChunk = false;
        Send(new InstallSnapshot(Id, pr.Id, _term, snapshot.Index, snapshot.Term, snapshot.Configuration, offset, buffer.AsMemory(0, read), done), afterPersist: false);
    }

    private void HandleSnapshotResponse(InstallSnapshotResponse response)
    {
        if (!_progress.TryGetValue(response.From, out var pr))
            return;
        if (response.SnapshotIndex > _log.LastIndex)
        {
            Reject(response, $"answers a snapshot at index {response.SnapshotIndex}, beyond this leader's last index {_log.LastIndex}: none was sent");
            return;
        }
        if (pr.State == ProgressState.Snapshot && response.SnapshotIndex == pr.PendingSnapshot
            && _snapshots?.Latest?.Index == pr.PendingSnapshot && response.NextOffset > _snapshots.LatestLength)
        {
            Reject(response, $"asks for offset {response.NextOffset}, beyond the end of the snapshot ({_snapshots.LatestLength} bytes)");
            return;
        }
        pr.RecentActive = true;
        pr.HeardSinceChunk = true;
        if (pr.State != ProgressState.Snapshot || response.SnapshotIndex != pr.PendingSnapshot)
            return; // an answer to an older transfer
        if (response.Done && response.Success)
        {
            // The follower holds everything up to the snapshot: resume replication after it.
            pr.MaybeUpdate(response.SnapshotIndex);
            pr.BecomeProbe();
            MaybeCommit();
            if (_role == RaftRole.Leader)
                SendAppend(pr, sendIfEmpty: true);
            return;
        }
        if (response.Success && response.NextOffset <= pr.SnapshotOffset)
            return; // a duplicate or late answer: the transfer is already past it
        if (!response.Success && pr.SnapshotChunkInFlight && response.NextOffset == pr.SnapshotOffset)
            return; // asks for the chunk already in flight: a duplicate; a lost chunk is sent again on the timer
        pr.SnapshotChunkInFlight = false;
        pr.SnapshotOffset = response.NextOffset;
        SendSnapshotChunk(pr);
    }

    private void MaybeCommit()
    {
        // Joint consensus: the index a majority of each half holds (learners never count).
        var index = QuorumMatch(QuorumVoters, static pr => pr.Match, _log.StableLastIndex);
        if (_config.IsJoint)
            index = Math.Min(index, QuorumMatch(_outgoingVoters, static pr => pr.Match, _log.StableLastIndex));
        if (index <= _log.Committed)
            return;
        var currentTerm = _log.TryTerm(index) == _term;
#if RAFT_MUTANTS
        if ((_options.Mutations & Mutation.CommitOldTermByCounting) != 0)
            currentTerm = true;
#endif
        // The Figure 8 rule (§5.4.2): only entries of the current term are committed by counting replicas.
        if (!currentTerm)
            return;
        var wasCommittedInTerm = CommittedInCurrentTerm();
        _log.CommitTo(index);
        // Followers learn the new commit index from the next AppendEntries (under load, within a
        // batch); only those that have not heard it by the next tick get a heartbeat for it, which
        // saves an extra message and acknowledgement per follower for every commit. Eager
        // propagation sends it this round instead.
        if (_options.EagerCommitPropagation)
            _commitBroadcastPending = true;
        if (!wasCommittedInTerm && _readsAwaitingCommit.Count > 0)
        {
            foreach (var id in _readsAwaitingCommit)
                IssueRead(id);
            _readsAwaitingCommit.Clear();
        }
        OnCommitted();
    }

    private bool CommittedInCurrentTerm() => _log.TryTerm(_log.Committed) == _term;

    private void IssueRead(long requestId)
    {
#if RAFT_MUTANTS
        if ((_options.Mutations & Mutation.ReadWithoutQuorum) != 0)
        {
            _readStates.Add(new ReadState(requestId, _log.Committed));
            return;
        }
#endif
        _pendingReads.Add((requestId, _log.Committed, _readSequence + 1));
        _readBroadcastPending = true;
    }

    // The newest read round a quorum acknowledged: voters only (never learners), a majority of each
    // half while the configuration is joint. ReadIndex reads and lease reads both stand on it.
    private long ConfirmedReadSequence()
    {
        var confirmed = QuorumMatch(QuorumVoters, static pr => pr.AckedReadSequence, _readSequence);
        if (_config.IsJoint)
            confirmed = Math.Min(confirmed, QuorumMatch(_outgoingVoters, static pr => pr.AckedReadSequence, _readSequence));
        return confirmed;
    }

    private void ReleaseReads()
    {
        if (_pendingReads.Count == 0)
            return;
        var confirmed = ConfirmedReadSequence();
        var released = 0;
        while (released < _pendingReads.Count && _pendingReads[released].Sequence <= confirmed)
        {
            var (id, index, _) = _pendingReads[released];
            _readStates.Add(new ReadState(id, index));
            released++;
        }
        if (released > 0)
            _pendingReads.RemoveRange(0, released);
    }

    // ------------------------------------------------------------------ plumbing

    private void Send(RaftMessage message, bool afterPersist)
    {
        if (afterPersist)
            _messagesAfterPersist.Add(message);
        else
            _messages.Add(message);
    }

    private HardState CurrentHardState()
    {
        var votedFor = _votedFor;
#if RAFT_MUTANTS
        if ((_options.Mutations & Mutation.ForgetVote) != 0)
            votedFor = 0;
#endif
        // The commit index rides along only when term or vote change: it is a hint, not worth an fsync.
        // It never covers entries that are not durable yet: if the hard state reaches the disk and the
        // entries of the same Ready do not (a crash in between), a hint past the durable log would,
        // after restart, commit whatever stale entries the store still holds there.
        return _persistedHardState.Term == _term && _persistedHardState.VotedFor == votedFor
            ? _persistedHardState
            : new HardState(_term, votedFor, DurableCommitHint());
    }

    /// <summary>
    /// Whether an acknowledgement up to <paramref name="matchIndex"/> claims only what is durable
    /// already: the current term and the entries up to it were persisted by earlier Readies. Such an
    /// acknowledgement (typically a heartbeat's, which also confirms a leader's read) need not wait
    /// for the write of the current Ready.
    /// </summary>
    private bool IsDurable(long matchIndex) =>
        !_log.HasPendingSnapshot && _persistedHardState.Term == _term && matchIndex <= _log.StableLastIndex;

    private long DurableCommitHint()
    {
#if RAFT_MUTANTS
        if ((_options.Mutations & Mutation.CommitHintNotDurable) != 0)
            return _log.Committed;
#endif
        // While a snapshot from the leader waits to be written, the store still holds the old log:
        // keep the hint that was valid for it (found by the simulator: seed 892 with torn writes).
        if (_log.HasPendingSnapshot)
            return Math.Min(_persistedHardState.Commit, _log.Committed);
        return Math.Min(_log.Committed, _log.StableLastIndex);
    }

    private void EnsureNoReadyOutstanding()
    {
        if (_readyOutstanding)
            throw new InvalidOperationException("The last Ready was not advanced: call Advance before stepping the core again.");
    }
}
