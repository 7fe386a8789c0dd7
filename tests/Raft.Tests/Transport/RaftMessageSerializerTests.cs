using System.Buffers;

namespace Raft.Tests.Transport;

/// <summary>
/// <see cref="RaftMessageSerializer"/>, the public face of the TCP transport's codec for custom
/// transports: every message type round-trips, bad bytes are refused with a reason, and the bytes
/// are exactly the TCP transport's.
/// </summary>
public sealed class RaftMessageSerializerTests
{
    private const int Max = 64 * 1024;

    public static TheoryData<int> Seeds() => [.. Enumerable.Range(1, 12)];

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Every_message_type_round_trips_through_every_entry_point(int seed)
    {
        foreach (var message in MessageGenerators.OneOfEach(1, 2).Select(m => Reseed(m, seed)))
        {
            var frame = RaftMessageSerializer.Serialize(message);
            Assert.Equal(RaftMessageSerializer.GetSerializedLength(message), frame.Length);

            var writer = new ArrayBufferWriter<byte>();
            Assert.Equal(frame.Length, RaftMessageSerializer.Serialize(message, writer));
            Assert.Equal(frame, writer.WrittenSpan.ToArray());
            Assert.Equal(RawPeer.Frame(message), frame); // the TCP transport's bytes

            Assert.True(RaftMessageSerializer.TryDeserialize(frame, Max, out var decoded, out var error), error);
            MessageAssert.Equal(message, decoded);
            Assert.True(RaftMessageSerializer.TryDeserialize(Sequences.Split(frame, new Random(seed)), Max, out decoded, out error), error);
            MessageAssert.Equal(message, decoded);
            MessageAssert.Equal(message, RaftMessageSerializer.Deserialize(new ReadOnlySequence<byte>(frame), Max));
        }
    }

    [Fact]
    public void A_stream_of_frames_is_read_one_frame_at_a_time()
    {
        var messages = MessageGenerators.OneOfEach(3, 4);
        var stream = messages.SelectMany(RaftMessageSerializer.Serialize).ToArray();

        var buffer = new ReadOnlySequence<byte>(stream);
        var decoded = new List<RaftMessage>();
        while (RaftMessageSerializer.TryReadFrame(ref buffer, Max, out var message))
            decoded.Add(message);

        Assert.True(buffer.IsEmpty);
        Assert.Equal(messages.Count, decoded.Count);
        for (var i = 0; i < messages.Count; i++)
            MessageAssert.Equal(messages[i], decoded[i]);
    }

    [Fact]
    public void A_truncated_frame_is_refused_as_truncated_at_every_length()
    {
        foreach (var message in MessageGenerators.OneOfEach(1, 2))
        {
            var frame = RaftMessageSerializer.Serialize(message);
            for (var length = 0; length < frame.Length; length++)
            {
                Assert.False(RaftMessageSerializer.TryDeserialize(frame.AsMemory(0, length), Max, out var decoded, out var error));
                Assert.Null(decoded);
                Assert.Contains("truncated", error, StringComparison.Ordinal);

                // A stream reader waits for more instead, and consumes nothing.
                var partial = new ReadOnlySequence<byte>(frame, 0, length);
                Assert.False(RaftMessageSerializer.TryReadFrame(ref partial, Max, out _));
                Assert.Equal(length, partial.Length);
            }
        }
    }

    [Fact]
    public void Bytes_after_the_frame_are_refused()
    {
        var frame = RaftMessageSerializer.Serialize(new TimeoutNow(1, 2, 3));
        var longer = frame.Concat(new byte[] { 0 }).ToArray();

        Assert.False(RaftMessageSerializer.TryDeserialize(longer, Max, out _, out var error));
        Assert.Equal("1 bytes follow the TimeoutNow frame; one frame was expected.", error);
    }

    [Fact]
    public void A_frame_over_the_limit_is_refused_from_its_header()
    {
        var frame = RaftMessageSerializer.Serialize(new AppendEntries(1, 2, 3, 4, 5, [new LogEntry(5, 3, EntryKind.Command, new byte[5000])], 4));

        Assert.False(RaftMessageSerializer.TryDeserialize(frame.AsMemory(0, RaftMessageSerializer.HeaderSize), 4096, out _, out var error));
        Assert.Equal($"Frame of {frame.Length - RaftMessageSerializer.HeaderSize} bytes exceeds MaxFrameBytes (4096).", error);
        var thrown = Assert.Throws<RaftProtocolException>(() => RaftMessageSerializer.Deserialize(new ReadOnlySequence<byte>(frame), 4096));
        Assert.Equal(error, thrown.Message);
    }

    [Theory]
    [InlineData(4, 0, "Unknown message type 0.")]
    [InlineData(4, 200, "Unknown message type 200.")]
    [InlineData(5, 0x80, "TimeoutNow frame has unknown flags 0x80.")]
    [InlineData(6, 1, "Frame header reserved field is 0x0001, not 0.")]
    public void A_corrupt_header_is_refused_with_its_reason(int offset, byte value, string expected)
    {
        var frame = RaftMessageSerializer.Serialize(new TimeoutNow(1, 2, 3));
        frame[offset] = value;

        Assert.False(RaftMessageSerializer.TryDeserialize(frame, Max, out var decoded, out var error));
        Assert.Null(decoded);
        Assert.Equal(expected, error);
    }

