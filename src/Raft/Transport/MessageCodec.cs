using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace Raft;

/// <summary>The wire code of a message type, carried in byte 4 of a frame header. Codes are stable: never renumber.</summary>
internal enum MessageType : byte
{
    // 0 is reserved so that a zeroed header is never a valid frame.
    RequestVote = 1,
    RequestVoteResponse = 2,
    AppendEntries = 3,
    AppendEntriesResponse = 4,
    TimeoutNow = 5,
    InstallSnapshot = 6,
    InstallSnapshotResponse = 7,
    ForwardRequest = 8,
    ForwardResponse = 9,
}

/// <summary>
/// Encodes <see cref="RaftMessage"/>s into length-prefixed frames and decodes them again.
/// </summary>
/// <remarks>
/// <para>A frame is an 8-byte header followed by the payload; every integer is little-endian.</para>
/// <code>
/// offset size  field
///   0     4    payload length (uint32, excluding this header; at most MaxFrameBytes)
///   4     1    message type (MessageType; 0 and 10..255 are invalid)
///   5     1    flags (per type, see below; unknown bits are invalid)
///   6     2    reserved, must be 0
///   8     n    payload
/// </code>
/// <para>Payloads (i32 = int32, i64 = int64, u8 = byte):</para>
/// <code>
/// 1 RequestVote            from i32, to i32, term i64, lastLogIndex i64, lastLogTerm i64   (32 bytes)
///                          flags: 0x01 PreVote, 0x02 LeadershipTransfer
/// 2 RequestVoteResponse    from i32, to i32, term i64                                      (16 bytes)
///                          flags: 0x01 Granted, 0x02 PreVote
/// 3 AppendEntries          from i32, to i32, term i64, prevLogIndex i64, prevLogTerm i64,
///                          leaderCommit i64, readSequence i64, entryCount i32             (52 bytes)
///                          then entryCount times: index i64, term i64, kind u8,
///                          dataLength i32, data                                 (21 bytes + data)
/// 4 AppendEntriesResponse  from i32, to i32, term i64, matchIndex i64, hintIndex i64,
///                          hintTerm i64, readSequence i64                                 (48 bytes)
///                          flags: 0x01 Success
/// 5 TimeoutNow             from i32, to i32, term i64                                      (16 bytes)
/// 6 InstallSnapshot        from i32, to i32, term i64, snapshotIndex i64, snapshotTerm i64,
///                          offset i64, configurationLength i32, configuration (the
///                          ClusterConfiguration encoding, decoded strictly),
///                          dataLength i32, data                  (48 bytes + configuration + data)
///                          flags: 0x01 Done
/// 7 InstallSnapshotResponse from i32, to i32, term i64, snapshotIndex i64, nextOffset i64   (32 bytes)
///                          flags: 0x01 Success, 0x02 Done
/// 8 ForwardRequest         from i32, to i32, term i64, requestId i64, commandCount i32     (28 bytes)
///                          then commandCount times: dataLength i32, data         (4 bytes + data)
///                          then, with flag 0x04 only, one kind per command: kind u8
///                          (EntryKind.Command or EntryKind.Session; ForwardRequest.Kinds)
///                          then, with flag 0x02 only, the trace context: traceId 16 bytes,
///                          spanId 8 bytes, traceFlags u8 (W3C traceparent, binary)     (25 bytes)
///                          flags: 0x01 IsRead (then commandCount is 0), 0x02 TraceContext, 0x04 HasKinds
/// 9 ForwardResponse        from i32, to i32, term i64, requestId i64, index i64, count i32,
///                          leaderId i32, status u8 (ForwardStatus)                        (41 bytes)
/// </code>
/// <para>Encoding writes straight into an <see cref="IBufferWriter{T}"/> (a PipeWriter) with no
/// intermediate arrays. Decoding reads from a <see cref="ReadOnlySequence{T}"/>; every byte that
/// outlives the frame is copied out: all entry payloads of one AppendEntries share one new array,
/// sliced per entry, as do all commands of one ForwardRequest, and a snapshot chunk gets one array. Bad input throws only
/// <see cref="RaftProtocolException"/>; too little input returns false.</para>
/// </remarks>
internal static class MessageCodec
{
    /// <summary>The size of the fixed frame header.</summary>
    public const int HeaderSize = 8;

    // Up to this many bytes, an AppendEntries frame asks the writer for one contiguous buffer.
    private const int ContiguousFrameHint = 4 << 20;

    /// <summary>The fixed part of an AppendEntries payload, before its entries.</summary>
    public const int AppendEntriesFixedSize = 52;

