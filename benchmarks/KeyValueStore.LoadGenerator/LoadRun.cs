using System.Diagnostics;
using System.Globalization;
using System.Runtime;
using System.Runtime.InteropServices;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>
/// One run of the load generator: start the nodes (or use <c>--urls</c>), wait for a leader, write
/// every key once, run the workloads, check convergence and the final values, stop the nodes, print
/// the report. Returns the exit code.
/// </summary>
internal static class LoadRun
{
    private const int NodeCount = 3;
    private const int TailLines = 40;
    private static readonly TimeSpan LeaderTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ReachTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(15);

    public static async Task<int> RunAsync(LoadOptions options, IReadOnlyList<string> args)
    {
        var header = new List<string>
        {
            $"Command: `dotnet run -c Release --project benchmarks/KeyValueStore.LoadGenerator{(args.Count > 0 ? " -- " + string.Join(' ', args.Select(Quote)) : "")}`",
            $"Process: `{Environment.CommandLine}`",
            $"Machine: {Environment.ProcessorCount} logical cores, {RuntimeInformation.OSDescription} {RuntimeInformation.OSArchitecture}, {RuntimeInformation.FrameworkDescription}, "
                + $"load generator GC {(GCSettings.IsServerGC ? "server" : "workstation")}"
#if DEBUG
                + ", DEBUG BUILD of the load generator (use -c Release)"
#endif
                ,
        };
        foreach (var line in header)
            Console.WriteLine(line);

        LocalCluster? local = null;
        var results = new List<WorkloadResult>();
        var problems = new List<string>();
        Verification? verification = null;
        IReadOnlyList<string> stopLines = [];
        try
        {
            IReadOnlyList<Uri> urls;
            if (options.Urls is null)
            {
                if (!TryLocateSample(out var dll, out var why))
                {
                    Console.Error.WriteLine($"error: {why}");
                    return 1;
                }
                var host = DotnetHost();
                var root = Path.Combine(Path.GetTempPath(), "raft-kv-load-" + Guid.NewGuid().ToString("N")[..8]);
                local = LocalCluster.Start(host, dll, NodeCount, root, options.Forward);
                urls = local.Urls;
                header.Add($"Cluster: {NodeCount} sample nodes, one process each (`{host} {dll} --id N ...{(options.Forward is null ? "" : " --forward " + options.Forward)}`, fsync on, loopback), "
                    + $"HTTP {string.Join(", ", urls)}; data and logs in {root}{(options.KeepData ? " (kept)" : " (deleted at the end)")}"
                    + (dll.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "; DEBUG BUILD of the sample" : ""));
            }
            else
            {
                urls = options.Urls;
                header.Add($"Cluster: already running, HTTP {string.Join(", ", urls)}");
            }
            header.Add($"Load: {options.Keys} keys, {options.ValueBytes} B values, {options.Warmup.TotalSeconds:0.#} s warm-up and {options.Duration.TotalSeconds:0.#} s measured per workload, "
                + $"{options.Rounds} round(s), seed {options.Seed}, clients pinned to node (client % {urls.Count}), {(options.RawClient ? "one minimal HTTP/1.1 keep-alive connection per client (--client raw)" : "one shared HttpClient (--client httpclient)")}");
            Console.WriteLine(header[^2]);
            Console.WriteLine(header[^1]);

            using var cluster = new ClusterStatus(urls);
            var (leader, noLeader) = await WaitForLeaderAsync(cluster, local, checkReachable: options.Urls is not null);
            if (leader is null)
            {
                Console.Error.WriteLine($"error: {noLeader}");
                if (local is not null)
                    Console.Error.WriteLine(local.Tails(TailLines));
                return 1;
            }

            using var target = new LoadTarget(urls, options.Keys, new ValueFactory(options.ValueBytes, options.Seed));
            await using var monitor = new LeaderMonitor(cluster, leader);
            var preloadWatch = Stopwatch.StartNew();
            var (written, preloadFailures) = await WorkloadRunner.PreloadAsync(target, TimeSpan.FromSeconds(30));
            Console.WriteLine($"Wrote every key once: {written} of {options.Keys} in {preloadWatch.Elapsed.TotalSeconds:0.0} s"
                + (preloadFailures.ErrorCount > 0 ? $"; failed: {string.Join(", ", preloadFailures.Errors.Select(e => $"{e.Key}: {e.Value}"))}" : ""));

            var seeds = new Random(options.Seed);
            for (var round = 1; round <= options.Rounds && problems.Count == 0; round++)
            {
                foreach (var spec in options.Workloads)
                {
                    Console.WriteLine($"Workload {spec.Name}, round {round}: {spec.Clients} clients, {spec.WritePercent} % writes, "
                        + $"{options.Warmup.TotalSeconds:0.#} s warm-up + {options.Duration.TotalSeconds:0.#} s measured...");
                    var result = await WorkloadRunner.RunAsync(target, spec, round, options.Warmup, options.Duration, seeds.Next(), monitor, local, options.RawClient);
                    results.Add(result);
                    Console.WriteLine(Report.WorkloadLine(result));
                    if (CheckExited(local, problems))
                        break;
                    // Garbage of one workload must not be collected inside the next one's window.
                    GC.Collect();
                    GC.WaitForPendingFinalizers();
                }
            }
            foreach (var change in monitor.Describe())
                Console.WriteLine($"  leader change seen: {change}");

            if (problems.Count == 0)
            {
                Console.WriteLine("Checking convergence and the final value of every key...");
                verification = await Verifier.RunAsync(cluster, target);
                CheckExited(local, problems);
            }
        }
        finally
        {
            if (local is not null)
            {
                Console.WriteLine("Stopping the nodes (SIGTERM)...");
                stopLines = local.Stop(StopTimeout);
                foreach (var line in stopLines)
                    Console.WriteLine($"  {line}");
                local.Dispose();
                if (!options.KeepData)
                    TryDelete(local.Root);
            }
        }

        Console.WriteLine();
        Console.WriteLine(Report.Markdown(header, options, results, verification, problems));
        return problems.Count == 0 && verification is { Passed: true } ? 0 : 1;
    }

