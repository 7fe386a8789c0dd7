using System.Buffers.Binary;
using Raft.Testing.Storage;

namespace Raft.Tests.Storage;

/// <summary>
/// The search recovery runs after a damaged record at the end of the log (is there a valid record of
/// a later write after it?) is linear in the tail's length, and decides exactly as the byte-by-byte
/// search that checksummed every candidate on its own.
/// </summary>
public class TornTailSearchTests
{
    private const int TornTailCut = 2001;

    [Fact]
    public void Crc32CShift_equals_feeding_zero_bytes()
    {
        var random = new Random(7);
        var zeros = new byte[5000];
        for (var trial = 0; trial < 200; trial++)
        {
            var register = (uint)random.NextInt64(0, 1L << 32);
            var length = trial < 20 ? trial : random.Next(zeros.Length);
            Assert.Equal(LogFormat.Crc32CUpdate(register, zeros.AsSpan(0, length)), LogFormat.Crc32CShift(register, length));
        }
        // Large shifts compose.
        const long big = (1L << 33) + 12345;
        Assert.Equal(LogFormat.Crc32CShift(LogFormat.Crc32CShift(0xDEADBEEF, big), 999), LogFormat.Crc32CShift(0xDEADBEEF, big + 999));
    }

    [Fact]
    public void The_search_finds_what_the_byte_by_byte_search_finds()
    {
        var random = new Random(11);
        var found = 0;
        for (var trial = 0; trial < 400; trial++)
        {
            var (bytes, badOffset, badIndex) = RandomTail(random);
            var expected = ReferenceSearch(bytes, badOffset, badIndex);
            long work = 0;
            var actual = Search(bytes, badOffset, badIndex, ref work);
            Assert.True(expected == actual, $"trial {trial}: expected {expected}, found {actual}");
            if (actual >= 0)
                found++;
        }
        // Both outcomes must be common for the comparison to mean something.
        Assert.InRange(found, 80, 320);
    }

    [Fact]
    public async Task A_crafted_tail_of_4_MiB_is_cut_after_linear_work()
    {
        // Every 28 bytes a header that passes every test but the checksum, each claiming a payload
        // that runs to the end of the file: checksumming each candidate on its own reads about
        // 4 MiB * 4 MiB / 56 bytes (hundreds of GB).
        var (bytes, badOffset, _) = CraftedSegment(4 << 20, validLaterRecord: false);
        var fs = new CrashFaithfulFileSystem();
        var directory = Path.GetFullPath("/crafted-tail");
        fs.CreateDirectory(directory);
        fs.WriteAllBytesDurably(Path.Combine(directory, LogFormat.SegmentFileName(1)), bytes);
        var logger = new ListLogger();

        await using var store = await FileLogStore.OpenAsync(directory, new FileLogStoreOptions { FileSystem = fs }, logger.AsFactory());

        Assert.Equal(9, store.LastIndex);
        Assert.True(logger.Has(TornTailCut));
        var tail = bytes.Length - badOffset;
        Assert.InRange(store.RecoveryWork, tail / 2, 3L * tail);
    }

    [Fact]
    public void A_crafted_tail_with_a_valid_later_record_at_its_end_is_found_after_linear_work()
    {
        var (bytes, badOffset, badIndex) = CraftedSegment(1 << 20, validLaterRecord: true);
        long work = 0;
        var later = Search(bytes, badOffset, badIndex, ref work);
        Assert.Equal(bytes.Length - (LogFormat.RecordOverhead + 10), later);
        Assert.InRange(work, (bytes.Length - badOffset) / 2, 3L * (bytes.Length - badOffset));
    }

    [Fact]
    public async Task A_crafted_tail_with_a_valid_later_record_refuses_to_start()
    {
        var (bytes, _, _) = CraftedSegment(256 << 10, validLaterRecord: true);
        var fs = new CrashFaithfulFileSystem();
        var directory = Path.GetFullPath("/crafted-tail-later");
        fs.CreateDirectory(directory);
        fs.WriteAllBytesDurably(Path.Combine(directory, LogFormat.SegmentFileName(1)), bytes);

        var ex = await Assert.ThrowsAsync<LogCorruptionException>(async () => await FileLogStore.OpenAsync(directory, new FileLogStoreOptions { FileSystem = fs }));
        Assert.Contains("a valid record of a later write follows", ex.Message, StringComparison.Ordinal);
    }

    private static long Search(byte[] bytes, long badOffset, long badIndex, ref long work)
    {
        using var file = new ArrayFile(bytes);
        using var reader = new SegmentReader(file, bytes.Length);
        return FileLogStore.FindLaterBatch(reader, badOffset, bytes.Length, badIndex, ref work);
    }

