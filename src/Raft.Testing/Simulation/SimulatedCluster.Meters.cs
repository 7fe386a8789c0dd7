using System.Diagnostics.Metrics;

namespace Raft.Testing.Simulation;

public sealed partial class SimulatedCluster
{
    // The nodes' meters, disposed when the run ends. A Meter stays in the process-wide list of meters
    // until it is disposed, and its observable gauges reach the node (and through it the node's
    // stores and disk); crashed incarnations are abandoned, never disposed, so without this a test
    // process running thousands of seeds kept every node it ever created (and ran out of memory
    // with file logs).
    private readonly List<Meter> _meters = [];

    /// <summary>Meters of this run's nodes not yet disposed (tests).</summary>
    internal int LiveMeters => _meters.Count;

    private void DisposeMeters()
    {
        foreach (var meter in _meters)
            meter.Dispose();
        _meters.Clear();
    }

    // Hands a node's meter to the run, which disposes it (the node does not own it).
    private sealed class SimulationMeters(List<Meter> meters) : IMeterFactory
    {
        public Meter Create(MeterOptions options)
        {
            ArgumentNullException.ThrowIfNull(options);
            options.Scope ??= this;
            var meter = new Meter(options);
            meters.Add(meter);
            return meter;
        }

        public void Dispose()
        {
        }
    }
}
