using static Raft.Tests.SnapshotStore.SnapshotData;

namespace Raft.Tests.SnapshotStore;

/// <summary>
/// The <see cref="ISnapshotStore"/> contract, run against every implementation (the runtime's
/// ChannelTestBase pattern). Where a test checks committed state it checks it again after
/// <see cref="Reopen"/>, so a durable store proves that the state survived a restart.
/// </summary>
public abstract class SnapshotStoreContractTests : IAsyncLifetime
{
    /// <summary>Creates an empty store.</summary>
    protected abstract ISnapshotStore CreateStore();

    /// <summary>Returns the store as it would be after a restart; by default the same store.</summary>
    protected virtual ISnapshotStore Reopen(ISnapshotStore store) => store;

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual Task DisposeAsync() => Task.CompletedTask;

    private ISnapshotStore CheckTwice(ISnapshotStore store, Action<ISnapshotStore> check)
    {
        check(store);
        store = Reopen(store);
        check(store);
        return store;
    }

    [Fact]
    public void An_empty_store_has_no_snapshot()
    {
        CheckTwice(CreateStore(), store =>
        {
            Assert.Null(store.Latest);
            Assert.Equal(0, store.LatestLength);
            Assert.Null(store.OpenLatest());
            var buffer = new byte[16];
            Assert.Equal(-1, store.Read(0, 0, buffer));
            Assert.Equal(-1, store.Read(1, 0, buffer));
            Assert.Equal(-1, store.Read(1, 0, []));
        });
    }

    [Fact]
    public async Task A_committed_snapshot_becomes_the_latest_with_its_metadata_and_data()
    {
        var store = CreateStore();
        var metadata = Metadata(42, term: 7, 1, 2, 3);
        var data = Bytes(42, 100_003);
        await CommitAsync(store, metadata, data);
        CheckTwice(store, s => AssertLatest(s, metadata, data));
    }

    [Fact]
    public async Task Read_returns_the_bytes_at_any_offset_and_fewer_only_at_the_end()
    {
        var store = CreateStore();
        var data = Bytes(5, 1000);
        await CommitAsync(store, Metadata(5), data);
        CheckTwice(store, s =>
        {
            var buffer = new byte[100];
            Assert.Equal(100, s.Read(5, 0, buffer));
            Assert.Equal(data[..100], buffer);

            Assert.Equal(100, s.Read(5, 437, buffer));
            Assert.Equal(data[437..537], buffer);

            // A destination longer than what is left: partial, then nothing at the very end.
            Assert.Equal(10, s.Read(5, 990, buffer));
            Assert.Equal(data[990..], buffer[..10]);
            Assert.Equal(1, s.Read(5, 999, buffer));
            Assert.Equal(data[999], buffer[0]);
            Assert.Equal(0, s.Read(5, 1000, buffer));

            // Only the destination's length is read, even when more is left.
            Assert.Equal(0, s.Read(5, 300, []));
            Assert.Equal(3, s.Read(5, 300, buffer.AsSpan(0, 3)));
            Assert.Equal(data[300..303], buffer[..3]);

            // One read can take the whole snapshot.
            var all = new byte[4096];
            Assert.Equal(1000, s.Read(5, 0, all));
            Assert.Equal(data, all[..1000]);
        });
    }

    [Fact]
    public async Task An_empty_snapshot_round_trips()
    {
        var store = CreateStore();
        await CommitAsync(store, Metadata(3), []);
        CheckTwice(store, s =>
        {
            AssertLatest(s, Metadata(3), []);
            Assert.Equal(0, s.Read(3, 0, new byte[8]));
        });
    }

    [Fact]
    public async Task A_snapshot_is_not_visible_until_its_writer_commits()
    {
        var store = CreateStore();
        var data = Bytes(9, 5000);
        await using var writer = await store.CreateAsync(Metadata(9));
        await writer.Stream.WriteAsync(data);
        await writer.Stream.FlushAsync();
        Assert.Null(store.Latest);
        Assert.Equal(0, store.LatestLength);
        Assert.Equal(-1, store.Read(9, 0, new byte[10]));
        Assert.Null(store.OpenLatest());

        await writer.CommitAsync();
        AssertLatest(store, Metadata(9), data);
    }

    [Fact]
    public async Task Disposing_a_writer_without_committing_discards_the_snapshot()
    {
        var store = CreateStore();
        var kept = Bytes(10, 3000);
        await CommitAsync(store, Metadata(10), kept);

        await using (var writer = await store.CreateAsync(Metadata(20)))
            await writer.Stream.WriteAsync(Bytes(20, 7000));

        // A writer that never wrote anything is discarded just the same.
        await (await store.CreateAsync(Metadata(30))).DisposeAsync();

        CheckTwice(store, s =>
        {
            AssertLatest(s, Metadata(10), kept);
            Assert.Equal(-1, s.Read(20, 0, new byte[10]));
            Assert.Equal(-1, s.Read(30, 0, new byte[10]));
        });
    }

