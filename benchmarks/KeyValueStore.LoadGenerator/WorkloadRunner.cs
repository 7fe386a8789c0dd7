using System.Diagnostics;
using Raft.ClusterBenchmark;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>What one client (or, merged, one workload) saw inside the measured window.</summary>
internal sealed class OperationStats
{
    public LatencyHistogram Put { get; } = new();

    public LatencyHistogram Get { get; } = new();

    /// <summary>GETs answered 404 (included in <see cref="Get"/>).</summary>
    public long GetNotFound { get; set; }

    /// <summary>Failed requests by kind ("503", "504", "timeout", "connect failed"...); not in the histograms.</summary>
    public SortedDictionary<string, long> Errors { get; } = new(StringComparer.Ordinal);

    public long ErrorCount => Errors.Values.Sum();

    /// <summary>Failed requests by kind during the whole workload: warm-up, measured window, and the requests in flight at its end.</summary>
    public SortedDictionary<string, long> ErrorsWholeRun { get; } = new(StringComparer.Ordinal);

    /// <summary>5xx answers, warm-up and measured window both (the window's are also in <see cref="Errors"/>).</summary>
    public long ServerErrorsWholeRun => ErrorsWholeRun.Where(e => IsServerError(e.Key)).Sum(e => e.Value);

    /// <summary>Whether an error kind is a 5xx status code.</summary>
    public static bool IsServerError(string kind) => kind.Length == 3 && kind[0] == '5';

    /// <summary>5xx answers inside the measured window.</summary>
    public long ServerErrors => Errors.Where(e => IsServerError(e.Key)).Sum(e => e.Value);

    public void AddError(string kind) => Errors[kind] = Errors.GetValueOrDefault(kind) + 1;

    /// <summary>With <c>--exactly-once</c>: PUTs sent again with the same <c>Idempotency-Key</c> after an unknown outcome or a 503.</summary>
    public long ExactlyOnceRetries { get; set; }

    public void Add(OperationStats other)
    {
        ExactlyOnceRetries += other.ExactlyOnceRetries;
        Put.Add(other.Put);
        Get.Add(other.Get);
        GetNotFound += other.GetNotFound;
        foreach (var (kind, count) in other.ErrorsWholeRun)
            ErrorsWholeRun[kind] = ErrorsWholeRun.GetValueOrDefault(kind) + count;
        foreach (var (kind, count) in other.Errors)
            Errors[kind] = Errors.GetValueOrDefault(kind) + count;
    }
}

/// <summary>The result of one workload run.</summary>
internal sealed record WorkloadResult(WorkloadSpec Spec, int Round, TimeSpan Measured, OperationStats Stats, int LeaderChanges, CpuUsage Cpu)
{
    /// <summary>The service the workload ran against (<c>--services</c>).</summary>
    public string Service { get; init; } = ServiceKind.Ours.Name;

    public double PutPerSecond => Stats.Put.Count / Measured.TotalSeconds;

    public double GetPerSecond => Stats.Get.Count / Measured.TotalSeconds;

    public double TotalPerSecond => PutPerSecond + GetPerSecond;
}

/// <summary>
/// Runs one workload: <see cref="WorkloadSpec.Clients"/> closed-loop clients (one request in flight
/// each), client <c>i</c> pinned to node <c>i % nodes</c>, for the warm-up and then the measured
/// window. An operation counts when it completes inside the window; the clients stop issuing at
/// the window's end and finish the request in flight.
/// </summary>
internal static class WorkloadRunner
{
    private static readonly double NanosecondsPerTick = 1e9 / Stopwatch.Frequency;

    public static async Task<WorkloadResult> RunAsync(LoadTarget target, WorkloadSpec spec, int round, TimeSpan warmup, TimeSpan duration, int seed, LeaderMonitor monitor, LocalCluster? local, bool rawClient, bool exactlyOnce = false)
    {
        var random = new Random(seed);
        var clientSeeds = Enumerable.Range(0, spec.Clients).Select(_ => random.Next()).ToArray();
        var start = Stopwatch.GetTimestamp();
        var windowStart = start + Ticks(warmup);
        var windowEnd = windowStart + Ticks(duration);
        var clients = Enumerable.Range(0, spec.Clients)
            .Select(c => Task.Run(() => ClientAsync(target, c % target.Nodes.Count, new Random(clientSeeds[c]), spec.WritePercent, windowStart, windowEnd, rawClient, exactlyOnce)))
            .ToArray();
        var cpu = Task.Run(async () =>
        {
            await DelayUntilAsync(windowStart);
            var first = CpuSample.Take(local);
            await DelayUntilAsync(windowEnd);
            return CpuSample.Between(first, CpuSample.Take(local));
        });
        var stats = new OperationStats();
        foreach (var client in await Task.WhenAll(clients))
            stats.Add(client);
        return new WorkloadResult(spec, round, duration, stats, monitor.ChangesBetween(start, Stopwatch.GetTimestamp()), await cpu);
    }

    private static async Task DelayUntilAsync(long timestamp)
    {
        var wait = timestamp - Stopwatch.GetTimestamp();
        if (wait > 0)
            await Task.Delay(TimeSpan.FromSeconds(wait / (double)Stopwatch.Frequency));
    }

