namespace Raft.ClusterBenchmark;

/// <summary>A 3-node cluster running in this process, ready to take proposals on its leader.</summary>
internal interface IClusterUnderTest : IAsyncDisposable
{
    /// <summary>"ours" or "DotNext".</summary>
    string Side { get; }

    /// <summary>Starts the three nodes and waits until a leader is elected.</summary>
    Task StartAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Proposes <paramref name="payload"/> on the current leader and completes once it is committed
    /// and applied to the leader's state machine; fails when the node it tried is not the leader or
    /// the cluster is busy. Returns the library's own task as is: the harness adds no allocation.
    /// </summary>
    ValueTask ProposeAsync(ReadOnlyMemory<byte> payload);

    /// <summary>Called after a proposal failed with <paramref name="error"/>: re-points the cluster at the leader it can find.</summary>
    void OnProposeFailed(Exception error);

    /// <summary>How many commands each node's state machine has applied so far, node by node.</summary>
    IReadOnlyList<long> AppliedCommands { get; }

    /// <summary>How many times leadership moved after the first leader was elected.</summary>
    int LeaderChanges { get; }
}

/// <summary>A state machine for the benchmark: counts commands and bytes, keeps nothing else.</summary>
internal sealed class CountingState
{
    private long _commands;
    private long _bytes;

    public long Commands => Volatile.Read(ref _commands);

    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>Called by one apply loop at a time.</summary>
    public void Apply(long length)
    {
        Volatile.Write(ref _commands, _commands + 1);
        Volatile.Write(ref _bytes, _bytes + length);
    }

    public void Restore(long commands, long bytes)
    {
        Volatile.Write(ref _commands, commands);
        Volatile.Write(ref _bytes, bytes);
    }
}