    [Fact]
    public async Task A_newer_snapshot_replaces_the_older_one()
    {
        var store = CreateStore();
        await CommitAsync(store, Metadata(10, term: 1), Bytes(10, 2000));
        var newer = Bytes(20, 1500);
        await CommitAsync(store, Metadata(20, term: 2, 1, 2, 3, 4), newer);
        CheckTwice(store, s =>
        {
            AssertLatest(s, Metadata(20, term: 2, 1, 2, 3, 4), newer);
            Assert.Equal(-1, s.Read(10, 0, new byte[10]));
        });
    }

    [Fact]
    public async Task Committing_an_older_snapshot_after_a_newer_one_keeps_the_newer()
    {
        var store = CreateStore();
        var newer = Bytes(20, 1500);
        await CommitAsync(store, Metadata(20, term: 3), newer);
        await CommitAsync(store, Metadata(10, term: 2), Bytes(10, 2000));
        CheckTwice(store, s => AssertLatest(s, Metadata(20, term: 3), newer));
    }

    [Fact]
    public async Task A_writer_started_before_a_newer_snapshot_committed_does_not_replace_it()
    {
        var store = CreateStore();
        await using var older = await store.CreateAsync(Metadata(10));
        await older.Stream.WriteAsync(Bytes(10, 4000));

        var newer = Bytes(20, 3000);
        await CommitAsync(store, Metadata(20), newer);

        await older.CommitAsync();
        CheckTwice(store, s => AssertLatest(s, Metadata(20), newer));
    }

    [Fact]
    public async Task Read_with_an_index_other_than_the_latest_returns_minus_one()
    {
        var store = CreateStore();
        await CommitAsync(store, Metadata(10), Bytes(10, 100));
        CheckTwice(store, s =>
        {
            var buffer = new byte[10];
            Assert.Equal(-1, s.Read(9, 0, buffer));
            Assert.Equal(-1, s.Read(11, 0, buffer));
            Assert.Equal(-1, s.Read(0, 0, buffer));
            Assert.Equal(10, s.Read(10, 0, buffer));
        });

        // A reader streaming snapshot 10 notices that it was replaced.
        store = Reopen(store);
        await CommitAsync(store, Metadata(11), Bytes(11, 100));
        Assert.Equal(-1, store.Read(10, 0, new byte[10]));
        Assert.Equal(-1, store.Read(10, 50, new byte[10]));
    }

    public static TheoryData<long, long, int[]> MetadataCases => new()
    {
        { 1, 1, [1] },
        { 2, 1, [5] },
        { 100, 5, [3, 1, 2] },
        { 1L << 40, 1L << 33, [int.MaxValue, 7, 1] },
        { long.MaxValue - 1, long.MaxValue, Enumerable.Range(1, 100).Select(i => i * 1_000_003).ToArray() },
    };

    [Fact]
    public async Task A_joint_configuration_with_learners_and_addresses_round_trips()
    {
        var store = CreateStore();
        var configuration = new ClusterConfiguration(
            [ClusterMember.Voter(1, "10.0.0.1:7001"), ClusterMember.Learner(4, "nœud-4:7004"), ClusterMember.Voter(5)],
            [ClusterMember.Voter(1, "10.0.0.1:7001"), ClusterMember.Voter(2, "10.0.0.2:7002"), ClusterMember.Voter(3)]);
        var metadata = new SnapshotMetadata(9, 2, configuration);
        await CommitAsync(store, metadata, Bytes(9, 10));
        CheckTwice(store, s => Assert.Equal(metadata, s.Latest));
    }

    [Theory]
    [MemberData(nameof(MetadataCases))]
    public async Task Index_term_and_members_round_trip(long index, long term, int[] members)
    {
        var store = CreateStore();
        var metadata = new SnapshotMetadata(index, term, members);
        var data = Bytes(index, 64);
        await CommitAsync(store, metadata, data);
        CheckTwice(store, s =>
        {
            var latest = s.Latest!;
            Assert.Equal(index, latest.Index);
            Assert.Equal(term, latest.Term);
            Assert.Equal(members, latest.Configuration.Voters); // order too
            AssertLatest(s, metadata, data);
        });
    }

