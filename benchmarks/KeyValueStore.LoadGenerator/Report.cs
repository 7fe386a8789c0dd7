using System.Globalization;
using System.Text;
using Raft.ClusterBenchmark;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>Formats the results: one line per workload while running, and the markdown report at the end.</summary>
internal static class Report
{
    public static string WorkloadLine(WorkloadResult r) => string.Create(CultureInfo.InvariantCulture,
        $"  {r.Service} {r.Spec.Name} round {r.Round}: {r.TotalPerSecond:N0} ops/s (PUT {r.PutPerSecond:N0}, GET {r.GetPerSecond:N0}); "
        + $"PUT p50 {Ms(r.Stats.Put, 50)} p99 {Ms(r.Stats.Put, 99)} ms; GET p50 {Ms(r.Stats.Get, 50)} p99 {Ms(r.Stats.Get, 99)} ms; "
        + $"errors {Errors(r.Stats)}; {(r.Stats.ExactlyOnceRetries > 0 ? $"exactly-once retries {r.Stats.ExactlyOnceRetries}; " : "")}leader changes {r.LeaderChanges}; "
        + $"CPU cores: nodes {Cores(r.Cpu.Nodes)}, load generator {Cores(r.Cpu.LoadGenerator)}, everything else {Cores(r.Cpu.Others)}");

