using System.Buffers;
using System.Buffers.Binary;
using System.Reflection;
using System.Runtime.InteropServices;
using FsCheck.Xunit;

namespace Raft.Tests.Transport;

public class MessageCodecPropertyTests
{
    private const int Max = TcpTransportOptions.DefaultMaxFrameBytes;

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 300)]
    public void RequestVote_round_trips(RequestVote message, int seed) => AssertRoundTrip(message, seed);

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 300)]
    public void RequestVoteResponse_round_trips(RequestVoteResponse message, int seed) => AssertRoundTrip(message, seed);

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 300)]
    public void AppendEntries_round_trips(AppendEntries message, int seed) => AssertRoundTrip(message, seed);

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 300)]
    public void AppendEntriesResponse_round_trips(AppendEntriesResponse message, int seed) => AssertRoundTrip(message, seed);

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 300)]
    public void TimeoutNow_round_trips(TimeoutNow message, int seed) => AssertRoundTrip(message, seed);

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 300)]
    public void InstallSnapshot_round_trips(InstallSnapshot message, int seed) => AssertRoundTrip(message, seed);

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 300)]
    public void InstallSnapshotResponse_round_trips(InstallSnapshotResponse message, int seed) => AssertRoundTrip(message, seed);

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 300)]
    public void ForwardRequest_round_trips(ForwardRequest message, int seed) => AssertRoundTrip(message, seed);

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 300)]
    public void ForwardResponse_round_trips(ForwardResponse message, int seed) => AssertRoundTrip(message, seed);

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 100)]
    public void A_stream_of_frames_decodes_in_order_across_segment_boundaries(RaftMessage[] messages, int seed)
    {
        var writer = new ArrayBufferWriter<byte>();
        foreach (var m in messages)
            MessageCodec.Write(writer, m);
        var buffer = Sequences.Split(writer.WrittenMemory, new Random(seed), maxSegment: 13);

        foreach (var expected in messages)
        {
            Assert.True(MessageCodec.TryReadFrame(ref buffer, Max, out var actual));
            MessageAssert.Equal(expected, actual);
        }
        Assert.True(buffer.IsEmpty);
        Assert.False(MessageCodec.TryReadFrame(ref buffer, Max, out _));
    }

    [Property(Arbitrary = [typeof(MessageArbitraries)], MaxTest = 100)]
    public void Every_proper_prefix_of_a_frame_asks_for_more_data(RaftMessage message)
    {
        var frame = RawPeer.Frame(message);
        for (int length = 0; length < frame.Length; length++)
        {
            var prefix = new ReadOnlySequence<byte>(frame, 0, length);
            Assert.False(MessageCodec.TryReadFrame(ref prefix, Max, out _));
            Assert.Equal(length, prefix.Length); // Nothing consumed.
        }
    }

    internal static void AssertRoundTrip(RaftMessage message, int seed)
    {
        var writer = new ArrayBufferWriter<byte>();
        int written = MessageCodec.Write(writer, message);
        Assert.True(MessageCodec.TryGetPayloadLength(message, out long payload));
        Assert.Equal(MessageCodec.HeaderSize + payload, written);
        Assert.Equal(written, writer.WrittenCount);
        Assert.Equal(payload, BinaryPrimitives.ReadUInt32LittleEndian(writer.WrittenSpan));

        // One contiguous segment...
        var whole = new ReadOnlySequence<byte>(writer.WrittenMemory);
        Assert.True(MessageCodec.TryReadFrame(ref whole, Max, out var decoded));
        Assert.True(whole.IsEmpty);
        MessageAssert.Equal(message, decoded);

        // ...and the same bytes cut into random small segments.
        var split = Sequences.Split(writer.WrittenMemory, new Random(seed));
        Assert.True(MessageCodec.TryReadFrame(ref split, Max, out var decodedSplit));
        Assert.True(split.IsEmpty);
        MessageAssert.Equal(message, decodedSplit);
    }
}

public class MessageCodecTests
{
    private const int Max = 64 * 1024;

