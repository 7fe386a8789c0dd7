using Raft.Testing;

namespace Raft.Tests.SnapshotStore;

/// <summary>The contract against <see cref="InMemorySnapshotStore"/>; "reopening" keeps the same instance.</summary>
public sealed class InMemorySnapshotStoreContractTests : SnapshotStoreContractTests
{
    protected override ISnapshotStore CreateStore() => new InMemorySnapshotStore();
}

/// <summary>The contract against <see cref="InMemorySnapshotStore"/>, where "reopening" is <see cref="InMemorySnapshotStore.Clone"/> (what survives a simulated crash).</summary>
public sealed class InMemorySnapshotStoreCloneContractTests : SnapshotStoreContractTests
{
    protected override ISnapshotStore CreateStore() => new InMemorySnapshotStore();

    protected override ISnapshotStore Reopen(ISnapshotStore store) => Assert.IsType<InMemorySnapshotStore>(store).Clone();
}

/// <summary>
/// The contract against <see cref="FileSnapshotStore"/>: a temporary directory per test, and every
/// check of committed state repeated after closing and reopening the store.
/// </summary>
public sealed class FileSnapshotStoreContractTests : SnapshotStoreContractTests
{
    // Held by path (xunit disposes the class through DisposeAsync); SnapshotTempDirectory's Dispose deletes it.
    private readonly string _path = new SnapshotTempDirectory().Path;
    private readonly List<FileSnapshotStore> _opened = [];

    protected override ISnapshotStore CreateStore() => Open();

    protected override ISnapshotStore Reopen(ISnapshotStore store)
    {
        Assert.IsType<FileSnapshotStore>(store).Dispose();
        var reopened = Open();
        Assert.Empty(Directory.GetFiles(_path, "*.tmp"));
        return reopened;
    }

    public override Task DisposeAsync()
    {
        // Every committed or discarded writer cleaned up after itself.
        var leftovers = Directory.GetFiles(_path, "*.tmp");
        foreach (var store in _opened)
            store.Dispose();
        Directory.Delete(_path, recursive: true);
        Assert.Empty(leftovers);
        return Task.CompletedTask;
    }

    private FileSnapshotStore Open()
    {
        // The synchronous core of OpenAsync: the contract base creates stores synchronously.
        var store = FileSnapshotStore.Open(_path, null, RealStorageFileSystem.Instance);
        _opened.Add(store);
        return store;
    }
}
