namespace Raft;

// Membership changes (dissertation §4.3, joint consensus; learners, §4.2.1). The configuration is an
// entry of the log, in force on a node as soon as it is in the node's log (appended, not committed),
// and rolled back when a conflicting leader truncates it. Why joint consensus rather than the
// dissertation's single-server changes: a change of any size is one operation; and single-server
// changes have a known bug (the errata of the dissertation, raft-dev, 2015): two single-server
// changes proposed by leaders of different terms, each adding or removing one server from the same
// old configuration, can produce two configurations whose majorities do not overlap, electing two
// leaders in one term. The fix the errata gives (a leader commits an entry of its own term before it
// starts a change) is applied here too, and joint consensus needs no more: C(old,new) overlaps both.
public sealed partial class RaftCore
{
    // The configurations of the log after the last snapshot, ascending by index: [0] is the base
    // (the snapshot's, the bootstrap one at index 0, or the last one at or below the commit index
    // once older ones are pruned); each later one came from an EntryKind.Configuration entry.
    // Invariant: the configuration in force (_config) is the last entry (with ConfigAtCommit, the
    // mutant, the last one at or below the commit index).
    private readonly List<(long Index, ClusterConfiguration Configuration)> _configurations = [];
    private ClusterConfiguration _config = ClusterConfiguration.Empty;
    private long _configIndex;
    private int[] _voters = [];
    private int[] _votersAndLearners = [];
    private int[] _outgoingVoters = [];
    private int[] _voterPeers = [];
    private bool _configurationChanged;
    // The members a committed configuration removed, to whom this node (as leader) sent one last
    // append: their answers are expected and ignored rather than refused as a hostile peer's.
    private readonly HashSet<int> _departed = [];
    private bool _peersChanged; // the members of _configurations changed (also when a committed one prunes older ones)
    private int _configurationsSeen;

    /// <summary>The configuration in force on this node: the last one in its log (or snapshot), committed or not.</summary>
    public ClusterConfiguration Configuration => _config;

    /// <summary>The index of the log entry <see cref="Configuration"/> came from (the snapshot's index when it came from a snapshot, 0 for the bootstrap configuration).</summary>
    public long ConfigurationIndex => _configIndex;

    /// <summary>Whether the configuration in force lists members but not this node: it was removed (or, while it catches up, its log is not yet at the configuration that adds it). Such a node never campaigns.</summary>
    public bool IsRemoved => !_config.IsEmpty && !_config.Contains(Id);

    /// <summary>
    /// The other members this node sends to and hears from, with their addresses: those of every
    /// configuration not yet superseded by a committed one (a member the newest configuration removes
    /// is still one of them until that configuration commits and the leader's last append to it is
    /// sent). A later configuration's address wins. The host keeps its transport able to reach them.
    /// </summary>
    internal IReadOnlyDictionary<int, string?> PeerAddresses()
    {
        var peers = new Dictionary<int, string?>();
        foreach (var (_, configuration) in _configurations)
        {
            foreach (var (id, address) in configuration.PeersOf(Id))
                peers[id] = address ?? peers.GetValueOrDefault(id);
        }
        return peers;
    }

    /// <summary>Whether <paramref name="message"/>, from a non-member, answers the last append this node sent a member it removed.</summary>
    private bool IsAnswerFromDeparted(RaftMessage message) =>
        message is AppendEntriesResponse or InstallSnapshotResponse && _departed.Contains(message.From);

    /// <summary>The term of the entry at <paramref name="index"/>, or -1 when it is compacted or beyond the log.</summary>
    internal long TermAt(long index) => _log.TryTerm(index);

    // The voters whose majority commits and confirms reads (and is heard by CheckQuorum) in the incoming half.
    private int[] QuorumVoters
    {
        get
        {
#if RAFT_MUTANTS
            if ((_options.Mutations & Mutation.LearnerCounted) != 0)
                return _votersAndLearners;
#endif
            return _voters;
        }
    }

    /// <summary>
    /// Whether a message from a node the configuration in force does not list may be handled. A
    /// newer configuration this node has not received yet may list it (dissertation §4.1: servers
    /// handle requests without consulting their configuration), so a request (AppendEntries,
    /// InstallSnapshot, RequestVote, TimeoutNow) from it is handled when it comes from the leader
    /// this node follows, or while this node is out of contact with any leader it knows (none heard
    /// for a whole minimum election timeout, counted from its start or the last message of its
    /// leader; never on a leader), or always when it knows no configuration yet (it joins): that
    /// is how a node that joins, or one that missed the entries that added the current leader,
    /// catches up. A node in contact with its leader (or just started) refuses strangers, and a
    /// response from a non-member never counts.
    /// </summary>
    internal bool AcceptsFromOutsideConfiguration(RaftMessage message)
    {
        if (message is AppendEntriesResponse or InstallSnapshotResponse or RequestVoteResponse)
            return false;
        if (message.Term < _term)
            return true; // answered with the current term only, so a stale leader outside the configuration steps down
        if (_role == RaftRole.Leader)
            return false;
        if (_config.IsEmpty || (_leader != 0 && message.From == _leader))
            return true;
        return _electionElapsed >= _options.ElectionTicksMin;
    }