    [Fact]
    public void RequestVote_has_the_documented_wire_layout()
    {
        var frame = RawPeer.Frame(new RequestVote(From: 1, To: 2, Term: 3, LastLogIndex: 4, LastLogTerm: 5, PreVote: true, LeadershipTransfer: false));
        Assert.Equal(
            "20000000" + "01" + "01" + "0000" // length 32, type 1, flags PreVote, reserved
            + "01000000" + "02000000" + "0300000000000000" + "0400000000000000" + "0500000000000000",
            Convert.ToHexString(frame));
    }

    [Fact]
    public void AppendEntries_has_the_documented_wire_layout()
    {
        var frame = RawPeer.Frame(new AppendEntries(1, 2, 3, 4, 5, [new LogEntry(5, 3, EntryKind.Command, new byte[] { 0xAB, 0xCD })], 6, 7));
        Assert.Equal(
            "4B000000" + "03" + "00" + "0000" // length 52 + 21 + 2 = 75
            + "01000000" + "02000000" + "0300000000000000" + "0400000000000000" + "0500000000000000"
            + "0600000000000000" + "0700000000000000" + "01000000"
            + "0500000000000000" + "0300000000000000" + "00" + "02000000" + "ABCD",
            Convert.ToHexString(frame));
    }

    [Fact]
    public void Entry_payloads_of_one_message_share_one_array_copied_out_of_the_buffer()
    {
        var message = new AppendEntries(1, 2, 3, 0, 0,
            [
                new LogEntry(1, 3, EntryKind.Command, new byte[] { 1, 2, 3 }),
                new LogEntry(2, 3, EntryKind.NoOp, ReadOnlyMemory<byte>.Empty),
                new LogEntry(3, 3, EntryKind.Command, new byte[] { 4, 5 }),
            ],
            LeaderCommit: 0);
        var frame = RawPeer.Frame(message);
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.True(MessageCodec.TryReadFrame(ref buffer, Max, out var decoded));
        var entries = ((AppendEntries)decoded).Entries;

        Assert.True(MemoryMarshal.TryGetArray(entries[0].Data, out var first));
        Assert.True(MemoryMarshal.TryGetArray(entries[2].Data, out var third));
        Assert.Same(first.Array, third.Array);
        Assert.Equal(5, first.Array!.Length);
        Assert.NotSame(frame, first.Array);

        Array.Clear(frame); // The pipe buffer is reused after decoding; the entries must not change.
        Assert.Equal(new byte[] { 1, 2, 3 }, entries[0].Data.ToArray());
        Assert.Equal(new byte[] { 4, 5 }, entries[2].Data.ToArray());
        Assert.True(entries[1].Data.IsEmpty);
    }

