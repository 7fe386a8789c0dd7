using System.Diagnostics;

namespace Raft;

/// <summary>
/// The most recent log entries, kept in memory within a byte budget so that a leader rarely reads
/// its own log from disk. A ring buffer of <see cref="LogEntry"/> values: adding an entry allocates
/// nothing except when the ring grows.
/// </summary>
/// <remarks>Not thread-safe; owned by <see cref="FileLogStore"/>.</remarks>
internal sealed class EntryCache
{
    private readonly long _budget;
    private LogEntry[] _ring = [];
    // Invariant: the cached entries are _ring[(_head + k) % _ring.Length] for k in [0, _count), with
    // consecutive indexes; when not empty, the last one is the store's LastIndex.
    private int _head;
    private int _count;
    // Invariant: _bytes == the sum of Size over the cached entries <= _budget.
    private long _bytes;

    public EntryCache(long budget) => _budget = budget;

    public int Count => _count;

    /// <summary>The index of the first cached entry, or <see cref="long.MaxValue"/> when empty.</summary>
    public long FirstIndex => _count == 0 ? long.MaxValue : _ring[_head].Index;

    /// <summary>Returns the cached entry at <paramref name="index"/>, which must be in the cache.</summary>
    public ref readonly LogEntry Get(long index)
    {
        var offset = index - _ring[_head].Index;
        Debug.Assert(offset >= 0 && offset < _count);
        return ref _ring[Slot((int)offset)];
    }

    /// <summary>Adds the entry that follows the last cached one (or any entry when empty), evicting old ones over the budget.</summary>
    public void Add(in LogEntry entry)
    {
        Debug.Assert(_count == 0 || entry.Index == _ring[Slot(_count - 1)].Index + 1);
        var size = entry.Size;
        if (size > _budget)
        {
            // Too big to keep; the cache must stay a contiguous suffix of the log, so drop the rest too.
            Clear();
            return;
        }
        while (_count > 0 && _bytes + size > _budget)
            RemoveFirst();
        if (_count == _ring.Length)
            Grow();
        _ring[Slot(_count)] = entry;
        _count++;
        _bytes += size;
    }

    /// <summary>Removes every cached entry with an index at or above <paramref name="index"/>.</summary>
    public void RemoveFrom(long index)
    {
        while (_count > 0)
        {
            ref var last = ref _ring[Slot(_count - 1)];
            if (last.Index < index)
                break;
            _bytes -= last.Size;
            last = default;
            _count--;
        }
        if (_count == 0)
            _head = 0;
    }

    /// <summary>Removes every cached entry with an index below <paramref name="index"/>.</summary>
    public void RemoveBefore(long index)
    {
        while (_count > 0 && _ring[_head].Index < index)
            RemoveFirst();
    }

    public void Clear()
    {
        Array.Clear(_ring);
        _head = 0;
        _count = 0;
        _bytes = 0;
    }

    private void RemoveFirst()
    {
        ref var first = ref _ring[_head];
        _bytes -= first.Size;
        first = default;
        _head = _head + 1 == _ring.Length ? 0 : _head + 1;
        _count--;
        if (_count == 0)
            _head = 0;
    }

    private int Slot(int offset)
    {
        var slot = _head + offset;
        return slot >= _ring.Length ? slot - _ring.Length : slot;
    }

    private void Grow()
    {
        var bigger = new LogEntry[Math.Max(64, _ring.Length * 2)];
        for (var k = 0; k < _count; k++)
            bigger[k] = _ring[Slot(k)];
        _ring = bigger;
        _head = 0;
    }
}
