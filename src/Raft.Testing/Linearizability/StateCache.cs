using System.Numerics;

namespace Raft.Testing.Linearizability;

/// <summary>
/// The search's memo of visited configurations. A configuration is the set K of completed operations
/// linearized so far, the register's (abstracted) value v, and the set U of unknown-outcome operations
/// linearized so far. Configurations are grouped by (K, v); within a group only an antichain of U sets
/// is kept, because a configuration whose U contains a stored U' is subsumed: it has the same
/// obligations and a subset of the options (fewer unknown operations left to use).
/// </summary>
/// <remarks>
/// Open addressing over flat arrays: adding a configuration allocates nothing but the occasional
/// growth, and a lookup allocates nothing. Callers supply the hash of (K, v), maintained
/// incrementally by the search.
/// </remarks>
internal sealed class StateCache
{
    private readonly int _kWords;
    private readonly int _uWords;
    private readonly int _maxGroups;
    private readonly int _maxMembers;

    // Groups: one per (K, v).
    private ulong[] _groupBits;
    private ulong[] _groupHashes;
    private int[] _groupValues;
    private int[] _groupFirst; // first member (U set) of the group, -1 when none
    private int _groupCount;
    private int[] _slots;      // group index + 1; 0 marks an empty slot

    // Members: U sets, in singly linked lists per group; removed members go to a free list.
    private ulong[] _memberBits;
    private int[] _memberNext;
    private int _memberCount;
    private int _free = -1;

    // The most memory one key's search may take for its cache: 1 GiB.
    private const long MaxBytes = 1L << 30;

    public StateCache(int kWords, int uWords)
    {
        _kWords = Math.Max(1, kWords);
        _uWords = uWords;
        // Powers of two, so that the slot table (twice the groups) stays a power of two.
        // Bounded in bytes too (MaxBytes, half for groups and half for members): a pathological
        // history gives up (the search reports a timeout) instead of exhausting the machine's memory.
        var groupBytes = (_kWords * 8L) + 8 + 4 + 4 + 8; // bits, hash, value, first member, two slots
        var memberBytes = (_uWords * 8L) + 4;
        _maxGroups = FloorPowerOfTwo((int)Math.Min(Math.Min(Array.MaxLength / 4, Array.MaxLength / _kWords), MaxBytes / 2 / groupBytes));
        _maxMembers = _uWords == 0 ? 0 : (int)Math.Min(Math.Min(Array.MaxLength / 2, Array.MaxLength / _uWords), MaxBytes / 2 / memberBytes);
        var groups = Math.Min(1024, _maxGroups);
        _groupBits = new ulong[groups * _kWords];
        _groupHashes = new ulong[groups];
        _groupValues = new int[groups];
        _groupFirst = new int[groups];
        _slots = new int[groups * 2];
        var members = _uWords == 0 ? 0 : Math.Min(1024, _maxMembers);
        _memberBits = new ulong[members * _uWords];
        _memberNext = new int[members];
    }

    /// <summary>How many configurations were added.</summary>
    public long Count { get; private set; }

    /// <summary>
    /// Adds a configuration; <see langword="false"/> when it is already present or subsumed (so its
    /// exploration cannot succeed where an earlier one did not).
    /// </summary>
    /// <exception cref="InsufficientMemoryException">The cache cannot grow any further.</exception>
    public bool TryAdd(ReadOnlySpan<ulong> completed, int value, ulong hash, ReadOnlySpan<ulong> unknown)
    {
        var mask = _slots.Length - 1;
        var slot = (int)(Spread(hash) & (uint)mask);
        int group;
        while (true)
        {
            group = _slots[slot] - 1;
            if (group < 0)
                break;
            if (_groupHashes[group] == hash && _groupValues[group] == value && completed.SequenceEqual(_groupBits.AsSpan(group * _kWords, _kWords)))
                return _uWords != 0 && AddMember(group, unknown);
            slot = (slot + 1) & mask;
        }

        if (_groupCount == _groupHashes.Length)
        {
            GrowGroups();
            return TryAdd(completed, value, hash, unknown);
        }
        group = _groupCount++;
        completed.CopyTo(_groupBits.AsSpan(group * _kWords, _kWords));
        _groupHashes[group] = hash;
        _groupValues[group] = value;
        _groupFirst[group] = -1;
        _slots[slot] = group + 1;
        if (_uWords != 0)
            return AddMember(group, unknown);
        Count++;
        return true;
    }

    private bool AddMember(int group, ReadOnlySpan<ulong> unknown)
    {
        var previous = -1;
        var member = _groupFirst[group];
        while (member >= 0)
        {
            var stored = _memberBits.AsSpan(member * _uWords, _uWords);
            if (IsSubset(stored, unknown))
                return false;
            var next = _memberNext[member];
            if (IsSubset(unknown, stored))
            {
                // The new set subsumes this one: drop it, keeping the list an antichain.
                if (previous < 0)
                    _groupFirst[group] = next;
                else
                    _memberNext[previous] = next;
                _memberNext[member] = _free;
                _free = member;
            }
            else
            {
                previous = member;
            }
            member = next;
        }

        if (_free >= 0)
        {
            member = _free;
            _free = _memberNext[member];
        }
        else
        {
            if (_memberCount == _memberNext.Length)
                GrowMembers();
            member = _memberCount++;
        }
        unknown.CopyTo(_memberBits.AsSpan(member * _uWords, _uWords));
        _memberNext[member] = _groupFirst[group];
        _groupFirst[group] = member;
        Count++;
        return true;
    }

    private static bool IsSubset(ReadOnlySpan<ulong> subset, ReadOnlySpan<ulong> superset)
    {
        for (var i = 0; i < subset.Length; i++)
        {
            if ((subset[i] & ~superset[i]) != 0)
                return false;
        }
        return true;
    }

    private static uint Spread(ulong hash) => (uint)(hash ^ (hash >> 32));

    private static int FloorPowerOfTwo(int x) => (int)(BitOperations.RoundUpToPowerOf2((uint)x + 1) / 2);

    private void GrowGroups()
    {
        var capacity = (int)Math.Min(_groupHashes.Length * 2L, _maxGroups);
        if (capacity <= _groupHashes.Length)
            throw new InsufficientMemoryException("The linearizability search cache is full.");
        Array.Resize(ref _groupBits, capacity * _kWords);
        Array.Resize(ref _groupHashes, capacity);
        Array.Resize(ref _groupValues, capacity);
        Array.Resize(ref _groupFirst, capacity);
        _slots = new int[capacity * 2];
        var mask = _slots.Length - 1;
        for (var group = 0; group < _groupCount; group++)
        {
            var slot = (int)(Spread(_groupHashes[group]) & (uint)mask);
            while (_slots[slot] != 0)
                slot = (slot + 1) & mask;
            _slots[slot] = group + 1;
        }
    }

    private void GrowMembers()
    {
        var capacity = (int)Math.Min(Math.Max(16, _memberNext.Length * 2L), _maxMembers);
        if (capacity <= _memberNext.Length)
            throw new InsufficientMemoryException("The linearizability search cache is full.");
        Array.Resize(ref _memberBits, capacity * _uWords);
        Array.Resize(ref _memberNext, capacity);
    }
}