    [Fact]
    public void An_oversized_header_is_rejected_before_its_payload_arrives()
    {
        var header = Header(length: Max + 1, type: 3);
        var buffer = new ReadOnlySequence<byte>(header);
        var ex = Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));
        Assert.Contains("MaxFrameBytes", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10)]
    [InlineData(99)]
    [InlineData(255)]
    public void An_unknown_message_type_is_rejected(byte type)
    {
        var buffer = new ReadOnlySequence<byte>(Header(16, type));
        var ex = Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));
        Assert.Contains("Unknown message type", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_flags_and_reserved_bits_are_rejected()
    {
        var frame = RawPeer.Frame(new TimeoutNow(1, 2, 3));
        frame[5] = 0x01; // TimeoutNow has no flags.
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));

        frame = RawPeer.Frame(new TimeoutNow(1, 2, 3));
        frame[7] = 0x80;
        buffer = new ReadOnlySequence<byte>(frame);
        Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));
    }

    [Fact]
    public void A_fixed_size_message_with_the_wrong_length_is_rejected()
    {
        var frame = RawPeer.Frame(new TimeoutNow(1, 2, 3)).Concat(new byte[] { 0 }).ToArray();
        BinaryPrimitives.WriteInt32LittleEndian(frame, 17);
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    [InlineData(2)]
    [InlineData(int.MaxValue)]
    public void An_entry_count_that_does_not_fit_the_frame_is_rejected(int count)
    {
        var frame = RawPeer.Frame(new AppendEntries(1, 2, 3, 4, 5, [new LogEntry(5, 3, EntryKind.Command, new byte[] { 1 })], 6));
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(MessageCodec.HeaderSize + 48), count);
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(int.MaxValue)]
    public void An_entry_length_that_disagrees_with_the_frame_is_rejected(int length)
    {
        var frame = RawPeer.Frame(new AppendEntries(1, 2, 3, 4, 5, [new LogEntry(5, 3, EntryKind.Command, new byte[] { 1 })], 6));
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(MessageCodec.HeaderSize + MessageCodec.AppendEntriesFixedSize + 17), length);
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));
    }

    [Fact]
    public void An_unknown_entry_kind_is_rejected()
    {
        var frame = RawPeer.Frame(new AppendEntries(1, 2, 3, 4, 5, [new LogEntry(5, 3, EntryKind.Command, new byte[] { 1 })], 6));
        frame[MessageCodec.HeaderSize + MessageCodec.AppendEntriesFixedSize + 16] = 7;
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));
    }

    [Theory]
    [InlineData(-1, 0)]
    [InlineData(1_000_000, 0)]
    [InlineData(0, -5)]
    [InlineData(0, 1_000)]
    public void Snapshot_member_counts_and_data_lengths_must_fit(int members, int dataLength)
    {
        var frame = RawPeer.Frame(new InstallSnapshot(1, 2, 3, 10, 2, [], 0, new byte[] { 9, 9 }, false));
        int at = MessageCodec.HeaderSize + 40;
        if (members != 0)
            BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(at), members);
        if (dataLength != 0)
            BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(at + 4 + ClusterConfiguration.Empty.Encode().Length), dataLength);
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));
    }

    [Theory]
    [InlineData(0, (byte)2, "unknown configuration format version 2")]   // version byte
    [InlineData(7, (byte)0x80, "unknown flags")]                          // the first member's flags
    [InlineData(3, (byte)0, "is not positive")]                            // the first member's id: 1 -> 0
    public void A_snapshot_chunk_whose_configuration_cannot_be_decoded_is_refused_with_the_reason(int offset, byte value, string reason)
    {
        var configuration = new ClusterConfiguration([ClusterMember.Voter(1, "a:1"), ClusterMember.Learner(2)]);
        var frame = RawPeer.Frame(new InstallSnapshot(1, 2, 3, 10, 2, configuration, 0, new byte[] { 9, 9 }, false));
        int at = MessageCodec.HeaderSize + 44; // the configuration's first byte
        frame[at + offset] = value;
        var buffer = new ReadOnlySequence<byte>(frame);
        var error = Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_message_with_a_null_entry_list_cannot_be_encoded()
    {
        var message = new AppendEntries(1, 2, 3, 0, 0, null!, 0);
        Assert.Throws<ArgumentException>(() => MessageCodec.TryGetPayloadLength(message, out _));
    }

    [Fact]
    public void Every_message_type_in_the_library_has_a_wire_encoding()
    {
        var types = typeof(RaftMessage).Assembly.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(RaftMessage)) && !t.IsAbstract && t.IsPublic)
            .ToArray();
        Assert.Equal(9, types.Length);
        foreach (var type in types)
        {
            var sample = MessageGenerators.OneOfEach(1, 2).Single(m => m.GetType() == type);
            Assert.True(MessageCodec.TryGetMessageType(sample, out _), type.Name);
        }
    }

    [Theory]
    [InlineData(typeof(RequestVote), "From,To,Term,LastLogIndex,LastLogTerm,PreVote,LeadershipTransfer")]
    [InlineData(typeof(RequestVoteResponse), "From,To,Term,Granted,PreVote")]
    [InlineData(typeof(AppendEntries), "From,To,Term,PrevLogIndex,PrevLogTerm,Entries,LeaderCommit,ReadSequence")]
    [InlineData(typeof(AppendEntriesResponse), "From,To,Term,Success,MatchIndex,HintIndex,HintTerm,ReadSequence")]
    [InlineData(typeof(TimeoutNow), "From,To,Term")]
    [InlineData(typeof(InstallSnapshot), "From,To,Term,SnapshotIndex,SnapshotTerm,Configuration,Offset,Data,Done")]
    [InlineData(typeof(InstallSnapshotResponse), "From,To,Term,SnapshotIndex,NextOffset,Success,Done")]
    [InlineData(typeof(ForwardRequest), "From,To,Term,RequestId,IsRead,Commands,TraceParent,Kinds")]
    [InlineData(typeof(ForwardResponse), "From,To,Term,RequestId,Status,Index,Count,LeaderId")]
    public void The_codec_knows_every_field_of_each_message(Type type, string encodedFields)
    {
        // A field added to a message record must be added to MessageCodec (and to this list).
        var fields = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.Name != "EqualityContract")
            .Select(p => p.Name)
            .Order(StringComparer.Ordinal);
        Assert.Equal(encodedFields.Split(',').Order(StringComparer.Ordinal), fields);
    }

    private static byte[] Header(int length, byte type)
    {
        var header = new byte[MessageCodec.HeaderSize];
        BinaryPrimitives.WriteInt32LittleEndian(header, length);
        header[4] = type;
        return header;
    }
}

