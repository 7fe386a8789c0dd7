using System.Globalization;
using System.Text;

namespace Raft.ClusterBenchmark;

/// <summary>Everything one side measured for one workload, over all its rounds.</summary>
internal sealed class Aggregate
{
    public Aggregate(IReadOnlyList<RunResult> runs)
    {
        Runs = runs;
        var good = runs.Where(r => r.Committed > 0).ToList();
        foreach (var run in good)
            Latency.Add(run.Latency);
        Committed = good.Sum(r => r.Committed);
        Seconds = good.Sum(r => r.Seconds);
        AllocatedBytes = good.Sum(r => r.AllocatedBytes);
        CpuMicroseconds = good.Sum(r => r.CpuTime.TotalMicroseconds);
    }

    public IReadOnlyList<RunResult> Runs { get; }

    public LatencyHistogram Latency { get; } = new();

    public long Committed { get; }

    public double Seconds { get; }

    public long AllocatedBytes { get; }

    public double CpuMicroseconds { get; }

    public bool HasData => Committed > 0;

    public double ProposalsPerSecond => Seconds > 0 ? Committed / Seconds : double.NaN;

    public double MegabytesPerSecond(Workload workload) => ProposalsPerSecond * workload.PayloadBytes / 1e6;

    public double AllocatedBytesPerEntry => Committed > 0 ? (double)AllocatedBytes / Committed : double.NaN;

    public double CpuMicrosecondsPerEntry => Committed > 0 ? CpuMicroseconds / Committed : double.NaN;
}