    /// <summary>The per-entry overhead inside an AppendEntries payload, before the entry's data.</summary>
    public const int EntryHeaderSize = 21;

    /// <summary>The fixed part of an InstallSnapshot payload (configuration length and data length included).</summary>
    public const int InstallSnapshotFixedSize = 48;

    /// <summary>The fixed part of a ForwardRequest payload, before its commands.</summary>
    public const int ForwardRequestFixedSize = 28;

    /// <summary>The per-command overhead inside a ForwardRequest payload (its length), before the command's data.</summary>
    public const int CommandHeaderSize = 4;

    /// <summary>The trace context at the end of a ForwardRequest with flag 0x02: trace id, span id, trace flags.</summary>
    public const int TraceContextSize = 25;

    private const int RequestVoteSize = 32;
    private const int RequestVoteResponseSize = 16;
    private const int AppendEntriesResponseSize = 48;
    private const int TimeoutNowSize = 16;
    private const int InstallSnapshotResponseSize = 32;
    private const int ForwardResponseSize = 41;

    private const byte Flag1 = 0x01;
    private const byte Flag2 = 0x02;
    private const byte Flag3 = 0x04;

    /// <summary>Gets the wire code for <paramref name="message"/>'s type.</summary>
    /// <returns>False when the type has no wire encoding (a message type this codec does not know).</returns>
    public static bool TryGetMessageType(RaftMessage message, out MessageType type)
    {
        switch (message)
        {
            case RequestVote: type = MessageType.RequestVote; return true;
            case RequestVoteResponse: type = MessageType.RequestVoteResponse; return true;
            case AppendEntries: type = MessageType.AppendEntries; return true;
            case AppendEntriesResponse: type = MessageType.AppendEntriesResponse; return true;
            case TimeoutNow: type = MessageType.TimeoutNow; return true;
            case InstallSnapshot: type = MessageType.InstallSnapshot; return true;
            case InstallSnapshotResponse: type = MessageType.InstallSnapshotResponse; return true;
            case ForwardRequest: type = MessageType.ForwardRequest; return true;
            case ForwardResponse: type = MessageType.ForwardResponse; return true;
            default: type = default; return false;
        }
    }

    /// <summary>Computes the payload length <paramref name="message"/> encodes to (the frame adds <see cref="HeaderSize"/>).</summary>
    /// <returns>False when the message type has no wire encoding.</returns>
    /// <exception cref="ArgumentException">
    /// A list the message carries is null, or the message breaks a rule the decoder enforces (a read
    /// <see cref="ForwardRequest"/> with commands; a <see cref="ForwardResponse"/> with a negative
    /// count or an undefined status).
    /// </exception>
    public static bool TryGetPayloadLength(RaftMessage message, out long payloadLength)
    {
        ArgumentNullException.ThrowIfNull(message);
        switch (message)
        {
            case RequestVote:
                payloadLength = RequestVoteSize;
                return true;
            case RequestVoteResponse:
                payloadLength = RequestVoteResponseSize;
                return true;
            case AppendEntries ae:
                {
                    var entries = ae.Entries ?? throw new ArgumentException("AppendEntries.Entries is null.", nameof(message));
                    long length = AppendEntriesFixedSize + ((long)entries.Count * EntryHeaderSize);
                    for (int i = 0; i < entries.Count; i++)
                        length += entries[i].Data.Length;
                    payloadLength = length;
                    return true;
                }
            case AppendEntriesResponse:
                payloadLength = AppendEntriesResponseSize;
                return true;
            case TimeoutNow:
                payloadLength = TimeoutNowSize;
                return true;
            case InstallSnapshot snap:
                {
                    var configuration = snap.Configuration ?? throw new ArgumentException("InstallSnapshot.Configuration is null.", nameof(message));
                    payloadLength = InstallSnapshotFixedSize + (long)configuration.Encode().Length + snap.Data.Length;
                    return true;
                }
            case InstallSnapshotResponse:
                payloadLength = InstallSnapshotResponseSize;
                return true;
            case ForwardRequest fr:
                {
                    var commands = fr.Commands ?? throw new ArgumentException("ForwardRequest.Commands is null.", nameof(message));
                    if (fr.IsRead && commands.Count != 0)
                        throw new ArgumentException($"ForwardRequest is a read but carries {commands.Count} commands.", nameof(message));
                    long length = ForwardRequestFixedSize + ((long)commands.Count * CommandHeaderSize);
                    for (int i = 0; i < commands.Count; i++)
                        length += commands[i].Length;
                    if (fr.Kinds is { } kinds)
                    {
                        if (kinds.Count != commands.Count)
                            throw new ArgumentException($"ForwardRequest carries {kinds.Count} kinds for {commands.Count} commands.", nameof(message));
                        for (int i = 0; i < kinds.Count; i++)
                        {
                            if (kinds[i] is not (EntryKind.Command or EntryKind.Session))
                                throw new ArgumentException($"ForwardRequest command {i} has kind {kinds[i]}, which cannot be forwarded.", nameof(message));
                        }
                        length += kinds.Count;
                    }
                    if (fr.TraceParent is not null)
                    {
                        _ = ParseTraceParent(fr.TraceParent);
                        length += TraceContextSize;
                    }
                    payloadLength = length;
                    return true;
                }
            case ForwardResponse fr:
                if (fr.Count < 0)
                    throw new ArgumentException($"ForwardResponse.Count is negative ({fr.Count}).", nameof(message));
                if (!Enum.IsDefined(fr.Status))
                    throw new ArgumentException($"ForwardResponse.Status {(byte)fr.Status} is not a defined ForwardStatus.", nameof(message));
                payloadLength = ForwardResponseSize;
                return true;
            default:
                payloadLength = 0;
                return false;
        }
    }

