namespace Raft;

/// <summary>The host's replicated state machine: what the log's committed commands are applied to.</summary>
/// <remarks>
/// <para><b>Determinism</b>: every node applies the same commands in the same order, so
/// <see cref="ApplyAsync"/> must depend only on the state and the entry (no clock, no randomness,
/// no I/O whose result can differ between nodes).</para>
/// <para><b>Threading</b>: the node calls <see cref="ApplyAsync"/>, <see cref="WriteSnapshotAsync"/>
/// and <see cref="RestoreSnapshotAsync"/> one at a time, from a single apply loop separate from the
/// consensus loop, so a slow state machine delays results but never heartbeats.</para>
/// <para><b>Errors</b>: an exception from <see cref="ApplyAsync"/> stops the node (it cannot skip a
/// committed command and stay consistent with the others). Expected outcomes, such as a failed
/// compare-and-swap, are results, not exceptions.</para>
/// </remarks>
public interface IStateMachine
{
    /// <summary>Applies one committed command. Called exactly once per committed <see cref="EntryKind.Command"/> entry, in index order.</summary>
    /// <param name="entry">The committed entry. Its <see cref="LogEntry.Data"/> is immutable and may be kept.</param>
    /// <param name="cancellationToken">Cancelled when the node shuts down.</param>
    /// <returns>The command's result, handed to the proposer on the leader; discarded elsewhere.</returns>
    ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default);

    /// <summary>Writes the whole current state to <paramref name="destination"/>.</summary>
    /// <param name="destination">Where the snapshot goes. Do not dispose it.</param>
    /// <param name="cancellationToken">Cancels the snapshot.</param>
    /// <returns>A task that completes when the snapshot is written.</returns>
    ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default);

    /// <summary>Replaces the whole state with the snapshot read from <paramref name="source"/>.</summary>
    /// <param name="source">A snapshot written by <see cref="WriteSnapshotAsync"/>. Do not dispose it.</param>
    /// <param name="cancellationToken">Cancels the restore.</param>
    /// <returns>A task that completes when the state is restored.</returns>
    ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default);
}