    [Fact]
    public async Task Every_Stream_write_method_is_kept()
    {
        var store = CreateStore();
        var expected = new MemoryStream();
        await using (var writer = await store.CreateAsync(Metadata(8)))
        {
            var stream = writer.Stream;
            Assert.True(stream.CanWrite);
            var a = Bytes(1, 10);
            stream.Write(a, 0, a.Length);
            expected.Write(a);
            var b = Bytes(2, 20);
            stream.Write(b.AsSpan(5));
            expected.Write(b.AsSpan(5));
            stream.WriteByte(0xAB);
            expected.Write([0xAB]);
            var c = Bytes(3, 70_000);
            await stream.WriteAsync(c.AsMemory(1));
            expected.Write(c.AsSpan(1));
            var d = Bytes(4, 33);
#pragma warning disable CA1835 // the array overload on purpose
            await stream.WriteAsync(d, 3, 30);
#pragma warning restore CA1835
            expected.Write(d.AsSpan(3));
            var e = Bytes(5, 200_000);
            await new MemoryStream(e).CopyToAsync(stream);
            expected.Write(e);
            stream.Flush();
            await stream.FlushAsync();
            await writer.CommitAsync();
        }
        CheckTwice(store, s => AssertLatest(s, Metadata(8), expected.ToArray()));
    }

    [Fact]
    public async Task A_stream_opened_before_newer_snapshots_commit_still_reads_its_own_snapshot()
    {
        var store = CreateStore();
        var first = Bytes(10, 300_000);
        await CommitAsync(store, Metadata(10), first);
        await using var stream = store.OpenLatest()!;
        var head = new byte[1000];
        await stream.ReadExactlyAsync(head);

        await CommitAsync(store, Metadata(20), Bytes(20, 1000));
        await CommitAsync(store, Metadata(30), Bytes(30, 2000));

        var rest = new MemoryStream();
        await stream.CopyToAsync(rest);
        AssertSameBytes(first, [.. head, .. rest.ToArray()]);
        AssertLatest(store, Metadata(30), Bytes(30, 2000));
    }

    [Fact]
    public async Task Two_streams_of_the_latest_snapshot_read_independently()
    {
        var store = CreateStore();
        var data = Bytes(4, 50_000);
        await CommitAsync(store, Metadata(4), data);
        await using var a = store.OpenLatest()!;
        await using var b = store.OpenLatest()!;
        var bufferA = new byte[data.Length];
        var bufferB = new byte[data.Length];
        await a.ReadExactlyAsync(bufferA.AsMemory(0, 100));
        await b.ReadExactlyAsync(bufferB);
        await a.ReadExactlyAsync(bufferA.AsMemory(100));
        Assert.Equal(0, await a.ReadAsync(new byte[1]));
        AssertSameBytes(data, bufferA);
        AssertSameBytes(data, bufferB);
    }

    [Fact]
    public async Task A_commit_with_a_cancelled_token_discards_the_snapshot()
    {
        var store = CreateStore();
        var kept = Bytes(1, 100);
        await CommitAsync(store, Metadata(1), kept);
        await using (var writer = await store.CreateAsync(Metadata(2)))
        {
            await writer.Stream.WriteAsync(Bytes(2, 100));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await writer.CommitAsync(new CancellationToken(canceled: true)));
            Assert.Equal(1, store.Latest!.Index);
        }
        CheckTwice(store, s => AssertLatest(s, Metadata(1), kept));
    }

    [Fact]
    public async Task CreateAsync_with_a_cancelled_token_throws()
    {
        var store = CreateStore();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await store.CreateAsync(Metadata(1), new CancellationToken(canceled: true)));
        Assert.Null(store.Latest);
    }

    [Fact]
    public async Task A_reader_on_another_thread_sees_only_whole_committed_snapshots()
    {
        // As in RaftNode: the event loop streams the latest snapshot while the apply loop commits newer ones.
        var store = CreateStore();
        static int LengthOf(long index) => 20_000 + (int)(index * 997 % 50_000);
        await CommitAsync(store, Metadata(1), Bytes(1, LengthOf(1)));
        using var stop = new CancellationTokenSource();
        var reads = 0;
        var reader = Task.Run(() =>
        {
            var buffer = new byte[7000];
            while (!stop.IsCancellationRequested)
            {
                var latest = store.Latest!;
                var expected = Bytes(latest.Index, LengthOf(latest.Index));
                var result = new MemoryStream();
                long offset = 0;
                while (true)
                {
                    var read = store.Read(latest.Index, offset, buffer);
                    if (read < 0)
                        break; // replaced: start over with the new latest
                    result.Write(buffer, 0, read);
                    offset += read;
                    if (read < buffer.Length)
                    {
                        AssertSameBytes(expected, result.ToArray());
                        Interlocked.Increment(ref reads);
                        break;
                    }
                }
            }
        });

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        for (long index = 2; index <= 40; index++)
        {
            // Let the reader finish a whole read between two commits, so the two really interleave.
            var before = Volatile.Read(ref reads);
            while (Volatile.Read(ref reads) == before && !reader.IsCompleted)
            {
                Assert.True(DateTime.UtcNow < deadline, "the reader made no progress");
                await Task.Delay(1);
            }
            await CommitAsync(store, Metadata(index), Bytes(index, LengthOf(index)));
            Assert.Equal(index, store.Latest!.Index);
        }
        await stop.CancelAsync();
        await reader.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(reads >= 39);
        AssertLatest(store, Metadata(40), Bytes(40, LengthOf(40)));
    }
}
