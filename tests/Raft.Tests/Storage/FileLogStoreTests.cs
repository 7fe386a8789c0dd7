using System.Buffers.Binary;
using System.Runtime.InteropServices;
using static Raft.Tests.Storage.LogAssert;

namespace Raft.Tests.Storage;

/// <summary>Segments, truncation, compaction, the cache, options and lifetime of <see cref="FileLogStore"/>.</summary>
public sealed class FileLogStoreTests : IDisposable
{
    private static readonly FileLogStoreOptions TinySegments = new() { SegmentSize = 200 };

    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    private static long FirstIndexOf(string segmentPath) =>
        long.Parse(Path.GetFileNameWithoutExtension(segmentPath), System.Globalization.CultureInfo.InvariantCulture);

    // Appends entries 1..count (term = index / 10 + 1, payload 0..40 bytes) in batches of 1..4.
    private static async Task<List<LogEntry>> AppendMany(FileLogStore store, int count)
    {
        var all = new List<LogEntry>();
        var index = 1;
        while (index <= count)
        {
            var batch = new List<LogEntry>();
            for (var k = 0; k < 1 + (index % 4) && index <= count; k++, index++)
                batch.Add(Entry(index, (index / 10) + 1, index % 41));
            await store.AppendAsync(batch);
            all.AddRange(batch);
        }
        return all;
    }

    [Fact]
    public void Crc32C_is_the_standard_Castagnoli_checksum() =>
        Assert.Equal(0xE3069283u, LogFormat.Crc32C("123456789"u8));

