using System.Globalization;
using System.Text;
using Raft.ClusterBenchmark;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>Formats the results: one line per workload while running, and the markdown report at the end.</summary>
internal static class Report
{
    public static string WorkloadLine(WorkloadResult r) => string.Create(CultureInfo.InvariantCulture,
        $"  {r.Spec.Name} round {r.Round}: {r.TotalPerSecond:N0} ops/s (PUT {r.PutPerSecond:N0}, GET {r.GetPerSecond:N0}); "
        + $"PUT p50 {Ms(r.Stats.Put, 50)} p99 {Ms(r.Stats.Put, 99)} ms; GET p50 {Ms(r.Stats.Get, 50)} p99 {Ms(r.Stats.Get, 99)} ms; "
        + $"errors {Errors(r.Stats)}; leader changes {r.LeaderChanges}; "
        + $"CPU cores: nodes {Cores(r.Cpu.Nodes)}, load generator {Cores(r.Cpu.LoadGenerator)}, everything else {Cores(r.Cpu.Others)}");

    public static string Markdown(IReadOnlyList<string> header, LoadOptions options, IReadOnlyList<WorkloadResult> results, Verification? verification, IReadOnlyList<string> problems)
    {
        var md = new StringBuilder();
        md.AppendLine("## KeyValueStore load generator");
        md.AppendLine();
        foreach (var line in header)
            md.AppendLine(CultureInfo.InvariantCulture, $"- {line}");
        md.AppendLine();
        var rounds = options.Rounds > 1;
        md.AppendLine((rounds ? "| workload | round " : "| workload ")
            + "| clients | write % | ops/s | PUT ops/s | GET ops/s | PUT p50 | PUT p99 | PUT p99.9 | GET p50 | GET p99 | GET p99.9 | errors | leader changes |");
        md.AppendLine((rounds ? "|---|---:" : "|---") + "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
        foreach (var r in results)
        {
            var round = rounds ? string.Create(CultureInfo.InvariantCulture, $"| {r.Round} ") : "";
            md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Spec.Name} {round}| {r.Spec.Clients} | {r.Spec.WritePercent} | {r.TotalPerSecond:N0} | {r.PutPerSecond:N0} | {r.GetPerSecond:N0} "
                + $"| {Ms(r.Stats.Put, 50)} | {Ms(r.Stats.Put, 99)} | {Ms(r.Stats.Put, 99.9)} "
                + $"| {Ms(r.Stats.Get, 50)} | {Ms(r.Stats.Get, 99)} | {Ms(r.Stats.Get, 99.9)} "
                + $"| {Errors(r.Stats)} | {r.LeaderChanges} |"));
        }
        md.AppendLine();
        md.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"Latencies in ms, client-side (request sent to answer read), of operations completed in the {options.Duration.TotalSeconds:0.#} s window after a "
            + $"{options.Warmup.TotalSeconds:0.#} s warm-up; ops/s counts successes only (PUT 204, GET 200 or 404). "
            + $"Errors are not in ops/s or the latencies. Leader changes: new (term, leader) pairs seen by polling /status once a second during the workload (warm-up included)."));
        md.AppendLine();
        md.AppendLine("| workload | CPU: nodes | CPU: load generator | CPU: everything else | node CPU per op | load generator CPU per op |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var r in results)
        {
            var ops = r.TotalPerSecond;
            md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Spec.Name}{(rounds ? string.Create(CultureInfo.InvariantCulture, $" r{r.Round}") : "")} | {Cores(r.Cpu.Nodes)} | {Cores(r.Cpu.LoadGenerator)} | {Cores(r.Cpu.Others)} "
                + $"| {PerOp(r.Cpu.Nodes, ops)} | {PerOp(r.Cpu.LoadGenerator, ops)} |"));
        }
        md.AppendLine();
        md.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"CPU in cores (of {Environment.ProcessorCount}) averaged over the measured window; \"everything else\" is the rest of the machine's busy time (/proc/stat): other work running at the same time skews the numbers. "
            + $"Per op: CPU µs per successful operation."));
        var notFound = results.Sum(r => r.Stats.GetNotFound);
        if (notFound > 0)
            md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"GETs answered 404 (counted as successes): {notFound:N0}."));
        md.AppendLine();
        if (verification is { } v)
        {
            md.AppendLine(v.Converged
                ? string.Create(CultureInfo.InvariantCulture, $"Convergence: every node applied up to index {v.LastApplied:N0} (equal after {v.ConvergenceWait.TotalSeconds:0.0} s).")
                : string.Create(CultureInfo.InvariantCulture, $"Convergence: FAILED, the nodes' lastApplied still differ after {v.ConvergenceWait.TotalSeconds:0.0} s: {v.ConvergenceDetail}."));
            md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"Keys: {v.Checked} read from the leader and checked against their acknowledged writes, {v.SkippedUnknown} skipped (a write of unknown outcome), "
                + $"{v.SkippedNeverWritten} never written; mismatches: {v.Mismatches.Count}."));
            foreach (var mismatch in v.Mismatches.Take(20))
                md.AppendLine(CultureInfo.InvariantCulture, $"- MISMATCH {mismatch}");
            if (v.Mismatches.Count > 20)
                md.AppendLine(CultureInfo.InvariantCulture, $"- ... and {v.Mismatches.Count - 20} more");
            md.AppendLine();
        }
        foreach (var problem in problems)
            md.AppendLine(CultureInfo.InvariantCulture, $"FAILED: {problem}");
        md.AppendLine(problems.Count == 0 && verification is { Passed: true } ? "Result: PASS" : "Result: FAIL");
        return md.ToString();
    }

    private static string Ms(LatencyHistogram histogram, double percentile) =>
        histogram.Count == 0 ? "-" : histogram.PercentileMilliseconds(percentile).ToString(histogram.PercentileMilliseconds(percentile) < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture);

    private static string Cores(double? cores) => cores is { } c ? c.ToString("0.00", CultureInfo.InvariantCulture) : "-";

    private static string PerOp(double? cores, double opsPerSecond) =>
        cores is { } c && opsPerSecond > 0 ? (c * 1e6 / opsPerSecond).ToString("0", CultureInfo.InvariantCulture) + " µs" : "-";

    private static string Errors(OperationStats stats) =>
        stats.ErrorCount == 0
            ? "0"
            : string.Create(CultureInfo.InvariantCulture, $"{stats.ErrorCount} ({string.Join(", ", stats.Errors.Select(e => $"{e.Key}: {e.Value}"))})");
}