public class ForwardingCodecTests
{
    private const int Max = 64 * 1024;

    /// <summary>Where the command count sits in a ForwardRequest frame.</summary>
    private const int CountAt = MessageCodec.HeaderSize + 24;

    /// <summary>Where the first command's length sits in a ForwardRequest frame.</summary>
    private const int FirstLengthAt = MessageCodec.HeaderSize + MessageCodec.ForwardRequestFixedSize;

    /// <summary>Where the count and the status sit in a ForwardResponse frame.</summary>
    private const int ResponseCountAt = MessageCodec.HeaderSize + 32;
    private const int StatusAt = MessageCodec.HeaderSize + 40;

    public static TheoryData<ForwardRequest> Requests => new()
    {
        new ForwardRequest(1, 2, 3, 4, IsRead: false, []),
        new ForwardRequest(1, 2, 3, 4, IsRead: true, []),
        new ForwardRequest(7, 3, long.MaxValue, long.MinValue, IsRead: false, [new byte[] { 1, 2, 3 }]),
        new ForwardRequest(-1, int.MaxValue, 0, -1, IsRead: false,
            [new byte[] { 1, 2, 3 }, ReadOnlyMemory<byte>.Empty, new byte[] { 4 }, new byte[300], ReadOnlyMemory<byte>.Empty]),
        new ForwardRequest(1, 2, 3, 4, IsRead: false, [ReadOnlyMemory<byte>.Empty]),
        new ForwardRequest(1, 2, 3, 4, IsRead: false, [new byte[] { 9, 8, 7 }.AsMemory(1, 2)]),
    };