    public static string Markdown(IReadOnlyList<string> header, LoadOptions options, IReadOnlyList<ServiceRun> runs, IReadOnlyList<string> failures)
    {
        var md = new StringBuilder();
        md.AppendLine("## KeyValueStore load generator");
        md.AppendLine();
        foreach (var line in header)
            md.AppendLine(CultureInfo.InvariantCulture, $"- {line}");
        foreach (var run in runs)
            md.AppendLine(CultureInfo.InvariantCulture, $"- Service {run.Service.Name}: {run.Service.Description}; {run.Cluster}");
        md.AppendLine();
        var results = runs.SelectMany(r => r.Results).ToList();
        var rounds = options.Rounds > 1;
        md.AppendLine("| workload | service " + (rounds ? "| round " : "")
            + "| ops/s | PUT ops/s | GET ops/s | PUT p50 | PUT p99 | GET p50 | GET p99 | 5xx (window / whole workload) | other errors (window / whole) | leader changes |");
        md.AppendLine("|---|---" + (rounds ? "|---:" : "") + "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
        foreach (var r in results.OrderBy(r => options.Workloads.ToList().IndexOf(r.Spec)).ThenBy(r => r.Round))
        {
            var round = rounds ? string.Create(CultureInfo.InvariantCulture, $"| {r.Round} ") : "";
            md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Spec.Name} | {r.Service} {round}| {r.TotalPerSecond:N0} | {r.PutPerSecond:N0} | {r.GetPerSecond:N0} "
                + $"| {Ms(r.Stats.Put, 50)} | {Ms(r.Stats.Put, 99)} | {Ms(r.Stats.Get, 50)} | {Ms(r.Stats.Get, 99)} "
                + $"| {r.Stats.ServerErrors} / {r.Stats.ServerErrorsWholeRun} | {OtherErrors(r.Stats)} | {r.LeaderChanges} |"));
        }
        md.AppendLine();
        md.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"Latencies in ms, client-side (request sent to answer read), of operations completed in the {options.Duration.TotalSeconds:0.#} s window after a "
            + $"{options.Warmup.TotalSeconds:0.#} s warm-up; ops/s counts successes only (PUT 204, GET 200 or 404). "
            + $"5xx: answers with a 5xx status inside the measured window / during the whole workload (warm-up included). "
            + $"Other errors (timeouts, broken connections, other status codes) by kind, also inside the window / during the whole workload. Errors are not in ops/s or the latencies. "
            + $"Leader changes: new (term, leader) pairs seen by polling /status once a second during the workload (warm-up included)."));
        md.AppendLine();
        var nodeCount = results.Select(r => r.Cpu.PerNode.Count).DefaultIfEmpty(0).Max();
        md.AppendLine("| workload | service | CPU µs/op: "
            + string.Join(" | ", Enumerable.Range(1, nodeCount).Select(i => string.Create(CultureInfo.InvariantCulture, $"node {i}")))
            + (nodeCount > 0 ? " | " : "") + "all nodes | load generator | cores: nodes | load generator | everything else | load avg (1 min) |");
        md.AppendLine("|---|---|" + string.Concat(Enumerable.Repeat("---:|", nodeCount + 7)));
        foreach (var r in results.OrderBy(r => options.Workloads.ToList().IndexOf(r.Spec)).ThenBy(r => r.Round))
        {
            var ops = r.TotalPerSecond;
            var perNode = Enumerable.Range(0, nodeCount).Select(i => i < r.Cpu.PerNode.Count ? PerOpNumber(r.Cpu.PerNode[i], ops) : "-");
            md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Spec.Name}{(rounds ? string.Create(CultureInfo.InvariantCulture, $" r{r.Round}") : "")} | {r.Service} | {string.Join(" | ", perNode)}{(nodeCount > 0 ? " | " : "")}"
                + $"{PerOpNumber(r.Cpu.Nodes, ops)} | {PerOpNumber(r.Cpu.LoadGenerator, ops)} | {Cores(r.Cpu.Nodes)} | {Cores(r.Cpu.LoadGenerator)} | {Cores(r.Cpu.Others)} "
                + $"| {(r.Cpu.LoadAverage is { } load ? load.ToString("0.00", CultureInfo.InvariantCulture) : "-")} |"));
        }
        md.AppendLine();
        md.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"CPU µs per successful operation over the measured window: each node process's utime + stime (/proc/PID/stat), their sum, and the load generator's own; "
            + $"then the same in cores (of {Environment.ProcessorCount}); \"everything else\" is the rest of the machine's busy time (/proc/stat): other work running at the same time skews the numbers. "
            + $"Load average: /proc/loadavg at the end of the measured window (it includes this run's own processes)."));
        var notFound = results.Sum(r => r.Stats.GetNotFound);
        if (notFound > 0)
            md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"GETs answered 404 (counted as successes): {notFound:N0}."));
        md.AppendLine();
        foreach (var run in runs)
        {
            if (!run.Service.Replicated)
            {
                md.AppendLine(CultureInfo.InvariantCulture, $"{run.Service.Name}: not checked for convergence or final values (every node is its own dictionary; no consensus).");
                continue;
            }
            if (run.Verification is not { } v)
            {
                md.AppendLine(CultureInfo.InvariantCulture, $"{run.Service.Name}: final state NOT checked (the run stopped early).");
                continue;
            }
            md.AppendLine(v.Converged
                ? string.Create(CultureInfo.InvariantCulture, $"{run.Service.Name}: every node applied up to index {v.LastApplied:N0} (equal after {v.ConvergenceWait.TotalSeconds:0.0} s); ")
                : string.Create(CultureInfo.InvariantCulture, $"{run.Service.Name}: convergence FAILED, the nodes' lastApplied still differ after {v.ConvergenceWait.TotalSeconds:0.0} s: {v.ConvergenceDetail}; "));
            md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"keys: {v.Checked} read from the leader and checked against their acknowledged writes, {v.SkippedUnknown} skipped (a write of unknown outcome), "
                + $"{v.SkippedNeverWritten} never written; mismatches: {v.Mismatches.Count}."));
            foreach (var mismatch in v.Mismatches.Take(20))
                md.AppendLine(CultureInfo.InvariantCulture, $"- MISMATCH {mismatch}");
            if (v.Mismatches.Count > 20)
                md.AppendLine(CultureInfo.InvariantCulture, $"- ... and {v.Mismatches.Count - 20} more");
            md.AppendLine();
        }
        foreach (var failure in failures)
            md.AppendLine(CultureInfo.InvariantCulture, $"FAILED: {failure}");
        md.AppendLine(failures.Count == 0 ? "Result: PASS" : "Result: FAIL");
        return md.ToString();
    }

    private static string PerOpNumber(double? cores, double opsPerSecond) =>
        cores is { } c && opsPerSecond > 0 ? (c * 1e6 / opsPerSecond).ToString("0", CultureInfo.InvariantCulture) : "-";

    /// <summary>Non-5xx failures by kind, as "kind: in the window / in the whole workload".</summary>
    private static string OtherErrors(OperationStats stats)
    {
        var other = stats.ErrorsWholeRun.Where(e => !OperationStats.IsServerError(e.Key)).ToList();
        return other.Count == 0 ? "0" : string.Join(", ", other.Select(e => string.Create(CultureInfo.InvariantCulture, $"{e.Key}: {stats.Errors.GetValueOrDefault(e.Key)} / {e.Value}")));
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