    /// <summary>Records and prints the nodes that exited on their own; true when there is one.</summary>
    private static bool CheckExited(LocalCluster? local, List<string> problems)
    {
        if (local is null || local.Exited.Count == 0)
            return false;
        foreach (var node in local.Exited)
            problems.Add($"node {node.Id} exited unexpectedly ({node.ExitDescription}); its log: {node.LogFile}");
        Console.Error.WriteLine($"error: {string.Join("; ", problems)}");
        Console.Error.WriteLine(local.Tails(TailLines, local.Exited));
        return true;
    }

    /// <summary>
    /// Polls every node's <c>/status</c> until one is the leader and every node agrees (same leader,
    /// same term), for up to 30 s. With <paramref name="checkReachable"/> (an existing cluster), each
    /// node must first answer within 5 s. Returns the leader's status, or why there is none.
    /// </summary>
    private static async Task<(NodeStatus? Leader, string? Problem)> WaitForLeaderAsync(ClusterStatus cluster, LocalCluster? local, bool checkReachable)
    {
        var watch = Stopwatch.StartNew();
        Console.WriteLine("Waiting for a leader...");
        if (checkReachable)
        {
            var reached = new bool[cluster.Urls.Count];
            string?[] errors = new string?[cluster.Urls.Count];
            while (!reached.All(r => r))
            {
                var statuses = await cluster.GetAllAsync(TimeSpan.FromSeconds(1));
                for (var i = 0; i < statuses.Length; i++)
                {
                    reached[i] |= statuses[i].Status is not null;
                    errors[i] = statuses[i].Error;
                }
                if (watch.Elapsed >= ReachTimeout)
                {
                    var unreachable = Enumerable.Range(0, reached.Length).Where(i => !reached[i]).Select(i => $"{cluster.Urls[i]} ({errors[i]})");
                    return (null, $"cannot reach {string.Join(", ", unreachable)} within {ReachTimeout.TotalSeconds:0} s: is the cluster running at --urls?");
                }
                if (!reached.All(r => r))
                    await Task.Delay(250);
            }
        }
        var last = Array.Empty<(NodeStatus? Status, string? Error)>();
        while (watch.Elapsed < LeaderTimeout)
        {
            if (local is { Exited.Count: > 0 })
                return (null, string.Join("; ", local.Exited.Select(n => $"node {n.Id} exited before a leader was elected ({n.ExitDescription})")));
            last = await cluster.GetAllAsync(TimeSpan.FromSeconds(1));
            var leaders = last.Select(s => s.Status).Where(s => s is { IsLeader: true }).ToList();
            if (leaders is [{ } leader] && last.All(s => s.Status is { } status && status.LeaderId == leader.Id && status.Term == leader.Term))
            {
                Console.WriteLine($"  leader: node {leader.Id}, term {leader.Term}, after {watch.Elapsed.TotalSeconds:0.0} s");
                return (leader, null);
            }
            await Task.Delay(200);
        }
        var states = last.Select((s, i) => s.Status is { } status
            ? $"node {status.Id}: {status.Role}, term {status.Term}, leader {status.LeaderId}"
            : $"{cluster.Urls[i]}: {s.Error}");
        return (null, $"no leader all nodes agree on within {LeaderTimeout.TotalSeconds:0} s ({string.Join("; ", states)})");
    }

