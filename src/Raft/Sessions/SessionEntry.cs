using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace Raft;

// The payload of an EntryKind.Session entry. Little-endian:
//   op u8 (1 = open, 2 = command), timestamp i64 (the leader's clock when it appended the entry,
//   Unix milliseconds)
//   open:    timeoutMs i64, maxSessions i32, maxResultBytes i32                  (25 bytes in all)
//   command: clientId i64, sequence i64, lowestPending i64, then the command     (33 bytes + command)
// The timestamp and an open entry's limits are written by the leader as it appends the entry (the
// proposer leaves them zero), so every replica applies the same values: expiry goes by log time,
// and the limits in force are the ones in the log, never a replica's own settings.
internal enum SessionOp : byte
{
    Open = 1,
    Command = 2,
}

internal readonly record struct SessionEntry(SessionOp Op, long Timestamp, long TimeoutMs, int MaxSessions, int MaxResultBytes,
    long ClientId, long Sequence, long LowestPending, ReadOnlyMemory<byte> Command)
{
    public const int HeaderSize = 9;
    public const int OpenSize = HeaderSize + 16;
    public const int CommandHeaderSize = HeaderSize + 24;

    public static byte[] EncodeOpen()
    {
        var data = new byte[OpenSize]; // timestamp and limits: zero until the leader stamps them
        data[0] = (byte)SessionOp.Open;
        return data;
    }

    public static byte[] EncodeCommand(long clientId, long sequence, long lowestPending, ReadOnlySpan<byte> command)
    {
        var data = new byte[CommandHeaderSize + command.Length];
        data[0] = (byte)SessionOp.Command;
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(9), clientId);
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(17), sequence);
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(25), lowestPending);
        command.CopyTo(data.AsSpan(CommandHeaderSize));
        return data;
    }

    // The leader's copy of a proposed payload, with its clock and (for an open) its limits written in.
    public static byte[] Stamp(ReadOnlySpan<byte> payload, long timestamp, SessionOptions limits)
    {
        var data = payload.ToArray();
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(1), timestamp);
        if (data[0] == (byte)SessionOp.Open)
        {
            BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(9), (long)limits.Timeout.TotalMilliseconds);
            BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(17), limits.MaxSessions);
            BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(21), limits.MaxResultBytesPerSession);
        }
        return data;
    }

    // Decodes and checks a payload; a malformed one is refused with the reason (never applied, never
    // replicated). stamped: whether the leader's limits must be there (an entry in the log), or may
    // still be zero (a proposal).
    public static bool TryParse(ReadOnlyMemory<byte> payload, bool stamped, out SessionEntry entry, [NotNullWhen(false)] out string? error)
    {
        entry = default;
        var span = payload.Span;
        if (span.Length < HeaderSize)
        {
            error = $"a session entry of {span.Length} bytes is shorter than its {HeaderSize}-byte header";
            return false;
        }
        var op = (SessionOp)span[0];
        var timestamp = BinaryPrimitives.ReadInt64LittleEndian(span[1..]);
        if (timestamp < 0)
        {
            error = $"a session entry has a negative timestamp ({timestamp})";
            return false;
        }
        switch (op)
        {
            case SessionOp.Open:
            {
                if (span.Length != OpenSize)
                {
                    error = $"a session open entry is {span.Length} bytes, not {OpenSize}";
                    return false;
                }
                var timeout = BinaryPrimitives.ReadInt64LittleEndian(span[9..]);
                var maxSessions = BinaryPrimitives.ReadInt32LittleEndian(span[17..]);
                var maxBytes = BinaryPrimitives.ReadInt32LittleEndian(span[21..]);
                if (stamped && (timeout <= 0 || maxSessions <= 0 || maxBytes < 0))
                {
                    error = $"a session open entry carries invalid limits (timeout {timeout} ms, {maxSessions} sessions, {maxBytes} result bytes)";
                    return false;
                }
                entry = new SessionEntry(op, timestamp, timeout, maxSessions, maxBytes, 0, 0, 0, default);
                error = null;
                return true;
            }
            case SessionOp.Command:
            {
                if (span.Length < CommandHeaderSize)
                {
                    error = $"a session command of {span.Length} bytes is shorter than its {CommandHeaderSize}-byte header";
                    return false;
                }
                var clientId = BinaryPrimitives.ReadInt64LittleEndian(span[9..]);
                var sequence = BinaryPrimitives.ReadInt64LittleEndian(span[17..]);
                var lowest = BinaryPrimitives.ReadInt64LittleEndian(span[25..]);
                if (clientId <= 0 || sequence <= 0 || lowest <= 0 || lowest > sequence)
                {
                    error = $"a session command carries client {clientId}, sequence {sequence}, lowest pending {lowest}: all must be positive and the lowest pending at most the sequence";
                    return false;
                }
                entry = new SessionEntry(op, timestamp, 0, 0, 0, clientId, sequence, lowest, payload[CommandHeaderSize..]);
                error = null;
                return true;
            }
            default:
                error = $"a session entry has unknown operation {(byte)op}";
                return false;
        }
    }
}
