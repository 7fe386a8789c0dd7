using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace Raft.Tests.Integration;

/// <summary>
/// A small key-value state machine for the integration tests: puts and compare-and-swaps as log
/// commands, reads through <see cref="RaftNode.QueryAsync{TState, TResult}"/>. Its validator refuses
/// any command it could not apply (with the reason), so a malformed command never reaches the log.
/// </summary>
/// <remarks>
/// Command format: a kind byte (1 put, 2 compare-and-swap), the key, for a compare-and-swap a flag
/// byte (1: an expected value follows, 0: the key must be absent) and the expected value, then the
/// value; every string is a u16 length and UTF-8 bytes. A compare-and-swap applies to
/// <see langword="true"/> when it swapped. The snapshot is the whole map.
/// </remarks>
internal sealed class KvMachine : IStateMachine, ICommandValidator
{
    private const byte PutKind = 1;
    private const byte CasKind = 2;

    private readonly Lock _gate = new();
    private readonly Dictionary<string, string> _data = new(StringComparer.Ordinal);
    private int _restores;
    private long _applied;

    /// <summary>How many times a snapshot was restored into this machine (at start or by InstallSnapshot).</summary>
    public int Restores => Volatile.Read(ref _restores);

    /// <summary>How many commands this machine applied (since it was created; restores do not count).</summary>
    public long Applied => Interlocked.Read(ref _applied);

    public static byte[] Put(string key, string value) => Encode(PutKind, key, hasExpected: false, expected: null, value);

    public static byte[] Cas(string key, string? expected, string value) => Encode(CasKind, key, expected is not null, expected, value);

    /// <summary>The value under <paramref name="key"/>, or null.</summary>
    public string? Get(string key)
    {
        lock (_gate)
            return _data.GetValueOrDefault(key);
    }

    /// <summary>A copy of the whole map.</summary>
    public Dictionary<string, string> Capture()
    {
        lock (_gate)
            return new Dictionary<string, string>(_data, StringComparer.Ordinal);
    }

    public bool TryValidate(ReadOnlySpan<byte> command, [NotNullWhen(false)] out string? error) =>
        TryDecode(command, out _, out _, out _, out _, out error);

    public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
    {
        if (!TryDecode(entry.Data.Span, out var kind, out var key, out var expected, out var value, out var error))
            throw new InvalidOperationException($"Entry {entry.Index} holds a command the key-value machine cannot apply: {error}.");
        Interlocked.Increment(ref _applied);
        lock (_gate)
        {
            if (kind == PutKind)
            {
                _data[key] = value;
                return ValueTask.FromResult<object?>(null);
            }
            var current = _data.GetValueOrDefault(key);
            var swapped = string.Equals(current, expected, StringComparison.Ordinal);
            if (swapped)
                _data[key] = value;
            return ValueTask.FromResult<object?>(swapped);
        }
    }

    public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        byte[] bytes;
        lock (_gate)
        {
            using var buffer = new MemoryStream();
            using (var writer = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
            {
                writer.Write(_data.Count);
                foreach (var (key, value) in _data.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    writer.Write(key);
                    writer.Write(value);
                }
            }
            bytes = buffer.ToArray();
        }
        await destination.WriteAsync(bytes, cancellationToken);
    }

    public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
    {
        using var buffer = new MemoryStream();
        await source.CopyToAsync(buffer, cancellationToken);
        buffer.Position = 0;
        using var reader = new BinaryReader(buffer, Encoding.UTF8);
        var count = reader.ReadInt32();
        var data = new Dictionary<string, string>(count, StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
            data[reader.ReadString()] = reader.ReadString();
        if (buffer.Position != buffer.Length)
            throw new InvalidDataException($"The key-value snapshot has {buffer.Length - buffer.Position} bytes after its {count} entries.");
        lock (_gate)
        {
            _data.Clear();
            foreach (var (key, value) in data)
                _data[key] = value;
        }
        Interlocked.Increment(ref _restores);
    }

    private static byte[] Encode(byte kind, string key, bool hasExpected, string? expected, string value)
    {
        var size = 1 + 2 + Encoding.UTF8.GetByteCount(key) + 2 + Encoding.UTF8.GetByteCount(value);
        if (kind == CasKind)
            size += 1 + 2 + (expected is null ? 0 : Encoding.UTF8.GetByteCount(expected));
        var bytes = new byte[size];
        var span = bytes.AsSpan();
        span[0] = kind;
        var at = 1;
        at += WriteString(span[at..], key);
        if (kind == CasKind)
        {
            span[at++] = hasExpected ? (byte)1 : (byte)0;
            at += WriteString(span[at..], expected ?? "");
        }
        WriteString(span[at..], value);
        return bytes;
    }

    private static int WriteString(Span<byte> destination, string text)
    {
        var length = Encoding.UTF8.GetBytes(text, destination[2..]);
        BinaryPrimitives.WriteUInt16LittleEndian(destination, checked((ushort)length));
        return 2 + length;
    }

    private static bool TryDecode(ReadOnlySpan<byte> command, out byte kind, out string key, out string? expected, out string value, [NotNullWhen(false)] out string? error)
    {
        kind = 0;
        key = value = "";
        expected = null;
        if (command.IsEmpty || command[0] is not (PutKind or CasKind))
        {
            error = command.IsEmpty ? "empty command" : $"unknown command kind {command[0]}";
            return false;
        }
        kind = command[0];
        var rest = command[1..];
        if (!TryReadString(ref rest, out key))
        {
            error = "truncated key";
            return false;
        }
        if (kind == CasKind)
        {
            if (rest.IsEmpty || rest[0] > 1)
            {
                error = "missing or invalid expected-value flag";
                return false;
            }
            var hasExpected = rest[0] == 1;
            rest = rest[1..];
            if (!TryReadString(ref rest, out var expectedText))
            {
                error = "truncated expected value";
                return false;
            }
            expected = hasExpected ? expectedText : null;
        }
        if (!TryReadString(ref rest, out value))
        {
            error = "truncated value";
            return false;
        }
        if (!rest.IsEmpty)
        {
            error = $"{rest.Length} bytes after the value";
            return false;
        }
        error = null;
        return true;
    }

    private static bool TryReadString(ref ReadOnlySpan<byte> source, out string text)
    {
        text = "";
        if (source.Length < 2)
            return false;
        var length = BinaryPrimitives.ReadUInt16LittleEndian(source);
        if (source.Length < 2 + length)
            return false;
        text = Encoding.UTF8.GetString(source.Slice(2, length));
        source = source[(2 + length)..];
        return true;
    }
}
