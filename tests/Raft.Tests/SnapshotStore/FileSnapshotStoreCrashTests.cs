using Raft.Testing.Storage;
using Raft.Tests.Storage;

namespace Raft.Tests.SnapshotStore;

/// <summary>
/// Power-loss tests of <see cref="FileSnapshotStore"/> over <see cref="CrashFaithfulFileSystem"/>:
/// after a crash at a random point, the latest snapshot is the last one whose commit completed (or
/// the one whose commit was in progress), with exactly its data, and recovery never refuses.
/// </summary>
public class FileSnapshotStoreCrashTests
{
    private const int Seeds = 300;

    [Fact]
    public async Task The_last_committed_snapshot_survives_seeded_crashes()
    {
        var crashesInsideCommit = 0;
        for (var seed = 0; seed < Seeds; seed++)
            crashesInsideCommit += await RunAsync(seed);
        // Most rounds must crash inside a commit (or its writing), where the ordering matters.
        Assert.True(crashesInsideCommit > Seeds, $"{crashesInsideCommit} crashes inside a commit");
    }

    // Returns how many crashes struck inside a commit.
    private static async Task<int> RunAsync(int seed)
    {
        var random = new Random(seed);
        var fs = new CrashFaithfulFileSystem();
        var directory = Path.GetFullPath(Path.Combine(Path.GetTempPath(), "crashfs-snapshots", seed.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        var store = FileSnapshotStore.Open(directory, null, fs);
        (SnapshotMetadata Metadata, byte[] Data)? committed = null;
        long index = 0;
        var inside = 0;
        for (var round = 0; round < 4; round++)
        {
            (SnapshotMetadata Metadata, byte[] Data)? inFlight = null;
            fs.CrashAfter(random.Next(1, 25));
            for (var n = random.Next(1, 5); n > 0 && !fs.HasCrashed; n--)
            {
                index += random.Next(1, 10);
                var metadata = SnapshotData.Metadata(index, round + 1);
                var data = SnapshotData.Bytes(random.Next(), random.Next(4) == 0 ? 0 : random.Next(1, 3000));
                try
                {
                    await SnapshotData.CommitAsync(store, metadata, data);
                    committed = (metadata, data);
                }
                catch (Exception) when (fs.HasCrashed)
                {
                    inFlight = (metadata, data);
                    inside++;
                }
            }
            fs.Disarm();
            fs.Crash(random);
            store.Dispose();

            try
            {
                store = FileSnapshotStore.Open(directory, null, fs);
            }
            catch (LogCorruptionException ex)
            {
                Assert.Fail($"seed {seed}, round {round}: recovery refused after a crash: {ex.Message}");
            }
            var latest = store.Latest;
            var where = $"seed {seed}, round {round}: latest {latest?.Index.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}, committed {committed?.Metadata.Index}, in flight {inFlight?.Metadata.Index}";
            if (inFlight is { } started && latest?.Index == started.Metadata.Index)
            {
                SnapshotData.AssertLatest(store, started.Metadata, started.Data);
                committed = started;
            }
            else if (committed is { } done)
            {
                Assert.True(latest?.Index == done.Metadata.Index, where);
                SnapshotData.AssertLatest(store, done.Metadata, done.Data);
            }
            else
            {
                Assert.True(latest is null, where);
            }
        }
        store.Dispose();
        return inside;
    }
}
