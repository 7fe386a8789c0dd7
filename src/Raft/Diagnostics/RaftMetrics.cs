using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Raft;

/// <summary>
/// A node's instruments, on its meter <see cref="RaftTelemetry.MeterName"/> (tagged
/// <see cref="RaftTelemetry.NodeIdTag"/>). Recorded by <see cref="RaftNode"/>, and by the
/// <see cref="TcpTransport"/> and <see cref="FileLogStore"/> the node was given; the core stays free
/// of side effects. docs/observability.md lists every instrument; keep the two in step.
/// </summary>
internal sealed class RaftMetrics : IDisposable
{
    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly Func<RaftStatus> _status;
    // One boxed tag per peer, built once: recording with a cached tag allocates nothing.
    private readonly ConcurrentDictionary<int, KeyValuePair<string, object?>> _peerTags = new();

    public RaftMetrics(IMeterFactory? factory, int nodeId, Func<RaftStatus> status)
    {
        _status = status;
        var tags = new KeyValuePair<string, object?>[] { new(RaftTelemetry.NodeIdTag, nodeId) };
        if (factory is not null)
        {
            _meter = factory.Create(new MeterOptions(RaftTelemetry.MeterName) { Version = RaftTelemetry.Version, Tags = tags });
        }
        else
        {
            _meter = new Meter(RaftTelemetry.MeterName, RaftTelemetry.Version, tags);
            _ownsMeter = true;
        }
        Elections = _meter.CreateCounter<long>("raft.elections", "{election}", "Elections this node started as a candidate.");
        RoleChanges = _meter.CreateCounter<long>("raft.role.changes", "{change}", "Role changes of this node, tagged with the new role (raft.role).");
        Proposals = _meter.CreateCounter<long>("raft.proposals", "{proposal}", "Commands appended by this node as leader (its own and forwarded ones).");
        RejectedMessages = _meter.CreateCounter<long>("raft.messages.rejected", "{message}", "Inbound messages refused as impossible from a correct member (a buggy or hostile peer), tagged with the message type (raft.message.type).");
        SnapshotSends = _meter.CreateCounter<long>("raft.snapshot.sends", "{snapshot}", "Snapshots this leader started sending to a follower (raft.peer.id) that was behind its log.");
        SnapshotInstalls = _meter.CreateCounter<long>("raft.snapshot.installs", "{snapshot}", "Snapshots received from a leader and installed by this node.");
        SnapshotsCreated = _meter.CreateCounter<long>("raft.snapshot.created", "{snapshot}", "Snapshots this node took of its own state machine.");
        AppendDuration = _meter.CreateHistogram<double>("raft.append.duration", "s", "Time to make one batch of entries (and the hard state) durable in the log store.");
        ApplyDuration = _meter.CreateHistogram<double>("raft.apply.duration", "s", "Time to apply one batch of committed entries to the state machine.");
        CommitLatency = _meter.CreateHistogram<double>("raft.proposal.commit.duration", "s", "From a leader accepting a proposal to the proposal committing (one measurement per batch of proposals).");
        ApplyLatency = _meter.CreateHistogram<double>("raft.proposal.apply.duration", "s", "From a leader accepting a proposal to the leader having applied it (one measurement per batch of proposals).");
        FsyncDuration = _meter.CreateHistogram<double>("raft.storage.fsync.duration", "s", "Time of one fsync of the file log store: appended entries (with the directory when they opened a segment), the hard-state file, or the directory after a rename.");
        _meter.CreateObservableGauge("raft.term", () => status().Term, "{term}", "The node's current term.");
        _meter.CreateObservableGauge("raft.commit_index", () => status().CommitIndex, "{index}", "The highest index known committed.");
        _meter.CreateObservableGauge("raft.applied_index", () => status().AppliedIndex, "{index}", "The highest index applied to the state machine.");
        _meter.CreateObservableGauge("raft.last_log_index", () => status().LastLogIndex, "{index}", "The index of the last entry in the node's log.");
        _meter.CreateObservableGauge("raft.follower.lag", ObserveLag, "{entry}", "On the leader, per follower (raft.peer.id): the leader's last log index minus the follower's match index. Nothing on other nodes.");
        Transport = new TransportMetrics(_meter, PeerTag);
    }

    public Counter<long> Elections { get; }

    public Counter<long> RejectedMessages { get; }

    public Counter<long> RoleChanges { get; }

    public Counter<long> Proposals { get; }