    public static TheoryData<ForwardResponse> Responses => new()
    {
        new ForwardResponse(2, 1, 5, 4, ForwardStatus.Accepted, Index: 100, Count: 3, LeaderId: 2),
        new ForwardResponse(2, 1, 5, 4, ForwardStatus.Accepted, Index: 100, Count: 0, LeaderId: 2),
        new ForwardResponse(2, 1, 5, long.MaxValue, ForwardStatus.NotLeader, 0, 0, LeaderId: 0),
        new ForwardResponse(int.MinValue, -1, long.MinValue, -1, ForwardStatus.Busy, long.MinValue, int.MaxValue, int.MinValue),
        new ForwardResponse(2, 1, 5, 4, ForwardStatus.Transferring, 0, 0, 3),
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public void ForwardRequest_round_trips(ForwardRequest message)
    {
        MessageCodecPropertyTests.AssertRoundTrip(message, seed: 42);
        var decoded = (ForwardRequest)Decode(RawPeer.Frame(message));
        Assert.Equal(message.IsRead, decoded.IsRead);
        Assert.Equal(message.Commands.Count, decoded.Commands.Count);
    }

    [Theory]
    [MemberData(nameof(Responses))]
    public void ForwardResponse_round_trips(ForwardResponse message)
    {
        MessageCodecPropertyTests.AssertRoundTrip(message, seed: 42);
        Assert.Equal(message, Decode(RawPeer.Frame(message)));
    }

    [Fact]
    public void ForwardRequest_has_the_documented_wire_layout()
    {
        var frame = RawPeer.Frame(new ForwardRequest(1, 2, 3, 4, IsRead: false, [new byte[] { 0xAB, 0xCD }, ReadOnlyMemory<byte>.Empty]));
        Assert.Equal(
            "26000000" + "08" + "00" + "0000" // length 28 + (4 + 2) + (4 + 0) = 38, type 8, no flags
            + "01000000" + "02000000" + "0300000000000000" + "0400000000000000" + "02000000"
            + "02000000" + "ABCD"
            + "00000000",
            Convert.ToHexString(frame));
    }

    [Fact]
    public void A_read_ForwardRequest_has_the_documented_wire_layout()
    {
        var frame = RawPeer.Frame(new ForwardRequest(1, 2, 3, 4, IsRead: true, []));
        Assert.Equal(
            "1C000000" + "08" + "01" + "0000" // length 28, type 8, flags IsRead
            + "01000000" + "02000000" + "0300000000000000" + "0400000000000000" + "00000000",
            Convert.ToHexString(frame));
    }

    [Fact]
    public void ForwardResponse_has_the_documented_wire_layout()
    {
        var frame = RawPeer.Frame(new ForwardResponse(1, 2, 3, 4, ForwardStatus.Busy, Index: 5, Count: 6, LeaderId: 7));
        Assert.Equal(
            "29000000" + "09" + "00" + "0000" // length 41, type 9, no flags
            + "01000000" + "02000000" + "0300000000000000" + "0400000000000000"
            + "0500000000000000" + "06000000" + "07000000" + "03",
            Convert.ToHexString(frame));
    }

    [Fact]
    public void Command_payloads_of_one_request_share_one_array_copied_out_of_the_buffer()
    {
        var frame = RawPeer.Frame(new ForwardRequest(1, 2, 3, 4, IsRead: false,
            [new byte[] { 1, 2, 3 }, ReadOnlyMemory<byte>.Empty, new byte[] { 4, 5 }]));
        var commands = ((ForwardRequest)Decode(frame)).Commands;

        Assert.Equal(3, commands.Count);
        Assert.True(MemoryMarshal.TryGetArray(commands[0], out var first));
        Assert.True(MemoryMarshal.TryGetArray(commands[2], out var third));
        Assert.Same(first.Array, third.Array);
        Assert.Equal(5, first.Array!.Length);
        Assert.NotSame(frame, first.Array);

        Array.Clear(frame); // The pipe buffer is reused after decoding; the commands must not change.
        Assert.Equal(new byte[] { 1, 2, 3 }, commands[0].ToArray());
        Assert.True(commands[1].IsEmpty);
        Assert.Equal(new byte[] { 4, 5 }, commands[2].ToArray());
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public void A_negative_command_count_is_rejected(int count)
    {
        var frame = RequestFrame();
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(CountAt), count);
        AssertRejected(frame, "ForwardRequest command count is negative", $"({count})");
    }

    [Theory]
    [InlineData(3)]
    [InlineData(1000)]
    [InlineData(int.MaxValue)]
    public void A_command_count_larger_than_the_frame_is_rejected(int count)
    {
        var frame = RequestFrame();
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(CountAt), count);
        AssertRejected(frame, "ForwardRequest", $"claims {count} commands");
    }

