using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Raft;

// Membership changes on the host side: the public API, the waiters that complete when a change is
// done, telling the transport of the configuration in force, and the unsafe recovery helper.
// The rules themselves live in the core (RaftCore.Membership.cs); docs/membership.md explains them.
public sealed partial class RaftNode
{
    // Owned by the event loop: accepted changes waiting for their final configuration to commit.
    private readonly List<MembershipRequest> _membershipWaiters = [];

    // Owned by the apply loop: the configuration as of the last applied entry, recorded in the
    // snapshots this node takes (the snapshot is where a compacted log keeps its configuration).
    private ClusterConfiguration? _appliedConfiguration;

    // Owned by the event loop: the peers the transport was last told, and those the Ready being
    // handled reaches (set before its messages go out, given to the transport after).
    private IReadOnlyDictionary<int, string?> _transportPeers = new Dictionary<int, string?>();
    private IReadOnlyDictionary<int, string?>? _nextTransportPeers;

    /// <summary>The configuration in force on this node: its members with roles and addresses (the same as <see cref="RaftStatus.Configuration"/>).</summary>
    public ClusterConfiguration Configuration => _status.Value.Configuration;

    /// <summary>
    /// Changes the cluster's members (leader only): adds voters or learners, promotes learners,
    /// removes members (the leader itself included). Completes once the new configuration is
    /// committed, with that configuration.
    /// </summary>
    /// <remarks>
    /// <para>When the voters change, the leader goes through the joint configuration C(old,new)
    /// (dissertation §4.3), in which elections and commits need majorities of both the old and the
    /// new voters, then appends C(new) itself once C(old,new) commits. When only learners change,
    /// it appends the new configuration directly. One change at a time: a change is refused while
    /// an earlier one is not committed, and before this leader has committed an entry of its own term
    /// (the dissertation errata's rule; it passes within a heartbeat of an election).</para>
    /// <para>The recommended way to add a node: start it with <see cref="RaftNodeOptions.Join"/>,
    /// add it as a learner (<see cref="MembershipChange.AddLearner"/>), wait until
    /// <see cref="RaftStatus.Progress"/> on the leader shows it caught up, then promote it
    /// (<see cref="MembershipChange.Promote"/>; refused while it lags more than
    /// <see cref="RaftNodeOptions.MaxPromotionLag"/> entries).</para>
    /// <para>Removing the leader: it keeps leading until C(new) commits (not counting itself toward
    /// C(new)'s majorities), then hands leadership to the most caught-up voter of C(new) and steps
    /// down; a removed node never campaigns again and shows <see cref="RaftStatus.IsRemoved"/>.</para>
    /// </remarks>
    /// <param name="change">The change.</param>
    /// <param name="cancellationToken">Stops waiting. The change may still complete: cancellation abandons the result, not the change.</param>
    /// <returns>The configuration in force once the change committed.</returns>
    /// <exception cref="NotLeaderException">This node is not the leader; nothing was proposed.</exception>
    /// <exception cref="MembershipChangeException">An earlier change is not committed yet, this leader has not committed an entry of its term yet, or a promoted learner has not caught up; nothing was proposed. Retry later.</exception>
    /// <exception cref="RaftBusyException">A leadership transfer is under way; nothing was proposed.</exception>
    /// <exception cref="ArgumentException">The change does not fit the configuration in force (adding a member twice, removing a non-member, leaving no voter, changing nothing); nothing was proposed.</exception>
    /// <exception cref="ProposalDroppedException">The change was appended but a new leader replaced it; it did not take effect.</exception>
    /// <exception cref="RaftNodeFaultedException">The node stopped because of an error.</exception>
    /// <exception cref="InvalidOperationException"><see cref="StartAsync"/> was not called.</exception>
    public Task<ClusterConfiguration> ChangeMembershipAsync(MembershipChange change, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(change);
        ThrowIfNotRunning();
        if (cancellationToken.IsCancellationRequested)
            return Task.FromCanceled<ClusterConfiguration>(cancellationToken);
        var request = new MembershipRequest(change);
        Enqueue(request);
        return request.Completion.Task.WaitAsync(cancellationToken);
    }

