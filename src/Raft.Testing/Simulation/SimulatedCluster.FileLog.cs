namespace Raft.Testing.Simulation;

public sealed partial class SimulatedCluster
{
    // The node's log: the in-memory crash-faithful store, or (SimulationOptions.FileLogStore) the
    // shipped FileLogStore over a crash-faithful file system. The file log's randomness (its settings,
    // and what each power failure keeps) comes from its own generator, so that the main one, and with
    // it every seed's run with the in-memory store, is unchanged.
    private ISimulatedLog CreateLog(int nodeId)
    {
        if (!_options.FileLogStore)
            return new CrashFaithfulLogStore();
        var random = new Random(unchecked((_options.Seed * 7919) + (nodeId * 104_729)) ^ 0xF11E); // not HashCode: it differs per process
        // Small segments so that rollover, suffix truncation across segments and compaction that
        // deletes whole segments all happen; a cache of 0 or 1 KiB so that reads go to the files.
        var options = new FileLogStoreOptions
        {
            SegmentSize = new[] { FileLogStoreOptions.MinSegmentSize, 512L, 4096L }[random.Next(3)],
            CacheBytes = new[] { 0L, 1024L, FileLogStoreOptions.DefaultCacheBytes }[random.Next(3)],
#if RAFT_MUTANTS
            Mutations = _options.Mutations,
#endif
        };
        return new SimulatedFileLog(nodeId, random, options, (invariant, detail, inner) => Violation(invariant, $"node {nodeId}: {detail}", inner));
    }
}
