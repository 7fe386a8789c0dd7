using Microsoft.Extensions.Logging;
using Raft.Testing.Storage;

namespace Raft.Testing.Simulation;

/// <summary>
/// A simulated node's log as a host ships it: a real <see cref="FileLogStore"/> over a
/// <see cref="CrashFaithfulFileSystem"/> that keeps the node's files across its crashes. A power
/// failure drops or tears what was not fsynced (chosen by the seeded random, as the file system's
/// model says), and each incarnation reopens the store through its real recovery (torn tails cut,
/// leftover files deleted). The file work runs inline (<see cref="FileLogStoreOptions.InlineIo"/>), so
/// a round of the node stays on the simulator's thread.
/// </summary>
internal sealed class SimulatedFileLog : ISimulatedLog, ICompactionPreparer
{
    // How many mutating file operations ahead an armed tear strikes (1 = the next one): an append is a
    // write and an fsync (plus a segment's creation and a directory fsync), a hard-state save five.
    private const int TearReach = 6;

    /// <summary>The name of the invariant a store that refuses to reopen after a crash breaks.</summary>
    internal const string RecoveryInvariant = "File log recovers after a power failure";

    private readonly CrashFaithfulFileSystem _fileSystem = new();
    private readonly Random _power;
    private readonly string _directory;
    private readonly FileLogStoreOptions _options;
    private readonly RecoveryCounter _recovery = new();
    private readonly Func<string, string, Exception?, Exception> _violation;
    private FileLogStore? _store;
    private bool _crashed;      // the process can write nothing more
    private bool _powerFailed;  // and the file system has decided what survived
    private bool _tearArmed;
    private bool _crashAfterHardState;

