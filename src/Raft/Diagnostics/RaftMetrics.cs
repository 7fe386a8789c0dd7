using System.Diagnostics.Metrics;

namespace Raft;

/// <summary>The node's instruments (meter "Raft"). Recorded by <see cref="RaftNode"/> only; the core stays free of side effects.</summary>
internal sealed class RaftMetrics : IDisposable
{
    public const string MeterName = "Raft";

    private readonly Meter _meter;
    private readonly bool _ownsMeter;

    public RaftMetrics(IMeterFactory? factory, int nodeId, Func<RaftStatus> status)
    {
        var tags = new KeyValuePair<string, object?>[] { new("raft.node_id", nodeId) };
        if (factory is not null)
        {
            _meter = factory.Create(new MeterOptions(MeterName) { Tags = tags });
        }
        else
        {
            _meter = new Meter(MeterName, null, tags);
            _ownsMeter = true;
        }
        Elections = _meter.CreateCounter<long>("raft.elections", "{election}", "Elections this node started as a candidate.");
        RoleChanges = _meter.CreateCounter<long>("raft.role_changes", "{change}", "Role changes of this node, tagged with the new role.");
        Proposals = _meter.CreateCounter<long>("raft.proposals", "{proposal}", "Proposals accepted by this node as leader.");
        RejectedMessages = _meter.CreateCounter<long>("raft.messages.rejected", "{message}", "Inbound messages the core refused as impossible from a correct member (a buggy or hostile peer), tagged with the message type.");
        AppendDuration = _meter.CreateHistogram<double>("raft.append.duration", "s", "Time to make a batch of entries durable.");
        ApplyDuration = _meter.CreateHistogram<double>("raft.apply.duration", "s", "Time to apply a batch of committed entries.");
        _meter.CreateObservableGauge("raft.term", () => status().Term, "{term}", "The node's current term.");
        _meter.CreateObservableGauge("raft.commit_index", () => status().CommitIndex, "{index}", "The highest index known committed.");
        _meter.CreateObservableGauge("raft.applied_index", () => status().AppliedIndex, "{index}", "The highest index applied to the state machine.");
    }

    public Counter<long> Elections { get; }

    public Counter<long> RejectedMessages { get; }

    public Counter<long> RoleChanges { get; }

    public Counter<long> Proposals { get; }

    public Histogram<double> AppendDuration { get; }

    public Histogram<double> ApplyDuration { get; }

    public void Dispose()
    {
        if (_ownsMeter)
            _meter.Dispose();
    }
}
