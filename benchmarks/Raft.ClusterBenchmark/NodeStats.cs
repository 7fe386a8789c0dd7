using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Raft.ClusterBenchmark;

/// <summary>
/// Opt-in (<c>RAFT_BENCH_STATS=1</c>) per-node counters of our side, read from the nodes' own
/// instruments (meter <see cref="RaftTelemetry.MeterName"/>) over the measured window: log appends
/// (batches) and fsyncs, messages and bytes sent. Listening turns the instruments on, which costs a
/// little CPU: runs that report CPU per entry should leave it off.
/// </summary>
internal sealed class NodeStats : IDisposable
{
    private static readonly string[] Counted =
    [
        "raft.append.duration", "raft.storage.fsync.duration", "raft.transport.messages.sent",
        "raft.transport.bytes.sent", "raft.apply.duration", "raft.proposals",
    ];

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(string Name, object? Node), long[]> _totals = new();

    public static bool Enabled => Environment.GetEnvironmentVariable("RAFT_BENCH_STATS") == "1";

    public NodeStats()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == RaftTelemetry.MeterName && Counted.Contains(instrument.Name))
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) => Count(instrument, value));
        _listener.SetMeasurementEventCallback<double>((instrument, _, _, _) => Count(instrument, 1));
        _listener.Start();
    }

    private void Count(Instrument instrument, long value)
    {
        object? node = null;
        foreach (var tag in instrument.Meter.Tags ?? [])
        {
            if (tag.Key == RaftTelemetry.NodeIdTag)
                node = tag.Value;
        }
        var total = _totals.GetOrAdd((instrument.Name, node), static _ => new long[1]);
        Interlocked.Add(ref total[0], value);
    }

    /// <summary>A copy of the totals so far.</summary>
    public Dictionary<(string Name, object? Node), long> Snapshot() =>
        _totals.ToDictionary(p => p.Key, p => Interlocked.Read(ref p.Value[0]));

    /// <summary>Prints, per node, what happened between two snapshots, per committed proposal and per batch.</summary>
    public static void Print(Dictionary<(string Name, object? Node), long> before, Dictionary<(string Name, object? Node), long> after, long committed)
    {
        foreach (var node in after.Keys.Select(k => k.Node).Distinct().OrderBy(n => n?.ToString(), StringComparer.Ordinal))
        {
            long Delta(string name) => after.GetValueOrDefault((name, node)) - before.GetValueOrDefault((name, node));
            var appends = Delta("raft.append.duration");
            var messages = Delta("raft.transport.messages.sent");
            Console.WriteLine(
                $"    node {node}: appends {appends:N0} ({(appends > 0 ? (double)committed / appends : 0):N1} proposals/append), fsyncs {Delta("raft.storage.fsync.duration"):N0}, "
                + $"apply batches {Delta("raft.apply.duration"):N0}, messages sent {messages:N0} ({(double)messages / committed:N3}/proposal, "
                + $"{(messages > 0 ? (double)Delta("raft.transport.bytes.sent") / messages : 0):N0} B/message)");
        }
    }

    public void Dispose() => _listener.Dispose();
}
