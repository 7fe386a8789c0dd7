using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Raft.Testing.Linearizability;

/// <summary>Shared by the per-key searches of one check: the deadline, and a stop flag raised by the first failure.</summary>
internal sealed class SearchControl(long deadline)
{
    private volatile bool _stopped;

    public bool Stopped => _stopped;

    public bool DeadlinePassed => Stopwatch.GetTimestamp() > deadline;

    public void Stop() => _stopped = true;
}

/// <summary>One key's verdict, with the failure report when it is not linearizable.</summary>
internal sealed record KeySearchResult(KeyCheckResult Result, LinearizabilityFailure? Failure);

/// <summary>
/// Decides whether one key's sub-history is linearizable with respect to a sequential register
/// (absent, or holding a string), by the depth-first search of Wing &amp; Gong as refined by Lowe
/// ("Testing for linearizability", 2017): the history is a doubly linked list of call and return
/// events in time order; the search repeatedly linearizes a pending operation whose call precedes
/// the first remaining return, lifting its events out of the list, and backtracks when no candidate
/// works (the operation of that first return had to take effect by then). A memo of visited
/// configurations (linearized operations, register value) prunes every configuration reached twice.
/// </summary>
/// <remarks>
/// <para>
/// Unknown outcomes (as in Porcupine): such operations have no return event, so they may be
/// linearized at any point after their call, or never (equivalently: at +infinity). Candidates that
/// completed are tried before unknown ones, so configurations that use few unknown operations come
/// first. The memo keeps the two kinds apart: a configuration with the same completed operations and
/// register value as a visited one, and a superset of its unknown operations, is subsumed (same
/// obligations, fewer options) and pruned. Unknown operations with the same effect are
/// interchangeable and used in time order. An unknown operation is not tried when it leaves the
/// memo register unchanged, nor when it only makes it hold a value nobody will observe while no
/// pending CAS reports "no swap" on the current value (dropping it then changes nothing).
/// </para>
/// <para>
/// The memo abstracts the register: values that no operation still to be linearized observes (no
/// such get reads them, no such CAS expects them) behave identically from then on, so they share
/// one memo value. It also stores the set of linearized completed operations compactly: that set is
/// always "everything that returned before the first remaining return R, plus some of the
/// operations pending at R", so R and a bitset over that window identify it.
/// </para>
/// <para>
/// Read-only operations (completed gets, completed CASes that report no swap) that are consistent
/// with the register are linearized first and greedily, without trying alternatives at that
/// point: such an operation leaves the register unchanged in every state it is consistent with, so
/// moving it to the front of any completion keeps every later step valid (the register values are
/// the same and fewer returns remain); if any completion exists, one starts with it. (A put of the
/// current value does not qualify: moved elsewhere it would change the register.)
/// </para>
/// <para>
/// Before searching, a get (or a swapped CAS) that observed a value which no operation invoked
/// before its response writes refutes the history at once.
/// </para>
/// </remarks>
internal sealed class RegisterSearch
{
    private const int Absent = 0;
    private const int Unobserved = -1;
    private const int ShownPrefix = 10;

    private readonly string _key;
    private readonly Operation[] _operations;
    private readonly int[] _historyIndexes;
    private readonly List<string?> _values = [null]; // value id -> value; id 0 is "absent"
    private readonly KvOperationKind[] _kinds;
    private readonly int[] _argument;   // Put: value; Cas: expected
    private readonly int[] _newValue;   // Cas: new value
    private readonly int[] _output;     // Get: value read; Cas: 1 when it swapped
    private readonly bool[] _completed; // Ok outcome (has a return event, output observed)
    private readonly bool[] _readOnly;  // never changes the register when consistent: completed gets, CAS reported not swapped
    private readonly int _completedCount;
    private readonly int[] _slot;       // the operation's bit: among the completed operations, or among the unknown ones

