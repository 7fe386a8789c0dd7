namespace Raft.Tests.SnapshotStore;

/// <summary>Builds snapshot data and reads snapshots back through every read path of <see cref="ISnapshotStore"/>.</summary>
internal static class SnapshotData
{
    /// <summary>Deterministic bytes that differ per <paramref name="seed"/>, so a snapshot read back from the wrong file shows.</summary>
    public static byte[] Bytes(long seed, int length)
    {
        var data = new byte[length];
        new Random(unchecked((int)(seed * 2_654_435_761L) ^ 0x5eed)).NextBytes(data);
        return data;
    }

    public static SnapshotMetadata Metadata(long index, long term = 1, params int[] members) =>
        new(index, term, members.Length == 0 ? [1, 2, 3] : members);

    /// <summary>Writes <paramref name="data"/> as a new snapshot and commits it.</summary>
    public static async Task CommitAsync(ISnapshotStore store, SnapshotMetadata metadata, byte[] data)
    {
        await using var writer = await store.CreateAsync(metadata);
        Assert.Same(metadata, writer.Metadata);
        await writer.Stream.WriteAsync(data);
        await writer.CommitAsync();
    }

    /// <summary>Reads the whole latest snapshot through <see cref="ISnapshotStore.Read"/>, in chunks of <paramref name="chunk"/> bytes.</summary>
    public static byte[] ReadAll(ISnapshotStore store, long index, int chunk = 4096)
    {
        var result = new MemoryStream();
        var buffer = new byte[chunk];
        long offset = 0;
        while (true)
        {
            var read = store.Read(index, offset, buffer);
            Assert.True(read >= 0, $"Read({index}, {offset}) returned {read}: the snapshot is no longer the latest");
            result.Write(buffer, 0, read);
            offset += read;
            if (read < buffer.Length)
                return result.ToArray();
        }
    }

    /// <summary>Reads the whole stream returned by <see cref="ISnapshotStore.OpenLatest"/>.</summary>
    public static byte[] OpenLatestBytes(ISnapshotStore store)
    {
        using var stream = store.OpenLatest();
        Assert.NotNull(stream);
        var result = new MemoryStream();
        stream.CopyTo(result);
        return result.ToArray();
    }

    /// <summary>Asserts that the store's latest snapshot is <paramref name="metadata"/> with <paramref name="data"/>, through every read path.</summary>
    public static void AssertLatest(ISnapshotStore store, SnapshotMetadata metadata, byte[] data)
    {
        var latest = store.Latest;
        Assert.NotNull(latest);
        Assert.Equal(metadata.Index, latest.Index);
        Assert.Equal(metadata.Term, latest.Term);
        Assert.Equal(metadata.Configuration, latest.Configuration);
        Assert.Equal(data.Length, store.LatestLength);
        AssertSameBytes(data, ReadAll(store, metadata.Index));
        AssertSameBytes(data, OpenLatestBytes(store));
    }

    /// <summary>Compares byte arrays without dumping megabytes into the failure message.</summary>
    public static void AssertSameBytes(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        var mismatch = expected.CommonPrefixLength(actual);
        Assert.True(mismatch == expected.Length, $"the bytes differ from offset {mismatch} on");
    }
}

/// <summary>A fresh directory under the system temp folder, deleted on dispose.</summary>
internal sealed class SnapshotTempDirectory : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "raft-snapshot-tests", Guid.NewGuid().ToString("N"));

    public SnapshotTempDirectory() => Directory.CreateDirectory(Path);

    /// <summary>The committed snapshot files, oldest first.</summary>
    public string[] SnapshotFiles() => Directory.GetFiles(Path, "*.snap").Order(StringComparer.Ordinal).ToArray();

    /// <summary>Unfinished (temporary) snapshot files.</summary>
    public string[] TempFiles() => Directory.GetFiles(Path, "*.tmp");

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>Keeps what is logged, so tests can assert on warnings.</summary>
internal sealed class RecordingLogger : Microsoft.Extensions.Logging.ILogger
{
    private readonly List<(int EventId, string Message)> _entries = [];

    public IReadOnlyList<(int EventId, string Message)> Entries
    {
        get
        {
            lock (_entries)
                return _entries.ToArray();
        }
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

    public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_entries)
            _entries.Add((eventId.Id, formatter(state, exception)));
    }
}
