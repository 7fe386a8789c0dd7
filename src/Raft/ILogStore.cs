namespace Raft;

/// <summary>
/// The durable Raft log and hard state of one node. The library ships an in-memory store
/// (Raft.Testing) and a durable file store.
/// </summary>
/// <remarks>
/// <para><b>Reads are synchronous</b> and used by the consensus core from the node's event loop;
/// they must be fast (an in-memory index, a cache of recent entries). <b>Writes are asynchronous</b>
/// and the node never issues two at once: each completes before the next starts. Reads are not
/// issued while a write is in flight, unless the store sets <see cref="SupportsReadsDuringAppend"/>.</para>
/// <para><b>Durability</b>: a write's task completes only once the data survives a crash (fsync).
/// The node sends a vote or an append acknowledgement only after that, so a store that completes
/// early breaks Raft's safety on power loss.</para>
/// <para><b>Layout</b>: the log holds the contiguous entries [<see cref="FirstIndex"/>,
/// <see cref="LastIndex"/>]; the entries before <see cref="FirstIndex"/> were compacted (into a
/// snapshot), but the term of the entry at <see cref="FirstIndex"/> - 1 is still known. An empty
/// log has <see cref="LastIndex"/> == <see cref="FirstIndex"/> - 1.</para>
/// <para><b>Errors</b>: an I/O failure or detected corruption is thrown; the node then stops and
/// surfaces the exception through the node's <c>Completion</c> task rather than guessing.</para>
/// </remarks>
public interface ILogStore
{
    /// <summary>The last hard state saved with <see cref="SaveHardStateAsync"/>, or the default (term 0, no vote) for a new store.</summary>
    HardState HardState { get; }

    /// <summary>The index of the first entry held. 1 for a log that was never compacted.</summary>
    long FirstIndex { get; }

    /// <summary>The index of the last entry held, or <see cref="FirstIndex"/> - 1 when the log is empty.</summary>
    long LastIndex { get; }

    /// <summary>
    /// Whether reads (<see cref="FirstIndex"/>, <see cref="LastIndex"/>, <see cref="GetTerm"/>,
    /// <see cref="ReadEntries"/>) may run on another thread while an <see cref="AppendAsync"/> that
    /// only adds entries after <see cref="LastIndex"/> is in progress. They must then see the log
    /// either before or after that append, never a torn state; they are never issued during any other
    /// write. When true, <see cref="RaftNode"/> pipelines its log writes: it keeps handling messages
    /// and proposals while such an append is being made durable. The default is false.
    /// </summary>
    bool SupportsReadsDuringAppend => false;

    /// <summary>Returns the term of the entry at <paramref name="index"/>.</summary>
    /// <param name="index">An index in [<see cref="FirstIndex"/> - 1, <see cref="LastIndex"/>]; <see cref="FirstIndex"/> - 1 gives the compaction point's term (0 for index 0).</param>
    /// <returns>The term.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is outside that range.</exception>
    long GetTerm(long index);

    /// <summary>
    /// Appends the entries in [<paramref name="startIndex"/>, <paramref name="endIndex"/>) to
    /// <paramref name="destination"/>, stopping once their <see cref="LogEntry.Size"/> adds up to
    /// <paramref name="maxBytes"/>, but always at least one entry when the range is not empty.
    /// </summary>
    /// <param name="startIndex">The first index to read; at least <see cref="FirstIndex"/>.</param>
    /// <param name="endIndex">One past the last index to read; at most <see cref="LastIndex"/> + 1.</param>
    /// <param name="maxBytes">The soft size limit.</param>
    /// <param name="destination">Receives the entries in index order. The entries' buffers are immutable and may be kept.</param>
    /// <exception cref="ArgumentOutOfRangeException">The range is not within the log.</exception>
    void ReadEntries(long startIndex, long endIndex, long maxBytes, List<LogEntry> destination);

    /// <summary>
    /// Appends <paramref name="entries"/> durably. When the first entry's index is at or below
    /// <see cref="LastIndex"/>, every held entry from that index on is deleted first (a conflicting
    /// suffix), in the same durable step.
    /// </summary>
    /// <param name="entries">Contiguous entries; the first one's index is in [<see cref="FirstIndex"/>, <see cref="LastIndex"/> + 1]. Not empty.</param>
    /// <param name="cancellationToken">Cancels the write; the log is then left in a valid state that holds a prefix of what was asked.</param>
    /// <returns>A task that completes once the entries are durable.</returns>
    ValueTask AppendAsync(IReadOnlyList<LogEntry> entries, CancellationToken cancellationToken = default);

    /// <summary>Durably replaces the hard state.</summary>
    /// <param name="state">The new hard state.</param>
    /// <param name="cancellationToken">Cancels the write; the old or the new state is then kept, never a mix.</param>
    /// <returns>A task that completes once the state is durable.</returns>
    ValueTask SaveHardStateAsync(HardState state, CancellationToken cancellationToken = default);

    /// <summary>Discards the entries up to and including <paramref name="index"/>, which a snapshot now covers. <see cref="FirstIndex"/> becomes <paramref name="index"/> + 1.</summary>
    /// <param name="index">An index in [<see cref="FirstIndex"/> - 1, <see cref="LastIndex"/>].</param>
    /// <param name="cancellationToken">Cancels the compaction, which may then be partly done.</param>
    /// <returns>A task that completes once the compaction is durable.</returns>
    ValueTask CompactAsync(long index, CancellationToken cancellationToken = default);

    /// <summary>Discards the whole log and restarts it after a snapshot: afterwards <see cref="FirstIndex"/> is <paramref name="index"/> + 1, <see cref="LastIndex"/> is <paramref name="index"/>, and <c>GetTerm(index)</c> is <paramref name="term"/>.</summary>
    /// <param name="index">The last index the installed snapshot covers.</param>
    /// <param name="term">The term of that entry.</param>
    /// <param name="cancellationToken">Cancels the reset.</param>
    /// <returns>A task that completes once the reset is durable.</returns>
    ValueTask ResetAsync(long index, long term, CancellationToken cancellationToken = default);
}
