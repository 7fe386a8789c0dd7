namespace Raft;

/// <summary>
/// A bounded FIFO of the last log index carried by each AppendEntries sent to one follower and not
/// yet acknowledged: the leader's replication window (pipelining, DESIGN.md §2).
/// </summary>
internal sealed class Inflights
{
    // Ring buffer. Invariant: 0 <= _count <= _buffer.Length; the entries from _start in ring order are strictly increasing.
    private readonly long[] _buffer;
    private int _start;
    private int _count;

    public Inflights(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _buffer = new long[capacity];
    }

    public int Count => _count;

    public int Capacity => _buffer.Length;

    public bool Full => _count == _buffer.Length;

    /// <summary>Records a message whose last entry is <paramref name="lastIndex"/>. When full, the oldest record is forgotten.</summary>
    public void Add(long lastIndex)
    {
        if (Full)
            FreeFirstOne();
        _buffer[(_start + _count) % _buffer.Length] = lastIndex;
        _count++;
    }

    /// <summary>Forgets every message whose last entry is at or below <paramref name="index"/> (acknowledged).</summary>
    public void FreeLE(long index)
    {
        while (_count > 0 && _buffer[_start] <= index)
        {
            _start = (_start + 1) % _buffer.Length;
            _count--;
        }
    }

    /// <summary>Forgets the oldest message (presumed lost), opening the window by one.</summary>
    public void FreeFirstOne()
    {
        if (_count == 0)
            return;
        _start = (_start + 1) % _buffer.Length;
        _count--;
    }

    public void Reset()
    {
        _start = 0;
        _count = 0;
    }
}
