using System.Buffers.Binary;
using static Raft.Tests.Storage.LogAssert;

namespace Raft.Tests.Storage;

/// <summary>
/// Crash and corruption: what recovery cuts off (a torn or corrupt tail of the last write) and what
/// it refuses to start with (anything a crash cannot explain).
/// </summary>
public sealed class FileLogStoreRecoveryTests : IDisposable
{
    private const int TornTailCut = 2001;
    private const int TornSegmentDeleted = 2002;
    private const int TempFileDeleted = 2003;
    private const int LeftoverSegmentDeleted = 2004;

    private static readonly FileLogStoreOptions OneSegment = new() { SegmentSize = 1 << 20 };
    private static readonly FileLogStoreOptions TinySegments = new() { SegmentSize = 150 };

    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    private static int RecordLength(int payload) => 32 + payload;

    // Writes entries 1..count (term 1, 20-byte payloads), each in its own append call; returns the
    // segment file's length after each append (lengths[i] = end of entry i; lengths[0] = header).
    private async Task<long[]> WriteSingleSegmentLog(string directory, int count)
    {
        var lengths = new long[count + 1];
        lengths[0] = 24;
        await using var store = await FileLogStore.OpenAsync(directory, OneSegment);
        for (var i = 1; i <= count; i++)
        {
            await store.AppendAsync([Entry(i, 1, 20)]);
            lengths[i] = lengths[i - 1] + RecordLength(20);
        }
        return lengths;
    }

    private static async Task<LogCorruptionException> AssertRefuses(string directory, FileLogStoreOptions? options = null)
    {
        var ex = await Assert.ThrowsAsync<LogCorruptionException>(() => FileLogStore.OpenAsync(directory, options).AsTask());
        Assert.Contains(ex.FilePath, ex.Message, StringComparison.Ordinal);
        Assert.Contains($"byte offset {ex.Offset}", ex.Message, StringComparison.Ordinal);
        // The failed open released the directory: a retry fails the same way, not on the lock.
        await Assert.ThrowsAsync<LogCorruptionException>(() => FileLogStore.OpenAsync(directory, options).AsTask());
        return ex;
    }

    [Fact]
    public async Task Cutting_the_last_record_at_every_byte_keeps_every_earlier_entry_and_appending_continues()
    {
        var lengths = await WriteSingleSegmentLog(_directory.Path, 5);
        var name = Path.GetFileName(Assert.Single(_directory.Segments()));
        var full = File.ReadAllBytes(_directory.File(name));
        Assert.Equal(lengths[5], full.Length);

        for (var cut = lengths[4]; cut < lengths[5]; cut++)
        {
            using var copy = new TempDirectory();
            File.WriteAllBytes(copy.File(name), full.AsSpan(0, (int)cut).ToArray());
            var logger = new ListLogger();
            await using (var store = await FileLogStore.OpenAsync(copy.Path, OneSegment, logger.AsFactory()))
            {
                Assert.Equal(4, store.LastIndex);
                Equal(Entries(1, 4, term: 1, size: 20), ReadAll(store));
                Assert.Equal(cut > lengths[4], logger.Has(TornTailCut));
                await store.AppendAsync([Entry(5, 2, 7)]);
            }
            Assert.Equal(lengths[4] + RecordLength(7), new FileInfo(copy.File(name)).Length);
            await using (var store = await FileLogStore.OpenAsync(copy.Path, OneSegment))
            {
                Equal([.. Entries(1, 4, term: 1, size: 20), Entry(5, 2, 7)], ReadAll(store));
            }
        }
    }