    /// <summary>
    /// The sample's built <c>KeyValueStore.dll</c>: <c>samples/KeyValueStore/bin/CONFIG/TFM/</c> under
    /// the repository root (the folder with Raft.sln above this program), preferring this program's
    /// own configuration.
    /// </summary>
    private static bool TryLocateSample(out string dll, out string error)
    {
        dll = "";
        var baseDirectory = AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar);
        var tfm = Path.GetFileName(baseDirectory);
        var configuration = Path.GetFileName(Path.GetDirectoryName(baseDirectory)) ?? "Release";
        var root = new DirectoryInfo(baseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Raft.sln")))
            root = root.Parent;
        if (root is null)
        {
            error = $"the repository root (the folder with Raft.sln) was not found above {baseDirectory}; use --urls to drive a running cluster.";
            return false;
        }
        var candidates = new[] { configuration, "Release", "Debug" }
            .Distinct(StringComparer.Ordinal)
            .Select(c => Path.Combine(root.FullName, "samples", "KeyValueStore", "bin", c, tfm, "KeyValueStore.dll"))
            .ToList();
        var found = candidates.FirstOrDefault(File.Exists);
        if (found is null)
        {
            error = $"the sample is not built (looked for {string.Join(", ", candidates)}); run: dotnet build -c Release benchmarks/KeyValueStore.LoadGenerator";
            return false;
        }
        dll = found;
        error = "";
        return true;
    }

    /// <summary>The dotnet host that runs the sample: this process's, when it is <c>dotnet</c>; else <c>DOTNET_HOST_PATH</c>; else <c>dotnet</c> on the PATH.</summary>
    private static string DotnetHost()
    {
        if (Environment.ProcessPath is { } path && string.Equals(Path.GetFileNameWithoutExtension(path), "dotnet", StringComparison.OrdinalIgnoreCase))
            return path;
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host))
            return host;
        return "dotnet";
    }

    private static string Quote(string arg) =>
        arg.Length > 0 && arg.All(c => char.IsAsciiLetterOrDigit(c) || "-_=.,:/+@%".Contains(c, StringComparison.Ordinal)) ? arg : "'" + arg.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private static void TryDelete(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"warning: could not delete {directory}: {ex.Message}");
        }
    }
}
