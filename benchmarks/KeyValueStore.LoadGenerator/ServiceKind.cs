namespace Raft.Benchmarks.LoadGenerator;

/// <summary>
/// A key-value service of the sample's HTTP contract the load generator can start: its name on the
/// command line, where its built assembly lives (<c>FOLDER/bin/CONFIG/TFM/DLL</c> under the repository root).
/// </summary>
internal sealed record ServiceKind(string Name, string Folder, string Dll, string Description)
{
    /// <summary>The sample (samples/KeyValueStore): this library's RaftNode, fsynced file log.</summary>
    public static readonly ServiceKind Ours = new("ours", "samples/KeyValueStore", "KeyValueStore.dll",
        "the sample (samples/KeyValueStore): this library, fsynced file log, linearizable reads, followers forward to the leader");

    /// <summary>benchmarks/DotNextKeyValueService: DotNext.Net.Cluster's Raft and WriteAheadLog.</summary>
    public static readonly ServiceKind DotNext = new("dotnext", "benchmarks/DotNextKeyValueService", "DotNextKeyValueService.dll",
        "benchmarks/DotNextKeyValueService: DotNext.Net.Cluster 6.12.2 Raft (TCP), WriteAheadLog, read barrier, followers relay writes over HTTP");

    /// <summary>benchmarks/KeyValueFloorService: one dictionary per process, no consensus.</summary>
    public static readonly ServiceKind Floor = new("floor", "benchmarks/KeyValueFloorService", "KeyValueFloorService.dll",
        "benchmarks/KeyValueFloorService: a dictionary per process, no consensus, no disk (each node independent: not checked for convergence)");

    public static readonly IReadOnlyList<ServiceKind> All = [Ours, DotNext, Floor];

    /// <summary>Whether the nodes replicate one state, so that convergence and final values can be checked.</summary>
    public bool Replicated => this != Floor;

    /// <summary>Reads one name: ours, dotnext or floor.</summary>
    /// <exception cref="FormatException">Any other name.</exception>
    public static ServiceKind Parse(string name) =>
        All.FirstOrDefault(s => string.Equals(s.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
        ?? throw new FormatException($"--services: unknown service '{name}'; use ours, dotnext and/or floor.");
}
