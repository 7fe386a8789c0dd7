using Microsoft.Extensions.Logging;
using Raft.Testing.Storage;

namespace Raft.Tests.Storage;

/// <summary>What a crash schedule found wrong after a recovery.</summary>
internal enum CrashViolationKind
{
    /// <summary>Something an awaited write had completed is missing or older after the crash.</summary>
    LostAcknowledged,

    /// <summary>Recovery refused (threw on) a state that a crash can produce.</summary>
    RecoveryRefused,

    /// <summary>The recovered log holds something that was never written, or that a truncation removed.</summary>
    WrongContent,
}

/// <summary>A violated durability promise, with the seed and the round that show it.</summary>
internal sealed class CrashViolationException(CrashViolationKind kind, string message, Exception? inner = null)
    : Exception(message, inner)
{
    public CrashViolationKind Kind { get; } = kind;
}

/// <summary>Counts of what a schedule exercised, to show that the crashes hit where they matter.</summary>
internal sealed class CrashScheduleStats
{
    public int Operations { get; set; }

    public int CrashesInsideWrite { get; set; }

    public int CrashesBetweenWrites { get; set; }

    public int CrashesDuringRecovery { get; set; }

    public int TornTailsCut { get; set; }

    public int TornSegmentsDeleted { get; set; }

    public int LeftoverSegmentsDeleted { get; set; }

    public override string ToString() =>
        $"{Operations} writes; crashes: {CrashesInsideWrite} inside a write, {CrashesBetweenWrites} between writes, {CrashesDuringRecovery} during recovery; "
        + $"recovery cut {TornTailsCut} torn tails, deleted {TornSegmentsDeleted} torn segments and {LeftoverSegmentsDeleted} leftover segments";
}

/// <summary>
/// A seeded random schedule of appends (some truncating a suffix), hard-state saves, compactions and
/// resets on a <see cref="FileLogStore"/> over a <see cref="CrashFaithfulFileSystem"/>, each round
/// ended by a simulated power loss at a random point (inside a write, between writes, and sometimes
/// again during the recovery that follows), then a reopen. After every recovery it checks, against a
/// model, that everything an awaited write completed survived, that nothing a completed truncation
/// removed came back, and that the write in progress at the crash left either its old or its new
/// state (a prefix of it, for an append). A refused recovery is a violation too.
/// </summary>
internal static class FileLogStoreCrashSchedule
{
    private const int Rounds = 4;

