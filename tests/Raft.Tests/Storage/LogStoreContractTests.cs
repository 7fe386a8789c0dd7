using Raft.Testing;
using static Raft.Tests.Storage.LogAssert;

namespace Raft.Tests.Storage;

/// <summary>
/// The <see cref="ILogStore"/> contract, run against every implementation (the runtime's
/// ChannelTestBase pattern). Each test checks the store, reopens it with <see cref="ReopenAsync"/>
/// and checks it again, so a durable store proves that the state survived.
/// </summary>
public abstract class LogStoreContractTests : IAsyncLifetime
{
    /// <summary>Creates an empty store.</summary>
    protected abstract Task<ILogStore> CreateAsync();

    /// <summary>Returns the store as it would be after a restart; by default the same store.</summary>
    protected virtual Task<ILogStore> ReopenAsync(ILogStore store) => Task.FromResult(store);

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual Task DisposeAsync() => Task.CompletedTask;

    private async Task<ILogStore> CheckTwice(ILogStore store, Action<ILogStore> check)
    {
        check(store);
        store = await ReopenAsync(store);
        check(store);
        return store;
    }

    [Fact]
    public async Task Empty_store_starts_at_index_1_with_term_0_and_default_hard_state()
    {
        var store = await CreateAsync();
        await CheckTwice(store, s =>
        {
            Assert.Equal(1, s.FirstIndex);
            Assert.Equal(0, s.LastIndex);
            Assert.Equal(0, s.GetTerm(0));
            Assert.Equal(default, s.HardState);
            Assert.Empty(Read(s, 1, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => s.GetTerm(1));
            Assert.Throws<ArgumentOutOfRangeException>(() => Read(s, 1, 2));
        });
    }

    [Fact]
    public async Task Appended_entries_are_read_back_with_their_terms_kinds_and_payloads()
    {
        var store = await CreateAsync();
        LogEntry[] entries =
        [
            Entry(1, 1, 0, EntryKind.NoOp),
            Entry(2, 1, 5),
            Entry(3, 2, 100),
            Entry(4, 2, 1, EntryKind.Configuration),
        ];
        await store.AppendAsync(entries);
        await CheckTwice(store, s =>
        {
            Assert.Equal(1, s.FirstIndex);
            Assert.Equal(4, s.LastIndex);
            Assert.Equal([0L, 1, 1, 2, 2], Enumerable.Range(0, 5).Select(i => s.GetTerm(i)));
            Equal(entries, ReadAll(s));
            Equal(entries[1..3], Read(s, 2, 4));
            Assert.Empty(Read(s, 3, 3));
        });
    }

    [Fact]
    public async Task Appends_in_several_batches_extend_the_log()
    {
        var store = await CreateAsync();
        var expected = new List<LogEntry>();
        long index = 1;
        foreach (var count in new[] { 1, 3, 1, 7, 2 })
        {
            var batch = Entries(index, index + count - 1, term: index, size: (int)index % 13);
            await store.AppendAsync(batch);
            expected.AddRange(batch);
            index += count;
        }
        await CheckTwice(store, s =>
        {
            Assert.Equal(14, s.LastIndex);
            Equal(expected, ReadAll(s));
        });
    }

    [Fact]
    public async Task ReadEntries_stops_at_maxBytes_but_returns_at_least_one_entry()
    {
        var store = await CreateAsync();
        // Each entry's Size is 10 + 24 = 34.
        await store.AppendAsync(Entries(1, 5, term: 1, size: 10));
        await CheckTwice(store, s =>
        {
            Assert.Single(Read(s, 1, 6, maxBytes: 0));
            Assert.Single(Read(s, 1, 6, maxBytes: 33));
            Assert.Single(Read(s, 1, 6, maxBytes: 34));
            Assert.Single(Read(s, 1, 6, maxBytes: 67));
            Assert.Equal(2, Read(s, 1, 6, maxBytes: 68).Count);
            Assert.Equal(4, Read(s, 2, 6, maxBytes: 34 * 4).Count);
            Assert.Equal(5, Read(s, 1, 6, maxBytes: long.MaxValue).Count);
            Equal([Entry(3, 1, 10)], Read(s, 3, 6, maxBytes: 1));
        });
    }

    [Fact]
    public async Task ReadEntries_appends_to_the_destination_list()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 3, term: 1));
        var destination = new List<LogEntry> { Entry(99, 9) };
        store.ReadEntries(2, 4, long.MaxValue, destination);
        Equal([Entry(99, 9), Entry(2, 1), Entry(3, 1)], destination);
    }

    [Fact]
    public async Task Appending_at_or_below_the_last_index_replaces_the_conflicting_suffix()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 5, term: 1));
        await store.AppendAsync(Entries(3, 4, term: 2));
        store = await CheckTwice(store, s =>
        {
            Assert.Equal(4, s.LastIndex);
            Equal([Entry(1, 1), Entry(2, 1), Entry(3, 2), Entry(4, 2)], ReadAll(s));
            Assert.Equal(2, s.GetTerm(4));
        });

        // Replacing the very last entry, and then everything from the first index.
        await store.AppendAsync([Entry(4, 3)]);
        await store.AppendAsync(Entries(1, 2, term: 4));
        await CheckTwice(store, s =>
        {
            Assert.Equal(2, s.LastIndex);
            Equal(Entries(1, 2, term: 4), ReadAll(s));
        });
    }

    [Fact]
    public async Task Appending_continues_after_a_truncation()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 6, term: 1));
        await store.AppendAsync([Entry(4, 2)]);
        await store.AppendAsync(Entries(5, 8, term: 2));
        await CheckTwice(store, s =>
        {
            Equal([.. Entries(1, 3, term: 1), .. Entries(4, 8, term: 2)], ReadAll(s));
        });
    }

    [Fact]
    public async Task Bad_appends_are_rejected_and_change_nothing()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 3, term: 1));

        var gap = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.AppendAsync([Entry(5, 1)]).AsTask());
        Assert.Contains("5", gap.Message, StringComparison.Ordinal);
        Assert.Contains("[1, 4]", gap.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.AppendAsync([Entry(0, 1)]).AsTask());
        await Assert.ThrowsAsync<ArgumentException>(() => store.AppendAsync([Entry(4, 1), Entry(6, 1)]).AsTask());
        await Assert.ThrowsAsync<ArgumentException>(() => store.AppendAsync([Entry(4, 1), Entry(4, 1)]).AsTask());
        await Assert.ThrowsAsync<ArgumentException>(() => store.AppendAsync([]).AsTask());
        await Assert.ThrowsAsync<ArgumentNullException>(() => store.AppendAsync(null!).AsTask());

        await CheckTwice(store, s => Equal(Entries(1, 3, term: 1), ReadAll(s)));
    }

    [Fact]
    public async Task Out_of_range_reads_throw_with_both_values_in_the_message()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 3, term: 1));
        await store.CompactAsync(1);

        var term = Assert.Throws<ArgumentOutOfRangeException>(() => store.GetTerm(4));
        Assert.Contains("4", term.Message, StringComparison.Ordinal);
        Assert.Contains("[1, 3]", term.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => store.GetTerm(0));

        var read = Assert.Throws<ArgumentOutOfRangeException>(() => Read(store, 1, 3));
        Assert.Contains("[1, 3)", read.Message, StringComparison.Ordinal);
        Assert.Contains("[2, 4)", read.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => Read(store, 2, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => Read(store, 3, 2));
        Assert.Throws<ArgumentNullException>(() => store.ReadEntries(2, 3, 100, null!));
    }

    [Fact]
    public async Task Compaction_moves_the_first_index_and_keeps_the_term_at_the_compaction_point()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 4, term: 1));
        await store.AppendAsync(Entries(5, 10, term: 2));
        await store.CompactAsync(6);
        store = await CheckTwice(store, s =>
        {
            Assert.Equal(7, s.FirstIndex);
            Assert.Equal(10, s.LastIndex);
            Assert.Equal(2, s.GetTerm(6));
            Assert.Throws<ArgumentOutOfRangeException>(() => s.GetTerm(5));
            Assert.Throws<ArgumentOutOfRangeException>(() => Read(s, 6, 8));
            Equal(Entries(7, 10, term: 2), ReadAll(s));
        });

        // Compacting at FirstIndex - 1 changes nothing; out-of-range points throw.
        await store.CompactAsync(6);
        Assert.Equal(7, store.FirstIndex);
        var ex = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.CompactAsync(11).AsTask());
        Assert.Contains("11", ex.Message, StringComparison.Ordinal);
        Assert.Contains("[6, 10]", ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.CompactAsync(5).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.AppendAsync([Entry(6, 3)]).AsTask());

        // A truncating append may start at the first index, not below it.
        await store.AppendAsync(Entries(7, 8, term: 3));
        await CheckTwice(store, s =>
        {
            Assert.Equal(7, s.FirstIndex);
            Equal(Entries(7, 8, term: 3), ReadAll(s));
            Assert.Equal(2, s.GetTerm(6));
        });
    }

    [Fact]
    public async Task Compacting_everything_leaves_an_empty_log_that_accepts_appends()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 5, term: 3));
        await store.CompactAsync(5);
        store = await CheckTwice(store, s =>
        {
            Assert.Equal(6, s.FirstIndex);
            Assert.Equal(5, s.LastIndex);
            Assert.Equal(3, s.GetTerm(5));
            Assert.Empty(Read(s, 6, 6));
        });
        await store.AppendAsync(Entries(6, 7, term: 4));
        await CheckTwice(store, s =>
        {
            Equal(Entries(6, 7, term: 4), ReadAll(s));
            Assert.Equal(3, s.GetTerm(5));
        });
    }

    [Fact]
    public async Task Reset_discards_the_log_and_restarts_it_after_the_snapshot()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 10, term: 1));
        await store.ResetAsync(20, 5);
        store = await CheckTwice(store, s =>
        {
            Assert.Equal(21, s.FirstIndex);
            Assert.Equal(20, s.LastIndex);
            Assert.Equal(5, s.GetTerm(20));
            Assert.Throws<ArgumentOutOfRangeException>(() => s.GetTerm(19));
            Assert.Empty(Read(s, 21, 21));
        });
        await store.AppendAsync(Entries(21, 23, term: 6));
        store = await CheckTwice(store, s => Equal(Entries(21, 23, term: 6), ReadAll(s)));

        // A reset may also move the log backwards (to a snapshot below the current log).
        await store.ResetAsync(3, 2);
        store = await CheckTwice(store, s =>
        {
            Assert.Equal(4, s.FirstIndex);
            Assert.Equal(3, s.LastIndex);
            Assert.Equal(2, s.GetTerm(3));
        });
        await store.AppendAsync([Entry(4, 7)]);
        store = await CheckTwice(store, s => Equal([Entry(4, 7)], ReadAll(s)));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.ResetAsync(-1, 0).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.ResetAsync(0, -1).AsTask());
    }

    [Fact]
    public async Task Hard_state_round_trips_and_is_replaced()
    {
        var store = await CreateAsync();
        await store.SaveHardStateAsync(new HardState(3, 2, 10));
        store = await CheckTwice(store, s => Assert.Equal(new HardState(3, 2, 10), s.HardState));
        await store.SaveHardStateAsync(new HardState(long.MaxValue, int.MaxValue, long.MaxValue));
        store = await CheckTwice(store, s => Assert.Equal(new HardState(long.MaxValue, int.MaxValue, long.MaxValue), s.HardState));
        await store.SaveHardStateAsync(new HardState(4, 0, 0));
        await CheckTwice(store, s => Assert.Equal(new HardState(4, 0, 0), s.HardState));
    }

    [Fact]
    public async Task Hard_state_and_log_are_independent()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 3, term: 2));
        await store.SaveHardStateAsync(new HardState(2, 1, 3));
        await store.CompactAsync(2);
        await store.AppendAsync([Entry(4, 2)]);
        await CheckTwice(store, s =>
        {
            Assert.Equal(new HardState(2, 1, 3), s.HardState);
            Equal([Entry(3, 2), Entry(4, 2)], ReadAll(s));
        });
    }

    [Fact]
    public async Task A_cancelled_write_changes_nothing()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 2, term: 1));
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.AppendAsync([Entry(3, 1)], cts.Token).AsTask());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.SaveHardStateAsync(new HardState(1, 1, 1), cts.Token).AsTask());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.CompactAsync(1, cts.Token).AsTask());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.ResetAsync(9, 9, cts.Token).AsTask());
        await CheckTwice(store, s =>
        {
            Assert.Equal(1, s.FirstIndex);
            Equal(Entries(1, 2, term: 1), ReadAll(s));
            Assert.Equal(default, s.HardState);
        });
    }

    [Fact]
    public async Task Entries_handed_out_do_not_change_when_the_log_does()
    {
        var store = await CreateAsync();
        await store.AppendAsync(Entries(1, 4, term: 1));
        var before = ReadAll(store);
        var snapshot = before.Select(Describe).ToArray();
        await store.AppendAsync(Entries(2, 4, term: 2));
        await store.CompactAsync(3);
        await store.AppendAsync(Entries(5, 9, term: 2, size: 40));
        Assert.Equal(snapshot, before.Select(Describe).ToArray());
    }
}

/// <summary>The contract against the in-memory store; a restart is modeled by <see cref="InMemoryLogStore.Clone"/>.</summary>
public sealed class InMemoryLogStoreContractTests : LogStoreContractTests
{
    protected override Task<ILogStore> CreateAsync() => Task.FromResult<ILogStore>(new InMemoryLogStore());

    protected override Task<ILogStore> ReopenAsync(ILogStore store) => Task.FromResult<ILogStore>(((InMemoryLogStore)store).Clone());
}
