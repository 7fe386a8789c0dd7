using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace Raft.Samples.KeyValueStore;

/// <summary>What a replicated command does to the dictionary.</summary>
public enum KvOperation : byte
{
    /// <summary>Sets the key to the value.</summary>
    Put = 1,

    /// <summary>Removes the key (a no-op when it is absent).</summary>
    Delete = 2,

    /// <summary>Sets the key to the value only when its current value equals the expected one (null: the key must be absent).</summary>
    CompareAndSwap = 3,

    /// <summary>Adds <see cref="KvCommand.Delta"/> to the key's value read as a 64-bit integer (absent: 0); fails, changing nothing, when the value is not one or the sum overflows.</summary>
    Increment = 4,
}

/// <summary>A command of the replicated dictionary, as it travels through the Raft log.</summary>
/// <param name="Operation">What the command does.</param>
/// <param name="Key">The key: 1 to <see cref="MaxKeyBytes"/> UTF-8 bytes, no control characters (checked at the HTTP edge).</param>
/// <param name="Value">The new value for <see cref="KvOperation.Put"/> and <see cref="KvOperation.CompareAndSwap"/>; null for <see cref="KvOperation.Delete"/>.</param>
/// <param name="Expected">For <see cref="KvOperation.CompareAndSwap"/>: the value the key must have, or null when it must be absent.</param>
/// <param name="Delta">For <see cref="KvOperation.Increment"/>: what to add.</param>
/// <remarks>
/// <para>Binary encoding (little-endian), which must never change meaning once entries are in a log:</para>
/// <code>
/// Put:            [1][keyLen u16][key utf8][valueLen u32][value utf8]
/// Delete:         [2][keyLen u16][key utf8]
/// CompareAndSwap: [3][keyLen u16][key utf8][hasExpected u8 (0|1)][expectedLen u32][expected utf8][valueLen u32][value utf8]
/// Increment:      [4][keyLen u16][key utf8][delta i64]
/// </code>
/// <para>(When hasExpected is 0, expectedLen is 0 and no expected bytes follow.) A command must be
/// exactly as long as its fields say: trailing bytes are an error, so a corrupt or foreign entry is
/// never half-understood.</para>
/// </remarks>
public sealed record KvCommand(KvOperation Operation, string Key, string? Value = null, string? Expected = null, long Delta = 0)
{
    /// <summary>The longest key, in UTF-8 bytes.</summary>
    public const int MaxKeyBytes = 256;

    // Throws on invalid UTF-16 (lone surrogates) when encoding and on invalid UTF-8 when decoding.
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Creates a put.</summary>
    public static KvCommand Put(string key, string value) => new(KvOperation.Put, key, value);

    /// <summary>Creates a delete.</summary>
    public static KvCommand Delete(string key) => new(KvOperation.Delete, key);

    /// <summary>Creates a compare-and-swap.</summary>
    public static KvCommand CompareAndSwap(string key, string? expected, string value) => new(KvOperation.CompareAndSwap, key, value, expected);

    /// <summary>Creates an increment.</summary>
    public static KvCommand Increment(string key, long delta) => new(KvOperation.Increment, key, Delta: delta);

    /// <summary>Encodes the command for <see cref="RaftNode.ProposeAsync"/>.</summary>
    /// <returns>A new buffer the caller hands over (it must not be changed afterwards).</returns>
    /// <exception cref="ArgumentException">The key is empty or too long, a string is not valid Unicode, or a required value is missing.</exception>
    public byte[] Encode()
    {
        var key = StrictUtf8.GetBytes(Key);
        if (key.Length is 0 or > MaxKeyBytes)
            throw new ArgumentException($"The key is {key.Length} UTF-8 bytes; it must be 1 to {MaxKeyBytes}.", nameof(Key));
        var value = Operation is KvOperation.Delete or KvOperation.Increment ? [] : StrictUtf8.GetBytes(Value ?? throw new ArgumentException($"A {Operation} needs a value.", nameof(Value)));
        var expected = Operation == KvOperation.CompareAndSwap && Expected is not null ? StrictUtf8.GetBytes(Expected) : [];
        var length = Operation switch
        {
            KvOperation.Put => 1 + 2 + key.Length + 4 + value.Length,
            KvOperation.Delete => 1 + 2 + key.Length,
            KvOperation.Increment => 1 + 2 + key.Length + 8,
            KvOperation.CompareAndSwap => 1 + 2 + key.Length + 1 + 4 + expected.Length + 4 + value.Length,
            _ => throw new ArgumentException($"Unknown operation {Operation}.", nameof(Operation)),
        };
        var buffer = new byte[length];
        var span = buffer.AsSpan();
        span[0] = (byte)Operation;
        BinaryPrimitives.WriteUInt16LittleEndian(span[1..], (ushort)key.Length);
        key.CopyTo(span[3..]);
        var rest = span[(3 + key.Length)..];
        switch (Operation)
        {
            case KvOperation.Put:
                WriteBlob(ref rest, value);
                break;
            case KvOperation.Increment:
                BinaryPrimitives.WriteInt64LittleEndian(rest, Delta);
                break;
            case KvOperation.CompareAndSwap:
                rest[0] = Expected is null ? (byte)0 : (byte)1;
                rest = rest[1..];
                WriteBlob(ref rest, expected);
                WriteBlob(ref rest, value);
                break;
        }
        return buffer;
    }

