namespace Raft;

/// <summary>
/// The core's view of the log: the durable entries of an <see cref="ILogStore"/> followed by the
/// unstable entries that were appended but not yet persisted.
/// </summary>
internal sealed class RaftLog
{
    private readonly ILogStore _store;

    // Unstable entries: _unstable[i].Index == _unstableOffset + i.
    // Invariant: _unstableOffset <= _store.LastIndex + 1. Entries of the store at or after
    // _unstableOffset are superseded by _unstable (a conflicting suffix about to be replaced).
    private List<LogEntry> _unstable = [];
    private long _unstableOffset;

    // Unstable entries up to this index were handed to the host for writing (and may be in flight);
    // UnstableEntries hands out only the ones after it. Invariant: _unstableOffset - 1 <= _inProgress <= LastIndex.
    private long _inProgress;

    // The highest index the host's writes have taken the store to (written or being written): a write
    // that starts at or below it overwrites something, and must not overlap a write in flight.
    private long _highestWritten;

    public RaftLog(ILogStore store, long committed, long applied)
    {
        _store = store;
        _unstableOffset = store.LastIndex + 1;
        _inProgress = store.LastIndex;
        _highestWritten = store.LastIndex;
        // Invariant: FirstIndex - 1 <= Applied <= Applying <= Committed <= LastIndex.
        Committed = Math.Clamp(committed, store.FirstIndex - 1, store.LastIndex);
        Applied = Math.Clamp(applied, store.FirstIndex - 1, Committed);
        Applying = Applied;
    }

    // A snapshot accepted from the leader but not yet written to the store by the host: until then
    // the stable log reads as empty after (Index, Term). Cleared by <see cref="SnapshotPersisted"/>.
    private (long Index, long Term)? _restored;

    /// <summary>The highest index known committed.</summary>
    public long Committed { get; private set; }

    /// <summary>The highest index handed to the host for applying.</summary>
    public long Applying { get; private set; }

    /// <summary>The highest index the host reported applied.</summary>
    public long Applied { get; private set; }

    public long FirstIndex => _restored is { } r ? r.Index + 1 : _store.FirstIndex;

    public long LastIndex => _unstable.Count > 0 ? _unstableOffset + _unstable.Count - 1 : StoreLastIndex;

    private long StoreLastIndex => _restored is { } r ? r.Index : _store.LastIndex;

    public long LastTerm => Term(LastIndex);

    /// <summary>The index of the last entry known durable.</summary>
    public long StableLastIndex => _unstable.Count > 0 ? Math.Min(StoreLastIndex, _unstableOffset - 1) : StoreLastIndex;

    /// <summary>Whether there are unstable entries not yet handed to the host for writing.</summary>
    public bool HasUnstable => _unstable.Count > 0 && LastIndex > _inProgress;

    /// <summary>Whether the next <see cref="UnstableEntries"/> would overwrite entries written or being written.</summary>
    public bool NextWriteOverwrites => _unstable.Count > 0 && Math.Max(_inProgress + 1, _unstableOffset) <= _highestWritten;

    /// <summary>The term of the entry at <paramref name="index"/>, or -1 when it is compacted or beyond the log.</summary>
    public long TryTerm(long index)
    {
        if (index < 0)
            return -1;
        if (_unstable.Count > 0 && index >= _unstableOffset)
            return index <= LastIndex ? _unstable[(int)(index - _unstableOffset)].Term : -1;
        if (_restored is { } r)
            return index == r.Index ? r.Term : -1;
        if (index < _store.FirstIndex - 1 || index > _store.LastIndex)
            return -1;
        return _store.GetTerm(index);
    }

    /// <summary>The term of an entry that must exist (or be the compaction point).</summary>
    public long Term(long index)
    {
        var term = TryTerm(index);
        if (term < 0)
            throw new InvalidOperationException($"The term of index {index} is unavailable: the log holds [{FirstIndex - 1}, {LastIndex}].");
        return term;
    }

    public bool MatchTerm(long index, long term) => TryTerm(index) == term;

    /// <summary>Whether a log ending at (<paramref name="lastIndex"/>, <paramref name="lastTerm"/>) is at least as up to date as this one (Raft §5.4.1).</summary>
    public bool IsUpToDate(long lastIndex, long lastTerm)
    {
        var myTerm = LastTerm;
        return lastTerm > myTerm || (lastTerm == myTerm && lastIndex >= LastIndex);
    }

    /// <summary>Appends entries that follow the last entry (leader path).</summary>
    public void Append(LogEntry entry)
    {
        if (_unstable.Count == 0)
            _unstableOffset = LastIndex + 1;
        _unstable.Add(entry);
    }

    /// <summary>
    /// Appends <paramref name="entries"/>, whose first entry is at most LastIndex + 1, deleting any
    /// entries from there on. Never called for an index at or below <see cref="Committed"/>.
    /// </summary>
    public void TruncateAndAppend(IReadOnlyList<LogEntry> entries, int from)
    {
        var first = entries[from].Index;
        if (first <= Committed)
            throw new System.Diagnostics.UnreachableException($"Truncating at index {first}, at or below the commit index {Committed}.");
        if (first <= _inProgress)
            _inProgress = first - 1; // the replaced entries must be handed out (and written) again
        if (_unstable.Count > 0 && first > _unstableOffset)
        {
            // Within or just after the unstable part: cut it at first.
            var keep = (int)(first - _unstableOffset);
            if (keep < _unstable.Count)
                _unstable.RemoveRange(keep, _unstable.Count - keep);
        }
        else
        {
            // Replaces everything unstable, and possibly a suffix of the store. The list is never
            // handed out (UnstableEntries copies), so it is reused rather than reallocated per append.
            _unstable.Clear();
            _unstableOffset = first;
        }
        for (var i = from; i < entries.Count; i++)
            _unstable.Add(entries[i]);
    }

