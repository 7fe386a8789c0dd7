using System.Diagnostics;

namespace Raft.ClusterBenchmark;

/// <summary>The outcome of one workload on one cluster (one round of one side).</summary>
internal sealed record RunResult(string Side, Workload Workload, int Round)
{
    /// <summary>Proposals that completed (committed and applied on the leader) inside the measured window.</summary>
    public long Committed { get; init; }

    /// <summary>The length of the measured window.</summary>
    public double Seconds { get; init; }

    /// <summary>Commit latency of the proposals counted in <see cref="Committed"/>: from the call to its completion.</summary>
    public LatencyHistogram Latency { get; init; } = new();

    /// <summary>Bytes allocated by the whole process (3 nodes and the load generator) during the window.</summary>
    public long AllocatedBytes { get; init; }

    /// <summary>CPU time of the whole process during the window.</summary>
    public TimeSpan CpuTime { get; init; }

    public int Gen0 { get; init; }

    public int Gen1 { get; init; }

    public int Gen2 { get; init; }

    /// <summary>Proposals that failed (not leader, busy, ...) during the whole run, warm-up included.</summary>
    public long Errors { get; init; }

    public string? FirstError { get; init; }

    public int LeaderChanges { get; init; }

    /// <summary>Why the run is not to be trusted, or null.</summary>
    public string? Problem { get; init; }

    public double ProposalsPerSecond => Seconds > 0 ? Committed / Seconds : 0;

    /// <summary>Payload megabytes (10^6 bytes) per second.</summary>
    public double MegabytesPerSecond => ProposalsPerSecond * Workload.PayloadBytes / 1e6;

    public double AllocatedBytesPerEntry => Committed > 0 ? (double)AllocatedBytes / Committed : double.NaN;

    public double CpuMicrosecondsPerEntry => Committed > 0 ? CpuTime.TotalMicroseconds / Committed : double.NaN;
}