    /// <summary>Writes <paramref name="message"/> as one frame (header and payload) into <paramref name="writer"/>.</summary>
    /// <param name="writer">Where the frame goes; typically a PipeWriter, flushed by the caller.</param>
    /// <param name="message">The message; its buffers are only read.</param>
    /// <returns>The number of bytes written (header included).</returns>
    /// <exception cref="ArgumentException">The message type has no wire encoding, a list it carries is null, it is invalid (see <see cref="TryGetPayloadLength"/>), or it is larger than a frame can be.</exception>
    public static int Write(IBufferWriter<byte> writer, RaftMessage message)
    {
        ArgumentNullException.ThrowIfNull(writer);
        if (!TryGetMessageType(message, out var type) || !TryGetPayloadLength(message, out long payloadLength))
            throw new ArgumentException($"{message.GetType().Name} has no wire encoding.", nameof(message));
        if (payloadLength > int.MaxValue - HeaderSize)
            throw new ArgumentException($"{message.GetType().Name} encodes to {payloadLength} bytes, more than a frame can hold.", nameof(message));

        int length = (int)payloadLength;
        switch (message)
        {
            case RequestVote m:
                {
                    var w = new FieldWriter(writer, HeaderSize + RequestVoteSize);
                    w.Header(length, type, (byte)((m.PreVote ? Flag1 : 0) | (m.LeadershipTransfer ? Flag2 : 0)));
                    w.Int32(m.From); w.Int32(m.To); w.Int64(m.Term);
                    w.Int64(m.LastLogIndex); w.Int64(m.LastLogTerm);
                    w.Commit();
                    break;
                }
            case RequestVoteResponse m:
                {
                    var w = new FieldWriter(writer, HeaderSize + RequestVoteResponseSize);
                    w.Header(length, type, (byte)((m.Granted ? Flag1 : 0) | (m.PreVote ? Flag2 : 0)));
                    w.Int32(m.From); w.Int32(m.To); w.Int64(m.Term);
                    w.Commit();
                    break;
                }
            case AppendEntries m:
                {
                    var entries = m.Entries;
                    // The whole frame in one buffer where the writer allows it: a pipe over a socket sends each buffer with its own call.
                    writer.GetSpan(Math.Min(HeaderSize + length, ContiguousFrameHint));
                    var w = new FieldWriter(writer, HeaderSize + AppendEntriesFixedSize);
                    w.Header(length, type, 0);
                    w.Int32(m.From); w.Int32(m.To); w.Int64(m.Term);
                    w.Int64(m.PrevLogIndex); w.Int64(m.PrevLogTerm); w.Int64(m.LeaderCommit); w.Int64(m.ReadSequence);
                    w.Int32(entries.Count);
                    w.Commit();
                    for (int i = 0; i < entries.Count; i++)
                    {
                        var entry = entries[i];
                        var e = new FieldWriter(writer, EntryHeaderSize);
                        e.Int64(entry.Index); e.Int64(entry.Term); e.Byte((byte)entry.Kind); e.Int32(entry.Data.Length);
                        e.Commit();
                        if (!entry.Data.IsEmpty)
                            writer.Write(entry.Data.Span);
                    }
                    break;
                }
            case AppendEntriesResponse m:
                {
                    var w = new FieldWriter(writer, HeaderSize + AppendEntriesResponseSize);
                    w.Header(length, type, m.Success ? Flag1 : (byte)0);
                    w.Int32(m.From); w.Int32(m.To); w.Int64(m.Term);
                    w.Int64(m.MatchIndex); w.Int64(m.HintIndex); w.Int64(m.HintTerm); w.Int64(m.ReadSequence);
                    w.Commit();
                    break;
                }
            case TimeoutNow m:
                {
                    var w = new FieldWriter(writer, HeaderSize + TimeoutNowSize);
                    w.Header(length, type, 0);
                    w.Int32(m.From); w.Int32(m.To); w.Int64(m.Term);
                    w.Commit();
                    break;
                }
            case InstallSnapshot m:
                {
                    var configuration = m.Configuration.Encode();
                    var w = new FieldWriter(writer, HeaderSize + InstallSnapshotFixedSize - 4);
                    w.Header(length, type, m.Done ? Flag1 : (byte)0);
                    w.Int32(m.From); w.Int32(m.To); w.Int64(m.Term);
                    w.Int64(m.SnapshotIndex); w.Int64(m.SnapshotTerm); w.Int64(m.Offset);
                    w.Int32(configuration.Length);
                    w.Commit();
                    writer.Write((ReadOnlySpan<byte>)configuration);
                    var dw = new FieldWriter(writer, 4);
                    dw.Int32(m.Data.Length);
                    dw.Commit();
                    if (!m.Data.IsEmpty)
                        writer.Write(m.Data.Span);
                    break;
                }
            case InstallSnapshotResponse m:
                {
                    var w = new FieldWriter(writer, HeaderSize + InstallSnapshotResponseSize);
                    w.Header(length, type, (byte)((m.Success ? Flag1 : 0) | (m.Done ? Flag2 : 0)));
                    w.Int32(m.From); w.Int32(m.To); w.Int64(m.Term);
                    w.Int64(m.SnapshotIndex); w.Int64(m.NextOffset);
                    w.Commit();
                    break;
                }
            case ForwardRequest m:
                {
                    var commands = m.Commands;
                    var w = new FieldWriter(writer, HeaderSize + ForwardRequestFixedSize);
                    w.Header(length, type, (byte)((m.IsRead ? Flag1 : 0) | (m.TraceParent is null ? 0 : Flag2) | (m.Kinds is null ? 0 : Flag3)));
                    w.Int32(m.From); w.Int32(m.To); w.Int64(m.Term);
                    w.Int64(m.RequestId);
                    w.Int32(commands.Count);
                    w.Commit();
                    for (int i = 0; i < commands.Count; i++)
                    {
                        var command = commands[i];
                        var c = new FieldWriter(writer, CommandHeaderSize);
                        c.Int32(command.Length);
                        c.Commit();
                        if (!command.IsEmpty)
                            writer.Write(command.Span);
                    }
                    if (m.Kinds is { } kinds)
                    {
                        var span = writer.GetSpan(kinds.Count);
                        for (int i = 0; i < kinds.Count; i++)
                            span[i] = (byte)kinds[i];
                        writer.Advance(kinds.Count);
                    }
                    if (m.TraceParent is not null)
                        WriteTraceContext(writer, ParseTraceParent(m.TraceParent));
                    break;
                }
            case ForwardResponse m:
                {
                    var w = new FieldWriter(writer, HeaderSize + ForwardResponseSize);
                    w.Header(length, type, 0);
                    w.Int32(m.From); w.Int32(m.To); w.Int64(m.Term);
                    w.Int64(m.RequestId); w.Int64(m.Index); w.Int32(m.Count); w.Int32(m.LeaderId); w.Byte((byte)m.Status);
                    w.Commit();
                    break;
                }
            default:
                throw new UnreachableException($"TryGetMessageType accepted {message.GetType().Name} but Write has no case for it.");
        }
        return HeaderSize + length;
    }

