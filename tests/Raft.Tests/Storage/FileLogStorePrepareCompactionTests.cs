using static Raft.Tests.Storage.LogAssert;

namespace Raft.Tests.Storage;

/// <summary>
/// <c>FileLogStore.PrepareCompaction</c>: the compaction point is made durable ahead of
/// <c>CompactAsync</c> (a node does it off its loop), without changing the log; the compaction then
/// writes no metadata of its own.
/// </summary>
public sealed class FileLogStorePrepareCompactionTests : IDisposable
{
    private static readonly FileLogStoreOptions TinySegments = new() { SegmentSize = 200 };

    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    private static async Task<List<LogEntry>> AppendAsync(FileLogStore store, int count)
    {
        var all = new List<LogEntry>();
        for (var i = 1; i <= count; i++)
        {
            var entry = Entry(i, 1 + (i / 10), 30);
            await store.AppendAsync([entry]);
            all.Add(entry);
        }
        return all;
    }

    [Fact]
    public async Task A_prepared_point_changes_nothing_until_a_restart_which_opens_the_log_after_it()
    {
        List<LogEntry> all;
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            all = await AppendAsync(store, 30);
            store.PrepareCompaction(17);
            Assert.Equal(1, store.FirstIndex);
            Equal(all, ReadAll(store));
        }
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            Assert.Equal(18, store.FirstIndex);
            Assert.Equal(all[16].Term, store.GetTerm(17));
            Equal(all.Skip(17), ReadAll(store));
        }
    }

    [Fact]
    public async Task Compacting_at_the_prepared_point_writes_no_metadata_again()
    {
        await using var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments);
        var all = await AppendAsync(store, 30);
        var fsyncs = 0;
        store.FsyncObserved = _ => Interlocked.Increment(ref fsyncs);

        store.PrepareCompaction(17);
        Assert.Equal(2, fsyncs); // the metadata file and its directory
        await store.CompactAsync(17);
        Assert.Equal(2, fsyncs);
        Assert.Equal(18, store.FirstIndex);
        Equal(all.Skip(17), ReadAll(store));

        // Another point is recorded as usual.
        await store.CompactAsync(20);
        Assert.Equal(4, fsyncs);
    }

    [Fact]
    public async Task A_point_the_log_has_moved_past_is_not_recorded()
    {
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            await AppendAsync(store, 30);
            await store.ResetAsync(40, 5);
            store.PrepareCompaction(17); // no longer in the log: recording it would put the point back
            await store.AppendAsync([Entry(41, 5, 30)]);
        }
        await using (var store = await FileLogStore.OpenAsync(_directory.Path, TinySegments))
        {
            Assert.Equal(41, store.FirstIndex);
            Equal([Entry(41, 5, 30)], ReadAll(store));
        }
    }
}