    public Counter<long> SnapshotSends { get; }

    public Counter<long> SnapshotInstalls { get; }

    public Counter<long> SnapshotsCreated { get; }

    public Histogram<double> AppendDuration { get; }

    public Histogram<double> ApplyDuration { get; }

    public Histogram<double> CommitLatency { get; }

    public Histogram<double> ApplyLatency { get; }

    public Histogram<double> FsyncDuration { get; }

    /// <summary>The transport's instruments, on the same meter; handed to a <see cref="TcpTransport"/> the node drives.</summary>
    public TransportMetrics Transport { get; }

    /// <summary>Whether anyone listens to the proposal latencies (the node then marks proposals; otherwise it skips that work).</summary>
    public bool ProposalLatencyEnabled => CommitLatency.Enabled || ApplyLatency.Enabled;

    /// <summary>The tag naming <paramref name="peerId"/>, boxed once per peer.</summary>
    public KeyValuePair<string, object?> PeerTag(int peerId) =>
        _peerTags.GetOrAdd(peerId, static id => new KeyValuePair<string, object?>(RaftTelemetry.PeerIdTag, id));

    public void RecordFsync(double seconds) => FsyncDuration.Record(seconds);

    private IEnumerable<Measurement<long>> ObserveLag()
    {
        var status = _status();
        if (status.Role != RaftRole.Leader)
            return [];
        var measurements = new List<Measurement<long>>(status.Progress.Count);
        foreach (var (peer, match) in status.Progress)
        {
            if (peer != status.Id)
                measurements.Add(new Measurement<long>(Math.Max(0, status.LastLogIndex - match), PeerTag(peer)));
        }
        return measurements;
    }

    public void Dispose()
    {
        if (_ownsMeter)
            _meter.Dispose();
    }
}

/// <summary>
/// A transport's instruments, per peer (<see cref="RaftTelemetry.PeerIdTag"/>): messages and bytes
/// sent, received and dropped. Bytes are whole frames (header included).
/// </summary>
internal sealed class TransportMetrics
{
    private readonly Func<int, KeyValuePair<string, object?>> _peerTag;
    private readonly ConcurrentDictionary<(int, string), KeyValuePair<string, object?>[]> _dropTags = new();

    public TransportMetrics(Meter meter, Func<int, KeyValuePair<string, object?>> peerTag)
    {
        _peerTag = peerTag;
        MessagesSent = meter.CreateCounter<long>("raft.transport.messages.sent", "{message}", "Messages written to a peer's connection.");
        BytesSent = meter.CreateCounter<long>("raft.transport.bytes.sent", "By", "Bytes of frames written to a peer's connection.");
        MessagesReceived = meter.CreateCounter<long>("raft.transport.messages.received", "{message}", "Messages decoded from a peer's connection and handed to the node.");
        BytesReceived = meter.CreateCounter<long>("raft.transport.bytes.received", "By", "Bytes of frames decoded from a peer's connection.");
        MessagesDropped = meter.CreateCounter<long>("raft.transport.messages.dropped", "{message}", "Messages to a peer that were not sent, tagged with why (raft.drop.reason).");
    }

    public Counter<long> MessagesSent { get; }

    public Counter<long> BytesSent { get; }

    public Counter<long> MessagesReceived { get; }

    public Counter<long> BytesReceived { get; }

    public Counter<long> MessagesDropped { get; }

    public KeyValuePair<string, object?> PeerTag(int peerId) => _peerTag(peerId);

    public void Sent(KeyValuePair<string, object?> peer, long bytes)
    {
        MessagesSent.Add(1, peer);
        BytesSent.Add(bytes, peer);
    }

    public void Received(KeyValuePair<string, object?> peer, long bytes)
    {
        MessagesReceived.Add(1, peer);
        BytesReceived.Add(bytes, peer);
    }

    /// <summary>Counts <paramref name="count"/> messages to <paramref name="peerId"/> dropped for <paramref name="reason"/> (a short snake_case constant: the tag sets are cached per pair).</summary>
    public void Dropped(int peerId, string reason, long count = 1)
    {
        if (!MessagesDropped.Enabled)
            return;
        var tags = _dropTags.GetOrAdd((peerId, reason), static (key, self) =>
            [self._peerTag(key.Item1), new KeyValuePair<string, object?>(RaftTelemetry.DropReasonTag, key.Item2)], this);
        MessagesDropped.Add(count, tags);
    }
}