    private static async Task<OperationStats> ClientAsync(LoadTarget target, int node, Random random, int writePercent, long windowStart, long windowEnd, bool rawClient, bool exactlyOnce)
    {
        var stats = new OperationStats();
        using var connection = rawClient ? new RawHttpConnection(target.Nodes[node], LoadTarget.RequestTimeout) : null;
        // --exactly-once: one session per client; its writes are numbered 1, 2, ... and retried with the same number.
        long session = 0;
        long sequence = 0;
        while (exactlyOnce && session == 0 && Stopwatch.GetTimestamp() < windowEnd)
        {
            session = await target.OpenSessionAsync(node) ?? 0;
            if (session == 0)
                await Task.Delay(100);
        }
        while (Stopwatch.GetTimestamp() < windowEnd)
        {
            var key = random.Next(target.KeyCount);
            var write = random.Next(100) < writePercent;
            var (outcome, error, start, end) = write
                ? session != 0
                    ? await ExactlyOnceWriteAsync(target, node, key, connection, $"{session}:{++sequence}", stats, windowStart, windowEnd)
                    : await target.PutAsync(node, key, connection)
                : await target.GetAsync(node, key, connection);
            if (outcome is not (Outcome.Ok or Outcome.NotFound))
                stats.ErrorsWholeRun[error ?? "error"] = stats.ErrorsWholeRun.GetValueOrDefault(error ?? "error") + 1;
            if (end < windowStart || end >= windowEnd)
                continue;
            switch (outcome)
            {
                case Outcome.Ok:
                case Outcome.NotFound:
                    (write ? stats.Put : stats.Get).Record((long)((end - start) * NanosecondsPerTick));
                    if (outcome == Outcome.NotFound)
                        stats.GetNotFound++;
                    break;
                default:
                    stats.AddError(error ?? "error");
                    break;
            }
        }
        return stats;
    }

    /// <summary>
    /// A PUT with an <c>Idempotency-Key</c>, sent again with the same key and value while its outcome
    /// is unknown or nothing was submitted (5xx, timeout, broken or refused connection), for up to
    /// 30 s, first to the client's node and then round the others: the sample applies it once, so the
    /// write ends acknowledged (recorded from its first send) instead of of unknown outcome. Each
    /// failed attempt is counted as an error as usual.
    /// </summary>
    private static async Task<(Outcome Outcome, string? Error, long Start, long End)> ExactlyOnceWriteAsync(LoadTarget target, int node, int key,
        RawHttpConnection? connection, string idempotencyKey, OperationStats stats, long windowStart, long windowEnd)
    {
        var id = target.NextWriteId();
        long first = 0;
        var deadline = Stopwatch.GetTimestamp() + Ticks(TimeSpan.FromSeconds(30));
        for (var attempt = 0; ; attempt++)
        {
            var attemptNode = (node + attempt) % target.Nodes.Count;
            var (outcome, error, start, end) = await target.PutAsync(attemptNode, key, attemptNode == node ? connection : null, idempotencyKey, id);
            if (attempt == 0)
                first = start;
            if (outcome == Outcome.Ok)
            {
                target.Tracker.Acknowledged(key, id, first, end);
                return (outcome, error, first, end);
            }
            var retryable = error is "503" or "500" or "502" or "504" or "timeout" or "connect failed" or "connection error";
            if (!retryable || Stopwatch.GetTimestamp() >= deadline)
            {
                target.Tracker.OutcomeUnknown(key);
                return (outcome, error, first, end);
            }
            stats.ErrorsWholeRun[error!] = stats.ErrorsWholeRun.GetValueOrDefault(error!) + 1;
            if (end >= windowStart && end < windowEnd)
                stats.AddError(error!);
            stats.ExactlyOnceRetries++;
            await Task.Delay(50);
        }
    }

    /// <summary>
    /// Writes every key once before any workload, so that GETs find values; retries what was not
    /// submitted (503, no connection) for up to <paramref name="timeout"/>. Returns how many keys
    /// were written and the failures by kind.
    /// </summary>
    public static async Task<(int Written, OperationStats Failures)> PreloadAsync(LoadTarget target, TimeSpan timeout)
    {
        var failures = new OperationStats();
        var written = 0;
        var deadline = Stopwatch.GetTimestamp() + Ticks(timeout);
        await Parallel.ForEachAsync(Enumerable.Range(0, target.KeyCount), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (key, cancellationToken) =>
        {
            while (true)
            {
                var (outcome, error, _, _) = await target.PutAsync(key % target.Nodes.Count, key);
                if (outcome == Outcome.Ok)
                {
                    Interlocked.Increment(ref written);
                    return;
                }
                if (outcome != Outcome.Unavailable || Stopwatch.GetTimestamp() >= deadline)
                {
                    lock (failures)
                        failures.AddError(error ?? "error");
                    return;
                }
                await Task.Delay(100, cancellationToken);
            }
        });
        return (written, failures);
    }

    private static long Ticks(TimeSpan span) => (long)(span.TotalSeconds * Stopwatch.Frequency);
}