    // A segment: records 1..9 of one batch, a corrupt record for index 10, then a tail in which every
    // 28 bytes holds a plausible header of index 11 of a later batch whose payload runs to the end,
    // optionally ending in a valid record of index 11.
    private static (byte[] Bytes, long BadOffset, long BadIndex) CraftedSegment(int size, bool validLaterRecord)
    {
        var bytes = new byte[size];
        LogFormat.WriteSegmentHeader(bytes, 1);
        var position = LogFormat.SegmentHeaderSize;
        for (var i = 1; i <= 10; i++)
            position += LogFormat.WriteRecord(bytes.AsSpan(position), LogAssert.Entry(i, 1, 20), (uint)(i - 1));
        var badOffset = position - (LogFormat.RecordOverhead + 20);
        bytes[badOffset + LogFormat.RecordHeaderSize] ^= 0xFF; // corrupt record 10's payload
        var end = validLaterRecord ? size - (LogFormat.RecordOverhead + 10) : size;
        if (validLaterRecord)
            LogFormat.WriteRecord(bytes.AsSpan(end), LogAssert.Entry(11, 2, 10), 0);
        for (var p = position; p + LogFormat.RecordHeaderSize <= end; p += LogFormat.RecordHeaderSize)
        {
            var header = bytes.AsSpan(p, LogFormat.RecordHeaderSize);
            header.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)(size - p - LogFormat.RecordOverhead));
            BinaryPrimitives.WriteInt64LittleEndian(header[4..], 11);
            BinaryPrimitives.WriteInt64LittleEndian(header[12..], 2);
        }
        return (bytes, badOffset, 10);
    }

    // A bad record followed by a random mix of garbage, records of the bad one's batch, records of
    // later batches (some corrupted), and headers with wrong indexes or lengths.
    private static (byte[] Bytes, long BadOffset, long BadIndex) RandomTail(Random random)
    {
        var buffer = new List<byte>();
        const long badIndex = 100;
        var batchStart = badIndex - random.Next(3);
        void AddRecord(long index, long batchFirst, int payload, bool corrupt)
        {
            var record = new byte[LogFormat.RecordOverhead + payload];
            LogFormat.WriteRecord(record, LogAssert.Entry(index, 3, payload), (uint)(index - batchFirst));
            if (corrupt)
                record[random.Next(record.Length)] ^= (byte)random.Next(1, 256);
            buffer.AddRange(record);
        }
        AddRecord(badIndex, batchStart, random.Next(40), corrupt: true);
        var pieces = random.Next(0, 6);
        var next = badIndex + 1;
        for (var i = 0; i < pieces; i++)
        {
            switch (random.Next(7))
            {
                case 6:
                    // A later batch's record whose payload holds another valid record: the inner
                    // one's checksum is verified first, but the outer one starts first.
                    var inner = new byte[LogFormat.RecordOverhead + 8];
                    LogFormat.WriteRecord(inner, LogAssert.Entry(next, 3, 8), 0);
                    var outer = new byte[LogFormat.RecordOverhead + inner.Length];
                    LogFormat.WriteRecord(outer, new LogEntry(next, 3, EntryKind.Command, inner), 0);
                    buffer.AddRange(outer);
                    next++;
                    break;
                case 0:
                    var garbage = new byte[random.Next(1, 80)];
                    random.NextBytes(garbage);
                    buffer.AddRange(garbage);
                    break;
                case 1:
                    AddRecord(next++, batchStart, random.Next(30), corrupt: false); // same batch: proves nothing
                    break;
                case 2:
                    AddRecord(next, next, random.Next(30), corrupt: random.Next(3) == 0); // a later batch
                    next++;
                    break;
                case 3:
                    AddRecord(next + random.Next(50, 500), next, random.Next(30), corrupt: false); // index too far ahead
                    break;
                case 4:
                    AddRecord(badIndex - random.Next(1, 5), badIndex - 10, random.Next(30), corrupt: false); // an older index
                    break;
                default:
                    // A header whose payload claims to run further than the bytes that follow.
                    var header = new byte[LogFormat.RecordHeaderSize];
                    BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)random.Next(0, 400));
                    BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(4), next);
                    buffer.AddRange(header);
                    break;
            }
        }
        return (buffer.ToArray(), 0, badIndex);
    }

    // The search as it was: every byte offset a candidate, each candidate checksummed on its own.
    private static long ReferenceSearch(byte[] bytes, long badOffset, long badIndex)
    {
        long length = bytes.Length;
        for (var p = badOffset + 1; p + LogFormat.RecordOverhead <= length; p++)
        {
            var header = LogFormat.RecordHeader.Read(bytes.AsSpan((int)p));
            if (!header.ReservedBitsClear || header.Index <= badIndex || header.BatchPosition >= header.Index)
                continue;
            if (header.Index > badIndex + ((p - badOffset) / LogFormat.RecordOverhead) + 1)
                continue;
            if (header.Index - header.BatchPosition <= badIndex)
                continue;
            if (header.PayloadLength > length - p - LogFormat.RecordOverhead)
                continue;
            var record = bytes.AsSpan((int)p, LogFormat.RecordOverhead + (int)header.PayloadLength);
            var end = record.Length - LogFormat.RecordTrailerSize;
            var crc = ~LogFormat.Crc32CUpdate(~0u, record[..end]);
            if (BinaryPrimitives.ReadUInt32LittleEndian(record[end..]) == crc)
                return p;
        }
        return -1;
    }

    private sealed class ArrayFile(byte[] bytes) : IStorageFile
    {
        public long GetLength() => bytes.Length;

        public int Read(Span<byte> destination, long offset)
        {
            if (offset >= bytes.Length)
                return 0;
            var n = (int)Math.Min(destination.Length, bytes.Length - offset);
            bytes.AsSpan((int)offset, n).CopyTo(destination);
            return n;
        }

        public void Write(ReadOnlySpan<byte> source, long offset) => throw new NotSupportedException();

        public void SetLength(long length) => throw new NotSupportedException();

        public void FlushToDisk() => throw new NotSupportedException();

        public void Dispose()
        {
        }
    }
}
