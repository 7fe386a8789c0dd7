using Raft.Testing.Storage;
using Raft.Tests.Storage;
using Xunit.Abstractions;

namespace Raft.Mutants.Tests;

/// <summary>
/// Proof that the crash-faithful storage tests catch a <see cref="FileLogStore"/> that never fsyncs
/// while claiming durability: the crash schedule of the main suite
/// (<c>FileLogStoreCrashTests</c>) must lose an acknowledged write within the seed budget, and the
/// catching seed must pass on the same build with the mutation off.
/// </summary>
public class StorageMutantTests(ITestOutputHelper output)
{
    private const int SeedBudget = 300;

    [Fact]
    public async Task Crash_schedule_catches_FileLogNoFsync_and_its_seed_passes_without_it()
    {
        for (var seed = 0; seed < SeedBudget; seed++)
        {
            try
            {
                await FileLogStoreCrashSchedule.RunAsync(seed, o => With(o, Mutation.FileLogNoFsync));
            }
            catch (CrashViolationException ex) when (ex.Kind == CrashViolationKind.LostAcknowledged)
            {
                output.WriteLine($"{Mutation.FileLogNoFsync} caught at seed {seed}: {ex.Message}");
                // The same seed (same writes, crash points and survivors) on the clean store passes.
                await FileLogStoreCrashSchedule.RunAsync(seed, o => With(o, Mutation.None));
                output.WriteLine($"seed {seed} passes with the mutation off");
                return;
            }
            catch (CrashViolationException ex)
            {
                // A refused recovery also shows the bug, but the promise at stake is the lost write: keep looking.
                output.WriteLine($"seed {seed}: {ex.Kind}: {ex.Message}");
            }
        }
        Assert.Fail($"The crash schedule did not catch {Mutation.FileLogNoFsync} within {SeedBudget} seeds.");
    }

    private static FileLogStoreOptions With(FileLogStoreOptions options, Mutation mutation) => new()
    {
        SegmentSize = options.SegmentSize,
        CacheBytes = options.CacheBytes,
        Durability = options.Durability,
        FileSystem = options.FileSystem,
        Mutations = mutation,
    };
}