    private RegisterSearch(string key, List<(Operation Operation, int HistoryIndex)> operations)
    {
        _key = key;
        var n = operations.Count;
        _operations = new Operation[n];
        _historyIndexes = new int[n];
        _kinds = new KvOperationKind[n];
        _argument = new int[n];
        _newValue = new int[n];
        _output = new int[n];
        _completed = new bool[n];
        _readOnly = new bool[n];
        _slot = new int[n];
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            var (op, index) = operations[i];
            _operations[i] = op;
            _historyIndexes[i] = index;
            _kinds[i] = op.Input.Kind;
            _completed[i] = op.Outcome == OperationOutcome.Ok;
            _slot[i] = _completed[i] ? _completedCount++ : i - _completedCount;
            switch (op.Input.Kind)
            {
                case KvOperationKind.Put:
                    _argument[i] = Intern(ids, op.Input.Value);
                    break;
                case KvOperationKind.Get:
                    _output[i] = Intern(ids, op.Output.Value);
                    _readOnly[i] = true;
                    break;
                case KvOperationKind.Cas:
                    _argument[i] = Intern(ids, op.Input.Expected);
                    _newValue[i] = Intern(ids, op.Input.Value);
                    _output[i] = op.Output.Swapped ? 1 : 0;
                    _readOnly[i] = _completed[i] && !op.Output.Swapped;
                    break;
                default:
                    break;
            }
        }
    }

    /// <summary>Checks one key's operations (failed operations and unknown gets already removed).</summary>
    public static KeySearchResult Run(string key, List<(Operation Operation, int HistoryIndex)> operations, SearchControl control) =>
        new RegisterSearch(key, operations).Run(control);

    private int Intern(Dictionary<string, int> ids, string? value)
    {
        if (value is null)
            return Absent;
        if (!ids.TryGetValue(value, out var id))
        {
            id = _values.Count;
            _values.Add(value);
            ids.Add(value, id);
        }
        return id;
    }

    /// <summary>The sequential register: applies operation <paramref name="op"/> to <paramref name="value"/>.</summary>
    /// <returns>Whether the operation's observed output is consistent with <paramref name="value"/>.</returns>
    private bool Step(int op, int value, out int next)
    {
        switch (_kinds[op])
        {
            case KvOperationKind.Put:
                next = _argument[op];
                return true;
            case KvOperationKind.Delete:
                next = Absent;
                return true;
            case KvOperationKind.Get:
                next = value;
                return !_completed[op] || _output[op] == value;
            default:
                var matches = value == _argument[op];
                next = matches ? _newValue[op] : value;
                return !_completed[op] || matches == (_output[op] == 1);
        }
    }

    private KeySearchResult Run(SearchControl control)
    {
        var started = Stopwatch.GetTimestamp();
        if (control.Stopped)
            return Stopped(KeyCheckOutcome.Skipped, 0, started);
        if (FindUnexplainableObservation() is { } impossible)
            return Unexplainable(impossible, started);
        var n = _operations.Length;

        // Nodes: i is operation i's call, n + i its return. Two circular lists with sentinels: 2n heads
        // the completed operations' calls and returns, 2n + 1 the unknown operations' calls (which
        // have no return). rank orders all events by time; at equal times calls come before returns
        // (touching intervals overlap).
        var head = 2 * n;
        var headUnknown = (2 * n) + 1;
        var next = new int[(2 * n) + 2];
        var prev = new int[(2 * n) + 2];
        var rank = new int[2 * n];
        var events = new List<(long Time, int Node)>(2 * n);
        for (var i = 0; i < n; i++)
        {
            events.Add((_operations[i].InvokeTimestamp, i));
            if (_completed[i])
                events.Add((_operations[i].ResponseTimestamp, n + i));
        }
        events.Sort(static (a, b) =>
        {
            var byTime = a.Time.CompareTo(b.Time);
            return byTime != 0 ? byTime : a.Node.CompareTo(b.Node);
        });
        var (lastMain, lastUnknown) = (head, headUnknown);
        for (var r = 0; r < events.Count; r++)
        {
            var node = events[r].Node;
            rank[node] = r;
            ref var last = ref node < n && !_completed[node] ? ref lastUnknown : ref lastMain;
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        (next[lastMain], prev[head]) = (head, lastMain);
        (next[lastUnknown], prev[headUnknown]) = (headUnknown, lastUnknown);

        // observers[v]: operations not linearized yet whose outcome depends on whether the register
        // holds v (gets that read v, CASes that expect v). The memo represents every value without
        // observers by Unobserved: from the configuration on they are indistinguishable.
        // notSwapped[v]: completed CASes not linearized yet that expect v and report no swap.
        var observers = new int[_values.Count];
        var notSwapped = new int[_values.Count];
        for (var i = 0; i < n; i++)
            Observe(i, 1);
        var observed = observers.Select(count => count > 0).ToArray();

        // Unknown operations with the same effect on the memo register are interchangeable: they are
        // used in time order (twin: the previous one, which must be linearized first).
        var twin = new int[n];
        var lastOfEffect = new Dictionary<(KvOperationKind, int, int), int>();
        for (var node = next[headUnknown]; node != headUnknown; node = next[node])
        {
            var effect = (_kinds[node], observed[_argument[node]] ? _argument[node] : Unobserved, observed[_newValue[node]] ? _newValue[node] : Unobserved);
            twin[node] = lastOfEffect.TryGetValue(effect, out var previous) ? previous : -1;
            lastOfEffect[effect] = node;
        }

        // Zobrist hashing of the completed set, updated as operations are linearized and undone.
        var zobrist = new ulong[n];
        for (var i = 0; i < n; i++)
            zobrist[i] = Mix((ulong)i + 0x51_7C_C1_B7_27_22_0A_95UL);

        var completedBits = new ulong[(_completedCount + 63) / 64];
        var unknownBits = new ulong[(n - _completedCount + 63) / 64];
        // Compact memo keys. In every configuration the completed operations linearized so far are
        // all those whose return precedes R, the first remaining return, plus some of the operations
        // pending at R (invoked before R, returning after it); none invoked after R. So (R, which of
        // the window of operations pending at R are linearized) identifies the set in a word or two,
        // whatever the length of the history. window(r): the completed operations pending at r's return.
        var windowStart = new int[n];
        var windowLength = new int[n];
        var windowOps = new List<int>();
        var pendingOps = new List<int>();
        var pendingIndex = new int[n];
        foreach (var (_, node) in events)
        {
            if (node < n)
            {
                if (_completed[node])
                {
                    pendingIndex[node] = pendingOps.Count;
                    pendingOps.Add(node);
                }
                continue;
            }
            var returned = node - n;
            var moved = pendingOps[^1];
            pendingOps[pendingIndex[returned]] = moved;
            pendingIndex[moved] = pendingIndex[returned];
            pendingOps.RemoveAt(pendingOps.Count - 1);
            windowStart[returned] = windowOps.Count;
            windowLength[returned] = pendingOps.Count;
            windowOps.AddRange(pendingOps);
        }
        var window = windowOps.ToArray();
        var key = new ulong[1 + ((windowLength.DefaultIfEmpty(0).Max() + 63) / 64)];
        var cache = new StateCache(key.Length, unknownBits.Length);
        var stackOp = new int[n];
        var stackValue = new int[n];
        var stackForced = new bool[n];
        var stackReturn = new int[n];
        var depth = 0;
        var remaining = _completedCount;
        var value = Absent;
        ulong hash = 0;
        long iterations = 0;

        var bestDepth = -1;
        int[]? bestPrefix = null;
        var bestValue = Absent;
        List<int>? bestPending = null;
        var bestOverdue = -1;

        // The cursor: first the completed operations' calls before the first return, then (with
        // firstReturn set) the unknown operations' calls before it. Trying completed operations first
        // explores configurations with few unknown operations first, which then subsume the others.
        var entry = next[head];
        var inUnknown = false;
        var firstReturn = -1;
        var fresh = true;
        try
        {
            while (remaining > 0)
            {
                if ((++iterations & 1023) == 0 && (control.Stopped || control.DeadlinePassed))
                    return Stopped(control.Stopped ? KeyCheckOutcome.Skipped : KeyCheckOutcome.TimedOut, cache.Count, started);

                if (fresh)
                {
                    // A new configuration: a consistent read-only candidate is taken first, alone (see remarks).
                    fresh = false;
                    var read = next[head];
                    while (read < n && !(_readOnly[read] && Step(read, value, out _)))
                        read = next[read];
                    if (read < n)
                    {
                        if (TryLinearize(read, value))
                            continue;
                        // It leads to an explored dead end: so does every alternative here.
                        if (!Backtrack())
                            return NotLinearizable(bestPrefix!, bestValue, bestPending!, bestOverdue, cache.Count, started);
                        continue;
                    }
                }

                if (!inUnknown)
                {
                    if (entry >= n)
                    {
                        // The first return: no completed operation invoked later can come next.
                        firstReturn = entry;
                        inUnknown = true;
                        entry = next[headUnknown];
                        continue;
                    }
                    // Consistent read-only candidates were taken by the fresh-configuration step.
                    if (!_readOnly[entry] && Step(entry, value, out var nextValue) && TryLinearize(entry, nextValue))
                        continue;
                    entry = next[entry];
                    continue;
                }

                if (entry != headUnknown && rank[entry] < rank[firstReturn])
                {
                    var op = entry;
                    // A twin must go first.
                    if ((twin[op] < 0 || IsSet(unknownBits, _slot[twin[op]])) && Step(op, value, out var nextValue) && TryLinearize(op, nextValue))
                        continue;
                    entry = next[entry];
                    continue;
                }

                // Every candidate failed: firstReturn's operation had to be linearized by now. Remember
                // the point that linearized the most completed operations.
                if (_completedCount - remaining > bestDepth)
                {
                    bestDepth = _completedCount - remaining;
                    bestPrefix = stackOp.AsSpan(0, depth).ToArray();
                    bestValue = value;
                    bestPending = [];
                    for (var node = next[head]; node != firstReturn; node = next[node])
                        bestPending.Add(node);
                    for (var node = next[headUnknown]; node != headUnknown && rank[node] < rank[firstReturn]; node = next[node])
                        bestPending.Add(node);
                    bestOverdue = firstReturn - n;
                }
                if (!Backtrack())
                    return NotLinearizable(bestPrefix!, bestValue, bestPending!, bestOverdue, cache.Count, started);
            }
        }
        catch (Exception e) when (e is InsufficientMemoryException or OutOfMemoryException)
        {
            return Stopped(KeyCheckOutcome.TimedOut, cache.Count, started);
        }

        return new KeySearchResult(Summary(KeyCheckOutcome.Linearizable, cache.Count, started), null);

        int Memo(int v) => observers[v] > 0 ? v : Unobserved;

        void Observe(int op, int delta)
        {
            switch (_kinds[op])
            {
                case KvOperationKind.Get:
                    observers[_output[op]] += delta;
                    break;
                case KvOperationKind.Cas:
                    observers[_argument[op]] += delta;
                    if (_completed[op] && _output[op] == 0)
                        notSwapped[_argument[op]] += delta;
                    break;
                default:
                    break;
            }
        }

        // Linearizes op next, taking the register to nextValue, unless the new configuration is
        // already in the memo or subsumed (or, for an unknown operation, pointless: see below).
        bool TryLinearize(int op, int nextValue)
        {
            var completed = _completed[op];
            var bits = completed ? completedBits : unknownBits;
            var bit = _slot[op];
            var memoBefore = Memo(value);
            bits[bit >> 6] |= 1UL << bit;
            Observe(op, -1);
            var nextHash = completed ? hash ^ zobrist[op] : hash;
            var memo = Memo(nextValue);
            Lift(op);
            // An unknown operation that leaves the memo register as it is gives a configuration
            // subsumed by this one. One that makes it Unobserved only matters to a pending CAS that
            // reports no swap because the register no longer holds the expected value: without one,
            // dropping the operation (and any unknown CAS before the next write) changes nothing.
            var pointless = !completed && (memo == memoBefore || (memo == Unobserved && notSwapped[value] == 0));
            if (!pointless && cache.TryAdd(Key(), memo, nextHash ^ Mix((ulong)memo), unknownBits))
            {
                stackOp[depth] = op;
                stackValue[depth] = value;
                stackForced[depth] = _readOnly[op];
                stackReturn[depth] = firstReturn;
                depth++;
                value = nextValue;
                hash = nextHash;
                if (completed)
                    remaining--;
                inUnknown = false;
                entry = next[head];
                fresh = true;
                return true;
            }
            Unlift(op);
            bits[bit >> 6] &= ~(1UL << bit);
            Observe(op, 1);
            return false;
        }

        // The compact form of the completed set (see above), for the list as it stands.
        ulong[] Key()
        {
            var r = next[head];
            while (r < n)
                r = next[r];
            Array.Clear(key);
            if (r == head)
                return key; // every completed operation is linearized
            r -= n;
            key[0] = (ulong)r + 1;
            var start = windowStart[r];
            for (var j = 0; j < windowLength[r]; j++)
            {
                if (IsSet(completedBits, _slot[window[start + j]]))
                    key[1 + (j >> 6)] |= 1UL << j;
            }
            return key;
        }

        // Undoes linearizations back to the last choice that has alternatives, and resumes the cursor
        // after it; false when there is none (no linearization exists).
        bool Backtrack()
        {
            while (depth > 0)
            {
                depth--;
                var op = stackOp[depth];
                Unlift(op);
                Observe(op, 1);
                var bit = _slot[op];
                if (_completed[op])
                {
                    completedBits[bit >> 6] &= ~(1UL << bit);
                    hash ^= zobrist[op];
                    remaining++;
                }
                else
                {
                    unknownBits[bit >> 6] &= ~(1UL << bit);
                }
                value = stackValue[depth];
                if (!stackForced[depth])
                {
                    inUnknown = !_completed[op];
                    if (inUnknown)
                        firstReturn = stackReturn[depth];
                    entry = next[op];
                    return true;
                }
            }
            return false;
        }

        void Lift(int op)
        {
            next[prev[op]] = next[op];
            prev[next[op]] = prev[op];
            if (_completed[op])
            {
                var ret = n + op;
                next[prev[ret]] = next[ret];
                prev[next[ret]] = prev[ret];
            }
        }

        void Unlift(int op)
        {
            // Dancing links: restore in the reverse order of removal.
            if (_completed[op])
            {
                var ret = n + op;
                next[prev[ret]] = ret;
                prev[next[ret]] = ret;
            }
            next[prev[op]] = op;
            prev[next[op]] = op;
        }
    }

    private static bool IsSet(ulong[] bits, int bit) => (bits[bit >> 6] & (1UL << bit)) != 0;

    private static ulong Mix(ulong x)
    {
        // SplitMix64's finalizer.
        x += 0x9E37_79B9_7F4A_7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58_476D_1CE4_E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D0_49BB_1331_11EBUL;
        return x ^ (x >> 31);
    }

    private KeyCheckResult Summary(KeyCheckOutcome outcome, long states, long started) =>
        new(_key, outcome, _operations.Length, _operations.Length - _completedCount, states, Stopwatch.GetElapsedTime(started));

    private KeySearchResult Stopped(KeyCheckOutcome outcome, long states, long started) =>
        new(Summary(outcome, states, started), null);

    /// <summary>
    /// A quick refutation without search: a completed get (or a swapped CAS) that observed a value
    /// which no operation invoked before its response writes. Returns the earliest such operation.
    /// </summary>
    private int? FindUnexplainableObservation()
    {
        var firstWrite = new long[_values.Count];
        Array.Fill(firstWrite, long.MaxValue);
        for (var i = 0; i < _operations.Length; i++)
        {
            var written = _kinds[i] switch
            {
                KvOperationKind.Put => _argument[i],
                KvOperationKind.Cas => _newValue[i],
                _ => Absent,
            };
            firstWrite[written] = Math.Min(firstWrite[written], _operations[i].InvokeTimestamp);
        }
        int? earliest = null;
        for (var i = 0; i < _operations.Length; i++)
        {
            if (!_completed[i])
                continue;
            var seen = _kinds[i] switch
            {
                KvOperationKind.Get => _output[i],
                KvOperationKind.Cas when _output[i] == 1 => _argument[i],
                _ => Absent,
            };
            if (seen != Absent && firstWrite[seen] > _operations[i].ResponseTimestamp
                && (earliest is not { } e || _operations[i].ResponseTimestamp < _operations[e].ResponseTimestamp))
            {
                earliest = i;
            }
        }
        return earliest;
    }

    private KeySearchResult Unexplainable(int op, long started)
    {
        var summary = Summary(KeyCheckOutcome.NotLinearizable, 0, started);
        var seen = _kinds[op] == KvOperationKind.Get ? _output[op] : _argument[op];
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"Key {KvInput.Format(_key)} is not linearizable ({summary.OperationCount} operations checked, {summary.UnknownCount} with unknown outcome).");
        text.AppendLine().Append("  ").Append(Describe(op)).Append(": ");
        text.Append(CultureInfo.InvariantCulture, $"it observed {KvInput.Format(_values[seen])}, but no operation on the key invoked before its response ({_operations[op].ResponseTimestamp}) writes that value.");
        var failure = new LinearizabilityFailure(_key, [], null, [_operations[op]], _operations[op], text.ToString());
        return new KeySearchResult(summary, failure);
    }

    private KeySearchResult NotLinearizable(int[] prefix, int value, List<int> pending, int overdue, long states, long started)
    {
        var summary = Summary(KeyCheckOutcome.NotLinearizable, states, started);
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"Key {KvInput.Format(_key)} is not linearizable ({summary.OperationCount} operations checked, {summary.UnknownCount} with unknown outcome).");
        text.AppendLine().Append(CultureInfo.InvariantCulture, $"The longest linearization found places {prefix.Length} of them; the register then holds {KvInput.Format(_values[value])}.");
        if (prefix.Length > 0)
        {
            text.AppendLine().Append(prefix.Length > ShownPrefix
                ? string.Create(CultureInfo.InvariantCulture, $"Its last {ShownPrefix} operations, in linearization order ({prefix.Length - ShownPrefix} earlier ones not shown):")
                : "Its operations, in linearization order:");
            var shown = Math.Max(0, prefix.Length - ShownPrefix);
            for (var i = shown; i < prefix.Length; i++)
                text.AppendLine().Append("  ").Append(Describe(prefix[i]));
        }
        text.AppendLine().Append("None of the pending operations can come next:");
        foreach (var op in pending.OrderBy(op => op != overdue))
        {
            text.AppendLine().Append("  ").Append(Describe(op)).Append(": ");
            var consistent = Step(op, value, out _);
            text.Append(Explain(op, value, consistent));
        }
        var late = _operations[overdue];
        text.AppendLine().Append(CultureInfo.InvariantCulture, $"#{_historyIndexes[overdue]} responded at {late.ResponseTimestamp}, so it must take effect before every operation invoked after that.");

        var failure = new LinearizabilityFailure(
            _key,
            prefix.Select(op => _operations[op]).ToArray(),
            _values[value],
            pending.Select(op => _operations[op]).ToArray(),
            late,
            text.ToString());
        return new KeySearchResult(summary, failure);
    }

    private string Describe(int op) => string.Create(CultureInfo.InvariantCulture, $"#{_historyIndexes[op]} {_operations[op]}");

    private string Explain(int op, int value, bool consistent)
    {
        var holds = KvInput.Format(_values[value]);
        if (!consistent)
        {
            return _kinds[op] == KvOperationKind.Get
                ? $"it read {KvInput.Format(_values[_output[op]])} but the register holds {holds}"
                : _output[op] == 1
                    ? $"it reported a swap but the register holds {holds}, not the expected {KvInput.Format(_values[_argument[op]])}"
                    : $"it reported no swap but the register holds the expected {holds}";
        }
        return _completed[op]
            ? "consistent with the register here, but every linearization that continues with it fails later"
            : "outcome unknown; taking effect here (or never) does not help";
    }
}
