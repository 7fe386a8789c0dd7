namespace Raft.Testing;

/// <summary>
/// An <see cref="ILogStore"/> that keeps everything in memory. <b>Testing only</b>: it loses its data
/// with the process, so a cluster on it is not durable.
/// </summary>
/// <remarks>
/// Writes complete synchronously. Every member takes one lock, so reads may run while an append
/// is made on another thread (<see cref="SupportsReadsDuringAppend"/>). <see cref="Clone"/> copies
/// the store as it stands, which the simulator uses to model "the data that survived a crash".
/// </remarks>
public sealed class InMemoryLogStore : ILogStore
{
    // Invariant: _entries[i].Index == _firstIndex + i.
    private readonly List<LogEntry> _entries = [];
    private long _firstIndex = 1;
    // The term of the entry at _firstIndex - 1 (0 when nothing was compacted).
    private long _compactedTerm;
    private readonly Lock _lock = new();

    private HardState _hardState;

    /// <inheritdoc />
    public HardState HardState
    {
        get
        {
            lock (_lock)
                return _hardState;
        }
    }

    /// <inheritdoc />
    public bool SupportsReadsDuringAppend => true;

    /// <inheritdoc />
    public long FirstIndex
    {
        get
        {
            lock (_lock)
                return _firstIndex;
        }
    }

    /// <inheritdoc />
    public long LastIndex
    {
        get
        {
            lock (_lock)
                return LastIndexLocked;
        }
    }

    private long LastIndexLocked => _firstIndex + _entries.Count - 1;

    /// <summary>How many durable writes (appends, hard states, compactions, resets) this store has taken.</summary>
    public long WriteCount { get; private set; }

    /// <inheritdoc />
    public long GetTerm(long index)
    {
        lock (_lock)
        {
            if (index == _firstIndex - 1)
                return _compactedTerm;
            if (index < _firstIndex - 1 || index > LastIndex)
                throw new ArgumentOutOfRangeException(nameof(index), index, $"Index {index} is outside the log [{_firstIndex - 1}, {LastIndex}].");
            return _entries[(int)(index - _firstIndex)].Term;
        }
    }

    /// <inheritdoc />
    public void ReadEntries(long startIndex, long endIndex, long maxBytes, List<LogEntry> destination)
    {
        lock (_lock)
        {
            ArgumentNullException.ThrowIfNull(destination);
            if (startIndex < _firstIndex || endIndex > LastIndex + 1 || startIndex > endIndex)
                throw new ArgumentOutOfRangeException(nameof(startIndex), $"Range [{startIndex}, {endIndex}) is outside the log [{_firstIndex}, {LastIndex + 1}).");
            long bytes = 0;
            for (var index = startIndex; index < endIndex; index++)
            {
                var entry = _entries[(int)(index - _firstIndex)];
                bytes += entry.Size;
                if (bytes > maxBytes && index > startIndex)
                    break;
                destination.Add(entry);
            }
        }
    }

    /// <inheritdoc />
    public ValueTask AppendAsync(IReadOnlyList<LogEntry> entries, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            ArgumentNullException.ThrowIfNull(entries);
            cancellationToken.ThrowIfCancellationRequested();
            if (entries.Count == 0)
                throw new ArgumentException("Nothing to append.", nameof(entries));
            var first = entries[0].Index;
            if (first < _firstIndex || first > LastIndex + 1)
                throw new ArgumentOutOfRangeException(nameof(entries), first, $"The first entry's index {first} is outside [{_firstIndex}, {LastIndex + 1}].");
            for (var i = 1; i < entries.Count; i++)
            {
                if (entries[i].Index != first + i)
                    throw new ArgumentException($"Entries are not contiguous: index {entries[i].Index} follows {entries[i - 1].Index}.", nameof(entries));
            }
            var keep = (int)(first - _firstIndex);
            if (keep < _entries.Count)
                _entries.RemoveRange(keep, _entries.Count - keep);
            for (var i = 0; i < entries.Count; i++)
                _entries.Add(entries[i]);
            WriteCount++;
            return ValueTask.CompletedTask;
        }
    }

    /// <inheritdoc />
    public ValueTask SaveHardStateAsync(HardState state, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            cancellationToken.ThrowIfCancellationRequested();
            _hardState = state;
            WriteCount++;
            return ValueTask.CompletedTask;
        }
    }

    /// <inheritdoc />
    public ValueTask CompactAsync(long index, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (index < _firstIndex - 1 || index > LastIndex)
                throw new ArgumentOutOfRangeException(nameof(index), index, $"Index {index} is outside [{_firstIndex - 1}, {LastIndex}].");
            var term = GetTerm(index);
            _entries.RemoveRange(0, (int)(index - _firstIndex + 1));
            _firstIndex = index + 1;
            _compactedTerm = term;
            WriteCount++;
            return ValueTask.CompletedTask;
        }
    }

    /// <inheritdoc />
    public ValueTask ResetAsync(long index, long term, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            cancellationToken.ThrowIfCancellationRequested();
            ArgumentOutOfRangeException.ThrowIfNegative(index);
            ArgumentOutOfRangeException.ThrowIfNegative(term);
            _entries.Clear();
            _firstIndex = index + 1;
            _compactedTerm = term;
            WriteCount++;
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>Returns an independent copy of this store's current contents.</summary>
    /// <returns>The copy.</returns>
    public InMemoryLogStore Clone()
    {
        lock (_lock)
        {
            var copy = new InMemoryLogStore { _hardState = _hardState, _firstIndex = _firstIndex, _compactedTerm = _compactedTerm };
            copy._entries.AddRange(_entries);
            return copy;
        }
    }
}
