using static Raft.Tests.Storage.LogAssert;

namespace Raft.Tests.Storage;

/// <summary>
/// Segments dropped by compaction are renamed to <c>.retired</c> at once and deleted off the write
/// path (unlinking a large file is slow and the node waits for CompactAsync); a retired file left by
/// a stop is deleted by the next open.
/// </summary>
public sealed class FileLogStoreRetiredSegmentTests : IDisposable
{
    private static readonly FileLogStoreOptions TinySegments = new() { SegmentSize = 200 };

    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    private string[] Retired() => Directory.GetFiles(_directory.Path, "*.retired");

    private static long FirstIndexOf(string segmentPath) =>
        long.Parse(Path.GetFileNameWithoutExtension(segmentPath), System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task Compaction_takes_segments_out_at_once_and_deletes_them_afterwards()
    {
        var all = new List<LogEntry>();
        await using var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments);
        for (var i = 1; i <= 40; i++)
        {
            var entry = Entry(i, 1, 30);
            await store.AppendAsync([entry]);
            all.Add(entry);
        }
        var segments = _directory.Segments();
        Assert.True(segments.Length > 4, $"only {segments.Length} segments");
        var point = FirstIndexOf(segments[3]);

        await store.CompactAsync(point);

        // No longer a segment the moment the compaction returns ...
        Assert.Equal(segments[3..], _directory.Segments());
        Assert.Equal(point + 1, store.FirstIndex);
        Equal(all.Skip((int)point), ReadAll(store));
        // ... and gone from the directory once the background deletion is done.
        await store.RetiredSegmentsDeleted.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Empty(Retired());

        // Appends go on in the remaining segments.
        await store.AppendAsync([Entry(41, 1, 30)]);
        Equal([.. all.Skip((int)point), Entry(41, 1, 30)], ReadAll(store));
    }

    [Fact]
    public async Task A_retired_segment_left_by_a_stop_is_deleted_when_the_store_opens()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
            await store.AppendAsync(Entries(1, 3, term: 1));
        // What a process that stopped between the rename and the deletion leaves.
        var leftover = _directory.File("00000000000000000001.retired");
        await File.WriteAllBytesAsync(leftover, new byte[300]);

        var logger = new ListLogger();
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments, logger.AsFactory()))
        {
            Assert.False(File.Exists(leftover));
            Assert.True(logger.Has(2013), "the deletion is logged");
            Equal(Entries(1, 3, term: 1), ReadAll(store));
        }
    }
}