    [Fact]
    public void A_message_type_outside_the_format_cannot_be_serialized()
    {
        var error = Assert.Throws<ArgumentException>(() => RaftMessageSerializer.Serialize(new CustomMessage(1, 2, 3)));
        Assert.Contains("CustomMessage is not a message type of the Raft wire format", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => RaftMessageSerializer.Serialize(new CustomMessage(1, 2, 3), new ArrayBufferWriter<byte>()));
    }

    [Fact]
    public void The_version_is_the_one_the_TCP_transport_announces()
    {
        Assert.Equal(ConnectionPreface.CurrentVersion, RaftMessageSerializer.Version);
        Assert.Equal(TcpTransportOptions.DefaultMaxFrameBytes, RaftMessageSerializer.DefaultMaxFrameBytes);
    }

    [Fact]
    public void Limits_are_validated()
    {
        var frame = RaftMessageSerializer.Serialize(new TimeoutNow(1, 2, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => RaftMessageSerializer.TryDeserialize(frame, 0, out _, out _));
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.Throws<ArgumentOutOfRangeException>(() => RaftMessageSerializer.TryReadFrame(ref buffer, -1, out _));
    }

    // ------------------------------------------------------------------ the trace context of ForwardRequest

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_ForwardRequests_trace_context_round_trips_in_25_bytes_after_the_commands(bool isRead)
    {
        const string traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        ReadOnlyMemory<byte>[] commands = isRead ? [] : [new byte[] { 1, 2 }];
        var plain = new ForwardRequest(1, 2, 3, 4, isRead, commands);
        var traced = plain with { TraceParent = traceParent };

        var frame = RaftMessageSerializer.Serialize(traced);

        Assert.Equal(RaftMessageSerializer.Serialize(plain).Length + 25, frame.Length);
        Assert.Equal((byte)((isRead ? 0x01 : 0) | 0x02), frame[5]);
        Assert.Equal(Convert.FromHexString("0af7651916cd43dd8448eb211c80319c" + "b7ad6b7169203331" + "01"), frame[^25..]);
        Assert.True(RaftMessageSerializer.TryDeserialize(frame, Max, out var decoded, out var error), error);
        Assert.Equal(traceParent, ((ForwardRequest)decoded).TraceParent);
        MessageAssert.Equal(traced, decoded);
    }

    [Theory]
    [InlineData("not a traceparent")]
    [InlineData("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")] // version 01 is not the one encoded
    [InlineData("00-00000000000000000000000000000000-b7ad6b7169203331-01")] // all-zero trace id
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01")] // all-zero span id
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02")] // unknown flag
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra")]
    public void An_invalid_trace_parent_cannot_be_serialized(string traceParent)
    {
        var message = new ForwardRequest(1, 2, 3, 4, IsRead: true, []) { TraceParent = traceParent };

        var error = Assert.Throws<ArgumentException>(() => RaftMessageSerializer.Serialize(message));
        Assert.Contains("is not a W3C traceparent of version 00", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, "trace id or span id is all zeros")]
    [InlineData(16, "trace id or span id is all zeros")]
    [InlineData(24, "unknown trace flags 0x80")]
    public void A_corrupt_trace_context_on_the_wire_is_refused(int field, string expected)
    {
        var message = new ForwardRequest(1, 2, 3, 4, IsRead: true, []) { TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };
        var frame = RaftMessageSerializer.Serialize(message);
        var context = frame.AsSpan(frame.Length - 25);
        if (field == 24)
            context[24] = 0x80;
        else
            context.Slice(field, field == 0 ? 16 : 8).Clear();

        Assert.False(RaftMessageSerializer.TryDeserialize(frame, Max, out _, out var error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_trace_context_flag_without_its_bytes_is_refused()
    {
        // A read request (no commands) flagged as traced, but with nothing after its fixed part.
        var frame = RaftMessageSerializer.Serialize(new ForwardRequest(1, 2, 3, 4, IsRead: true, []));
        frame[5] |= 0x02;

        Assert.False(RaftMessageSerializer.TryDeserialize(frame, Max, out _, out var error));
        Assert.Equal("ForwardRequest is flagged as carrying a trace context (25 bytes) but only 0 bytes follow its fixed part.", error);
    }

    [Fact]
    public void Commands_and_the_trace_context_cannot_be_confused()
    {
        // 25 bytes of command data in an untraced request must not be read as a trace context, nor
        // the other way round: the flag alone decides.
        var command = Enumerable.Range(1, 21).Select(i => (byte)i).ToArray();
        var untraced = new ForwardRequest(1, 2, 3, 4, IsRead: false, [command]);
        var frame = RaftMessageSerializer.Serialize(untraced);
        Assert.True(RaftMessageSerializer.TryDeserialize(frame, Max, out var decoded, out var error), error);
        Assert.Null(((ForwardRequest)decoded).TraceParent);

        frame[5] |= 0x02; // claims a trace context: the 25 bytes of the command's length and data would be it
        Assert.False(RaftMessageSerializer.TryDeserialize(frame, Max, out _, out error));
        Assert.Contains("ForwardRequest claims 1 commands but only 0 bytes follow", error, StringComparison.Ordinal);
    }

    private static RaftMessage Reseed(RaftMessage message, int seed) => message switch
    {
        ForwardRequest forward => forward with { TraceParent = seed % 2 == 0 ? MessageGenerators.TraceParentFrom(seed) : null },
        _ => message with { Term = message.Term ^ seed },
    };

    private sealed record CustomMessage(int From, int To, long Term) : RaftMessage(From, To, Term);
}
