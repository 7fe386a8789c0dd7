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
public sealed class RaftStateMachine<TCommand, TResult> : IStateMachine, ICommandValidator, ITypedStateMachineAdapter
{
    /// <summary>Creates the adapter.</summary>
    /// <param name="stateMachine">The host's typed state machine.</param>
    /// <param name="commandSerializer">Reads and writes commands; the same format on every node.</param>
    public RaftStateMachine(IStateMachine<TCommand, TResult> stateMachine, IRaftSerializer<TCommand> commandSerializer)
    {
        ArgumentNullException.ThrowIfNull(stateMachine);
        ArgumentNullException.ThrowIfNull(commandSerializer);
        StateMachine = stateMachine;
        CommandSerializer = commandSerializer;
    }

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