    private void LoadConfiguration(RaftOptions options, ILogStore store, ISnapshotStore? snapshots)
    {
        ClusterConfiguration baseConfiguration;
        long baseIndex;
        if (snapshots?.Latest is { } snapshot && snapshot.Index >= store.FirstIndex - 1)
        {
            baseConfiguration = snapshot.Configuration;
            baseIndex = snapshot.Index;
        }
        else
        {
            baseConfiguration = options.BootstrapConfiguration();
            baseIndex = 0;
        }
        _configurations.Add((baseIndex, baseConfiguration));
        // The configuration entries after the base: a node that restarts knows its peers from its log.
        var from = Math.Max(store.FirstIndex, baseIndex + 1);
        var batch = new List<LogEntry>();
        while (from <= store.LastIndex)
        {
            batch.Clear();
            store.ReadEntries(from, store.LastIndex + 1, 4 << 20, batch);
            if (batch.Count == 0)
                break;
            foreach (var entry in batch)
            {
                if (entry.Kind != EntryKind.Configuration)
                    continue;
                if (!ClusterConfiguration.TryDecode(entry.Data.Span, out var configuration, out var error))
                    throw new InvalidOperationException($"The configuration entry at index {entry.Index} of node {Id}'s log cannot be decoded ({error}); the log is corrupt.");
                _configurations.Add((entry.Index, configuration));
            }
            from = batch[^1].Index + 1;
        }
        RefreshConfiguration();
        _configurationChanged = false; // the host reads the first one from Configuration
        _peersChanged = false;         // and the first peers from PeerAddresses
    }

    /// <summary>The follower replaced its log from <paramref name="entries"/>[<paramref name="from"/>] on: roll back the configurations of the removed entries, take in the new ones.</summary>
    private void OnEntriesReplaced(IReadOnlyList<LogEntry> entries, int from)
    {
        var first = entries[from].Index;
        var removed = _configurations.RemoveAll(c => c.Index >= first && c.Index > 0);
        var added = false;
        for (var i = from; i < entries.Count; i++)
        {
            if (entries[i].Kind != EntryKind.Configuration)
                continue;
            // Validated before the message changed anything (MalformedAppend).
            ClusterConfiguration.TryDecode(entries[i].Data.Span, out var configuration, out _);
            _configurations.Add((entries[i].Index, configuration!));
            added = true;
        }
        if (removed > 0 || added)
            RefreshConfiguration();
    }

    private void ResetConfiguration(long index, ClusterConfiguration configuration)
    {
        _configurations.Clear();
        _configurations.Add((index, configuration));
        RefreshConfiguration();
    }

    private void AppendConfiguration(ClusterConfiguration configuration)
    {
        var index = _log.LastIndex + 1;
        _log.Append(new LogEntry(index, _term, EntryKind.Configuration, configuration.Encode()));
        _configurations.Add((index, configuration));
        _broadcastPending = true;
        RefreshConfiguration();
    }

    /// <summary>The commit index moved: prune the history, and as leader finish a joint change or hand over leadership when removed.</summary>
    private void OnCommitted()
    {
        if (_configurations.Count > 1)
            RefreshConfiguration();
        if (_role != RaftRole.Leader || _configIndex > _log.Committed)
            return;
        if (_config.IsJoint)
        {
            // C(old,new) is committed: this leader now appends C(new) itself (dissertation §4.3).
            AppendConfiguration(_config.LeaveJoint());
            return;
        }
        if (!_config.IsVoter(Id) && _leadTransferee == 0)
            HandOverAfterRemoval();
    }

    /// <summary>
    /// Whether this node may campaign: it votes in the configuration in force or in one that is not
    /// yet superseded by a committed one. A node that an uncommitted configuration removes still
    /// campaigns (counting votes in the configuration in force, where its own does not count):
    /// otherwise, with that configuration's entry on it alone, the others could wait for its vote
    /// forever. Once the removal commits, it stays silent.
    /// </summary>
    private bool MayCampaign()
    {
        foreach (var (_, configuration) in _configurations)
        {
            if (configuration.IsVoter(Id))
                return true;
        }
        return false;
    }

    // Whether this leader is not a voter of the committed configuration in force (it steps down).
    private bool LeavingCommitted() => !_config.IsJoint && _configIndex <= _log.Committed && !_config.IsVoter(Id);

