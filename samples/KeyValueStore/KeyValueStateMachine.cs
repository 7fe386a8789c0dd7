using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace Raft.Samples.KeyValueStore;

/// <summary>
/// The replicated dictionary: string keys to string values, changed only by committed
/// <see cref="KvCommand"/>s, in log order.
/// </summary>
/// <remarks>
/// <para>The node calls <see cref="ApplyAsync"/>, <see cref="WriteSnapshotAsync"/> and
/// <see cref="RestoreSnapshotAsync"/> one at a time from its apply loop; HTTP handlers read
/// concurrently through <see cref="TryGet"/>, so every access takes a short lock.</para>
/// <para>Snapshot format (little-endian): magic <c>KVS1</c> (u32), entry count (u32), then per
/// entry, in ordinal key order: key length (u32), key (UTF-8), value length (u32), value (UTF-8).
/// The same dictionary always gives the same bytes.</para>
/// <para>As an <see cref="ICommandValidator"/> it lets the leader refuse, before replication, any
/// bytes <see cref="ApplyAsync"/> would reject: both use <see cref="KvCommand.TryDecode"/>, so a
/// command that passes <see cref="TryValidate"/> always applies, and a malformed one never reaches
/// the log (where it would stop every replica that applies it, again after every restart).</para>
/// </remarks>
public sealed class KeyValueStateMachine : IStateMachine, ICommandValidator, ISessionResultSerializer
{
    private const uint SnapshotMagic = 0x3153564B; // "KVS1" read as little-endian
    private const int FlushBytes = 64 * 1024;
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Lock _gate = new();
    private Dictionary<string, string> _data = new(StringComparer.Ordinal);

