namespace Raft.Testing;

/// <summary>An <see cref="ISnapshotStore"/> in memory. <b>Testing only</b>: snapshots vanish with the process.</summary>
public sealed class InMemorySnapshotStore : ISnapshotStore
{
    private readonly Lock _gate = new();
    private (SnapshotMetadata Metadata, byte[] Data)? _latest;

    /// <inheritdoc />
    public SnapshotMetadata? Latest
    {
        get
        {
            lock (_gate)
                return _latest?.Metadata;
        }
    }

    /// <inheritdoc />
    public long LatestLength
    {
        get
        {
            lock (_gate)
                return _latest?.Data.Length ?? 0;
        }
    }

    /// <summary>How many snapshots were committed.</summary>
    public int CommitCount { get; private set; }

    /// <inheritdoc />
    public int Read(long index, long offset, Span<byte> destination)
    {
        byte[] data;
        lock (_gate)
        {
            if (_latest is not { } latest || latest.Metadata.Index != index)
                return -1;
            data = latest.Data;
        }
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, data.Length);
        var count = (int)Math.Min(destination.Length, data.Length - offset);
        data.AsSpan((int)offset, count).CopyTo(destination);
        return count;
    }

    /// <inheritdoc />
    public Stream? OpenLatest()
    {
        lock (_gate)
            return _latest is { } latest ? new MemoryStream(latest.Data, writable: false) : null;
    }

    /// <inheritdoc />
    public ValueTask<ISnapshotWriter> CreateAsync(SnapshotMetadata metadata, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult<ISnapshotWriter>(new Writer(this, metadata));
    }

    /// <summary>Returns an independent copy of this store (what survives a simulated crash).</summary>
    /// <returns>The copy.</returns>
    public InMemorySnapshotStore Clone()
    {
        var copy = new InMemorySnapshotStore();
        lock (_gate)
            copy._latest = _latest;
        return copy;
    }

    private void Commit(SnapshotMetadata metadata, byte[] data)
    {
        lock (_gate)
        {
            if (_latest is { } latest && latest.Metadata.Index > metadata.Index)
                return;
            _latest = (metadata, data);
            CommitCount++;
        }
    }

    private sealed class Writer(InMemorySnapshotStore store, SnapshotMetadata metadata) : ISnapshotWriter
    {
        private readonly MemoryStream _buffer = new();

        public SnapshotMetadata Metadata { get; } = metadata;

        public Stream Stream => _buffer;

        public ValueTask CommitAsync(CancellationToken cancellationToken = default)
        {
            cancellationToken.ThrowIfCancellationRequested();
            store.Commit(Metadata, _buffer.ToArray());
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            _buffer.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