    private void HandOverAfterRemoval()
    {
        // C(new) without this leader is committed: hand leadership to the most caught-up voter of
        // C(new) through the transfer machinery (it campaigns at once on TimeoutNow); if the
        // transfer times out, TickLeader steps down anyway.
        Progress? best = null;
        foreach (var voter in _voters)
        {
            if (_progress.TryGetValue(voter, out var pr) && (best is null || pr.Match > best.Match || (pr.Match == best.Match && pr.Id < best.Id)))
                best = pr;
        }
        if (best is null)
        {
            BecomeFollower(_term, 0);
            return;
        }
        _leadTransferee = best.Id;
        _transferElapsed = 0;
        if (best.Match == _log.LastIndex)
            SendTimeoutNow(best.Id);
        else
            SendAppend(best, sendIfEmpty: true);
    }

    /// <summary>Tells the transferee to campaign now; a leader removed by the committed configuration then steps down at once (it would hear of no later term: the new leader does not replicate to it).</summary>
    private void SendTimeoutNow(int transferee)
    {
        Send(new TimeoutNow(Id, transferee, _term), afterPersist: false);
        if (LeavingCommitted())
            BecomeFollower(_term, 0);
    }

    private void RefreshConfiguration()
    {
        // Entries at or below the commit index are never truncated: only the last of them is needed.
        while (_configurations.Count > 1 && _configurations[1].Index <= _log.Committed)
            _configurations.RemoveAt(0);
        var (index, configuration) = _configurations[^1];
#if RAFT_MUTANTS
        if ((_options.Mutations & Mutation.ConfigAtCommit) != 0)
        {
            for (var i = _configurations.Count - 1; i >= 0; i--)
            {
                if (_configurations[i].Index <= _log.Committed || i == 0)
                {
                    (index, configuration) = _configurations[i];
                    break;
                }
            }
        }
#endif
        if (index == _configIndex && ReferenceEquals(configuration, _config) && _configurations.Count == _configurationsSeen)
            return;
        _configurationsSeen = _configurations.Count;
        _peersChanged = true;
        var previous = _config;
        _config = configuration;
        _configIndex = index;
        _voters = [.. configuration.Voters];
        _votersAndLearners = [.. configuration.Members.Select(m => m.Id)];
        _outgoingVoters = [.. configuration.OutgoingVoters];
        // Replicated to (and heard from): the members of every configuration not yet superseded by
        // a committed one, so a member that C(new) removes still receives C(new) and learns it was
        // removed (it then stops campaigning) rather than timing out and disrupting the cluster.
        _members = [.. _configurations.SelectMany(c => c.Configuration.AllIds).Distinct()];
        _peers = [.. _members.Where(m => m != Id)];
        _voterPeers = [.. _peers.Where(configuration.IsVoter)];
        if (!configuration.Equals(previous))
            _configurationChanged = true;
        if (_role == RaftRole.Leader)
        {
            // Replicate to every member of the new configuration, learners included; forget the others.
            foreach (var peer in _peers)
            {
                // Probing from the last entry (the configuration entry that adds it) sends that
                // entry at once; a new member's rejection then walks the leader back.
                if (!_progress.ContainsKey(peer))
                    _progress[peer] = new Progress(peer, Math.Max(1, _log.LastIndex), _options.MaxInflightAppends) { RecentActive = true };
            }
            foreach (var id in _progress.Keys.Where(id => Array.IndexOf(_peers, id) < 0).ToList())
            {
                // A member the committed configuration removed: one last append tells it the
                // configuration and the commit, so it learns it was removed and stays silent
                // instead of campaigning (if that message is lost, it may campaign: with PreVote
                // and CheckQuorum it is refused; without, it can only win with an up-to-date log,
                // and as a leader outside its configuration it hands over once it commits).
                var removed = _progress[id];
                _departed.Add(id);
                if (removed.Match >= _configIndex)
                {
                    SendHeartbeat(removed);
                }
                else
                {
                    removed.BecomeProbe();
                    SendAppend(removed, sendIfEmpty: true); // with the entries it lacks, up to MaxAppendBytes
                }
                _progress.Remove(id);
            }
            if (_leadTransferee != 0 && !_progress.ContainsKey(_leadTransferee))
            {
                _leadTransferee = 0;
                _transferElapsed = 0;
            }
        }
        else if (_role is RaftRole.Candidate or RaftRole.PreCandidate && Tally() == VoteResult.Lost)
        {
            BecomeFollower(_term, 0);
        }
    }