    /// <summary>The number of keys.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
                return _data.Count;
        }
    }

    /// <summary>Reads a key from the local copy. Linearizable only after <see cref="RaftNode.ReadBarrierAsync"/> on the leader.</summary>
    public bool TryGet(string key, out string? value)
    {
        lock (_gate)
            return _data.TryGetValue(key, out value);
    }

    /// <summary>Copies the whole dictionary, in ordinal key order (for tests and diagnostics).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> ToList()
    {
        lock (_gate)
            return [.. _data.OrderBy(pair => pair.Key, StringComparer.Ordinal)];
    }

    /// <summary>
    /// Accepts exactly the byte strings <see cref="ApplyAsync"/> can apply: those that
    /// <see cref="KvCommand.TryDecode"/> reads as one whole command. Depends on the bytes only.
    /// </summary>
    /// <param name="command">The proposed command.</param>
    /// <param name="error">Why it was refused (starts with "Not a key-value command").</param>
    /// <returns>Whether the command can be replicated.</returns>
    public bool TryValidate(ReadOnlySpan<byte> command, [NotNullWhen(false)] out string? error) =>
        KvCommand.TryDecode(command, out _, out error);

    /// <inheritdoc />
    /// <exception cref="InvalidDataException">The entry is not a key-value command (<see cref="TryValidate"/> would have refused it).</exception>
    public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
    {
        // The leader refuses what TryValidate refuses, so this only happens for an entry written by
        // another program or a newer format: stopping the node is safer than skipping it.
        var command = KvCommand.Decode(entry.Data.Span);
        object? result = null;
        lock (_gate)
        {
            switch (command.Operation)
            {
                case KvOperation.Put:
                    _data[command.Key] = command.Value!;
                    break;
                case KvOperation.Delete:
                    _data.Remove(command.Key);
                    break;
                case KvOperation.CompareAndSwap:
                    var exists = _data.TryGetValue(command.Key, out var current);
                    var matches = command.Expected is null ? !exists : exists && string.Equals(current, command.Expected, StringComparison.Ordinal);
                    if (matches)
                        _data[command.Key] = command.Value!;
                    result = new CasResult(matches, matches ? command.Value : current);
                    break;
                case KvOperation.Increment:
                    _data.TryGetValue(command.Key, out var text);
                    long number = 0;
                    var done = (text is null || long.TryParse(text, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out number))
                        && !(command.Delta > 0 ? number > long.MaxValue - command.Delta : number < long.MinValue - command.Delta);
                    if (done)
                        _data[command.Key] = text = (number + command.Delta).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    result = new IncrementResult(done, text);
                    break;
            }
        }
        return ValueTask.FromResult(result);
    }

    /// <summary>
    /// Saves a <see cref="CasResult"/> or <see cref="IncrementResult"/> for exactly-once sessions
    /// (a retried write gets its first result back): kind u8 (1 cas, 2 increment), flag u8,
    /// has-current u8, then the current value in UTF-8. Other results are left to the library.
    /// </summary>
    /// <param name="result">A result of <see cref="ApplyAsync"/>.</param>
    /// <param name="destination">Where the bytes go.</param>
    /// <returns>Whether the result was written.</returns>
    public bool TryWriteResult(object? result, IBufferWriter<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var (kind, flag, current) = result switch
        {
            CasResult cas => ((byte)1, cas.Swapped, cas.Current),
            IncrementResult increment => ((byte)2, increment.Done, increment.Current),
            _ => ((byte)0, false, null),
        };
        if (kind == 0)
            return false;
        destination.Write([kind, flag ? (byte)1 : (byte)0, current is null ? (byte)0 : (byte)1]);
        if (current is not null)
            destination.Write(StrictUtf8.GetBytes(current));
        return true;
    }

    /// <summary>Reads a result written by <see cref="TryWriteResult"/>.</summary>
    /// <param name="data">The bytes.</param>
    /// <returns>The <see cref="CasResult"/> or <see cref="IncrementResult"/>.</returns>
    /// <exception cref="InvalidDataException">The bytes are not a saved result.</exception>
    public object? ReadResult(ReadOnlySpan<byte> data)
    {
        if (data.Length < 3 || data[0] is not (1 or 2))
            throw new InvalidDataException($"A saved key-value result of {data.Length} bytes has no valid kind.");
        var current = data[2] == 1 ? StrictUtf8.GetString(data[3..]) : null;
        return data[0] == 1 ? new CasResult(data[1] == 1, current) : new IncrementResult(data[1] == 1, current);
    }

    /// <inheritdoc />
    public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        KeyValuePair<string, string>[] pairs;
        lock (_gate)
            pairs = [.. _data];
        // Ordinal order makes the snapshot a function of the state alone.
        Array.Sort(pairs, static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        var buffer = new ArrayBufferWriter<byte>(FlushBytes + 1024);
        WriteUInt32(buffer, SnapshotMagic);
        WriteUInt32(buffer, (uint)pairs.Length);
        foreach (var (key, value) in pairs)
        {
            WriteString(buffer, key);
            WriteString(buffer, value);
            if (buffer.WrittenCount >= FlushBytes)
            {
                await destination.WriteAsync(buffer.WrittenMemory, cancellationToken);
                buffer.ResetWrittenCount();
            }
        }
        await destination.WriteAsync(buffer.WrittenMemory, cancellationToken);
    }

    /// <inheritdoc />
    public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        using var copy = new MemoryStream();
        await source.CopyToAsync(copy, cancellationToken);
        var restored = Parse(copy.GetBuffer().AsSpan(0, (int)copy.Length));
        lock (_gate)
            _data = restored;
    }

    private static Dictionary<string, string> Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length < 8 || BinaryPrimitives.ReadUInt32LittleEndian(data) != SnapshotMagic)
            throw new InvalidDataException("Not a key-value snapshot: the KVS1 header is missing.");
        var count = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
        var rest = data[8..];
        // Each entry takes at least 8 bytes: do not trust a count the data cannot hold.
        if (count > rest.Length / 8)
            throw new InvalidDataException($"Not a key-value snapshot: {count} entries cannot fit in {rest.Length} bytes.");
        var result = new Dictionary<string, string>((int)count, StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            var key = ReadString(ref rest);
            if (!result.TryAdd(key, ReadString(ref rest)))
                throw new InvalidDataException($"Not a key-value snapshot: key '{key}' appears twice.");
        }
        if (!rest.IsEmpty)
            throw new InvalidDataException($"Not a key-value snapshot: {rest.Length} bytes follow the last entry.");
        return result;
    }

    private static void WriteUInt32(ArrayBufferWriter<byte> buffer, uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(buffer.GetSpan(4), value);
        buffer.Advance(4);
    }

    private static void WriteString(ArrayBufferWriter<byte> buffer, string text)
    {
        var length = StrictUtf8.GetByteCount(text);
        WriteUInt32(buffer, (uint)length);
        StrictUtf8.GetBytes(text, buffer.GetSpan(length));
        buffer.Advance(length);
    }

    private static string ReadString(ref ReadOnlySpan<byte> source)
    {
        if (source.Length < 4)
            throw new InvalidDataException("Not a key-value snapshot: it is cut off.");
        var length = BinaryPrimitives.ReadUInt32LittleEndian(source);
        if (length > (uint)(source.Length - 4))
            throw new InvalidDataException($"Not a key-value snapshot: a string of {length} bytes is longer than what remains.");
        string text;
        try
        {
            text = StrictUtf8.GetString(source.Slice(4, (int)length));
        }
        catch (DecoderFallbackException ex)
        {
            throw new InvalidDataException("Not a key-value snapshot: a string is not valid UTF-8.", ex);
        }
        source = source[(4 + (int)length)..];
        return text;
    }
}
