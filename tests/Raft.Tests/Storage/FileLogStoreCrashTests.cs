using Raft.Testing.Storage;
using Xunit.Abstractions;

namespace Raft.Tests.Storage;

/// <summary>
/// Power-loss tests of <see cref="FileLogStore"/> over <see cref="CrashFaithfulFileSystem"/>: what an
/// awaited write completed survives any crash, torn tails are cut, and recovery accepts every state a
/// crash can leave.
/// </summary>
public class FileLogStoreCrashTests(ITestOutputHelper output)
{
    private const int Seeds = 500;

    [Fact]
    public async Task Every_acknowledged_write_survives_seeded_crash_schedules()
    {
        var stats = new CrashScheduleStats();
        for (var seed = 0; seed < Seeds; seed++)
            await FileLogStoreCrashSchedule.RunAsync(seed, stats: stats);
        output.WriteLine($"{Seeds} seeds: {stats}");

        // The schedules must reach the cases that matter, or passing proves little.
        Assert.True(stats.CrashesInsideWrite > Seeds, stats.ToString());
        Assert.True(stats.CrashesDuringRecovery > Seeds / 10, stats.ToString());
        Assert.True(stats.TornTailsCut > Seeds / 10, stats.ToString());
        Assert.True(stats.TornSegmentsDeleted > 0, stats.ToString());
        Assert.True(stats.LeftoverSegmentsDeleted > 0, stats.ToString());
    }

    [Fact]
    public async Task A_store_without_fsync_loses_an_acknowledged_write()
    {
        // The unsafe option says what it does: the same schedules catch it.
        for (var seed = 0; seed < 200; seed++)
        {
            try
            {
                await FileLogStoreCrashSchedule.RunAsync(seed, o => new FileLogStoreOptions
                {
                    SegmentSize = o.SegmentSize,
                    CacheBytes = o.CacheBytes,
                    FileSystem = o.FileSystem,
                    Durability = LogDurability.UnsafeNoFsync,
                });
            }
            catch (CrashViolationException ex) when (ex.Kind == CrashViolationKind.LostAcknowledged)
            {
                output.WriteLine($"caught at seed {seed}: {ex.Message}");
                return;
            }
            catch (CrashViolationException ex)
            {
                output.WriteLine($"seed {seed}: {ex.Kind}: {ex.Message}");
            }
        }
        Assert.Fail("200 crash schedules did not lose an acknowledged write of a store that never fsyncs.");
    }

    [Fact]
    public void Unsynced_file_data_can_be_lost_or_torn_and_synced_data_cannot()
    {
        var outcomes = new HashSet<string>();
        for (var seed = 0; seed < 100; seed++)
        {
            var fs = new CrashFaithfulFileSystem();
            var dir = Path.GetFullPath("/crashfs-unit");
            fs.CreateDirectory(dir);
            var path = Path.Combine(dir, "f");
            using (var file = fs.OpenFile(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read))
            {
                file.Write("durable"u8, 0);
                file.FlushToDisk();
                file.Write("-volatile"u8, 7);
            }
            fs.SyncDirectory(dir);
            fs.Crash(new Random(seed));
            var text = System.Text.Encoding.ASCII.GetString(fs.ReadAllBytes(path));
            Assert.StartsWith("durable", text, StringComparison.Ordinal);
            Assert.True("durable-volatile".StartsWith(text, StringComparison.Ordinal), text);
            outcomes.Add(text.Length == 7 ? "lost" : text.Length == 16 ? "kept" : "torn");
        }
        Assert.Equal(["kept", "lost", "torn"], outcomes.Order());
    }

    [Fact]
    public void Unsynced_directory_operations_can_be_reverted_and_synced_ones_cannot()
    {
        var outcomes = new HashSet<string>();
        for (var seed = 0; seed < 100; seed++)
        {
            var fs = new CrashFaithfulFileSystem();
            var dir = Path.GetFullPath("/crashfs-unit");
            fs.CreateDirectory(dir);
            using (var file = fs.OpenFile(Path.Combine(dir, "a"), FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read))
            {
                file.Write("a"u8, 0);
                file.FlushToDisk();
            }
            fs.SyncDirectory(dir);
            using (var file = fs.OpenFile(Path.Combine(dir, "b.tmp"), FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read))
            {
                file.Write("b"u8, 0);
                file.FlushToDisk();
            }
            fs.MoveFile(Path.Combine(dir, "b.tmp"), Path.Combine(dir, "a"));
            fs.Crash(new Random(seed));
            var names = string.Join(",", fs.FileNames(dir));
            var a = System.Text.Encoding.ASCII.GetString(fs.ReadAllBytes(Path.Combine(dir, "a")));
            // Prefixes of (create b.tmp, rename it over a): never a state outside them.
            var state = $"{names}:{a}";
            Assert.Contains(state, new[] { "a:a", "a,b.tmp:a", "a:b" });
            outcomes.Add(state);
        }
        Assert.Equal(3, outcomes.Count);
    }

    [Fact]
    public async Task A_crash_strikes_inside_a_write_and_kills_the_old_handles()
    {
        var fs = new CrashFaithfulFileSystem();
        var dir = Path.GetFullPath("/crashfs-strike");
        var store = await FileLogStore.OpenAsync(dir, new FileLogStoreOptions { FileSystem = fs });
        await store.AppendAsync(LogAssert.Entries(1, 3, 1));
        fs.CrashAfter(2); // the write of the next batch happens, its fsync does not
        await Assert.ThrowsAsync<SimulatedCrashException>(async () => await store.AppendAsync(LogAssert.Entries(4, 6, 1)));
        Assert.Throws<InvalidOperationException>(() => store.LastIndex); // the store stopped
        fs.Crash(new Random(1));
        await store.DisposeAsync();
        await using var reopened = await FileLogStore.OpenAsync(dir, new FileLogStoreOptions { FileSystem = fs });
        Assert.InRange(reopened.LastIndex, 3, 6);
        LogAssert.Equal(LogAssert.Entries(1, reopened.LastIndex, 1), LogAssert.ReadAll(reopened));
    }
}
