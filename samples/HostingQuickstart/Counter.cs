using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using Raft;

namespace HostingQuickstart;

/// <summary>A replicated counter: every command adds its 8-byte value; the result is the new total.</summary>
public sealed class Counter : IStateMachine, ICommandValidator
{
    private long _total;

    /// <summary>The current total on this node.</summary>
    public long Total => Volatile.Read(ref _total);

    /// <inheritdoc />
    public bool TryValidate(ReadOnlySpan<byte> command, [NotNullWhen(false)] out string? error)
    {
        error = command.Length == 8 ? null : $"A counter command is an 8-byte little-endian delta, not {command.Length} bytes.";
        return error is null;
    }

    /// <inheritdoc />
    public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<object?>(Interlocked.Add(ref _total, BinaryPrimitives.ReadInt64LittleEndian(entry.Data.Span)));

    /// <inheritdoc />
    public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) =>
        await destination.WriteAsync(BitConverter.GetBytes(Total), cancellationToken);

    /// <inheritdoc />
    public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
    {
        var buffer = new byte[8];
        await source.ReadExactlyAsync(buffer, cancellationToken);
        Volatile.Write(ref _total, BitConverter.ToInt64(buffer));
    }
}
