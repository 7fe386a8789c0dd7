namespace Raft.Testing;

/// <summary>
/// An in-memory <see cref="ILogStore"/> that survives a simulated power failure the way a disk does:
/// what a completed write made durable stays, a write interrupted by the failure is torn, and the
/// process that owned the store can write nothing more. <b>Testing only.</b>
/// </summary>
/// <remarks>
/// <para>Every operation of <see cref="ILogStore"/> is a write followed by an fsync: until it
/// completes, its data is not durable. <see cref="ArmTear"/> makes the next mutating operation fail
/// half-way, as a power failure would: an append keeps a random prefix of its entries (none to all,
/// drawn from the given <see cref="Random"/>), a hard-state save is kept or lost, and the operation
/// then throws <see cref="SimulatedCrashException"/>. <see cref="Crash"/> (or a torn write) marks the
/// store's process dead: every later operation throws, so nothing the dead process still runs can
/// reach the disk. <see cref="Recover"/> hands the surviving state to the next incarnation.</para>
/// <para>A host that acknowledges an entry before its append completed (or a hard state before its
/// save completed) is caught by a test that crashes through this store: the acknowledged data is
/// then lost. Operations complete synchronously, so a simulation stays on one thread.</para>
/// </remarks>
public sealed class CrashFaithfulLogStore : ILogStore, Simulation.ISimulatedLog
{
    private readonly InMemoryLogStore _durable = new();
    private Random? _tear;
    private bool _crashAfterHardState;
    private bool _crashed;

    /// <summary>How many writes were torn by <see cref="ArmTear"/>.</summary>
    public int TornWrites { get; private set; }

    /// <summary>Whether the store's process is dead (after <see cref="Crash"/> or a torn write, until <see cref="Recover"/>).</summary>
    public bool IsCrashed => _crashed;

    /// <summary>Whether a tear is armed for the next mutating operation.</summary>
    public bool TearArmed => _tear is not null;

    /// <summary>Called before every append reaches the store (whole, or the prefix a tear keeps), with the entries about to be written; a simulator checks its invariants here.</summary>
    public Action<IReadOnlyList<LogEntry>>? Appending { get; set; }

    /// <inheritdoc />
    public HardState HardState => _durable.HardState;

    /// <inheritdoc />
    public long FirstIndex => _durable.FirstIndex;

    /// <inheritdoc />
    public long LastIndex => _durable.LastIndex;

    /// <inheritdoc />
    public bool SupportsReadsDuringAppend => true;

    /// <summary>Makes the next mutating operation tear: part of it reaches the disk, then the power fails.</summary>
    /// <param name="random">Decides how much of the interrupted write survives.</param>
    public void ArmTear(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        _tear = random;
    }

    /// <summary>
    /// Makes the power fail right after the next hard-state save became durable, before the call
    /// returns: the point between a Ready's hard state and its entries, where a commit index saved
    /// ahead of its entries would be replayed over stale ones.
    /// </summary>
    public void ArmCrashAfterHardState() => _crashAfterHardState = true;

    /// <summary>Cancels an armed tear or crash.</summary>
    public void DisarmTear()
    {
        _tear = null;
        _crashAfterHardState = false;
    }

    /// <summary>The power fails between operations: nothing more can be written until <see cref="Recover"/>.</summary>
    public void Crash()
    {
        _crashed = true;
        DisarmTear();
    }

    /// <summary>Hands what survived to a new incarnation of the process.</summary>
    public void Recover()
    {
        _crashed = false;
        DisarmTear();
    }

    /// <inheritdoc />
    public long GetTerm(long index) => _durable.GetTerm(index);

    /// <inheritdoc />
    public void ReadEntries(long startIndex, long endIndex, long maxBytes, List<LogEntry> destination) =>
        _durable.ReadEntries(startIndex, endIndex, maxBytes, destination);

    /// <inheritdoc />
    public ValueTask AppendAsync(IReadOnlyList<LogEntry> entries, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(entries);
        ThrowIfCrashed();
        if (_tear is { } random)
        {
            // Power fails during the write: a prefix of the entries reached the disk (a torn record
            // after it is cut off by recovery).
            var keep = random.Next(entries.Count + 1);
            if (keep > 0)
            {
                LogEntry[] prefix = [.. entries.Take(keep)];
                Appending?.Invoke(prefix);
                Complete(_durable.AppendAsync(prefix, cancellationToken));
            }
            return Tear();
        }
        Appending?.Invoke(entries);
        Complete(_durable.AppendAsync(entries, cancellationToken));
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask SaveHardStateAsync(HardState state, CancellationToken cancellationToken = default)
    {
        ThrowIfCrashed();
        if (_crashAfterHardState)
        {
            _crashAfterHardState = false;
            Complete(_durable.SaveHardStateAsync(state, cancellationToken));
            return Tear();
        }
        if (_tear is { } random)
        {
            // The atomic rename either happened before the power failed, or not.
            if (random.Next(2) == 0)
                Complete(_durable.SaveHardStateAsync(state, cancellationToken));
            return Tear();
        }
        return _durable.SaveHardStateAsync(state, cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask CompactAsync(long index, CancellationToken cancellationToken = default)
    {
        ThrowIfCrashed();
        if (_tear is { } random)
        {
            if (random.Next(2) == 0)
                Complete(_durable.CompactAsync(index, cancellationToken));
            return Tear();
        }
        return _durable.CompactAsync(index, cancellationToken);
    }

    /// <inheritdoc />
    public ValueTask ResetAsync(long index, long term, CancellationToken cancellationToken = default)
    {
        ThrowIfCrashed();
        if (_tear is { } random)
        {
            if (random.Next(2) == 0)
                Complete(_durable.ResetAsync(index, term, cancellationToken));
            return Tear();
        }
        return _durable.ResetAsync(index, term, cancellationToken);
    }

    private ValueTask Tear()
    {
        DisarmTear();
        _crashed = true;
        TornWrites++;
        return ValueTask.FromException(new SimulatedCrashException("The power failed during a write."));
    }

    private void ThrowIfCrashed()
    {
        if (_crashed)
            throw new SimulatedCrashException("The store's process crashed: it can write nothing more.");
    }

    private static void Complete(ValueTask write) => write.GetAwaiter().GetResult();
}

/// <summary>Thrown by <see cref="CrashFaithfulLogStore"/> when a simulated power failure interrupts, or follows, a write. <b>Testing only.</b></summary>
public sealed class SimulatedCrashException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SimulatedCrashException() : base("Simulated crash.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public SimulatedCrashException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public SimulatedCrashException(string message, Exception innerException) : base(message, innerException) { }
}
