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

    private static void AssertRoundTrip(RaftMessage message, int seed)
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
    [InlineData(8)]
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
            BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(at + 4), dataLength);
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref buffer, Max, out _));
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
        Assert.Equal(7, types.Length);
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
    [InlineData(typeof(InstallSnapshot), "From,To,Term,SnapshotIndex,SnapshotTerm,Members,Offset,Data,Done")]
    [InlineData(typeof(InstallSnapshotResponse), "From,To,Term,SnapshotIndex,NextOffset,Success,Done")]
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