    /// <summary>Reads entries in [<paramref name="lo"/>, <paramref name="hi"/>) up to <paramref name="maxBytes"/> (at least one).</summary>
    public void Entries(long lo, long hi, long maxBytes, List<LogEntry> destination)
    {
        if (lo < FirstIndex || hi > LastIndex + 1 || lo > hi)
            throw new ArgumentOutOfRangeException(nameof(lo), $"Range [{lo}, {hi}) is outside the log [{FirstIndex}, {LastIndex + 1}).");
        if (lo == hi)
            return;
        var stableEnd = _unstable.Count > 0 ? Math.Min(hi, _unstableOffset) : hi;
        if (_restored is not null)
            stableEnd = lo; // Nothing stable after a restored snapshot: everything in range is unstable.
        long bytes = 0;
        if (lo < stableEnd)
        {
            var before = destination.Count;
            _store.ReadEntries(lo, stableEnd, maxBytes, destination);
            for (var i = before; i < destination.Count; i++)
                bytes += destination[i].Size;
            var read = destination.Count - before;
            if (lo + read < stableEnd)
                return; // Hit the size limit inside the store.
            lo = stableEnd;
        }
        for (var index = lo; index < hi; index++)
        {
            var entry = _unstable[(int)(index - _unstableOffset)];
            bytes += entry.Size;
            if (bytes > maxBytes && destination.Count > 0)
                return;
            destination.Add(entry);
        }
    }

    /// <summary>
    /// Replaces the whole log with a snapshot covering up to (<paramref name="index"/>,
    /// <paramref name="term"/>): unstable entries are dropped, and the stable log reads as empty
    /// until the host has reset the store (<see cref="SnapshotPersisted"/>).
    /// </summary>
    public void RestoreSnapshot(long index, long term)
    {
        if (index <= Committed)
            throw new System.Diagnostics.UnreachableException($"Restoring a snapshot at index {index}, at or below the commit index {Committed}.");
        _restored = (index, term);
        _unstable = [];
        _unstableOffset = index + 1;
        _inProgress = index;
        _highestWritten = index; // the host resets the store to the snapshot in the same Ready
        Committed = index;
        Applying = index;
        Applied = index;
    }

    /// <summary>Whether a restored snapshot still waits for the host to reset the store.</summary>
    public bool HasPendingSnapshot => _restored is not null;

    /// <summary>The host reset the store to the restored snapshot.</summary>
    public void SnapshotPersisted() => _restored = null;

    /// <summary>The unstable entries not yet handed out for writing, to persist.</summary>
    public IReadOnlyList<LogEntry> UnstableEntries()
    {
        var from = (int)(Math.Max(_inProgress + 1, _unstableOffset) - _unstableOffset);
        return from >= _unstable.Count ? [] : System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_unstable)[from..].ToArray();
    }

    /// <summary>The host took <paramref name="lastIndex"/> and everything before it for writing; the store will end there.</summary>
    public void HandedOut(long lastIndex)
    {
        _inProgress = Math.Max(_inProgress, lastIndex);
        _highestWritten = lastIndex;
    }

    /// <summary>Marks the entries up to <paramref name="index"/> with <paramref name="term"/> durable.</summary>
    public void StableTo(long index, long term)
    {
        if (_unstable.Count == 0 || index < _unstableOffset || index > LastIndex)
            return;
        if (_unstable[(int)(index - _unstableOffset)].Term != term)
            return; // Replaced since it was handed out.
        var count = (int)(index - _unstableOffset + 1);
        _unstable.RemoveRange(0, count);
        _unstableOffset = index + 1;
    }

    public void CommitTo(long index)
    {
        if (index <= Committed)
            return;
        if (index > LastIndex)
            throw new System.Diagnostics.UnreachableException($"Commit index {index} is beyond the last index {LastIndex}.");
        Committed = index;
    }

    /// <summary>The committed entries not yet handed out for applying.</summary>
    public IReadOnlyList<LogEntry> NextCommittedEntries(long maxBytes)
    {
        if (Applying >= Committed)
            return [];
        var list = new List<LogEntry>((int)Math.Min(Committed - Applying, 4096));
        Entries(Applying + 1, Committed + 1, maxBytes, list);
        return list;
    }

    public void ApplyingTo(long index) => Applying = Math.Max(Applying, index);

    public void AppliedTo(long index)
    {
        if (index > Applying)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"Applied index {index} is beyond what was handed out ({Applying}).");
        Applied = Math.Max(Applied, index);
    }

    /// <summary>The first index of the run of entries with the same term as the entry at <paramref name="index"/>, not below <paramref name="floor"/>.</summary>
    public long FirstIndexOfTermRun(long index, long floor)
    {
        var term = Term(index);
        var i = index;
        while (i - 1 >= Math.Max(floor, FirstIndex) && TryTerm(i - 1) == term)
            i--;
        return i;
    }

    /// <summary>The last index at or below <paramref name="index"/> whose term is at most <paramref name="term"/>, or the compaction point.</summary>
    public long LastIndexWithTermAtMost(long index, long term)
    {
        var i = Math.Min(index, LastIndex);
        while (i >= FirstIndex)
        {
            var t = TryTerm(i);
            if (t >= 0 && t <= term)
                return i;
            i--;
        }
        return FirstIndex - 1;
    }
}