    /// <summary>Decodes a command written by <see cref="Encode"/>.</summary>
    /// <param name="data">The entry's payload.</param>
    /// <returns>The command.</returns>
    /// <exception cref="InvalidDataException">The bytes are not a command of this format (the message says why).</exception>
    public static KvCommand Decode(ReadOnlySpan<byte> data) =>
        TryDecode(data, out var command, out var error) ? command : throw new InvalidDataException(error);

    /// <summary>
    /// Decodes a command written by <see cref="Encode"/>, or says why the bytes are not one. This is
    /// the only decoder: <see cref="Decode"/>, <see cref="KeyValueStateMachine.ApplyAsync"/> and
    /// <see cref="KeyValueStateMachine.TryValidate"/> all go through it, so what the leader accepts
    /// is exactly what every replica can apply.
    /// </summary>
    /// <param name="data">The entry's payload.</param>
    /// <param name="command">The command, when decoded.</param>
    /// <param name="error">When not decoded: why, starting with "Not a key-value command".</param>
    /// <returns>Whether <paramref name="data"/> is exactly one command.</returns>
    public static bool TryDecode(ReadOnlySpan<byte> data, [NotNullWhen(true)] out KvCommand? command, [NotNullWhen(false)] out string? error)
    {
        command = null;
        if (data.Length < 3)
            return Invalid($"it is {data.Length} bytes long, shorter than any command", out error);
        var operation = (KvOperation)data[0];
        if (operation is not (KvOperation.Put or KvOperation.Delete or KvOperation.CompareAndSwap or KvOperation.Increment))
            return Invalid($"operation byte {data[0]} is unknown", out error);
        int keyLength = BinaryPrimitives.ReadUInt16LittleEndian(data[1..]);
        if (keyLength is 0 or > MaxKeyBytes || data.Length < 3 + keyLength)
            return Invalid($"key length {keyLength} does not fit", out error);
        if (!TryGetString(data.Slice(3, keyLength), out var key, out error))
            return false;
        var rest = data[(3 + keyLength)..];
        switch (operation)
        {
            case KvOperation.Put:
                if (!TryReadBlob(ref rest, out var value, out error))
                    return false;
                command = Put(key, value);
                break;
            case KvOperation.Delete:
                command = Delete(key);
                break;
            case KvOperation.Increment:
                if (rest.Length < 8)
                    return Invalid("the increment's delta is cut off", out error);
                command = Increment(key, BinaryPrimitives.ReadInt64LittleEndian(rest));
                rest = rest[8..];
                break;
            default:
                if (rest.IsEmpty || rest[0] > 1)
                    return Invalid("the compare-and-swap flag is missing or not 0/1", out error);
                var hasExpected = rest[0] == 1;
                rest = rest[1..];
                if (!TryReadBlob(ref rest, out var expected, out error))
                    return false;
                if (!hasExpected && expected.Length != 0)
                    return Invalid("an absent expected value has a length", out error);
                if (!TryReadBlob(ref rest, out var newValue, out error))
                    return false;
                command = CompareAndSwap(key, hasExpected ? expected : null, newValue);
                break;
        }
        if (!rest.IsEmpty)
        {
            command = null;
            return Invalid($"{rest.Length} bytes follow the command", out error);
        }
        error = null;
        return true;
    }

    private static void WriteBlob(ref Span<byte> destination, byte[] blob)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, (uint)blob.Length);
        blob.CopyTo(destination[4..]);
        destination = destination[(4 + blob.Length)..];
    }

    private static bool TryReadBlob(ref ReadOnlySpan<byte> source, out string text, [NotNullWhen(false)] out string? error)
    {
        text = "";
        if (source.Length < 4)
            return Invalid("a length field is cut off", out error);
        var length = BinaryPrimitives.ReadUInt32LittleEndian(source);
        if (length > (uint)(source.Length - 4))
            return Invalid($"a field of {length} bytes is longer than what remains ({source.Length - 4})", out error);
        if (!TryGetString(source.Slice(4, (int)length), out text, out error))
            return false;
        source = source[(4 + (int)length)..];
        return true;
    }

    private static bool TryGetString(ReadOnlySpan<byte> utf8, out string text, [NotNullWhen(false)] out string? error)
    {
        try
        {
            text = StrictUtf8.GetString(utf8);
            error = null;
            return true;
        }
        catch (DecoderFallbackException)
        {
            text = "";
            return Invalid("a string is not valid UTF-8", out error);
        }
    }

    private static bool Invalid(string why, out string error)
    {
        error = $"Not a key-value command: {why}.";
        return false;
    }
}

/// <summary>The result of a compare-and-swap, returned through <see cref="RaftNode.ProposeAsync"/> on the leader.</summary>
/// <param name="Swapped">Whether the value was replaced.</param>
/// <param name="Current">The value after the command: the new value when swapped, otherwise the value that differed (null: absent).</param>
public sealed record CasResult(bool Swapped, string? Current);

/// <summary>The result of an increment, returned through <see cref="RaftNode.ProposeAsync"/> (and kept by exactly-once sessions for retries).</summary>
/// <param name="Done">Whether the value was incremented.</param>
/// <param name="Current">The value after the command: the new number when done, otherwise the value that is not a 64-bit integer (or would overflow).</param>
public sealed record IncrementResult(bool Done, string? Current);