    private void HandleMembershipRequest(MembershipRequest request)
    {
        var result = _core.ProposeMembershipChange(request.Change, out var index, out var reason);
        switch (result)
        {
            case ProposeResult.Accepted:
                request.Index = index;
                request.Term = _core.Term;
                _membershipWaiters.Add(request);
                MembershipLog.ChangeProposed(_logger, Id, request.Change, index, _core.Configuration);
                break;
            case ProposeResult.NotLeader:
                request.Completion.TrySetException(new NotLeaderException(_core.LeaderId));
                break;
            case ProposeResult.TransferInProgress:
                request.Completion.TrySetException(new RaftBusyException("A leadership transfer is under way; retry on the new leader."));
                break;
            case ProposeResult.InvalidMembershipChange:
                MembershipLog.ChangeRefused(_logger, Id, request.Change, reason ?? "invalid");
                request.Completion.TrySetException(new ArgumentException($"The membership change ({request.Change}) was refused: {reason}."));
                break;
            default:
                MembershipLog.ChangeRefused(_logger, Id, request.Change, reason ?? "refused");
                request.Completion.TrySetException(new MembershipChangeException(result, $"The membership change ({request.Change}) was refused: {reason}."));
                break;
        }
    }

    // Event loop, after each round: completes the changes whose final configuration committed, and
    // fails those a new leader replaced.
    private void CheckMembershipWaiters()
    {
        var committed = _core.CommitIndex;
        for (var i = _membershipWaiters.Count - 1; i >= 0; i--)
        {
            var request = _membershipWaiters[i];
            var term = _core.TermAt(request.Index);
            if (!request.Confirmed)
            {
                if (term >= 0 && term != request.Term)
                {
                    // Another leader's entry replaced it: the change never took effect.
                    _membershipWaiters.RemoveAt(i);
                    request.Completion.TrySetException(new ProposalDroppedException($"The membership change ({request.Change}) proposed at index {request.Index} was replaced by a new leader's entry; it did not take effect."));
                    continue;
                }
                if (committed < request.Index)
                    continue;
                request.Confirmed = true; // committed with its term (or compacted after commit)
            }
            var configuration = _core.Configuration;
            var index = _core.ConfigurationIndex;
            if (!configuration.IsJoint && index >= request.Index && index <= committed)
            {
                _membershipWaiters.RemoveAt(i);
                MembershipLog.ChangeCommitted(_logger, Id, configuration, index);
                request.Completion.TrySetResult(configuration);
            }
        }
    }

    // Event loop: the configuration in force changed (an entry appended or rolled back, a snapshot installed).
    private void OnConfigurationChanged(ClusterConfiguration configuration) =>
        MembershipLog.ConfigurationInForce(_logger, Id, configuration, _core.ConfigurationIndex, _core.IsRemoved);

    // Event loop: tells the transport the members the core sends to (RaftCore.PeerAddresses), at start.
    private void InitTransportPeers()
    {
        _transportPeers = _core.PeerAddresses();
        _transport.UpdatePeers(_transportPeers);
    }

    // Event loop, before a Ready's messages go out: the transport learns the members the core now
    // sends to, so the first append to a member just added is not dropped as addressed to an unknown
    // peer; it keeps those the core no longer sends to until the messages are out (NarrowTransportPeers).
    private void WidenTransportPeers(Ready ready)
    {
        if (!ready.PeersChanged && ready.Configuration is null)
            return;
        var next = _core.PeerAddresses();
        _nextTransportPeers = next;
        var widened = new Dictionary<int, string?>(_transportPeers);
        var grew = false;
        foreach (var (id, address) in next)
        {
            if (!widened.TryGetValue(id, out var known) || (address is not null && address != known))
            {
                widened[id] = address ?? known;
                grew = true;
            }
        }
        if (grew)
        {
            _transport.UpdatePeers(widened);
            _transportPeers = widened;
        }
    }

    // Event loop, once a Ready's messages went out: the transport forgets the members the core no
    // longer sends to (a removed member, after the entry removing it and the leader's last append).
    private void NarrowTransportPeers()
    {
        if (_nextTransportPeers is not { } next)
            return;
        _nextTransportPeers = null;
        var same = next.Count == _transportPeers.Count
            && next.All(p => _transportPeers.TryGetValue(p.Key, out var address) && address == p.Value);
        if (!same)
            _transport.UpdatePeers(next);
        _transportPeers = next;
    }

    // Apply loop: the configuration as of an applied configuration entry.
    private void OnConfigurationApplied(LogEntry entry)
    {
        if (ClusterConfiguration.TryDecode(entry.Data.Span, out var configuration, out _))
            _appliedConfiguration = configuration;
    }