    /// <summary>
    /// Reads one frame from the front of <paramref name="buffer"/> and, when it is complete, decodes
    /// it and slices it off <paramref name="buffer"/>.
    /// </summary>
    /// <param name="buffer">The received bytes; on success, what follows the frame.</param>
    /// <param name="maxFrameBytes">The largest payload accepted; a header announcing more is rejected at once, before its payload arrives.</param>
    /// <param name="message">The decoded message, which references nothing in <paramref name="buffer"/>.</param>
    /// <returns>True when a frame was decoded; false when <paramref name="buffer"/> holds only part of one (read more and call again).</returns>
    /// <exception cref="RaftProtocolException">The bytes are not a valid frame.</exception>
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, int maxFrameBytes, [NotNullWhen(true)] out RaftMessage? message)
    {
        message = null;
        if (buffer.Length < HeaderSize)
            return false;

        Span<byte> header = stackalloc byte[HeaderSize];
        buffer.Slice(0, HeaderSize).CopyTo(header);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(header);
        var type = (MessageType)header[4];
        byte flags = header[5];
        ushort reserved = BinaryPrimitives.ReadUInt16LittleEndian(header[6..]);
        ValidateHeader(length, type, flags, reserved, maxFrameBytes);

        if (buffer.Length - HeaderSize < length)
            return false;

        var payload = buffer.Slice(HeaderSize, length);
        message = DecodePayload(type, flags, payload);
        buffer = buffer.Slice(payload.End);
        return true;
    }

    private static void ValidateHeader(uint length, MessageType type, byte flags, ushort reserved, int maxFrameBytes)
    {
        if (length > (uint)maxFrameBytes)
            throw new RaftProtocolException($"Frame of {length} bytes exceeds MaxFrameBytes ({maxFrameBytes}).");
        if (reserved != 0)
            throw new RaftProtocolException($"Frame header reserved field is 0x{reserved:X4}, not 0.");

        (int fixedSize, bool variable, byte allowedFlags) = type switch
        {
            MessageType.RequestVote => (RequestVoteSize, false, (byte)(Flag1 | Flag2)),
            MessageType.RequestVoteResponse => (RequestVoteResponseSize, false, (byte)(Flag1 | Flag2)),
            MessageType.AppendEntries => (AppendEntriesFixedSize, true, (byte)0),
            MessageType.AppendEntriesResponse => (AppendEntriesResponseSize, false, Flag1),
            MessageType.TimeoutNow => (TimeoutNowSize, false, (byte)0),
            MessageType.InstallSnapshot => (InstallSnapshotFixedSize, true, Flag1),
            MessageType.InstallSnapshotResponse => (InstallSnapshotResponseSize, false, (byte)(Flag1 | Flag2)),
            MessageType.ForwardRequest => (ForwardRequestFixedSize, true, (byte)(Flag1 | Flag2 | Flag3)),
            MessageType.ForwardResponse => (ForwardResponseSize, false, (byte)0),
            _ => throw new RaftProtocolException($"Unknown message type {(byte)type}."),
        };
        if ((flags & ~allowedFlags) != 0)
            throw new RaftProtocolException($"{type} frame has unknown flags 0x{flags:X2}.");
        if (variable ? length < fixedSize : length != fixedSize)
        {
            throw new RaftProtocolException(variable
                ? $"{type} frame of {length} bytes is shorter than its fixed part ({fixedSize} bytes)."
                : $"{type} frame is {length} bytes; it must be exactly {fixedSize}.");
        }
    }

    private static RaftMessage DecodePayload(MessageType type, byte flags, ReadOnlySequence<byte> payload)
    {
        var r = new SequenceReader<byte>(payload);
        RaftMessage message;
        switch (type)
        {
            case MessageType.RequestVote:
                message = new RequestVote(
                    From: ReadInt32(ref r), To: ReadInt32(ref r), Term: ReadInt64(ref r),
                    LastLogIndex: ReadInt64(ref r), LastLogTerm: ReadInt64(ref r),
                    PreVote: (flags & Flag1) != 0, LeadershipTransfer: (flags & Flag2) != 0);
                break;
            case MessageType.RequestVoteResponse:
                message = new RequestVoteResponse(
                    From: ReadInt32(ref r), To: ReadInt32(ref r), Term: ReadInt64(ref r),
                    Granted: (flags & Flag1) != 0, PreVote: (flags & Flag2) != 0);
                break;
            case MessageType.AppendEntries:
                message = ReadAppendEntries(ref r);
                break;
            case MessageType.AppendEntriesResponse:
                message = new AppendEntriesResponse(
                    From: ReadInt32(ref r), To: ReadInt32(ref r), Term: ReadInt64(ref r),
                    Success: (flags & Flag1) != 0, MatchIndex: ReadInt64(ref r),
                    HintIndex: ReadInt64(ref r), HintTerm: ReadInt64(ref r), ReadSequence: ReadInt64(ref r));
                break;
            case MessageType.TimeoutNow:
                message = new TimeoutNow(From: ReadInt32(ref r), To: ReadInt32(ref r), Term: ReadInt64(ref r));
                break;
            case MessageType.InstallSnapshot:
                message = ReadInstallSnapshot(ref r, done: (flags & Flag1) != 0);
                break;
            case MessageType.InstallSnapshotResponse:
                message = new InstallSnapshotResponse(
                    From: ReadInt32(ref r), To: ReadInt32(ref r), Term: ReadInt64(ref r),
                    SnapshotIndex: ReadInt64(ref r), NextOffset: ReadInt64(ref r),
                    Success: (flags & Flag1) != 0, Done: (flags & Flag2) != 0);
                break;
            case MessageType.ForwardRequest:
                message = ReadForwardRequest(ref r, isRead: (flags & Flag1) != 0, traced: (flags & Flag2) != 0, hasKinds: (flags & Flag3) != 0);
                break;
            case MessageType.ForwardResponse:
                message = ReadForwardResponse(ref r);
                break;
            default:
                throw new RaftProtocolException($"Unknown message type {(byte)type}.");
        }
        if (!r.End)
            throw new RaftProtocolException($"{type} frame has {r.Remaining} trailing bytes after its payload.");
        return message;
    }

    private static AppendEntries ReadAppendEntries(ref SequenceReader<byte> r)
    {
        int from = ReadInt32(ref r);
        int to = ReadInt32(ref r);
        long term = ReadInt64(ref r);
        long prevLogIndex = ReadInt64(ref r);
        long prevLogTerm = ReadInt64(ref r);
        long leaderCommit = ReadInt64(ref r);
        long readSequence = ReadInt64(ref r);
        int count = ReadInt32(ref r);

        long remaining = r.Remaining;
        if (count < 0)
            throw new RaftProtocolException($"AppendEntries entry count is negative ({count}).");
        if (count > remaining / EntryHeaderSize)
            throw new RaftProtocolException($"AppendEntries claims {count} entries but only {remaining} bytes follow (each entry needs at least {EntryHeaderSize}).");

        // The frame is consumed exactly, so the entries' data bytes are whatever is not entry
        // headers: one array for all of them, sliced per entry (payloads outlive the pipe buffer).
        long dataBytes = remaining - ((long)count * EntryHeaderSize);
        byte[] data = dataBytes == 0 ? [] : GC.AllocateUninitializedArray<byte>(checked((int)dataBytes));
        var entries = count == 0 ? [] : new LogEntry[count];
        int offset = 0;
        for (int i = 0; i < count; i++)
        {
            long index = ReadInt64(ref r);
            long entryTerm = ReadInt64(ref r);
            byte kind = ReadByte(ref r);
            int length = ReadInt32(ref r);
            if (kind > (byte)EntryKind.Session)
                throw new RaftProtocolException($"AppendEntries entry {i} has unknown kind {kind}.");
            if (length < 0)
                throw new RaftProtocolException($"AppendEntries entry {i} has a negative length ({length}).");
            if (length > data.Length - offset)
                throw new RaftProtocolException($"AppendEntries entry {i} claims {length} bytes but only {data.Length - offset} data bytes are left in the frame.");
            var slice = data.AsSpan(offset, length);
            if (!r.TryCopyTo(slice))
                throw new RaftProtocolException($"AppendEntries entry {i} is truncated.");
            r.Advance(length);
            entries[i] = new LogEntry(index, entryTerm, (EntryKind)kind, new ReadOnlyMemory<byte>(data, offset, length));
            offset += length;
        }
        if (offset != data.Length)
            throw new RaftProtocolException($"AppendEntries entries hold {offset} data bytes but the frame carries {data.Length}.");
        return new AppendEntries(from, to, term, prevLogIndex, prevLogTerm, entries, leaderCommit, readSequence);
    }

    private static InstallSnapshot ReadInstallSnapshot(ref SequenceReader<byte> r, bool done)
    {
        int from = ReadInt32(ref r);
        int to = ReadInt32(ref r);
        long term = ReadInt64(ref r);
        long snapshotIndex = ReadInt64(ref r);
        long snapshotTerm = ReadInt64(ref r);
        long offset = ReadInt64(ref r);
        int configurationLength = ReadInt32(ref r);
        if (configurationLength < 0)
            throw new RaftProtocolException($"InstallSnapshot configuration length is negative ({configurationLength}).");
        // The configuration plus the 4-byte data length must still fit.
        if (configurationLength > r.Remaining - 4)
            throw new RaftProtocolException($"InstallSnapshot claims a {configurationLength}-byte configuration but only {r.Remaining} bytes follow.");
        var encoded = new byte[configurationLength];
        if (!r.TryCopyTo(encoded))
            throw new RaftProtocolException("InstallSnapshot configuration is truncated.");
        r.Advance(configurationLength);
        if (!ClusterConfiguration.TryDecode(encoded, out var configuration, out var problem))
            throw new RaftProtocolException($"InstallSnapshot carries a configuration that cannot be decoded: {problem}.");
        int length = ReadInt32(ref r);
        if (length < 0)
            throw new RaftProtocolException($"InstallSnapshot data length is negative ({length}).");
        if (length != r.Remaining)
            throw new RaftProtocolException($"InstallSnapshot data length is {length} but {r.Remaining} bytes follow.");
        byte[] data = length == 0 ? [] : GC.AllocateUninitializedArray<byte>(length);
        if (!r.TryCopyTo(data))
            throw new RaftProtocolException("InstallSnapshot data is truncated.");
        r.Advance(length);
        return new InstallSnapshot(from, to, term, snapshotIndex, snapshotTerm, configuration, offset, data, done);
    }

    private static ForwardRequest ReadForwardRequest(ref SequenceReader<byte> r, bool isRead, bool traced, bool hasKinds)
    {
        int from = ReadInt32(ref r);
        int to = ReadInt32(ref r);
        long term = ReadInt64(ref r);
        long requestId = ReadInt64(ref r);
        int count = ReadInt32(ref r);

        // The trace context, when flagged, is the last TraceContextSize bytes: the commands end before it.
        long remaining = r.Remaining - (traced ? TraceContextSize : 0);
        if (remaining < 0)
            throw new RaftProtocolException($"ForwardRequest is flagged as carrying a trace context ({TraceContextSize} bytes) but only {r.Remaining} bytes follow its fixed part.");
        if (count < 0)
            throw new RaftProtocolException($"ForwardRequest command count is negative ({count}).");
        if (isRead && count != 0)
            throw new RaftProtocolException($"ForwardRequest is a read but claims {count} commands.");
        int perCommand = CommandHeaderSize + (hasKinds ? 1 : 0);
        if (count > remaining / perCommand)
            throw new RaftProtocolException($"ForwardRequest claims {count} commands but only {remaining} bytes follow (each command needs at least {perCommand}).");

        // As for AppendEntries: the frame is consumed exactly, so the commands' data bytes are
        // whatever is not command lengths (or kinds); one array for all of them, sliced per command.
        long dataBytes = remaining - ((long)count * perCommand);
        if (count == 0 && dataBytes != 0)
            throw new RaftProtocolException($"ForwardRequest frame has {dataBytes} trailing bytes after its payload.");
        byte[] data = dataBytes == 0 ? [] : GC.AllocateUninitializedArray<byte>(checked((int)dataBytes));
        var commands = count == 0 ? [] : new ReadOnlyMemory<byte>[count];
        int offset = 0;
        for (int i = 0; i < count; i++)
        {
            int length = ReadInt32(ref r);
            if (length < 0)
                throw new RaftProtocolException($"ForwardRequest command {i} has a negative length ({length}).");
            if (length > data.Length - offset)
                throw new RaftProtocolException($"ForwardRequest command {i} claims {length} bytes but only {data.Length - offset} data bytes are left in the frame.");
            var slice = data.AsSpan(offset, length);
            if (!r.TryCopyTo(slice))
                throw new RaftProtocolException($"ForwardRequest command {i} is truncated.");
            r.Advance(length);
            commands[i] = new ReadOnlyMemory<byte>(data, offset, length);
            offset += length;
        }
        if (offset != data.Length)
            throw new RaftProtocolException($"ForwardRequest commands hold {offset} data bytes but the frame carries {data.Length}.");
        EntryKind[]? kinds = null;
        if (hasKinds)
        {
            kinds = new EntryKind[count];
            for (int i = 0; i < count; i++)
            {
                byte kind = ReadByte(ref r);
                if (kind is not ((byte)EntryKind.Command or (byte)EntryKind.Session))
                    throw new RaftProtocolException($"ForwardRequest command {i} has kind {kind}, which cannot be forwarded.");
                kinds[i] = (EntryKind)kind;
            }
        }
        return new ForwardRequest(from, to, term, requestId, isRead, commands) { Kinds = kinds, TraceParent = traced ? ReadTraceContext(ref r) : null };
    }

    // A W3C traceparent, version 00 (what Activity.Id is in the W3C format): the binary form carried
    // on the wire is its trace id, span id and flags. ActivityContext.TryParse checks the syntax.
    private static ActivityContext ParseTraceParent(string traceParent)
    {
        if (!ActivityContext.TryParse(traceParent, null, out var context) || !traceParent.StartsWith("00-", StringComparison.Ordinal) || traceParent.Length != 55
            || (context.TraceFlags & ~ActivityTraceFlags.Recorded) != 0)
            throw new ArgumentException($"ForwardRequest.TraceParent \"{traceParent}\" is not a W3C traceparent of version 00 (00-<32 hex>-<16 hex>-<00 or 01>, ids not all zero).", nameof(traceParent));
        return context;
    }

    private static void WriteTraceContext(IBufferWriter<byte> writer, ActivityContext context)
    {
        var span = writer.GetSpan(TraceContextSize);
        context.TraceId.CopyTo(span[..16]);
        context.SpanId.CopyTo(span.Slice(16, 8));
        span[24] = (byte)context.TraceFlags;
        writer.Advance(TraceContextSize);
    }

    private static string ReadTraceContext(ref SequenceReader<byte> r)
    {
        Span<byte> bytes = stackalloc byte[TraceContextSize];
        if (!r.TryCopyTo(bytes))
            throw Truncated();
        r.Advance(TraceContextSize);
        if (!bytes[..16].ContainsAnyExcept((byte)0) || !bytes.Slice(16, 8).ContainsAnyExcept((byte)0))
            throw new RaftProtocolException("ForwardRequest carries a trace context whose trace id or span id is all zeros (invalid in W3C trace context).");
        if ((bytes[24] & ~(byte)ActivityTraceFlags.Recorded) != 0)
            throw new RaftProtocolException($"ForwardRequest carries a trace context with unknown trace flags 0x{bytes[24]:X2}.");
        var traceId = ActivityTraceId.CreateFromBytes(bytes[..16]);
        var spanId = ActivitySpanId.CreateFromBytes(bytes.Slice(16, 8));
        return $"00-{traceId.ToHexString()}-{spanId.ToHexString()}-{bytes[24]:x2}";
    }

    private static ForwardResponse ReadForwardResponse(ref SequenceReader<byte> r)
    {
        int from = ReadInt32(ref r);
        int to = ReadInt32(ref r);
        long term = ReadInt64(ref r);
        long requestId = ReadInt64(ref r);
        long index = ReadInt64(ref r);
        int count = ReadInt32(ref r);
        int leaderId = ReadInt32(ref r);
        byte status = ReadByte(ref r);
        if (count < 0)
            throw new RaftProtocolException($"ForwardResponse count is negative ({count}).");
        if (!Enum.IsDefined((ForwardStatus)status))
            throw new RaftProtocolException($"ForwardResponse has unknown status {status}.");
        return new ForwardResponse(from, to, term, requestId, (ForwardStatus)status, index, count, leaderId);
    }

    private static int ReadInt32(ref SequenceReader<byte> r) =>
        r.TryReadLittleEndian(out int value) ? value : throw Truncated();

    private static long ReadInt64(ref SequenceReader<byte> r) =>
        r.TryReadLittleEndian(out long value) ? value : throw Truncated();

    private static byte ReadByte(ref SequenceReader<byte> r) =>
        r.TryRead(out byte value) ? value : throw Truncated();

    private static RaftProtocolException Truncated() => new("Frame payload is truncated.");

    /// <summary>Writes fixed-size fields into one span obtained from the writer, then advances it once.</summary>
    private ref struct FieldWriter
    {
        private readonly IBufferWriter<byte> _writer;
        private readonly Span<byte> _span;
        private int _position;

        public FieldWriter(IBufferWriter<byte> writer, int size)
        {
            _writer = writer;
            _span = writer.GetSpan(size)[..size];
            _position = 0;
        }

        public void Header(int payloadLength, MessageType type, byte flags)
        {
            BinaryPrimitives.WriteInt32LittleEndian(_span[_position..], payloadLength);
            _span[_position + 4] = (byte)type;
            _span[_position + 5] = flags;
            _span[_position + 6] = 0;
            _span[_position + 7] = 0;
            _position += HeaderSize;
        }

        public void Int32(int value)
        {
            BinaryPrimitives.WriteInt32LittleEndian(_span[_position..], value);
            _position += 4;
        }

        public void Int64(long value)
        {
            BinaryPrimitives.WriteInt64LittleEndian(_span[_position..], value);
            _position += 8;
        }

        public void Byte(byte value)
        {
            _span[_position] = value;
            _position += 1;
        }

        public readonly void Commit()
        {
            Debug.Assert(_position == _span.Length, "FieldWriter: every reserved byte must be written.");
            _writer.Advance(_position);
        }
    }
}