    /// <summary>The highest value a majority of <paramref name="voters"/> has reached; this node counts with <paramref name="own"/> when it is one of them. An empty half does not constrain.</summary>
    private long QuorumMatch(int[] voters, Func<Progress, long> value, long own)
    {
        if (voters.Length == 0)
            return long.MaxValue;
        Span<long> values = voters.Length <= 16 ? stackalloc long[voters.Length] : new long[voters.Length];
        for (var i = 0; i < voters.Length; i++)
            values[i] = voters[i] == Id ? own : _progress.TryGetValue(voters[i], out var pr) ? value(pr) : 0;
        return Quorum.CommittedIndex(values);
    }

    /// <summary>CheckQuorum: whether a majority of each half (this node included when it votes there) was heard from since the last check.</summary>
    private bool QuorumActive()
    {
        return HalfActive(QuorumVoters) && (!_config.IsJoint || HalfActive(_outgoingVoters));

        bool HalfActive(int[] voters)
        {
            if (voters.Length == 0)
                return true;
            var active = 0;
            foreach (var voter in voters)
            {
                if (voter == Id || (_progress.TryGetValue(voter, out var pr) && pr.RecentActive))
                    active++;
            }
            return active >= Quorum.Majority(voters.Length);
        }
    }

    /// <summary>
    /// Proposes a membership change (leader only). When the voters change, the leader appends the
    /// joint configuration C(old,new) and, once that commits, C(new) itself; when only learners
    /// change, it appends the new configuration directly. The configuration is in force on each
    /// node as soon as its entry is appended there.
    /// </summary>
    /// <param name="change">The change.</param>
    /// <param name="index">The index of the configuration entry appended, when accepted; otherwise 0.</param>
    /// <param name="reason">Why the change was refused, when it was (null when accepted).</param>
    /// <returns>
    /// <see cref="ProposeResult.Accepted"/>; <see cref="ProposeResult.NotLeader"/>;
    /// <see cref="ProposeResult.TransferInProgress"/>; <see cref="ProposeResult.MembershipChangePending"/>
    /// while an earlier change is not committed (joint, or C(new) not yet committed) or before this
    /// leader has committed an entry of its own term; <see cref="ProposeResult.InvalidMembershipChange"/>
    /// when the change does not fit the configuration in force; <see cref="ProposeResult.LearnerNotCaughtUp"/>
    /// when a promoted learner lags more than <see cref="RaftOptions.MaxPromotionLag"/> entries behind.
    /// </returns>
    public ProposeResult ProposeMembershipChange(MembershipChange change, out long index, out string? reason)
    {
        ArgumentNullException.ThrowIfNull(change);
        EnsureNoReadyOutstanding();
        index = 0;
        reason = null;
        if (_role != RaftRole.Leader)
            return ProposeResult.NotLeader;
        if (_leadTransferee != 0)
            return ProposeResult.TransferInProgress;
        var oneStep = false;
#if RAFT_MUTANTS
        oneStep = (_options.Mutations & Mutation.NoJointConsensus) != 0;
#endif
        if (!oneStep && (_config.IsJoint || _configIndex > _log.Committed))
        {
            reason = $"the configuration change at index {_configIndex} ({_config}) is not committed yet; retry once it is";
            return ProposeResult.MembershipChangePending;
        }
        if (!oneStep && !CommittedInCurrentTerm())
        {
            // The dissertation's errata: without this, changes by leaders of different terms can
            // produce configurations whose majorities do not overlap.
            reason = $"this leader has not committed an entry of its term {_term} yet; retry in a moment";
            return ProposeResult.MembershipChangePending;
        }
        ClusterConfiguration target;
        try
        {
            target = change.ApplyTo(_config.LeaveJoint());
        }
        catch (ArgumentException ex)
        {
            reason = ex.Message;
            return ProposeResult.InvalidMembershipChange;
        }
        if (target.Equals(_config))
        {
            reason = $"the change leaves the configuration as it is ({_config})";
            return ProposeResult.InvalidMembershipChange;
        }
        foreach (var member in target.Members)
        {
            if (member.Role != MemberRole.Voter || _config.Find(member.Id) is not { Role: MemberRole.Learner })
                continue;
            var match = _progress.TryGetValue(member.Id, out var pr) ? pr.Match : 0;
            if (_log.LastIndex - match > _options.MaxPromotionLag)
            {
                reason = $"learner {member.Id} holds entries up to index {match}, {_log.LastIndex - match} behind this leader's last index {_log.LastIndex} (MaxPromotionLag is {_options.MaxPromotionLag}); promote it once it has caught up";
                return ProposeResult.LearnerNotCaughtUp;
            }
        }
        var votersChange = !target.Voters.Order().SequenceEqual(_config.Voters.Order());
        var next = votersChange && !oneStep
            ? new ClusterConfiguration(target.Members, _config.Members.Where(m => m.Role == MemberRole.Voter))
            : target;
        AppendConfiguration(next);
        index = _configIndex;
        if (_peers.Length == 0)
            MaybeCommit();
        return ProposeResult.Accepted;
    }
}