    [Fact]
    public async Task A_last_segment_whose_header_was_torn_is_deleted()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            for (var i = 1; i <= 5; i++)
                await store.AppendAsync([Entry(i, 1, 30)]);
        }
        var segments = _directory.Segments();
        Assert.True(segments.Length >= 2);
        var last = File.ReadAllBytes(segments[^1]);
        var lastFirstIndex = long.Parse(Path.GetFileNameWithoutExtension(segments[^1]), System.Globalization.CultureInfo.InvariantCulture);

        // Every cut inside the header, and a header of zeros (a crash before the data reached the disk).
        var variants = Enumerable.Range(0, 24).Select(cut => last[..cut]).Append(new byte[last.Length]).ToList();
        foreach (var bytes in variants)
        {
            File.WriteAllBytes(segments[^1], bytes);
            var logger = new ListLogger();
            await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments, logger.AsFactory()))
            {
                Assert.Equal(lastFirstIndex - 1, store.LastIndex);
                Assert.True(logger.Has(TornSegmentDeleted));
                Assert.False(File.Exists(segments[^1]));
                Equal(Entries(1, lastFirstIndex - 1, term: 1, size: 30), ReadAll(store));
                await store.AppendAsync(Entries(lastFirstIndex, 5, term: 1, size: 30));
            }
        }
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
            Equal(Entries(1, 5, term: 1, size: 30), ReadAll(store));
    }

    [Fact]
    public async Task Flipping_any_byte_of_the_last_record_cuts_it_off()
    {
        var lengths = await WriteSingleSegmentLog(_directory.Path, 5);
        var name = Path.GetFileName(Assert.Single(_directory.Segments()));
        var pristine = File.ReadAllBytes(_directory.File(name));

        // Header fields (length, index, term, kind, flags, batch position), payload and checksum.
        for (var at = lengths[4]; at < lengths[5]; at++)
        {
            var bytes = (byte[])pristine.Clone();
            bytes[at] ^= (byte)(1 << (int)(at % 8));
            File.WriteAllBytes(_directory.File(name), bytes);
            var logger = new ListLogger();
            await using var store = await FileLogStore.OpenAsync(_directory.Path, OneSegment, logger.AsFactory());
            Assert.Equal(4, store.LastIndex);
            Assert.True(logger.Has(TornTailCut), $"no warning for a flip at byte {at}");
            Assert.Equal(lengths[4], new FileInfo(_directory.File(name)).Length);
        }
    }

    [Theory]
    [InlineData(0)] // the length field
    [InlineData(5)] // the index
    [InlineData(13)] // the term
    [InlineData(20)] // the kind
    [InlineData(30)] // the payload
    [InlineData(51)] // the checksum
    public async Task A_corrupt_record_followed_by_valid_records_of_later_writes_refuses_to_start(int byteInRecord)
    {
        var lengths = await WriteSingleSegmentLog(_directory.Path, 5);
        var path = Assert.Single(_directory.Segments());
        var bytes = File.ReadAllBytes(path);
        var recordOffset = lengths[2]; // entry 3
        bytes[recordOffset + byteInRecord] ^= 0x10;
        File.WriteAllBytes(path, bytes);

        var ex = await AssertRefuses(_directory.Path, OneSegment);
        Assert.Equal(path, ex.FilePath);
        Assert.Equal(recordOffset, ex.Offset);
        Assert.Equal(bytes.Length, new FileInfo(path).Length); // nothing was cut
    }

    [Fact]
    public async Task A_torn_batch_is_cut_at_its_first_bad_record_even_when_later_records_of_it_survived()
    {
        // A crash can persist a later page of the last write but not an earlier one.
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, OneSegment))
        {
            await store.AppendAsync([Entry(1, 1, 20)]);
            await store.AppendAsync([Entry(2, 1, 20)]);
            await store.AppendAsync(Entries(3, 6, term: 1, size: 20));
        }
        var path = Assert.Single(_directory.Segments());
        var bytes = File.ReadAllBytes(path);
        var entry4 = 24 + (3 * RecordLength(20));
        bytes.AsSpan(entry4, RecordLength(20)).Clear();
        File.WriteAllBytes(path, bytes);

        var logger = new ListLogger();
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, OneSegment, logger.AsFactory()))
        {
            Assert.Equal(3, store.LastIndex);
            Assert.True(logger.Has(TornTailCut));
        }
        Assert.Equal(entry4, new FileInfo(path).Length);
    }

    [Fact]
    public async Task A_corrupt_record_in_a_segment_that_is_not_the_last_refuses_to_start()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            for (var i = 1; i <= 10; i++)
                await store.AppendAsync([Entry(i, 1, 30)]);
        }
        var segments = _directory.Segments();
        Assert.True(segments.Length >= 3);
        // The last record of the first segment: at its end, but not at the end of the log.
        var bytes = File.ReadAllBytes(segments[0]);
        var lastRecord = bytes.Length - RecordLength(30);
        bytes[lastRecord + 40] ^= 1;
        File.WriteAllBytes(segments[0], bytes);

        var ex = await AssertRefuses(_directory.Path, TinySegments);
        Assert.Equal(segments[0], ex.FilePath);
        Assert.Equal(lastRecord, ex.Offset);

        // And a torn (short) non-last segment as well.
        File.WriteAllBytes(segments[0], bytes[..^3]);
        ex = await AssertRefuses(_directory.Path, TinySegments);
        Assert.Equal(segments[0], ex.FilePath);
    }

    [Fact]
    public async Task A_missing_middle_segment_is_a_gap_that_refuses_to_start()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
            await store.AppendAsync(Entries(1, 12, term: 1, size: 30));
        // One batch never splits: add a few more batches to get several segments.
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            for (var i = 13; i <= 20; i++)
                await store.AppendAsync([Entry(i, 1, 30)]);
        }
        var segments = _directory.Segments();
        Assert.True(segments.Length >= 4);
        File.Delete(segments[2]);

        var ex = await AssertRefuses(_directory.Path, TinySegments);
        Assert.Equal(segments[3], ex.FilePath);
        Assert.Contains("gap", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_first_segment_refuses_to_start()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            for (var i = 1; i <= 6; i++)
                await store.AppendAsync([Entry(i, 1, 30)]);
        }
        var segments = _directory.Segments();
        File.Delete(segments[0]);
        var ex = await AssertRefuses(_directory.Path, TinySegments);
        Assert.Equal(segments[1], ex.FilePath);
        Assert.Contains("missing", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_format_version_refuses_to_start()
    {
        await WriteSingleSegmentLog(_directory.Path, 2);
        var path = Assert.Single(_directory.Segments());
        var bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), 2);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(20), LogFormat.Crc32C(bytes.AsSpan(0, 20)));
        File.WriteAllBytes(path, bytes);

        var ex = await AssertRefuses(_directory.Path);
        Assert.Equal(path, ex.FilePath);
        Assert.Contains("unknown format version 2", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_magic_number_or_header_checksum_refuses_to_start()
    {
        await WriteSingleSegmentLog(_directory.Path, 2);
        var path = Assert.Single(_directory.Segments());
        var pristine = File.ReadAllBytes(path);

        var bytes = (byte[])pristine.Clone();
        bytes[0] = (byte)'X';
        File.WriteAllBytes(path, bytes);
        var ex = await AssertRefuses(_directory.Path);
        Assert.Contains("magic", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, ex.Offset);

        bytes = (byte[])pristine.Clone();
        bytes[9] ^= 1; // the first index, without fixing the checksum
        File.WriteAllBytes(path, bytes);
        ex = await AssertRefuses(_directory.Path);
        Assert.Contains("checksum", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_segment_whose_header_disagrees_with_its_name_refuses_to_start()
    {
        await WriteSingleSegmentLog(_directory.Path, 2);
        var path = Assert.Single(_directory.Segments());
        // The header says the segment starts at index 1; the name says 0.
        var renamed = _directory.File(LogFormat.SegmentFileName(0));
        File.Move(path, renamed);
        var ex = await AssertRefuses(_directory.Path);
        Assert.Equal(renamed, ex.FilePath);
        Assert.Contains("name", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_record_with_a_valid_checksum_but_the_wrong_index_refuses_to_start()
    {
        var lengths = await WriteSingleSegmentLog(_directory.Path, 3);
        var path = Assert.Single(_directory.Segments());
        var bytes = File.ReadAllBytes(path);
        // Rewrite the last record as index 7, with a correct checksum: not something a crash does.
        LogFormat.WriteRecord(bytes.AsSpan((int)lengths[2]), Entry(7, 1, 20), 0);
        File.WriteAllBytes(path, bytes);
        var ex = await AssertRefuses(_directory.Path, OneSegment);
        Assert.Equal(lengths[2], ex.Offset);
        Assert.Contains("index 7", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_leftover_hard_state_temp_file_is_deleted_and_the_saved_state_kept()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path))
            await store.SaveHardStateAsync(new HardState(5, 3, 2));
        File.WriteAllBytes(_directory.File("hardstate.tmp"), [1, 2, 3]);
        File.WriteAllBytes(_directory.File("meta.tmp"), []);

        var logger = new ListLogger();
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, loggerFactory: logger.AsFactory()))
            Assert.Equal(new HardState(5, 3, 2), store.HardState);
        Assert.True(logger.Has(TempFileDeleted));
        Assert.False(File.Exists(_directory.File("hardstate.tmp")));
        Assert.False(File.Exists(_directory.File("meta.tmp")));
    }

    [Fact]
    public async Task A_corrupt_hard_state_or_meta_file_refuses_to_start()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path))
        {
            await store.AppendAsync(Entries(1, 3, term: 1));
            await store.SaveHardStateAsync(new HardState(5, 3, 2));
            await store.CompactAsync(1);
        }
        var hardState = _directory.File("hardstate");
        var pristine = File.ReadAllBytes(hardState);
        var bytes = (byte[])pristine.Clone();
        bytes[10] ^= 4;
        File.WriteAllBytes(hardState, bytes);
        var ex = await AssertRefuses(_directory.Path);
        Assert.Equal(hardState, ex.FilePath);

        File.WriteAllBytes(hardState, pristine[..20]);
        ex = await AssertRefuses(_directory.Path);
        Assert.Equal(hardState, ex.FilePath);

        File.WriteAllBytes(hardState, pristine);
        var meta = _directory.File("meta");
        bytes = File.ReadAllBytes(meta);
        bytes[12] ^= 4;
        File.WriteAllBytes(meta, bytes);
        ex = await AssertRefuses(_directory.Path);
        Assert.Equal(meta, ex.FilePath);
    }

    [Fact]
    public async Task Segments_left_below_the_compaction_point_by_a_crash_are_deleted()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            for (var i = 1; i <= 12; i++)
                await store.AppendAsync([Entry(i, i, 30)]);
        }
        var before = _directory.Segments().ToDictionary(p => p, File.ReadAllBytes);

        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
            await store.CompactAsync(8);
        var deleted = before.Keys.Except(_directory.Segments()).ToArray();
        Assert.NotEmpty(deleted);

        // The crash: meta was written, the segments not yet deleted.
        foreach (var path in deleted)
            File.WriteAllBytes(path, before[path]);

        var logger = new ListLogger();
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments, logger.AsFactory()))
        {
            Assert.True(logger.Has(LeftoverSegmentDeleted));
            Assert.All(deleted, p => Assert.False(File.Exists(p)));
            Assert.Equal(9, store.FirstIndex);
            Assert.Equal(8, store.GetTerm(8));
            Equal(Enumerable.Range(9, 4).Select(i => Entry(i, i, 30)), ReadAll(store));
            await store.AppendAsync([Entry(13, 13, 30)]);
        }
    }

    [Fact]
    public async Task Unknown_files_are_ignored_and_a_second_opener_is_refused()
    {
        await using var store = await FileLogStore.OpenAsync(_directory.Path);
        await store.AppendAsync(Entries(1, 2, term: 1));
        File.WriteAllText(_directory.File("notes.log"), "hello");
        var ex = await Assert.ThrowsAsync<IOException>(() => FileLogStore.OpenAsync(_directory.Path).AsTask());
        Assert.IsNotType<LogCorruptionException>(ex);
        await store.DisposeAsync();

        var logger = new ListLogger();
        await using var reopened = await FileLogStore.OpenAsync(_directory.Path, loggerFactory: logger.AsFactory());
        Assert.Equal(2, reopened.LastIndex);
        Assert.True(logger.Has(2012));
    }
}