/// <summary>
/// Drives a cluster with N proposers that each keep exactly one proposal in flight: load runs
/// through a warm-up and then a measured window of fixed length; only proposals that complete
/// inside the window count, so ramp-up and drain are excluded.
/// </summary>
internal static class LoadRunner
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan CatchUpTimeout = TimeSpan.FromSeconds(15);

    public static async Task<RunResult> RunAsync(IClusterUnderTest cluster, Workload workload, int round, TimeSpan warmup, TimeSpan duration)
    {
        using var stats = NodeStats.Enabled && cluster.Side == "ours" ? new NodeStats() : null;
        // One immutable payload shared by every proposal: the nodes keep references and never write to it.
        var payload = new byte[workload.PayloadBytes];
        new Random(workload.PayloadBytes).NextBytes(payload);

        var proposers = new Proposer[workload.Proposers];
        for (var i = 0; i < proposers.Length; i++)
            proposers[i] = new Proposer();

        var start = Stopwatch.GetTimestamp();
        var windowStart = start + (long)(warmup.TotalSeconds * Stopwatch.Frequency);
        var windowEnd = windowStart + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var tasks = new Task[proposers.Length];
        for (var i = 0; i < proposers.Length; i++)
        {
            var proposer = proposers[i];
            tasks[i] = Task.Run(() => proposer.RunAsync(cluster, payload, windowStart, windowEnd));
        }

        await DelayUntilAsync(windowStart);
        var process = Process.GetCurrentProcess();
        var allocated0 = GC.GetTotalAllocatedBytes(precise: true);
        var cpu0 = process.TotalProcessorTime;
        int gen0 = GC.CollectionCount(0), gen1 = GC.CollectionCount(1), gen2 = GC.CollectionCount(2);
        var stats0 = stats?.Snapshot();
        var pause0 = GC.GetTotalPauseDuration();

        await DelayUntilAsync(windowEnd);
        var allocated1 = GC.GetTotalAllocatedBytes(precise: true);
        process.Refresh();
        var cpu1 = process.TotalProcessorTime;
        gen0 = GC.CollectionCount(0) - gen0;
        gen1 = GC.CollectionCount(1) - gen1;
        gen2 = GC.CollectionCount(2) - gen2;
        var stats1 = stats?.Snapshot();
        var pause1 = GC.GetTotalPauseDuration();

        string? problem = null;
        var all = Task.WhenAll(tasks);
        if (await Task.WhenAny(all, Task.Delay(DrainTimeout)) != all)
            problem = $"proposals were still pending {DrainTimeout.TotalSeconds:0} s after the window closed (cluster stalled)";

        var latency = new LatencyHistogram();
        long errors = 0, succeeded = 0;
        string? firstError = null;
        foreach (var proposer in proposers)
        {
            latency.Add(proposer.Latency);
            errors += proposer.Errors;
            succeeded += proposer.Succeeded;
            firstError ??= proposer.FirstError;
        }
        if (stats0 is not null && stats1 is not null)
        {
            NodeStats.Print(stats0, stats1, latency.Count);
            Console.WriteLine($"    GC pauses {(pause1 - pause0).TotalMilliseconds:N0} ms in the {duration.TotalSeconds:0} s window");
        }

        // Correctness check: every node must eventually apply every acknowledged proposal.
        if (problem is null)
            problem = await CheckReplicationAsync(cluster, succeeded);

        return new RunResult(cluster.Side, workload, round)
        {
            Committed = latency.Count,
            Seconds = duration.TotalSeconds,
            Latency = latency,
            AllocatedBytes = allocated1 - allocated0,
            CpuTime = cpu1 - cpu0,
            Gen0 = gen0,
            Gen1 = gen1,
            Gen2 = gen2,
            Errors = errors,
            FirstError = firstError,
            LeaderChanges = cluster.LeaderChanges,
            Problem = problem ?? (latency.Count == 0 ? "no proposal completed in the measured window" : null),
        };
    }

    private static async Task<string?> CheckReplicationAsync(IClusterUnderTest cluster, long acknowledged)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(CatchUpTimeout.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var applied = cluster.AppliedCommands;
            if (applied.All(a => a >= acknowledged))
                return null;
            if (Stopwatch.GetTimestamp() > deadline)
                return $"{acknowledged} proposals were acknowledged but the nodes applied only [{string.Join(", ", applied)}] after {CatchUpTimeout.TotalSeconds:0} s";
            await Task.Delay(20);
        }
    }

    private static async Task DelayUntilAsync(long timestamp)
    {
        var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), timestamp);
        if (remaining > TimeSpan.Zero)
            await Task.Delay(remaining);
    }

    /// <summary>One closed-loop client: proposes, waits for the outcome, proposes again.</summary>
    private sealed class Proposer
    {
        private static readonly double NanosecondsPerTick = 1e9 / Stopwatch.Frequency;

        public LatencyHistogram Latency { get; } = new();

        public long Errors { get; private set; }

        /// <summary>Every acknowledged proposal, warm-up and drain included.</summary>
        public long Succeeded { get; private set; }

        public string? FirstError { get; private set; }

        public async Task RunAsync(IClusterUnderTest cluster, ReadOnlyMemory<byte> payload, long windowStart, long windowEnd)
        {
            while (true)
            {
                var started = Stopwatch.GetTimestamp();
                if (started >= windowEnd)
                    return;
                try
                {
                    await cluster.ProposeAsync(payload);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    // Not the leader (an election), busy, or disposed: count it, back off a little, go on.
                    Errors++;
                    FirstError ??= $"{ex.GetType().Name}: {ex.Message}";
                    cluster.OnProposeFailed(ex);
                    if (ex is ObjectDisposedException)
                        return;
                    await Task.Delay(1);
                    continue;
                }
                var completed = Stopwatch.GetTimestamp();
                Succeeded++;
                if (completed >= windowStart && completed < windowEnd)
                    Latency.Record((long)((completed - started) * NanosecondsPerTick));
            }
        }
    }
}
