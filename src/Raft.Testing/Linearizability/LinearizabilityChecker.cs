using System.Diagnostics;

namespace Raft.Testing.Linearizability;

/// <summary>
/// Checks that a concurrent history of key-value operations is linearizable: that every operation
/// can be assigned an instant between its invocation and its response such that, in that order, the
/// results match a single sequential key-value map. <b>Testing only.</b>
/// </summary>
/// <remarks>
/// <para>
/// Linearizability is compositional (Herlihy &amp; Wing), so the history is split by key and each key's
/// sub-history is checked on its own against a single register, in parallel. Each key is searched
/// with the depth-first algorithm of Wing &amp; Gong (1993) with the configuration cache of Lowe
/// (2017), "Testing for linearizability", plus further sound pruning (greedy reads,
/// subsumption of unknown-outcome operations, an abstracted register). Once one key is
/// proved not linearizable, the keys still being searched stop and report
/// <see cref="KeyCheckOutcome.Skipped"/>.
/// </para>
/// <para>
/// <see cref="OperationOutcome.Failed"/> operations are ignored. <see cref="OperationOutcome.Unknown"/>
/// ones may take effect at any time after their invocation, or never (as in Porcupine); unknown gets
/// are ignored since they reveal nothing.
/// </para>
/// <para>
/// Limits. All timestamps must come from one monotonic clock (histories merged from several
/// machines need a common clock or conservative intervals). The search is exponential in the worst
/// case: its cost grows with the number of operations pending at once on one key, and with the
/// number of unknown-outcome writes on a key (each stays a candidate forever). Proving a history
/// <em>not</em> linearizable can take far longer than accepting a linearizable one, since every
/// explanation must be ruled out; a timed-out check says nothing either way, so pass a timeout and
/// keep per-key concurrency moderate.
/// </para>
/// </remarks>
public static class LinearizabilityChecker
{
    /// <summary>Checks <paramref name="history"/>.</summary>
    /// <param name="history">
    /// The operations, in any order, with timestamps from one monotonic clock (for example the
    /// <see cref="HistoryRecorder.Operations"/> of a <see cref="HistoryRecorder"/>).
    /// </param>
    /// <param name="timeout">
    /// A bound on the search; <see langword="null"/> or <see cref="Timeout.InfiniteTimeSpan"/> for none.
    /// When it expires the result reports <see cref="CheckResult.TimedOut"/>, never success.
    /// </param>
    /// <returns>The verdict, per key and overall, with an explanation when the history is not linearizable.</returns>
    /// <exception cref="ArgumentException">The history contains a <see langword="null"/> operation.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The timeout is negative.</exception>
    public static CheckResult Check(IReadOnlyList<Operation> history, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(history);
        if (timeout is { } limit && limit < TimeSpan.Zero && limit != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must not be negative.");
        var started = Stopwatch.GetTimestamp();
        var deadline = Deadline(started, timeout);

        var byKey = new Dictionary<string, List<(Operation, int)>>(StringComparer.Ordinal);
        var ignored = 0;
        for (var i = 0; i < history.Count; i++)
        {
            var op = history[i] ?? throw new ArgumentException($"The history contains null at index {i}.", nameof(history));
            if (op.Outcome == OperationOutcome.Failed || (op.Outcome == OperationOutcome.Unknown && op.Input.Kind == KvOperationKind.Get))
            {
                ignored++;
                continue;
            }
            if (!byKey.TryGetValue(op.Key, out var list))
                byKey.Add(op.Key, list = []);
            list.Add((op, i));
        }

        var keys = byKey.Keys.Order(StringComparer.Ordinal).ToArray();
        var results = new KeySearchResult[keys.Length];
        var control = new SearchControl(deadline);
        // Biggest keys first, so that one large key does not start last.
        var schedule = Enumerable.Range(0, keys.Length).OrderByDescending(i => byKey[keys[i]].Count).ToArray();
        Parallel.For(0, schedule.Length, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, s =>
        {
            var i = schedule[s];
            var result = RegisterSearch.Run(keys[i], byKey[keys[i]], control);
            if (result.Failure is not null)
                control.Stop();
            results[i] = result;
        });

        var failure = results.FirstOrDefault(r => r.Failure is not null)?.Failure;
        var timedOut = results.Any(r => r.Result.Outcome == KeyCheckOutcome.TimedOut);
        var linearizable = results.All(r => r.Result.Outcome == KeyCheckOutcome.Linearizable);
        return new CheckResult(
            linearizable,
            timedOut,
            history.Count,
            ignored,
            results.Select(r => r.Result).ToArray(),
            failure,
            Stopwatch.GetElapsedTime(started));
    }

    private static long Deadline(long now, TimeSpan? timeout)
    {
        if (timeout is not { } limit || limit == Timeout.InfiniteTimeSpan)
            return long.MaxValue;
        var ticks = limit.TotalSeconds * Stopwatch.Frequency;
        return ticks >= long.MaxValue - (double)now ? long.MaxValue : now + (long)ticks;
    }
}
