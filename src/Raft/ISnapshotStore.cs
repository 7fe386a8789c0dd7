namespace Raft;

/// <summary>What a snapshot covers: the log up to and including <paramref name="Index"/>.</summary>
/// <param name="Index">The last log index the snapshot reflects.</param>
/// <param name="Term">The term of the entry at <paramref name="Index"/>.</param>
/// <param name="Configuration">The configuration in force as of <paramref name="Index"/> (the last configuration entry at or before it): once the log is compacted, the snapshot is where a node finds its members.</param>
public sealed record SnapshotMetadata(long Index, long Term, ClusterConfiguration Configuration)
{
    /// <summary>A snapshot whose configuration is <paramref name="Voters"/>, all voters without addresses.</summary>
    /// <param name="Index">The last log index the snapshot reflects.</param>
    /// <param name="Term">The term of the entry at <paramref name="Index"/>.</param>
    /// <param name="Voters">The voters' ids.</param>
    /// <exception cref="ArgumentException">The ids do not form a valid configuration.</exception>
#pragma warning disable CA1725, IDE1006 // named like the record's positional parameters, so named arguments work with either constructor
    public SnapshotMetadata(long Index, long Term, IReadOnlyList<int> Voters)
        : this(Index, Term, ClusterConfiguration.FromVoters(Voters))
#pragma warning restore CA1725, IDE1006
    {
    }
}

/// <summary>
/// Where a node keeps its state machine snapshots. The library ships an in-memory store
/// (Raft.Testing) and a durable file store.
/// </summary>
/// <remarks>
/// <para><b>Atomicity</b>: a snapshot becomes <see cref="Latest"/> only when its writer is
/// committed, durably; a crash before that leaves the previous snapshot in place.</para>
/// <para><b>Threading</b>: <see cref="Latest"/>, <see cref="LatestLength"/> and
/// <see cref="Read"/> are called from the node's event loop (to stream the snapshot to a follower)
/// while a new snapshot may be written from the apply loop; implementations must keep the snapshot
/// being read readable until the reader moves on (a reader notices a new <see cref="Latest"/> and
/// restarts).</para>
/// </remarks>
public interface ISnapshotStore
{
    /// <summary>The newest committed snapshot, or null when there is none.</summary>
    SnapshotMetadata? Latest { get; }

    /// <summary>The length in bytes of <see cref="Latest"/>'s data (0 when there is none).</summary>
    long LatestLength { get; }

    /// <summary>Reads bytes of the latest snapshot's data, synchronously.</summary>
    /// <param name="index">The <see cref="SnapshotMetadata.Index"/> the caller expects; if the latest snapshot has another index, nothing is read.</param>
    /// <param name="offset">Where to read from.</param>
    /// <param name="destination">Where the bytes go.</param>
    /// <returns>The number of bytes read: less than the destination's length only at the end; -1 when <paramref name="index"/> is no longer the latest.</returns>
    int Read(long index, long offset, Span<byte> destination);

    /// <summary>Opens the latest snapshot's data for reading, to restore a state machine.</summary>
    /// <returns>A stream the caller disposes, or null when there is no snapshot.</returns>
    Stream? OpenLatest();

    /// <summary>Starts writing a new snapshot. It becomes <see cref="Latest"/> once <see cref="ISnapshotWriter.CommitAsync"/> completes; disposing the writer without committing discards it.</summary>
    /// <param name="metadata">What the snapshot covers.</param>
    /// <param name="cancellationToken">Cancels the creation.</param>
    /// <returns>The writer.</returns>
    ValueTask<ISnapshotWriter> CreateAsync(SnapshotMetadata metadata, CancellationToken cancellationToken = default);
}

/// <summary>A snapshot being written. Write the data to <see cref="Stream"/>, then commit.</summary>
public interface ISnapshotWriter : IAsyncDisposable
{
    /// <summary>What the snapshot covers.</summary>
    SnapshotMetadata Metadata { get; }

    /// <summary>Where the data goes. Do not dispose it.</summary>
    Stream Stream { get; }

    /// <summary>Makes the snapshot durable and the store's <see cref="ISnapshotStore.Latest"/> (unless a newer one is already there).</summary>
    /// <param name="cancellationToken">Cancels the commit; the snapshot is then discarded.</param>
    /// <returns>A task that completes once the snapshot is durable.</returns>
    ValueTask CommitAsync(CancellationToken cancellationToken = default);
}
