namespace Raft;

/// <summary>
/// A log store whose compaction has a slow first step that may run off the node's loop: making the
/// compaction point durable (<see cref="FileLogStore"/>: a metadata file and its fsyncs). The node
/// calls <see cref="PrepareCompaction"/> on the thread pool, then <see cref="ILogStore.CompactAsync"/>
/// at the same index on its loop, which then only drops what the point covers. The simulator's
/// file log forwards it, so simulated nodes take the same two steps.
/// </summary>
internal interface ICompactionPreparer
{
    /// <summary>
    /// Records <paramref name="index"/> durably as the compaction point without changing the log; does
    /// nothing when the index is no longer in the log. May run while an append is in progress. The
    /// index must be committed and covered by a durable snapshot.
    /// </summary>
    void PrepareCompaction(long index);
}