    [Fact]
    public void A_command_count_smaller_than_the_frame_is_rejected()
    {
        var frame = RequestFrame(); // Two commands: [1, 2] and [3].
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(CountAt), 1);
        AssertRejected(frame, "ForwardRequest commands hold 2 data bytes but the frame carries 7");
    }

    [Fact]
    public void A_zero_command_count_with_bytes_after_it_is_rejected()
    {
        var frame = RequestFrame();
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(CountAt), 0);
        AssertRejected(frame, "ForwardRequest frame has 11 trailing bytes");
    }

    [Theory]
    [InlineData(-1, "command 0 has a negative length (-1)")]
    [InlineData(int.MinValue, "command 0 has a negative length")]
    [InlineData(4, "command 0 claims 4 bytes but only 3 data bytes are left")]
    [InlineData(int.MaxValue, "command 0 claims 2147483647 bytes")]
    [InlineData(0, "command 1 claims 66049 bytes")] // The next length is read from [1, 2, 1, 0].
    [InlineData(1, "command 1 claims 258 bytes")] // ...from [2, 1, 0, 0].
    public void A_command_length_that_disagrees_with_the_frame_is_rejected(int length, string expected)
    {
        var frame = RequestFrame();
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(FirstLengthAt), length);
        AssertRejected(frame, "ForwardRequest", expected);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    public void Trailing_bytes_after_the_last_command_are_rejected(int extra)
    {
        var frame = RequestFrame().Concat(new byte[extra]).ToArray();
        BinaryPrimitives.WriteInt32LittleEndian(frame, frame.Length - MessageCodec.HeaderSize);
        AssertRejected(frame, "ForwardRequest commands hold 3 data bytes", $"carries {3 + extra}");
    }

    [Fact]
    public void Trailing_bytes_after_an_empty_command_list_are_rejected()
    {
        var frame = RawPeer.Frame(new ForwardRequest(1, 2, 3, 4, IsRead: true, [])).Concat(new byte[] { 0, 0, 0, 0 }).ToArray();
        BinaryPrimitives.WriteInt32LittleEndian(frame, frame.Length - MessageCodec.HeaderSize);
        AssertRejected(frame, "ForwardRequest frame has 4 trailing bytes");
    }

    [Fact]
    public void A_read_request_that_carries_commands_is_rejected()
    {
        var frame = RequestFrame();
        frame[5] = 0x01; // IsRead
        AssertRejected(frame, "ForwardRequest is a read but claims 2 commands");
    }

    [Fact]
    public void A_ForwardRequest_shorter_than_its_fixed_part_is_rejected()
    {
        var frame = RawPeer.Frame(new ForwardRequest(1, 2, 3, 4, IsRead: false, []))[..^1];
        BinaryPrimitives.WriteInt32LittleEndian(frame, frame.Length - MessageCodec.HeaderSize);
        AssertRejected(frame, "ForwardRequest frame of 27 bytes is shorter than its fixed part (28 bytes)");
    }

    [Fact]
    public void Unknown_ForwardRequest_flags_are_rejected()
    {
        var frame = RawPeer.Frame(new ForwardRequest(1, 2, 3, 4, IsRead: true, []));
        frame[5] = 0x09; // 0x01 IsRead, 0x02 TraceContext and 0x04 HasKinds are defined
        AssertRejected(frame, "ForwardRequest frame has unknown flags 0x09");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(6)]
    [InlineData(255)]
    public void An_unknown_forward_status_is_rejected(byte status)
    {
        var frame = RawPeer.Frame(new ForwardResponse(1, 2, 3, 4, ForwardStatus.Accepted, 5, 6, 7));
        frame[StatusAt] = status;
        AssertRejected(frame, $"ForwardResponse has unknown status {status}");
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public void A_negative_forward_response_count_is_rejected(int count)
    {
        var frame = RawPeer.Frame(new ForwardResponse(1, 2, 3, 4, ForwardStatus.Accepted, 5, 6, 7));
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(ResponseCountAt), count);
        AssertRejected(frame, $"ForwardResponse count is negative ({count})");
    }

    [Fact]
    public void ForwardResponse_flags_are_rejected()
    {
        var frame = RawPeer.Frame(new ForwardResponse(1, 2, 3, 4, ForwardStatus.Accepted, 5, 6, 7));
        frame[5] = 0x01;
        AssertRejected(frame, "ForwardResponse frame has unknown flags 0x01");
    }

    [Theory]
    [InlineData(40)]
    [InlineData(42)]
    public void A_ForwardResponse_of_the_wrong_length_is_rejected(int length)
    {
        var frame = RawPeer.Frame(new ForwardResponse(1, 2, 3, 4, ForwardStatus.Accepted, 5, 6, 7));
        frame = [.. frame[..Math.Min(frame.Length, MessageCodec.HeaderSize + length)], .. new byte[Math.Max(0, MessageCodec.HeaderSize + length - frame.Length)]];
        BinaryPrimitives.WriteInt32LittleEndian(frame, length);
        AssertRejected(frame, $"ForwardResponse frame is {length} bytes; it must be exactly 41");
    }

    [Fact]
    public void A_request_with_a_null_command_list_cannot_be_encoded()
    {
        var message = new ForwardRequest(1, 2, 3, 4, IsRead: false, null!);
        AssertNotEncodable(message, "Commands is null");
    }

    [Fact]
    public void A_read_request_with_commands_cannot_be_encoded()
    {
        var message = new ForwardRequest(1, 2, 3, 4, IsRead: true, [new byte[] { 1 }]);
        AssertNotEncodable(message, "read but carries 1 commands");
    }

    [Fact]
    public void A_read_request_with_only_empty_commands_still_cannot_be_encoded()
    {
        var message = new ForwardRequest(1, 2, 3, 4, IsRead: true, [ReadOnlyMemory<byte>.Empty]);
        AssertNotEncodable(message, "read but carries 1 commands");
    }

    [Fact]
    public void A_response_the_decoder_would_reject_cannot_be_encoded()
    {
        AssertNotEncodable(new ForwardResponse(1, 2, 3, 4, ForwardStatus.Accepted, 5, Count: -1, 7), "Count is negative (-1)");
        AssertNotEncodable(new ForwardResponse(1, 2, 3, 4, (ForwardStatus)0, 5, 6, 7), "Status 0 is not a defined ForwardStatus");
        AssertNotEncodable(new ForwardResponse(1, 2, 3, 4, (ForwardStatus)9, 5, 6, 7), "Status 9 is not a defined ForwardStatus");
    }

    /// <summary>A valid ForwardRequest frame with two commands, [1, 2] and [3]: payload 28 + 6 + 5 = 39 bytes.</summary>
    private static byte[] RequestFrame() =>
        RawPeer.Frame(new ForwardRequest(1, 2, 3, 4, IsRead: false, [new byte[] { 1, 2 }, new byte[] { 3 }]));

    private static RaftMessage Decode(byte[] frame)
    {
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.True(MessageCodec.TryReadFrame(ref buffer, Max, out var message));
        Assert.True(buffer.IsEmpty);
        return message;
    }

    private static void AssertRejected(byte[] frame, params string[] expected)
    {
        // Whole, and split into small segments: the outcome must not depend on segment boundaries.
        var whole = new ReadOnlySequence<byte>(frame);
        var ex = Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref whole, Max, out _));
        foreach (var part in expected)
            Assert.Contains(part, ex.Message, StringComparison.Ordinal);

        var split = Sequences.Split(frame, new Random(7), maxSegment: 3);
        var exSplit = Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref split, Max, out _));
        Assert.Equal(ex.Message, exSplit.Message);
    }

    private static void AssertNotEncodable(RaftMessage message, string expected)
    {
        var ex = Assert.Throws<ArgumentException>(() => MessageCodec.TryGetPayloadLength(message, out _));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);

        var writer = new ArrayBufferWriter<byte>();
        ex = Assert.Throws<ArgumentException>(() => MessageCodec.Write(writer, message));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, writer.WrittenCount); // Nothing half-written.
    }
}
