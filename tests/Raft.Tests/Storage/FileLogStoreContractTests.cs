namespace Raft.Tests.Storage;

/// <summary>
/// The contract against <see cref="FileLogStore"/> with default options: a temporary directory per
/// test, and every check repeated after closing and reopening the store.
/// </summary>
public class FileLogStoreContractTests : LogStoreContractTests
{
    // A TempDirectory, held by path: xunit disposes the class through DisposeAsync.
    private readonly string _directory = new TempDirectory().Path;
    private FileLogStore? _current;

    protected virtual FileLogStoreOptions Options => new();

    protected override async Task<ILogStore> CreateAsync()
    {
        _current = await FileLogStore.OpenAsync(_directory, Options);
        return _current;
    }

    protected override async Task<ILogStore> ReopenAsync(ILogStore store)
    {
        var file = Assert.IsType<FileLogStore>(store);
        await file.DisposeAsync();
        _current = await FileLogStore.OpenAsync(_directory, Options);
        return _current;
    }

    public override async Task DisposeAsync()
    {
        if (_current is not null)
            await _current.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }
}

/// <summary>
/// The contract against <see cref="FileLogStore"/> with tiny segments (a few records each) and no
/// cache, so that every operation crosses segment boundaries and every read comes from disk.
/// </summary>
public sealed class FileLogStoreTinySegmentContractTests : FileLogStoreContractTests
{
    protected override FileLogStoreOptions Options => new() { SegmentSize = 100, CacheBytes = 0 };
}

/// <summary>The contract against <see cref="FileLogStore"/> with a cache smaller than the log, so reads mix disk and cache.</summary>
public sealed class FileLogStoreSmallCacheContractTests : FileLogStoreContractTests
{
    protected override FileLogStoreOptions Options => new() { SegmentSize = 300, CacheBytes = 100 };
}
