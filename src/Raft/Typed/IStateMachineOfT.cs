namespace Raft;

/// <summary>
/// A replicated state machine with typed commands and results: wrap it in a
/// <see cref="RaftStateMachine{TCommand, TResult}"/> to give it to a <see cref="RaftNode"/>, and
/// propose through a <see cref="RaftClient{TCommand, TResult}"/>.
/// </summary>
/// <remarks>
/// The contract is <see cref="IStateMachine"/>'s: <see cref="Apply"/> is deterministic, and the node
/// calls the three methods one at a time from its apply loop. <see cref="RaftNode.QueryAsync{TState, TResult}"/>
/// runs reads on that loop too, between two applies, so the state needs no locks when it is only read
/// through <c>QueryAsync</c>. Anything else that reads it (a property read from another thread) runs
/// concurrently with <see cref="Apply"/> and needs its own synchronization.
/// </remarks>
/// <typeparam name="TCommand">The commands.</typeparam>
/// <typeparam name="TResult">What applying a command returns to its proposer.</typeparam>
public interface IStateMachine<TCommand, TResult>
{
    /// <summary>Applies one committed command, exactly once, in log order.</summary>
    /// <param name="command">The command, as the leader's serializer read it.</param>
    /// <param name="index">The command's log index (increasing; a stable id for the command).</param>
    /// <returns>The result, handed to the proposer (on the node that proposed it); discarded elsewhere.</returns>
    TResult Apply(TCommand command, long index);

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