/// <summary>Prints progress lines and the final markdown report.</summary>
internal static class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string RunLine(RunResult r)
    {
        var line = $"  [{r.Side,-7} {r.Workload.Name,-9} round {r.Round}] "
            + (r.Committed > 0
                ? $"{N(r.ProposalsPerSecond, 0)} proposals/s, {N(r.MegabytesPerSecond, 2)} MB/s, "
                  + $"p50 {Ms(r.Latency.PercentileMilliseconds(50))} ms, p99 {Ms(r.Latency.PercentileMilliseconds(99))} ms, "
                  + $"p99.9 {Ms(r.Latency.PercentileMilliseconds(99.9))} ms, {N(r.AllocatedBytesPerEntry, 0)} B/entry, "
                  + $"{N(r.CpuMicrosecondsPerEntry, 1)} CPU-µs/entry, GCs {r.Gen0}/{r.Gen1}/{r.Gen2}"
                : "no data")
            + $", errors {r.Errors}, leader changes {r.LeaderChanges}";
        if (r.FirstError is not null)
            line += $"\n      first error: {r.FirstError}";
        if (r.Problem is not null)
            line += $"\n      PROBLEM: {r.Problem}";
        return line;
    }

    public static string Markdown(BenchmarkOptions options, IReadOnlyList<FloorResult> floors, IReadOnlyList<RunResult> results, string environment)
    {
        var floor = floors.Count == 0 ? null : floors.Skip(1).Aggregate(floors[0], FloorResult.Merge);
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine("## Raft cluster benchmark" + (options.Quick ? " (--quick smoke run: numbers are indicative only)" : ""));
        sb.AppendLine();
        sb.AppendLine(environment);
        sb.AppendLine();
        sb.AppendLine(string.Create(Inv, $"3 nodes in one process, loopback TCP, {options.Duration.TotalSeconds} s measured after {options.Warmup.TotalSeconds} s of warm-up per run, ")
            + string.Create(Inv, $"{options.Rounds} round(s) per side per workload (alternating), fresh data folders for every run. ")
            + "Proposals/s counts proposals committed and applied on the leader within the window; MB/s is payload bytes (10^6). "
            + "Latency: from the propose call to its completion (HDR-style log-linear histogram, ±0.8 %). "
            + "B/entry and CPU-µs/entry are process-wide (all 3 nodes plus the load generator) over the window, divided by committed proposals.");
        sb.AppendLine();
        sb.AppendLine("| Workload | Side | Proposals/s | MB/s | p50 ms | p99 ms | p99.9 ms | Alloc B/entry | CPU µs/entry | Errors | Rounds (proposals/s) |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        var bySide = new Dictionary<(Workload, string), Aggregate>();
        foreach (var workload in options.Workloads)
        {
            foreach (var side in Sides(options))
            {
                var runs = results.Where(r => r.Workload == workload && r.Side == side).ToList();
                if (runs.Count == 0)
                    continue;
                var agg = bySide[(workload, side)] = new Aggregate(runs);
                var rounds = string.Join(" / ", runs.Select(r => r.Committed > 0 ? N(r.ProposalsPerSecond, 0) : "failed"));
                var troubled = runs.Count(r => r.Problem is not null);
                if (troubled > 0)
                    rounds += $" ({troubled} with problems, see log)";
                sb.AppendLine(agg.HasData
                    ? $"| {workload.Name} | {side} | {N(agg.ProposalsPerSecond, 0)} | {N(agg.MegabytesPerSecond(workload), 2)} | "
                      + $"{Ms(agg.Latency.PercentileMilliseconds(50))} | {Ms(agg.Latency.PercentileMilliseconds(99))} | {Ms(agg.Latency.PercentileMilliseconds(99.9))} | "
                      + $"{N(agg.AllocatedBytesPerEntry, 0)} | {N(agg.CpuMicrosecondsPerEntry, 1)} | {runs.Sum(r => r.Errors)} | {rounds} |"
                    : $"| {workload.Name} | {side} | failed | | | | | | | {runs.Sum(r => r.Errors)} | {rounds} |");
            }
        }

        if (!options.SkipDotNext)
        {
            sb.AppendLine();
            sb.AppendLine("### Ours / DotNext");
            sb.AppendLine();
            sb.AppendLine("Throughput: above 1 means ours is faster. Latency and allocations: below 1 means ours is lower (better).");
            sb.AppendLine();
            sb.AppendLine("| Workload | Proposals/s | p50 | p99 | p99.9 | Alloc/entry | CPU/entry |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
            foreach (var workload in options.Workloads)
            {
                if (!bySide.TryGetValue((workload, "ours"), out var ours) || !bySide.TryGetValue((workload, "DotNext"), out var dotnext)
                    || !ours.HasData || !dotnext.HasData)
                {
                    sb.AppendLine(Inv, $"| {workload.Name} | n/a | n/a | n/a | n/a | n/a | n/a |");
                    continue;
                }
                sb.AppendLine(Inv, $"| {workload.Name} | {Ratio(ours.ProposalsPerSecond, dotnext.ProposalsPerSecond)} | "
                    + $"{Ratio(ours.Latency.PercentileNanoseconds(50), dotnext.Latency.PercentileNanoseconds(50))} | "
                    + $"{Ratio(ours.Latency.PercentileNanoseconds(99), dotnext.Latency.PercentileNanoseconds(99))} | "
                    + $"{Ratio(ours.Latency.PercentileNanoseconds(99.9), dotnext.Latency.PercentileNanoseconds(99.9))} | "
                    + $"{Ratio(ours.AllocatedBytesPerEntry, dotnext.AllocatedBytesPerEntry)} | "
                    + $"{Ratio(ours.CpuMicrosecondsPerEntry, dotnext.CpuMicrosecondsPerEntry)} |");
            }
        }

        if (floor is not null)
        {
            sb.AppendLine();
            sb.AppendLine("### Floor (same run, same disk, measured before every workload and at the end)");
            sb.AppendLine();
            sb.AppendLine("| Measured | Loopback TCP round trip p50 (100 B ping-pong) | Append 100 B + fsync p50 | 1 round trip + 1 fsync | Append + fsync p50, 3 at once | 1 round trip + 1 of 3 concurrent fsyncs |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|");
            foreach (var f in floors.Append(floor))
            {
                sb.AppendLine(Inv, $"| {f.Label} | {Us(f.RoundTrip.PercentileNanoseconds(50))} µs | {Us(f.AppendFsync.PercentileNanoseconds(50))} µs | {Us(f.CommitFloorMilliseconds * 1e6)} µs | {Us(f.ConcurrentAppendFsync.PercentileNanoseconds(50))} µs | {Us(f.SharedDiskCommitFloorMilliseconds * 1e6)} µs |");
            }
            sb.AppendLine();
            sb.AppendLine(string.Create(Inv, $"All merged: round trip p99 {Us(floor.RoundTrip.PercentileNanoseconds(99))} µs over {floor.RoundTrip.Count} samples; append + fsync p99 {Us(floor.AppendFsync.PercentileNanoseconds(99))} µs over {floor.AppendFsync.Count} samples. ")
                + "If the rows differ much, the machine (or its disk) was not quiet: distrust the run. "
                + "\"3 at once\": three threads append and fsync their own files concurrently, as the three nodes of a cluster on one machine do for every entry; "
                + "on a virtual disk an fsync also costs CPU, so this is the fsync a commit actually waits for here, and the second floor below.");
            var singles = options.Workloads.Where(w => w.Proposers == 1).ToList();
            if (singles.Count > 0)
            {
                sb.AppendLine();
                sb.AppendLine("| Single-proposer workload | Side | p50 ms | Floor measured before it | p50 / (1 RTT + 1 fsync) | p50 / (1 RTT + 1 of 3 concurrent fsyncs) |");
                sb.AppendLine("|---|---|---:|---:|---:|---:|");
                foreach (var workload in singles)
                {
                    var nearest = floors.LastOrDefault(f => f.Next == workload) ?? floor;
                    foreach (var side in Sides(options))
                    {
                        if (bySide.TryGetValue((workload, side), out var agg) && agg.HasData)
                        {
                            var p50 = agg.Latency.PercentileMilliseconds(50);
                            sb.AppendLine(Inv, $"| {workload.Name} | {side} | {Ms(p50)} | {Us(nearest.CommitFloorMilliseconds * 1e6)} µs | {N(p50 / nearest.CommitFloorMilliseconds, 2)}× | {N(p50 / nearest.SharedDiskCommitFloorMilliseconds, 2)}× |");
                        }
                    }
                }
            }
        }

        sb.AppendLine();
        sb.AppendLine("### Durability each side gives");
        sb.AppendLine();
        sb.AppendLine(Inv, $"- **ours**: {RaftClusterUnderTest.Durability}");
        if (!options.SkipDotNext)
            sb.AppendLine(Inv, $"- **DotNext**: {DotNextClusterUnderTest.Durability}");

        var problems = results.Where(r => r.Problem is not null).ToList();
        if (problems.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine("### Problems");
            sb.AppendLine();
            foreach (var r in problems)
                sb.AppendLine(Inv, $"- {r.Side} {r.Workload.Name} round {r.Round}: {r.Problem}{(r.FirstError is null ? "" : $" (first error: {r.FirstError})")}");
        }
        return sb.ToString();
    }

    private static IEnumerable<string> Sides(BenchmarkOptions options) =>
        options.SkipDotNext ? ["ours"] : ["ours", "DotNext"];

    private static string Ratio(double ours, double theirs) =>
        double.IsFinite(ours) && double.IsFinite(theirs) && theirs > 0 ? N(ours / theirs, 2) + "×" : "n/a";

    private static string N(double value, int decimals) =>
        double.IsFinite(value) ? value.ToString("N" + decimals.ToString(Inv), Inv) : "n/a";

    private static string Ms(double milliseconds) =>
        !double.IsFinite(milliseconds) ? "n/a" : milliseconds.ToString(milliseconds < 10 ? "0.000" : milliseconds < 100 ? "0.00" : "0.0", Inv);

    private static string Us(double nanoseconds) =>
        !double.IsFinite(nanoseconds) ? "n/a" : (nanoseconds / 1e3).ToString(nanoseconds < 1e6 ? "0.0" : "0", Inv);
}
