using System.Buffers;

namespace Raft.Tests.Transport;

/// <summary>
/// How the codec fills a writer: a pipe over a socket sends each of its buffers with its own system
/// call, so an AppendEntries frame asks for one buffer that holds all of it.
/// </summary>
public sealed class MessageCodecBufferTests
{
    [Fact]
    public void An_AppendEntries_frame_is_written_into_one_contiguous_buffer()
    {
        var entries = new List<LogEntry>();
        for (var i = 1; i <= 16; i++)
            entries.Add(new LogEntry(i, 1, EntryKind.Command, new byte[4096]));
        var message = new AppendEntries(1, 2, 1, 0, 0, entries, 0);
        var writer = new SegmentCountingWriter(minimumSegment: 16 * 1024);

        var written = MessageCodec.Write(writer, message);

        Assert.True(written > 16 * 4096);
        Assert.Equal(1, writer.Segments);
        Assert.Equal(written, writer.Written);
    }

    [Fact]
    public void Small_frames_share_a_buffer()
    {
        var writer = new SegmentCountingWriter(minimumSegment: 16 * 1024);
        for (var i = 0; i < 10; i++)
            MessageCodec.Write(writer, new AppendEntries(1, 2, 1, i, 1, [new LogEntry(i + 1, 1, EntryKind.Command, new byte[100])], i));
        Assert.Equal(1, writer.Segments);
    }

    // An IBufferWriter that, like StreamPipeWriter, starts a new buffer of at least the size asked
    // for when the current one has less room left, and counts the buffers it started.
    private sealed class SegmentCountingWriter(int minimumSegment) : IBufferWriter<byte>
    {
        private byte[] _current = [];
        private int _used;

        public int Segments { get; private set; }

        public long Written { get; private set; }

        public void Advance(int count)
        {
            _used += count;
            Written += count;
        }

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            var needed = Math.Max(sizeHint, 1);
            if (_current.Length - _used < needed)
            {
                _current = new byte[Math.Max(minimumSegment, needed)];
                _used = 0;
                Segments++;
            }
            return _current.AsMemory(_used);
        }

        public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;
    }
}
