using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Time.Testing;
using Raft.Testing;
using Raft.Tests.Node;

namespace Raft.Tests.Diagnostics;

/// <summary>
/// The telemetry tests listen to process-wide sources (every meter named Raft.Node, the one
/// ActivitySource): they run alone, so spans and measurements of other tests' nodes never mix in.
/// </summary>
[CollectionDefinition(nameof(TelemetryCollection), DisableParallelization = true)]
public sealed class TelemetryCollection;

/// <summary>An <see cref="IMeterFactory"/> whose meters carry it as their scope, so a listener can pick out this test's meters.</summary>
internal sealed class TestMeterFactory : IMeterFactory
{
    private readonly ConcurrentBag<Meter> _meters = [];

    public Meter Create(MeterOptions options)
    {
        var meter = new Meter(options.Name, options.Version, options.Tags, scope: this);
        _meters.Add(meter);
        return meter;
    }

    public void Dispose()
    {
        foreach (var meter in _meters)
            meter.Dispose();
    }
}

/// <summary>One measurement: which node's meter, which instrument, the value and the measurement's own tags.</summary>
internal sealed record Recorded(int NodeId, string Meter, string? MeterVersion, string Instrument, string? Unit, double Value, IReadOnlyDictionary<string, object?> Tags)
{
    public object? Tag(string name) => Tags.TryGetValue(name, out var value) ? value : null;
}

/// <summary>Records every measurement of the meters one <see cref="TestMeterFactory"/> created.</summary>
internal sealed class MetricsRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<Recorded> _recorded = new();

    public MetricsRecorder(IMeterFactory factory)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, factory))
            {
                lock (Published)
                    Published.Add(instrument);
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Add(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Add(instrument, value, tags));
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => Add(instrument, value, tags));
        _listener.Start();
    }

    public List<Instrument> Published { get; } = [];

    public IReadOnlyList<Recorded> All => [.. _recorded];

    public IReadOnlyList<Recorded> Of(string instrument, int? nodeId = null) =>
        [.. _recorded.Where(r => r.Instrument == instrument && (nodeId is null || r.NodeId == nodeId))];

    /// <summary>Reads the observable gauges now; returns what they reported.</summary>
    public IReadOnlyList<Recorded> Observe(string instrument, int? nodeId = null)
    {
        _recorded.Clear();
        _listener.RecordObservableInstruments();
        return Of(instrument, nodeId);
    }

    public void Clear() => _recorded.Clear();

    public void Dispose() => _listener.Dispose();

    private void Add<T>(Instrument instrument, T value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        where T : struct, IConvertible
    {
        var nodeId = instrument.Meter.Tags?.FirstOrDefault(t => t.Key == RaftTelemetry.NodeIdTag).Value is int id ? id : 0;
        var copy = new Dictionary<string, object?>();
        foreach (var tag in tags)
            copy[tag.Key] = tag.Value;
        _recorded.Enqueue(new Recorded(nodeId, instrument.Meter.Name, instrument.Meter.Version, instrument.Name, instrument.Unit, value.ToDouble(null), copy));
    }
}

/// <summary>Collects the spans of <see cref="RaftTelemetry.ActivitySourceName"/> (all data, all sampled).</summary>
internal sealed class SpanRecorder : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly ConcurrentQueue<Activity> _stopped = new();

    public SpanRecorder()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is RaftTelemetry.ActivitySourceName or TestSourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity => _stopped.Enqueue(activity),
        };
        ActivitySource.AddActivityListener(_listener);
    }

    private const string TestSourceName = "Raft.Tests.Telemetry";

    /// <summary>A source for the test's own parent spans.</summary>
    public static ActivitySource TestSource { get; } = new(TestSourceName);

    public IReadOnlyList<Activity> Stopped(string name) => [.. _stopped.Where(a => a.OperationName == name)];

    public void Dispose() => _listener.Dispose();
}

/// <summary>
/// Three (or more) <see cref="RaftNode"/>s on an <see cref="InMemoryNetwork"/> with a
/// <see cref="FakeTimeProvider"/> and a <see cref="TestMeterFactory"/>; as the node tests' cluster,
/// virtual time moves a tick at a time while a condition is awaited.
/// </summary>
internal sealed class TelemetryCluster : IAsyncDisposable
{
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan RealTimeGuard = TimeSpan.FromSeconds(30);
    private readonly Dictionary<int, RaftNode> _nodes = [];
    private readonly int[] _members;
    private readonly bool _forward;
    private readonly long _snapshotInterval;

    private TelemetryCluster(int size, bool forward, long snapshotInterval)
    {
        _members = [.. Enumerable.Range(1, size)];
        _forward = forward;
        _snapshotInterval = snapshotInterval;
        Network = new InMemoryNetwork(seed: 7, Time);
    }

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public InMemoryNetwork Network { get; }

    public TestMeterFactory Meters { get; } = new();

    public Dictionary<int, ListStateMachine> Machines { get; } = [];

    public RaftNode this[int id] => _nodes[id];

    public IEnumerable<RaftNode> Nodes => _nodes.Values;

    public static async Task<TelemetryCluster> StartAsync(int size = 3, bool forwardToLeader = false, long snapshotInterval = 0)
    {
        var cluster = new TelemetryCluster(size, forwardToLeader, snapshotInterval);
        foreach (var id in cluster._members)
        {
            var machine = new ListStateMachine();
            cluster.Machines[id] = machine;
            cluster._nodes[id] = new RaftNode(cluster.Options(id), cluster.Network.CreateTransport(id), new InMemoryLogStore(), machine, new InMemorySnapshotStore(), timeProvider: cluster.Time, meterFactory: cluster.Meters);
        }
        foreach (var node in cluster._nodes.Values)
            await node.StartAsync();
        return cluster;
    }

    public RaftNodeOptions Options(int id) => new()
    {
        NodeId = id,
        Members = _members,
        TickInterval = Tick,
        HeartbeatInterval = TimeSpan.FromMilliseconds(50),
        ElectionTimeoutMin = TimeSpan.FromMilliseconds(300),
        ElectionTimeoutMax = TimeSpan.FromMilliseconds(600),
        RandomSeed = 31 + id,
        ForwardToLeader = _forward,
        SnapshotInterval = _snapshotInterval,
        SnapshotTrailingEntries = 0,
    };

    public Task RunUntilAsync(Func<bool> condition, string what, double maxVirtualSeconds = 30) =>
        VirtualTime.RunUntilAsync(Time, Tick, condition, what, TimeSpan.FromSeconds(maxVirtualSeconds), RealTimeGuard);

    public async Task<T> RunAsync<T>(Task<T> task, string what)
    {
        await RunUntilAsync(() => task.IsCompleted, what);
        return await task.WaitAsync(RealTimeGuard);
    }

    public async Task RunAsync(Task task, string what)
    {
        await RunUntilAsync(() => task.IsCompleted, what);
        await task.WaitAsync(RealTimeGuard);
    }

    public async Task<RaftNode> LeaderAsync()
    {
        RaftNode? leader = null;
        await RunUntilAsync(() => (leader = VirtualTime.AgreedLeader(_nodes.Values)) is not null, "a leader that every node follows");
        return leader!;
    }

    public IEnumerable<RaftNode> Followers(RaftNode leader) => _nodes.Values.Where(n => n != leader);

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes.Values)
            await node.DisposeAsync().AsTask().WaitAsync(RealTimeGuard);
        Meters.Dispose();
    }
}
