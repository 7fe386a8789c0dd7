namespace Raft.Testing.Linearizability;

/// <summary>
/// Identifies an operation in flight, returned by <see cref="HistoryRecorder.Invoke"/> and passed back
/// to one of the recorder's <c>Complete</c> methods.
/// </summary>
public readonly record struct OperationHandle
{
    internal OperationHandle(HistoryRecorder recorder, int index)
    {
        Recorder = recorder;
        Index = index;
    }

    /// <summary>The position of the operation in the recorder's history (invocation order).</summary>
    public int Index { get; }

    internal HistoryRecorder? Recorder { get; }
}

/// <summary>
/// Records a concurrent history of key-value operations for <see cref="LinearizabilityChecker"/>.
/// Thread-safe: many clients may invoke and complete operations at once.
/// </summary>
/// <remarks>
/// Call <see cref="Invoke"/> just before sending a request and one of <see cref="Complete(OperationHandle, KvOutput)"/>,
/// <see cref="CompleteUnknown"/> or <see cref="CompleteFailed"/> just after its fate is known; the recorder
/// reads <see cref="TimeProvider.GetTimestamp"/> inside those calls, so the recorded interval always
/// contains the real one. A client must not start a new operation before the previous one completes
/// (use a separate client id per concurrent caller).
/// </remarks>
/// <example>
/// <code>
/// var recorder = new HistoryRecorder();
/// var handle = recorder.Invoke(clientId, KvInput.Get("k"));
/// try { recorder.CompleteGet(handle, await client.GetAsync("k")); }
/// catch (TimeoutException) { recorder.CompleteUnknown(handle); }
/// var result = LinearizabilityChecker.Check(recorder.Operations, TimeSpan.FromSeconds(30));
/// Assert.True(result.IsLinearizable, result.ToString());
/// </code>
/// </example>
public sealed class HistoryRecorder
{
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private readonly List<Entry> _entries = [];

    /// <summary>Creates an empty recorder.</summary>
    /// <param name="timeProvider">The clock for timestamps; <see cref="TimeProvider.System"/> when <see langword="null"/>.</param>
    public HistoryRecorder(TimeProvider? timeProvider = null) => _time = timeProvider ?? TimeProvider.System;