    [Fact]
    public async Task Segments_roll_over_once_they_reach_the_segment_size_and_are_named_by_their_first_index()
    {
        List<LogEntry> all;
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            all = await AppendMany(store, 100);
            Assert.Equal(_directory.Segments().Length, store.SegmentCount);
        }
        var segments = _directory.Segments();
        Assert.True(segments.Length > 10, $"only {segments.Length} segments");
        long next = 1;
        foreach (var path in segments)
        {
            var bytes = File.ReadAllBytes(path);
            Assert.Equal("RFTL"u8.ToArray(), bytes[..4]);
            Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(4)));
            Assert.Equal(FirstIndexOf(path), BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(8)));
            Assert.Equal(next, FirstIndexOf(path));
            Assert.Equal(next, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(24 + 4)));
            // Count the records to find where the next segment starts.
            var offset = 24;
            while (offset < bytes.Length)
            {
                offset += 32 + (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(offset));
                next++;
            }
            Assert.Equal(bytes.Length, offset);
            if (path != segments[^1])
                Assert.True(bytes.Length >= TinySegments.SegmentSize);
        }
        Assert.Equal(101, next);

        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            Equal(all, ReadAll(store));
            Equal(all[37..62], Read(store, 38, 63));
        }
    }

    [Fact]
    public async Task A_batch_is_never_split_across_segments()
    {
        await using var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments);
        await store.AppendAsync(Entries(1, 20, term: 1, size: 50));
        Assert.Single(_directory.Segments());
        await store.AppendAsync([Entry(21, 1)]);
        Assert.Equal(2, _directory.Segments().Length);
        Assert.EndsWith(LogFormat.SegmentFileName(21), _directory.Segments()[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Truncation_across_segment_boundaries_deletes_later_segments_and_cuts_the_holder()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            var all = await AppendMany(store, 60);
            var segments = _directory.Segments();
            // Cut in the middle of the third segment.
            var holder = segments[2];
            var cutIndex = FirstIndexOf(holder) + 1;
            Assert.True(cutIndex < FirstIndexOf(segments[3]));
            await store.AppendAsync(Entries(cutIndex, cutIndex + 2, term: 9));

            Assert.Equal(segments[..3], _directory.Segments());
            var expected = all.Take((int)cutIndex - 1).Concat(Entries(cutIndex, cutIndex + 2, term: 9)).ToList();
            Equal(expected, ReadAll(store));
            Assert.Equal(cutIndex + 2, store.LastIndex);

            // Cut exactly at a segment's first index: the segment file is kept and rewritten from its header.
            var secondFirst = FirstIndexOf(segments[1]);
            await store.AppendAsync([Entry(secondFirst, 10)]);
            Assert.Equal(segments[..2], _directory.Segments());
            expected = [.. all.Take((int)secondFirst - 1), Entry(secondFirst, 10)];
            Equal(expected, ReadAll(store));

            // And appending continues across new segments.
            for (var i = secondFirst + 1; i <= secondFirst + 10; i++)
            {
                await store.AppendAsync([Entry(i, 10, 40)]);
                expected.Add(Entry(i, 10, 40));
            }
            Assert.True(_directory.Segments().Length > 2);
            Equal(expected, ReadAll(store));
            await store.DisposeAsync();

            await using var reopened = await FileLogStore.OpenAsync(_directory.Path, TinySegments);
            Equal(expected, ReadAll(reopened));
        }
    }

    [Fact]
    public async Task Compaction_deletes_only_whole_segments_and_hides_the_rest()
    {
        List<LogEntry> all;
        string[] segments;
        long point;
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            all = await AppendMany(store, 60);
            segments = _directory.Segments();
            // One past the first index of the fourth segment: segments 0..2 go, the fourth stays.
            point = FirstIndexOf(segments[3]) + 1;
            await store.CompactAsync(point);
            Assert.Equal(segments[3..], _directory.Segments());
            Assert.Equal(point + 1, store.FirstIndex);
            Equal(all.Skip((int)point), ReadAll(store));

            // Compacting up to the end of a segment deletes it, even though its successor holds nothing hidden.
            var nextPoint = FirstIndexOf(segments[5]) - 1;
            await store.CompactAsync(nextPoint);
            Assert.Equal(segments[5..], _directory.Segments());
            point = nextPoint;
        }
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            Assert.Equal(point + 1, store.FirstIndex);
            Assert.Equal(all[(int)point - 1].Term, store.GetTerm(point));
            Equal(all.Skip((int)point), ReadAll(store));

            // Compacting everything keeps the last segment (its records hidden); appends continue in it.
            await store.CompactAsync(60);
            Assert.Single(_directory.Segments());
            await store.AppendAsync([Entry(61, 20)]);
            Equal([Entry(61, 20)], ReadAll(store));
        }
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            Assert.Equal(61, store.FirstIndex);
            Assert.Equal(all[59].Term, store.GetTerm(60));
            Equal([Entry(61, 20)], ReadAll(store));
        }
    }

    [Fact]
    public async Task Reset_deletes_every_segment_and_starts_a_new_one_at_the_next_index()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            await AppendMany(store, 30);
            await store.ResetAsync(1000, 7);
            Assert.Empty(_directory.Segments());
            await store.AppendAsync([Entry(1001, 8)]);
        }
        Assert.EndsWith(LogFormat.SegmentFileName(1001), Assert.Single(_directory.Segments()), StringComparison.Ordinal);
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            Assert.Equal(1001, store.FirstIndex);
            Assert.Equal(7, store.GetTerm(1000));
            Equal([Entry(1001, 8)], ReadAll(store));
        }
    }

    [Fact]
    public async Task Recent_entries_come_from_the_cache_and_older_ones_from_disk_as_fresh_copies()
    {
        var options = new FileLogStoreOptions { SegmentSize = 300, CacheBytes = 10 * (24 + 20) };
        await using var store = await FileLogStore.OpenAsync(_directory.Path, options);
        var appended = Entries(1, 30, term: 1, size: 20);
        foreach (var entry in appended)
            await store.AppendAsync([entry]);
        Assert.Equal(10, store.CachedEntryCount);

        var read = ReadAll(store);
        Equal(appended, read);
        for (var i = 0; i < 30; i++)
        {
            Assert.True(MemoryMarshal.TryGetArray(read[i].Data, out var segment));
            Assert.True(MemoryMarshal.TryGetArray(appended[i].Data, out var original));
            // Cached entries are the appended buffers; disk reads are new arrays, one per entry.
            Assert.Equal(i >= 20, ReferenceEquals(segment.Array, original.Array));
        }
        // A caller may keep (and even scribble on) what it got: the store is unaffected.
        Assert.True(MemoryMarshal.TryGetArray(read[0].Data, out var first));
        first.Array![first.Offset] ^= 0xFF;
        Equal([Entry(1, 1, 20)], Read(store, 1, 2));

        // Truncation and compaction keep the cache a suffix of the log.
        await store.AppendAsync(Entries(25, 26, term: 2, size: 20));
        await store.CompactAsync(22);
        Equal([.. appended[22..24], .. Entries(25, 26, term: 2, size: 20)], ReadAll(store));
    }

    [Fact]
    public async Task A_record_changed_on_disk_while_the_store_is_open_is_reported_on_read()
    {
        // Writing to a segment the store holds open needs Unix sharing rules.
        if (OperatingSystem.IsWindows())
            return;
        var options = new FileLogStoreOptions { CacheBytes = 0 };
        await using var store = await FileLogStore.OpenAsync(_directory.Path, options);
        await store.AppendAsync(Entries(1, 3, term: 1, size: 20));
        var path = Assert.Single(_directory.Segments());
        using (var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
            RandomAccess.Write(handle, new byte[] { 0xAB }, 24 + 52 + 40);

        Equal([Entry(1, 1, 20)], Read(store, 1, 2));
        var ex = Assert.Throws<LogCorruptionException>(() => Read(store, 2, 3));
        Assert.Equal(path, ex.FilePath);
        Assert.Equal(24 + 52, ex.Offset);
    }

    [Fact]
    public async Task ReadEntries_applies_maxBytes_across_disk_and_cache()
    {
        var options = new FileLogStoreOptions { SegmentSize = 100, CacheBytes = 3 * 34 };
        await using var store = await FileLogStore.OpenAsync(_directory.Path, options);
        foreach (var entry in Entries(1, 8, term: 1, size: 10))
            await store.AppendAsync([entry]);
        for (var start = 1; start <= 8; start++)
        {
            for (var max = 0; max <= 9 * 34; max += 17)
            {
                var expected = Math.Clamp(max / 34, 1, 9 - start);
                Assert.Equal(Enumerable.Range(start, expected).Select(i => (long)i), Read(store, start, 9, max).Select(e => e.Index));
            }
        }
    }

    [Fact]
    public async Task Every_member_throws_ObjectDisposedException_after_dispose()
    {
        var store = await FileLogStore.OpenAsync(_directory.Path);
        await store.AppendAsync(Entries(1, 2, term: 1));
        await store.DisposeAsync();
        await store.DisposeAsync(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => store.LastIndex);
        Assert.Throws<ObjectDisposedException>(() => store.FirstIndex);
        Assert.Throws<ObjectDisposedException>(() => store.HardState);
        Assert.Throws<ObjectDisposedException>(() => store.GetTerm(1));
        Assert.Throws<ObjectDisposedException>(() => Read(store, 1, 2));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => store.AppendAsync([Entry(3, 1)]).AsTask());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => store.SaveHardStateAsync(default).AsTask());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => store.CompactAsync(1).AsTask());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => store.ResetAsync(1, 1).AsTask());
    }

    [Fact]
    public async Task Options_are_validated()
    {
        Assert.Equal(64L << 20, new FileLogStoreOptions().SegmentSize);
        Assert.Equal(64L << 20, new FileLogStoreOptions().CacheBytes);
        Assert.Equal(LogDurability.Fsync, new FileLogStoreOptions().Durability);
        new FileLogStoreOptions().Validate();

        var small = Assert.Throws<ArgumentOutOfRangeException>(() => new FileLogStoreOptions { SegmentSize = 10 }.Validate());
        Assert.Contains("10", small.Message, StringComparison.Ordinal);
        Assert.Contains("64", small.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => new FileLogStoreOptions { SegmentSize = 2L << 30 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new FileLogStoreOptions { CacheBytes = -1 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new FileLogStoreOptions { Durability = (LogDurability)7 }.Validate());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => FileLogStore.OpenAsync(_directory.Path, new FileLogStoreOptions { SegmentSize = 0 }).AsTask());
        await Assert.ThrowsAsync<ArgumentException>(() => FileLogStore.OpenAsync("").AsTask());
    }

    [Fact]
    public async Task UnsafeNoFsync_works_and_warns()
    {
        var logger = new ListLogger();
        var options = new FileLogStoreOptions { Durability = LogDurability.UnsafeNoFsync, SegmentSize = 100 };
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, options, logger.AsFactory()))
        {
            await AppendMany(store, 20);
            await store.CompactAsync(5);
            await store.SaveHardStateAsync(new HardState(1, 1, 1));
        }
        Assert.True(logger.Has(2005));
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, options))
        {
            Assert.Equal(6, store.FirstIndex);
            Assert.Equal(20, store.LastIndex);
            Assert.Equal(new HardState(1, 1, 1), store.HardState);
        }
    }

    [Fact]
    public async Task Opening_creates_a_missing_directory()
    {
        var nested = Path.Combine(_directory.Path, "a", "b");
        await using var store = await FileLogStore.OpenAsync(nested);
        Assert.Equal(Path.GetFullPath(nested), store.DirectoryPath);
        await store.AppendAsync([Entry(1, 1)]);
        Assert.True(File.Exists(Path.Combine(nested, LogFormat.SegmentFileName(1))));
    }

    [Fact]
    public async Task The_store_keeps_its_own_copy_of_the_options()
    {
        var options = new FileLogStoreOptions { SegmentSize = 100 };
        await using var store = await FileLogStore.OpenAsync(_directory.Path, options);
        // The host changes its object after opening: the store still rolls 100-byte segments.
        options.SegmentSize = FileLogStoreOptions.DefaultSegmentSize;
        await AppendMany(store, 20);
        Assert.True(store.SegmentCount > 1, $"{store.SegmentCount} segment(s)");
    }

    [Fact]
    public void Options_are_a_record_copied_by_with()
    {
        var options = new FileLogStoreOptions { SegmentSize = 100 };
        var copy = options with { Durability = LogDurability.UnsafeNoFsync };
        Assert.Equal(100, copy.SegmentSize);
        Assert.Equal(LogDurability.Fsync, options.Durability);
        Assert.Equal(options, copy with { Durability = LogDurability.Fsync });
    }
}