    /// <summary>Creates the node's (empty) disk; <see cref="Recover"/> opens the store on it.</summary>
    /// <param name="nodeId">The node, which names its directory.</param>
    /// <param name="power">Decides what of the unsynced data survives each power failure.</param>
    /// <param name="options">The store's settings (the file system and inline I/O are set here).</param>
    /// <param name="violation">Makes the exception that reports a broken invariant (name, detail, cause).</param>
    public SimulatedFileLog(int nodeId, Random power, FileLogStoreOptions options, Func<string, string, Exception?, Exception> violation)
    {
        _power = power;
        _directory = Path.GetFullPath(Path.Combine(Path.GetTempPath(), "raft-simulation", "node-" + nodeId.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        _options = options with { FileSystem = _fileSystem, InlineIo = true };
        _violation = violation;
    }

    public Action<IReadOnlyList<LogEntry>>? Appending { get; set; }

    public int TornWrites { get; private set; }

    /// <summary>Unsynced file writes and directory operations that power failures dropped or tore.</summary>
    public long LostOperations => _fileSystem.LostFileOperations + _fileSystem.LostDirectoryOperations;

    /// <summary>Recoveries that cut a torn or corrupt tail (or deleted a segment whose creation was torn).</summary>
    public int TornTailsCut { get; private set; }

    /// <summary>Recoveries that deleted files left by an interrupted write or compaction.</summary>
    public int LeftoversDeleted { get; private set; }

    public HardState HardState => Store.HardState;

    public long FirstIndex => Store.FirstIndex;

    public long LastIndex => Store.LastIndex;

    public bool SupportsReadsDuringAppend => Store.SupportsReadsDuringAppend;

    private FileLogStore Store => _store ?? throw new InvalidOperationException("The simulated file log is not open: Recover opens it.");

    public long GetTerm(long index) => Store.GetTerm(index);

    public void ReadEntries(long startIndex, long endIndex, long maxBytes, List<LogEntry> destination) =>
        Store.ReadEntries(startIndex, endIndex, maxBytes, destination);

    public ValueTask AppendAsync(IReadOnlyList<LogEntry> entries, CancellationToken cancellationToken = default)
    {
        ThrowIfCrashed();
        Appending?.Invoke(entries);
        return Write(Store.AppendAsync(entries, cancellationToken));
    }

    public ValueTask SaveHardStateAsync(HardState state, CancellationToken cancellationToken = default)
    {
        ThrowIfCrashed();
        var save = Write(Store.SaveHardStateAsync(state, cancellationToken));
        if (_crashAfterHardState && save.IsCompletedSuccessfully)
        {
            // The save is durable (fsynced, renamed, directory fsynced); the power fails before the call returns.
            _crashAfterHardState = false;
            return Tear(null);
        }
        return save;
    }

    public ValueTask CompactAsync(long index, CancellationToken cancellationToken = default)
    {
        ThrowIfCrashed();
        return Write(Store.CompactAsync(index, cancellationToken));
    }

    // The node's first compaction step (the point made durable), inline under the simulator.
    public void PrepareCompaction(long index)
    {
        ThrowIfCrashed();
        try
        {
            ((ICompactionPreparer)Store).PrepareCompaction(index);
        }
        catch (Exception ex) when (_tearArmed && _fileSystem.HasCrashed)
        {
            throw TearCrash(ex);
        }
    }

    public ValueTask ResetAsync(long index, long term, CancellationToken cancellationToken = default)
    {
        ThrowIfCrashed();
        return Write(Store.ResetAsync(index, term, cancellationToken));
    }

    public void ArmTear(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        _tearArmed = true;
        _fileSystem.CrashAfter(1 + random.Next(TearReach));
    }

    public void ArmCrashAfterHardState() => _crashAfterHardState = true;

    public void DisarmTear()
    {
        _tearArmed = false;
        _crashAfterHardState = false;
        _fileSystem.Disarm();
    }

    public void Crash()
    {
        _crashed = true;
        DisarmTear();
        if (_powerFailed)
            return;
        // What the disk kept is decided now (also after a tear, which only stopped the writes); the
        // dead process's handles are dead with it.
        _powerFailed = true;
        _fileSystem.Crash(_power);
    }

    public void Recover()
    {
        if (_store is not null)
        {
            if (!_crashed)
                throw new InvalidOperationException("Recover without a crash: the store is still open.");
            // Only closes handles (dead ones since the crash); nothing is written, and it completes at once.
            if (!_store.DisposeAsync().AsTask().IsCompletedSuccessfully)
                throw _violation("Determinism", "FileLogStore.DisposeAsync did not complete synchronously.", null);
            _store = null;
        }
        if (_crashed && !_powerFailed)
            throw new InvalidOperationException("Recover after a torn write without Crash: the file system has not decided what survived.");
        _crashed = _powerFailed = false;
        DisarmTear();
        _recovery.Reset();
        Task<FileLogStore> open;
        using (var loggers = new RecoveryLoggers(_recovery))
            open = FileLogStore.OpenAsync(_directory, _options, loggers).AsTask();
        if (!open.IsCompleted)
            throw _violation("Determinism", "FileLogStore.OpenAsync did not complete synchronously under InlineIo: its recovery waited for another thread.", null);
        if (open.Exception?.InnerException is { } error)
            throw _violation(RecoveryInvariant, $"FileLogStore refused to open '{_directory}' after a crash the file system's model allows: {error.GetType().Name}: {error.Message}", error);
        _store = open.Result;
        if (_recovery.TornTails > 0)
            TornTailsCut++;
        if (_recovery.Leftovers > 0)
            LeftoversDeleted++;
    }

    // A write's outcome: a power failure that struck inside it (an armed tear) becomes the simulator's
    // crash; any other failure is the store's own and stays as it is (the node faults, a violation).
    private ValueTask Write(ValueTask write)
    {
        if (!write.IsCompleted)
            return write; // the node's round does not complete: the simulator reports the thread hop
        if (write.IsCompletedSuccessfully)
            return write;
        var failed = write.AsTask();
        return _tearArmed && _fileSystem.HasCrashed ? Tear(failed.Exception?.InnerException) : new ValueTask(failed);
    }

    private ValueTask Tear(Exception? cause) => ValueTask.FromException(TearCrash(cause));

    private SimulatedCrashException TearCrash(Exception? cause)
    {
        _tearArmed = false;
        _crashed = true;
        TornWrites++;
        return cause is null
            ? new SimulatedCrashException("The power failed right after a hard-state save became durable.")
            : new SimulatedCrashException("The power failed during a write of the file log.", cause);
    }

    private void ThrowIfCrashed()
    {
        if (_crashed)
            throw new SimulatedCrashException("The store's process crashed: it can write nothing more.");
    }

    // Counts what recovery repaired, from the store's own log events.
    private sealed class RecoveryCounter : ILogger
    {
        public int TornTails { get; private set; }

        public int Leftovers { get; private set; }

        public void Reset() => TornTails = Leftovers = 0;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            switch (eventId.Id)
            {
                case 2001: // TornTailCut
                case 2002: // TornSegmentDeleted
                    TornTails++;
                    break;
                case 2003: // TempFileDeleted
                case 2004: // LeftoverSegmentDeleted
                case 2011: // SegmentBelowCompactionPointDeleted
                    Leftovers++;
                    break;
            }
        }
    }

    private sealed class RecoveryLoggers(RecoveryCounter counter) : ILoggerFactory
    {
        public ILogger CreateLogger(string categoryName) => counter;

        public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("This factory hands out its one counting logger only.");

        public void Dispose()
        {
        }
    }
}