    /// <summary>How many operations were invoked so far.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
                return _entries.Count;
        }
    }

    /// <summary>
    /// A snapshot of the history in invocation order. Operations still in flight appear as
    /// <see cref="OperationOutcome.Unknown"/> with a response timestamp of <see cref="long.MaxValue"/>.
    /// </summary>
    public IReadOnlyList<Operation> Operations
    {
        get
        {
            lock (_lock)
            {
                var operations = new Operation[_entries.Count];
                for (var i = 0; i < operations.Length; i++)
                {
                    var e = _entries[i];
                    operations[i] = e.Outcome is { } outcome
                        ? new Operation(e.ClientId, e.Input, e.Invoke, e.Response, outcome, e.Output)
                        : Operation.Unknown(e.ClientId, e.Input, e.Invoke);
                }
                return operations;
            }
        }
    }

    /// <summary>Records the invocation of an operation, timestamped now.</summary>
    /// <param name="clientId">The client issuing the operation.</param>
    /// <param name="input">What the client asks for.</param>
    /// <returns>The handle to complete the operation with.</returns>
    public OperationHandle Invoke(int clientId, KvInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        lock (_lock)
        {
            _entries.Add(new Entry(clientId, input, _time.GetTimestamp()));
            return new OperationHandle(this, _entries.Count - 1);
        }
    }

    /// <summary>Records that the operation completed with <paramref name="output"/>, timestamped now.</summary>
    /// <param name="handle">The operation, from <see cref="Invoke"/>.</param>
    /// <param name="output">What the client observed.</param>
    /// <exception cref="ArgumentException">The handle belongs to another recorder.</exception>
    /// <exception cref="InvalidOperationException">The operation was already completed.</exception>
    public void Complete(OperationHandle handle, KvOutput output) => Finish(handle, OperationOutcome.Ok, output);

    /// <summary>Records that a put or delete completed, timestamped now.</summary>
    /// <param name="handle">The operation, from <see cref="Invoke"/>.</param>
    /// <exception cref="ArgumentException">The handle belongs to another recorder.</exception>
    /// <exception cref="InvalidOperationException">The operation was already completed, or is a get or a CAS (which have outputs).</exception>
    public void Complete(OperationHandle handle) => Finish(handle, OperationOutcome.Ok, KvOutput.None, KvOperationKind.Put, KvOperationKind.Delete);

    /// <summary>Records that a get completed and read <paramref name="value"/>, timestamped now.</summary>
    /// <param name="handle">The operation, from <see cref="Invoke"/>.</param>
    /// <param name="value">The value read; <see langword="null"/> when the key was absent.</param>
    /// <exception cref="ArgumentException">The handle belongs to another recorder.</exception>
    /// <exception cref="InvalidOperationException">The operation was already completed, or is not a get.</exception>
    public void CompleteGet(OperationHandle handle, string? value) => Finish(handle, OperationOutcome.Ok, KvOutput.ForGet(value), KvOperationKind.Get);

    /// <summary>Records that a compare-and-swap completed, timestamped now.</summary>
    /// <param name="handle">The operation, from <see cref="Invoke"/>.</param>
    /// <param name="swapped">Whether it swapped.</param>
    /// <exception cref="ArgumentException">The handle belongs to another recorder.</exception>
    /// <exception cref="InvalidOperationException">The operation was already completed, or is not a CAS.</exception>
    public void CompleteCas(OperationHandle handle, bool swapped) => Finish(handle, OperationOutcome.Ok, KvOutput.ForCas(swapped), KvOperationKind.Cas);

    /// <summary>
    /// Records that the client does not know whether the operation took effect (timeout, 5xx, lost
    /// connection). The checker lets it take effect at any time after its invocation, or never.
    /// </summary>
    /// <param name="handle">The operation, from <see cref="Invoke"/>.</param>
    /// <exception cref="ArgumentException">The handle belongs to another recorder.</exception>
    /// <exception cref="InvalidOperationException">The operation was already completed.</exception>
    public void CompleteUnknown(OperationHandle handle) => Finish(handle, OperationOutcome.Unknown, KvOutput.None);

    /// <summary>
    /// Records that the operation definitely did not take effect (for example it was never submitted);
    /// the checker ignores it. When in doubt use <see cref="CompleteUnknown"/> instead.
    /// </summary>
    /// <param name="handle">The operation, from <see cref="Invoke"/>.</param>
    /// <exception cref="ArgumentException">The handle belongs to another recorder.</exception>
    /// <exception cref="InvalidOperationException">The operation was already completed.</exception>
    public void CompleteFailed(OperationHandle handle) => Finish(handle, OperationOutcome.Failed, KvOutput.None);

    private void Finish(OperationHandle handle, OperationOutcome outcome, KvOutput output, params ReadOnlySpan<KvOperationKind> kinds)
    {
        if (!ReferenceEquals(handle.Recorder, this))
            throw new ArgumentException("The handle was not issued by this recorder.", nameof(handle));
        var now = _time.GetTimestamp();
        lock (_lock)
        {
            var entry = _entries[handle.Index];
            if (entry.Outcome is not null)
                throw new InvalidOperationException($"Operation {handle.Index} ({entry.Input}) was already completed as {entry.Outcome}.");
            if (!kinds.IsEmpty && !kinds.Contains(entry.Input.Kind))
                throw new InvalidOperationException($"Operation {handle.Index} is a {entry.Input.Kind}, not a {string.Join(" or ", kinds.ToArray())}.");
            entry.Response = Math.Max(now, entry.Invoke);
            entry.Outcome = outcome;
            entry.Output = output;
        }
    }

    private sealed class Entry(int clientId, KvInput input, long invoke)
    {
        public int ClientId { get; } = clientId;

        public KvInput Input { get; } = input;

        public long Invoke { get; } = invoke;

        public long Response { get; set; }

        public OperationOutcome? Outcome { get; set; }

        public KvOutput Output { get; set; }
    }
}