    /// <summary>
    /// <b>Unsafe</b> disaster recovery: appends <paramref name="configuration"/> as a configuration
    /// entry to the log of a <b>stopped</b> node, so that once restarted it follows that
    /// configuration, whatever the cluster agreed. Use it only when a majority of the voters is lost
    /// for good and the cluster can make no progress.
    /// </summary>
    /// <remarks>
    /// <para>This breaks Raft's guarantees: entries the lost majority committed but this node never
    /// received are lost, and if a lost node comes back with its old data, two clusters may each
    /// elect a leader and diverge. Destroy the lost nodes' data first.</para>
    /// <para>How: stop every survivor; pick the survivor with the most up-to-date log (highest
    /// <see cref="RaftStatus.LastLogTerm"/>, then highest <see cref="RaftStatus.LastLogIndex"/>);
    /// call this on its log store with a configuration listing the survivors as voters; restart the
    /// survivors. The chosen node campaigns under the new configuration, and its log (ending with the
    /// new configuration entry) is the most up to date, so it wins and replicates the configuration to
    /// the others. The entry gets the node's current term; it is logged at Critical.</para>
    /// </remarks>
    /// <param name="store">The stopped node's log store (not in use by a running node).</param>
    /// <param name="configuration">The configuration to force; must not be joint.</param>
    /// <param name="loggerFactory">Creates the logger the Critical warning goes to (category <see cref="RaftNode"/>); null logs nothing.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>The index of the entry written.</returns>
    /// <exception cref="ArgumentException"><paramref name="configuration"/> is joint or empty.</exception>
    public static async Task<long> ForceConfigurationAsync(ILogStore store, ClusterConfiguration configuration, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(configuration);
        if (configuration.IsJoint || configuration.IsEmpty)
            throw new ArgumentException($"A forced configuration must list voters and must not be joint ({configuration}).", nameof(configuration));
        cancellationToken.ThrowIfCancellationRequested();
        var last = store.LastIndex;
        var term = Math.Max(store.HardState.Term, store.GetTerm(last));
        if (term == 0)
        {
            // An empty log that never saw a term: give the entry term 1 and make the hard state agree.
            term = 1;
            await store.SaveHardStateAsync(new HardState(1, 0, store.HardState.Commit), cancellationToken).ConfigureAwait(false);
        }
        var index = last + 1;
        await store.AppendAsync([new LogEntry(index, term, EntryKind.Configuration, configuration.Encode())], cancellationToken).ConfigureAwait(false);
        var logger = loggerFactory?.CreateLogger<RaftNode>() ?? (ILogger)NullLogger.Instance;
        MembershipLog.ConfigurationForced(logger, configuration, index, term);
        return index;
    }

    private sealed class MembershipRequest(MembershipChange change)
    {
        public MembershipChange Change { get; } = change;

        public TaskCompletionSource<ClusterConfiguration> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public long Index { get; set; }

        public long Term { get; set; }

        // The entry committed with this request's term: now only the final configuration is awaited.
        public bool Confirmed { get; set; }
    }
}

/// <summary>Membership log messages (EventIds 1200-1209).</summary>
internal static partial class MembershipLog
{
    [LoggerMessage(EventId = 1200, Level = LogLevel.Information, Message = "Node {NodeId} proposed membership change ({Change}) at index {Index}; configuration in force: {Configuration}")]
    public static partial void ChangeProposed(ILogger logger, int nodeId, MembershipChange change, long index, ClusterConfiguration configuration);

    [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "Node {NodeId} refused membership change ({Change}): {Reason}")]
    public static partial void ChangeRefused(ILogger logger, int nodeId, MembershipChange change, string reason);

    [LoggerMessage(EventId = 1202, Level = LogLevel.Information, Message = "Node {NodeId}: membership change committed; configuration {Configuration} at index {Index}")]
    public static partial void ChangeCommitted(ILogger logger, int nodeId, ClusterConfiguration configuration, long index);

    [LoggerMessage(EventId = 1203, Level = LogLevel.Information, Message = "Node {NodeId}: configuration in force is {Configuration} (entry {Index}); removed: {IsRemoved}")]
    public static partial void ConfigurationInForce(ILogger logger, int nodeId, ClusterConfiguration configuration, long index, bool isRemoved);

    [LoggerMessage(EventId = 1204, Level = LogLevel.Critical, Message = "UNSAFE RECOVERY: configuration {Configuration} forced into the log at index {Index}, term {Term}. Raft's safety no longer holds for entries the lost members committed; destroy their data before they come back.")]
    public static partial void ConfigurationForced(ILogger logger, ClusterConfiguration configuration, long index, long term);
}