    /// <summary>Runs the schedule of <paramref name="seed"/>; throws <see cref="CrashViolationException"/> on the first violation.</summary>
    /// <param name="seed">Seeds every choice: the writes, the crash points and what survives each crash.</param>
    /// <param name="configure">Rewrites the store's options (the mutant tests add their mutation); null keeps them.</param>
    /// <param name="stats">Receives counts of what was exercised; may be null.</param>
    public static async Task RunAsync(int seed, Func<FileLogStoreOptions, FileLogStoreOptions>? configure = null, CrashScheduleStats? stats = null)
    {
        stats ??= new CrashScheduleStats();
        var random = new Random(seed);
        var fileSystem = new CrashFaithfulFileSystem();
        var options = new FileLogStoreOptions
        {
            SegmentSize = random.Next(3) switch { 0 => 64, 1 => 200, _ => 1000 },
            CacheBytes = random.Next(2) == 0 ? 0 : 1 << 20,
            FileSystem = fileSystem,
        };
        if (configure is not null)
            options = configure(options);
        var directory = Path.GetFullPath(Path.Combine(Path.GetTempPath(), "crashfs", seed.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        var logger = new CountingLogger();

        var model = new Model();
        var store = await FileLogStore.OpenAsync(directory, options, logger.AsFactory());
        for (var round = 0; round < Rounds; round++)
        {
            var where = $"seed {seed}, round {round}";
            var before = model;
            Model? after = null;
            Write? inFlight = null;
            fileSystem.CrashAfter(random.Next(1, 50));
            var writes = random.Next(3, 20);
            for (var w = 0; w < writes; w++)
            {
                var write = NextWrite(random, model);
                var next = model.Apply(write);
                try
                {
                    await write.Run(store);
                }
                catch (Exception) when (fileSystem.HasCrashed)
                {
                    // The crash struck inside the write (it may surface wrapped, e.g. as the lock's IOException).
                    before = model;
                    after = next;
                    inFlight = write;
                    break;
                }
                stats.Operations++;
                model = next;
            }
            if (inFlight is null)
            {
                before = model;
                stats.CrashesBetweenWrites++;
            }
            else
            {
                stats.CrashesInsideWrite++;
            }
            fileSystem.Disarm();
            fileSystem.Crash(random);
            await store.DisposeAsync();

            logger.Clear();
            if (random.Next(3) == 0)
            {
                // Power fails again while recovery cuts and deletes.
                fileSystem.CrashAfter(random.Next(1, 4));
                try
                {
                    var interrupted = await FileLogStore.OpenAsync(directory, options, logger.AsFactory());
                    await interrupted.DisposeAsync();
                }
                catch (Exception) when (fileSystem.HasCrashed)
                {
                    stats.CrashesDuringRecovery++;
                }
                catch (Exception ex) when (ex is LogCorruptionException or IOException or InvalidOperationException)
                {
                    throw new CrashViolationException(CrashViolationKind.RecoveryRefused, $"{where}: recovery refused after a crash {Describe(inFlight)}: {ex.Message}", ex);
                }
                fileSystem.Disarm();
                if (fileSystem.HasCrashed)
                    fileSystem.Crash(random);
            }
            try
            {
                store = await FileLogStore.OpenAsync(directory, options, logger.AsFactory());
            }
            catch (Exception ex) when (ex is LogCorruptionException or IOException or InvalidOperationException)
            {
                throw new CrashViolationException(CrashViolationKind.RecoveryRefused, $"{where}: recovery refused after a crash {Describe(inFlight)}: {ex.Message}", ex);
            }
            stats.TornTailsCut += logger.Count(2001);
            stats.TornSegmentsDeleted += logger.Count(2002);
            stats.LeftoverSegmentsDeleted += logger.Count(2004) + logger.Count(2011);
            model = Check(store, before, after ?? before, inFlight, where);
        }
        await store.DisposeAsync();
    }

    private static string Describe(Write? write) => write is null ? "between writes" : $"during {write}";

    // Validates the recovered store against the state before the write in flight (or the only state,
    // when the crash came between writes) and after it; returns the recovered state as the new model.
    private static Model Check(FileLogStore store, Model before, Model after, Write? inFlight, string where)
    {
        var context = $"{where}, crash {Describe(inFlight)}";
        var hardState = store.HardState;
        if (hardState != before.HardState && hardState != after.HardState)
        {
            var kind = before.HardState == after.HardState ? CrashViolationKind.LostAcknowledged : CrashViolationKind.WrongContent;
            throw new CrashViolationException(kind, $"{context}: hard state {hardState} after recovery, expected {before.HardState}" + (before.HardState == after.HardState ? "" : $" or {after.HardState}"));
        }
        var first = store.FirstIndex;
        var last = store.LastIndex;
        var compactedTerm = store.GetTerm(first - 1);
        var entries = new List<LogEntry>();
        store.ReadEntries(first, last + 1, long.MaxValue, entries);

        var problems = new List<string>();
        foreach (var candidate in after == before ? new[] { before } : new[] { before, after })
        {
            var name = candidate == before ? "the state before the write" : "the state after it";
            var minLast = MinimumLast(candidate, before, after, inFlight);
            if (first != candidate.First || compactedTerm != candidate.CompactedTerm)
            {
                problems.Add($"{name}: log starts after ({first - 1}, term {compactedTerm}), expected ({candidate.First - 1}, term {candidate.CompactedTerm})");
                continue;
            }
            if (last < minLast)
            {
                problems.Add($"{name}: last index {last}, but everything up to {minLast} had been written");
                continue;
            }
            if (last > candidate.Last)
            {
                problems.Add($"{name}: last index {last}, but only {candidate.Last} was ever there");
                continue;
            }
            var mismatch = entries.FirstOrDefault(e => !candidate.Holds(e));
            if (mismatch.Index != 0)
            {
                problems.Add($"{name}: entry {mismatch.Index} (term {mismatch.Term}) differs from what was written there");
                continue;
            }
            return candidate.Restrict(first, last, hardState);
        }
        // Lost: something every acceptable state holds is missing (the log ends too early, or starts
        // after entries that were neither compacted nor reset away).
        var mustReach = Math.Min(MinimumLast(before, before, after, inFlight), MinimumLast(after, before, after, inFlight));
        var violation = last < mustReach || first > Math.Max(before.First, after.First)
            ? CrashViolationKind.LostAcknowledged
            : CrashViolationKind.WrongContent;
        throw new CrashViolationException(violation, $"{context}: recovered [{first}, {last}] does not fit: {string.Join("; ", problems)}");
    }

    // The last index a recovered log based on candidate must reach: what was acknowledged before the
    // write in flight, less what that write may legitimately have removed.
    private static long MinimumLast(Model candidate, Model before, Model after, Write? inFlight) => inFlight switch
    {
        AppendWrite append when append.Entries[0].Index <= before.Last => append.Entries[0].Index - 1,
        ResetWrite when candidate == after => after.Last,
        ResetWrite => before.First - 1, // segments are deleted last first: any prefix may be left
        _ => before.Last,
    };

    private static Write NextWrite(Random random, Model model)
    {
        var roll = random.Next(20);
        if (roll < 2)
        {
            var term = Math.Max(model.HardState.Term, model.Term) + random.Next(2);
            return new HardStateWrite(new HardState(term, random.Next(4), Math.Max(model.HardState.Commit, model.First - 1 + random.Next(3))));
        }
        if (roll < 4 && model.Last >= model.First)
            return new CompactWrite(model.First + random.Next((int)Math.Min(model.Last - model.First + 1, 20)));
        if (roll == 4 && random.Next(3) == 0)
            return new ResetWrite(model.Last + random.Next(5), model.Term + 1);
        var start = model.Last + 1;
        var term2 = model.Term;
        if (roll < 8 && model.Last >= model.First)
        {
            // A new leader overwrites a conflicting suffix.
            start = model.Last - random.Next((int)Math.Min(model.Last - model.First + 1, 12));
            term2 = model.Term + 1;
        }
        else if (random.Next(8) == 0 || term2 == 0)
        {
            term2++;
        }
        var count = random.Next(1, 7);
        var entries = new LogEntry[count];
        for (var i = 0; i < count; i++)
        {
            var data = new byte[random.Next(4) == 0 ? random.Next(60, 300) : random.Next(0, 40)];
            random.NextBytes(data);
            entries[i] = new LogEntry(start + i, term2, (EntryKind)random.Next(2), data);
        }
        return new AppendWrite(entries);
    }

    // The log as the writes that completed left it (entries below First are forgotten).
    private sealed class Model
    {
        private readonly Dictionary<long, LogEntry> _entries = [];

        public long First { get; private init; } = 1;

        public long Last { get; private init; }

        public long CompactedTerm { get; private init; }

        public HardState HardState { get; private init; }

        // The highest term written so far.
        public long Term { get; private init; }

        public bool Holds(LogEntry entry) =>
            _entries.TryGetValue(entry.Index, out var expected)
            && expected.Term == entry.Term && expected.Kind == entry.Kind && expected.Data.Span.SequenceEqual(entry.Data.Span);

        public Model Apply(Write write)
        {
            switch (write)
            {
                case AppendWrite append:
                {
                    var start = append.Entries[0].Index;
                    var next = Copy(First, Math.Min(Last, start - 1), HardState, First, CompactedTerm, Math.Max(Term, append.Entries[^1].Term), start - 1 + append.Entries.Length);
                    foreach (var entry in append.Entries)
                        next._entries[entry.Index] = entry;
                    return next;
                }
                case HardStateWrite hardState:
                    return Copy(First, Last, hardState.State, First, CompactedTerm, Term, Last);
                case CompactWrite compact:
                {
                    var term = compact.Index == First - 1 ? CompactedTerm : _entries[compact.Index].Term;
                    return Copy(compact.Index + 1, Last, HardState, compact.Index + 1, term, Term, Last);
                }
                case ResetWrite reset:
                    return Copy(1, 0, HardState, reset.Index + 1, reset.Term, Math.Max(Term, reset.Term), reset.Index);
                default:
                    throw new ArgumentOutOfRangeException(nameof(write));
            }
        }

        // The recovered state: this model's entries in [first, last], with the recovered hard state.
        public Model Restrict(long first, long last, HardState hardState) => Copy(first, last, hardState, First, CompactedTerm, Term, last);

        private Model Copy(long keepFrom, long keepTo, HardState hardState, long first, long compactedTerm, long term, long last)
        {
            var copy = new Model { First = first, Last = last, CompactedTerm = compactedTerm, HardState = hardState, Term = term };
            for (var i = keepFrom; i <= keepTo; i++)
                copy._entries[i] = _entries[i];
            return copy;
        }
    }

    private abstract record Write
    {
        public abstract ValueTask Run(FileLogStore store);
    }

    private sealed record AppendWrite(LogEntry[] Entries) : Write
    {
        public override ValueTask Run(FileLogStore store) => store.AppendAsync(Entries);

        public override string ToString() => $"append [{Entries[0].Index}, {Entries[^1].Index}] term {Entries[0].Term}";
    }

    private sealed record HardStateWrite(HardState State) : Write
    {
        public override ValueTask Run(FileLogStore store) => store.SaveHardStateAsync(State);

        public override string ToString() => $"save hard state {State}";
    }

    private sealed record CompactWrite(long Index) : Write
    {
        public override ValueTask Run(FileLogStore store) => store.CompactAsync(Index);

        public override string ToString() => $"compact to {Index}";
    }

    private sealed record ResetWrite(long Index, long Term) : Write
    {
        public override ValueTask Run(FileLogStore store) => store.ResetAsync(Index, Term);

        public override string ToString() => $"reset to ({Index}, term {Term})";
    }

    private sealed class CountingLogger : ILogger
    {
        private readonly Dictionary<int, int> _counts = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_counts)
                _counts[eventId.Id] = _counts.GetValueOrDefault(eventId.Id) + 1;
        }

        public int Count(int eventId)
        {
            lock (_counts)
                return _counts.GetValueOrDefault(eventId);
        }

        public void Clear()
        {
            lock (_counts)
                _counts.Clear();
        }
    }
}
