using System.Buffers;
using System.Diagnostics.CodeAnalysis;

namespace Raft;

// Lets RaftNode.QueryAsync find the host's typed state machine inside the adapter.
internal interface ITypedStateMachineAdapter
{
    object Inner { get; }
}

/// <summary>
/// Adapts an <see cref="IStateMachine{TCommand, TResult}"/> to the byte-level
/// <see cref="IStateMachine"/> a <see cref="RaftNode"/> applies to: commands are read with the
/// serializer the host chose, and the typed result goes back to the proposer.
/// </summary>
/// <remarks>
/// It is also the node's <see cref="ICommandValidator"/>: a command the serializer cannot read
/// (proposed as raw bytes through <see cref="RaftNode.ProposeAsync"/>) is refused before it is
/// appended, with <see cref="InvalidCommandException"/> naming the reason, rather than stopping every
/// node that would apply it. That costs one extra deserialization per command on each node.
/// </remarks>
/// <typeparam name="TCommand">The commands.</typeparam>
/// <typeparam name="TResult">The results.</typeparam>
public sealed class RaftStateMachine<TCommand, TResult> : IStateMachine, ICommandValidator, ISessionResultSerializer, ITypedStateMachineAdapter
{
    /// <summary>Creates the adapter.</summary>
    /// <param name="stateMachine">The host's typed state machine.</param>
    /// <param name="commandSerializer">Reads and writes commands; the same format on every node.</param>
    public RaftStateMachine(IStateMachine<TCommand, TResult> stateMachine, IRaftSerializer<TCommand> commandSerializer)
        : this(stateMachine, commandSerializer, resultSerializer: null)
    {
    }

    /// <summary>Creates the adapter, with a serializer for results that exactly-once sessions keep for retries.</summary>
    /// <param name="stateMachine">The host's typed state machine.</param>
    /// <param name="commandSerializer">Reads and writes commands; the same format on every node.</param>
    /// <param name="resultSerializer">
    /// Writes and reads results, so that a retried session command (<see cref="RaftSession"/>) gets its
    /// first <typeparamref name="TResult"/> back on any node, after snapshots too; it must be
    /// deterministic. Null: only results of the types sessions save by themselves are kept (see
    /// <see cref="ISessionResultSerializer"/>).
    /// </param>
    public RaftStateMachine(IStateMachine<TCommand, TResult> stateMachine, IRaftSerializer<TCommand> commandSerializer, IRaftSerializer<TResult>? resultSerializer)
    {
        ArgumentNullException.ThrowIfNull(stateMachine);
        ArgumentNullException.ThrowIfNull(commandSerializer);
        StateMachine = stateMachine;
        CommandSerializer = commandSerializer;
        ResultSerializer = resultSerializer;
    }

    /// <summary>The result serializer sessions use, or null.</summary>
    public IRaftSerializer<TResult>? ResultSerializer { get; }

    /// <summary>Writes a <typeparamref name="TResult"/> with <see cref="ResultSerializer"/>, when there is one.</summary>
    /// <param name="result">A result <see cref="ApplyAsync"/> returned.</param>
    /// <param name="destination">Where the bytes go.</param>
    /// <returns>False when there is no result serializer or the result is not a <typeparamref name="TResult"/> (the node's built-in encodings then apply).</returns>
    public bool TryWriteResult(object? result, IBufferWriter<byte> destination)
    {
        if (ResultSerializer is null || result is not TResult typed)
            return false;
        ResultSerializer.Serialize(typed, destination);
        return true;
    }

    /// <summary>Reads a result <see cref="TryWriteResult"/> wrote.</summary>
    /// <param name="data">Its bytes.</param>
    /// <returns>The <typeparamref name="TResult"/>.</returns>
    public object? ReadResult(ReadOnlySpan<byte> data) =>
        (ResultSerializer ?? throw new InvalidOperationException("This adapter has no result serializer, so it wrote no session results.")).Deserialize(data);

    /// <summary>The host's typed state machine.</summary>
    public IStateMachine<TCommand, TResult> StateMachine { get; }

    /// <summary>The command serializer.</summary>
    public IRaftSerializer<TCommand> CommandSerializer { get; }

    object ITypedStateMachineAdapter.Inner => StateMachine;

    /// <summary>Serializes a command into a new array, as <see cref="RaftClient{TCommand, TResult}"/> proposes it.</summary>
    /// <param name="command">The command.</param>
    /// <returns>The command's bytes.</returns>
    public byte[] Serialize(TCommand command)
    {
        var buffer = new ArrayBufferWriter<byte>(64);
        CommandSerializer.Serialize(command, buffer);
        return buffer.WrittenSpan.ToArray();
    }

    /// <inheritdoc />
    public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
    {
        TCommand command;
        try
        {
            command = CommandSerializer.Deserialize(entry.Data.Span);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Validation refuses such commands before they are appended; reaching this means the
            // serializers of two nodes disagree (a format change without compatibility).
            throw new InvalidOperationException(
                $"The committed command at index {entry.Index} cannot be read as a {typeof(TCommand).Name}: {ex.Message}", ex);
        }
        return ValueTask.FromResult<object?>(StateMachine.Apply(command, entry.Index));
    }

    /// <inheritdoc />
    public ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) =>
        StateMachine.WriteSnapshotAsync(destination, cancellationToken);

    /// <inheritdoc />
    public ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default) =>
        StateMachine.RestoreSnapshotAsync(source, cancellationToken);

    /// <inheritdoc />
    public bool TryValidate(ReadOnlySpan<byte> command, [NotNullWhen(false)] out string? error)
    {
        try
        {
            CommandSerializer.Deserialize(command);
            error = null;
            return true;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            error = $"the command cannot be read as a {typeof(TCommand).Name}: {ex.GetType().Name}: {ex.Message}";
            return false;
        }
    }
}
