namespace Raft.Benchmarks.LoadGenerator;

/// <summary>
/// What each key may hold at the end, from the writes the clients saw acknowledged. Thread-safe
/// (one lock per key).
/// </summary>
/// <remarks>
/// Concurrent writes to one key may be applied in either order, so "the last acknowledged write" is
/// only defined up to overlap: write W can be the final value unless some acknowledged write W'
/// started after W was acknowledged (then W' is ordered after W). Each key keeps exactly those
/// candidates. A write whose outcome is unknown (an error other than 503, a timeout, a broken
/// connection) may still be applied at any time, so such a key is not checked.
/// </remarks>
internal sealed class KeyTracker
{
    private readonly KeyState[] _keys;

    public KeyTracker(int keyCount)
    {
        _keys = new KeyState[keyCount];
        for (var i = 0; i < keyCount; i++)
            _keys[i] = new KeyState();
    }

    public int Count => _keys.Length;

    /// <summary>Records that the write <paramref name="id"/> to <paramref name="key"/>, sent at <paramref name="start"/>, was acknowledged at <paramref name="end"/> (Stopwatch timestamps).</summary>
    public void Acknowledged(int key, long id, long start, long end)
    {
        var state = _keys[key];
        lock (state.Gate)
        {
            if (start > state.LatestAcknowledgedStart)
            {
                state.LatestAcknowledgedStart = start;
                // Invariant: every candidate was acknowledged at or after the latest acknowledged start.
                var kept = 0;
                for (var i = 0; i < state.Candidates.Count; i++)
                {
                    if (state.Candidates[i].End >= start)
                        state.Candidates[kept++] = state.Candidates[i];
                }
                state.Candidates.RemoveRange(kept, state.Candidates.Count - kept);
            }
            if (end >= state.LatestAcknowledgedStart)
                state.Candidates.Add((id, end));
        }
    }

    /// <summary>Records a write to <paramref name="key"/> whose outcome is unknown: it may or may not take effect.</summary>
    public void OutcomeUnknown(int key)
    {
        var state = _keys[key];
        lock (state.Gate)
            state.Unknown++;
    }

    /// <summary>What <paramref name="key"/> may hold: null when it cannot be checked (a write of unknown outcome); an empty list when it must be absent.</summary>
    public IReadOnlyList<long>? Expected(int key)
    {
        var state = _keys[key];
        lock (state.Gate)
            return state.Unknown > 0 ? null : [.. state.Candidates.Select(c => c.Id)];
    }

    private sealed class KeyState
    {
        public readonly Lock Gate = new();
        public readonly List<(long Id, long End)> Candidates = [];
        public long LatestAcknowledgedStart = long.MinValue;
        public long Unknown;
    }
}
