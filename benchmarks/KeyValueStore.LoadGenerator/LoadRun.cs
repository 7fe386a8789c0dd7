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
            $"Load: {options.Keys} keys, {options.ValueBytes} B values, {options.Warmup.TotalSeconds:0.#} s warm-up and {options.Duration.TotalSeconds:0.#} s measured per workload, "
                + $"{options.Rounds} round(s), seed {options.Seed}, clients pinned to node (client % {(options.Urls?.Count ?? NodeCount)}), {(options.RawClient ? "one minimal HTTP/1.1 keep-alive connection per client (--client raw)" : "one shared HttpClient (--client httpclient)")}; "
                + $"services one after another: {string.Join(", ", options.Services.Select(s => s.Name))}",
            string.Create(CultureInfo.InvariantCulture, $"Load average (1 min) at start: {CpuSample.LoadAverage()?.ToString("0.00", CultureInfo.InvariantCulture) ?? "unknown"}"),
        };
        foreach (var line in header)
            Console.WriteLine(line);

        var runs = new List<ServiceRun>();
        foreach (var service in options.Services)
        {
            var run = await RunServiceAsync(service, options);
            runs.Add(run);
            // Garbage of one service's run must not be collected inside the next one's window.
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        var failures = new List<string>();
        foreach (var run in runs)
        {
            failures.AddRange(run.Problems.Select(p => $"{run.Service.Name}: {p}"));
            if (run.Service.Replicated && run.Verification is not { Passed: true })
                failures.Add($"{run.Service.Name}: the final state was not verified or did not match the acknowledged writes");
        }
        if (options.FailOn5xx && runs.FirstOrDefault(r => r.Service == ServiceKind.Ours) is { } ours
            && ours.Results.Sum(r => r.Stats.ServerErrorsWholeRun) is > 0 and var fiveXx)
        {
            failures.Add($"ours answered {fiveXx} 5xx during the workloads (--fail-on-5xx)");
        }
        Console.WriteLine();
        Console.WriteLine(Report.Markdown(header, options, runs, failures));
        return failures.Count == 0 ? 0 : 1;
    }

    /// <summary>
    /// One service: start its nodes (or use <c>--urls</c>), wait for a leader, write every key once, run the workloads,
    /// check convergence and the final values (replicated services only), stop the nodes.
    /// </summary>
    private static async Task<ServiceRun> RunServiceAsync(ServiceKind service, LoadOptions options)
    {
        LocalCluster? local = null;
        var results = new List<WorkloadResult>();
        var problems = new List<string>();
        Verification? verification = null;
        string clusterLine;
        Console.WriteLine($"=== Service {service.Name}: {service.Description}");
        try
        {
            IReadOnlyList<Uri> urls;
            if (options.Urls is null)
            {
                if (!TryLocateService(service, out var dll, out var why))
                {
                    Console.Error.WriteLine($"error: {why}");
                    return new ServiceRun(service, why, results, null, [why]);
                }
                var host = DotnetHost();
                var root = Path.Combine(Path.GetTempPath(), $"raft-kv-load-{service.Name}-" + Guid.NewGuid().ToString("N")[..8]);
                local = LocalCluster.Start(service, host, dll, NodeCount, root, service == ServiceKind.Ours ? options.Forward : null);
                urls = local.Urls;
                clusterLine = $"{NodeCount} nodes, one process each (`{host} {dll} --id N ...{(service == ServiceKind.Ours && options.Forward is not null ? " --forward " + options.Forward : "")}`, loopback), "
                    + $"HTTP {string.Join(", ", urls)}; data and logs in {root}{(options.KeepData ? " (kept)" : " (deleted at the end)")}"
                    + (dll.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "; DEBUG BUILD" : "");
            }
            else
            {
                urls = options.Urls;
                clusterLine = $"already running, HTTP {string.Join(", ", urls)}";
            }
            Console.WriteLine($"Cluster: {clusterLine}");

            using var cluster = new ClusterStatus(urls);
            var (leader, noLeader) = await WaitForLeaderAsync(cluster, local, checkReachable: options.Urls is not null);
            if (leader is null)
            {
                Console.Error.WriteLine($"error: {noLeader}");
                if (local is not null)
                    Console.Error.WriteLine(local.Tails(TailLines));
                problems.Add(noLeader!);
                return new ServiceRun(service, clusterLine, results, null, problems);
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
                    Console.WriteLine($"Workload {spec.Name}, round {round}, service {service.Name}: {spec.Clients} clients, {spec.WritePercent} % writes, "
                        + $"{options.Warmup.TotalSeconds:0.#} s warm-up + {options.Duration.TotalSeconds:0.#} s measured...");
                    var result = await WorkloadRunner.RunAsync(target, spec, round, options.Warmup, options.Duration, seeds.Next(), monitor, local, options.RawClient, options.ExactlyOnce && service == ServiceKind.Ours);
                    result = result with { Service = service.Name };
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

            if (problems.Count == 0 && service.Replicated)
            {
                Console.WriteLine("Checking convergence and the final value of every key...");
                verification = await Verifier.RunAsync(cluster, target);
                CheckExited(local, problems);
            }
            else if (!service.Replicated)
            {
                Console.WriteLine("Not checking convergence: the floor's nodes are independent dictionaries.");
            }
        }
        finally
        {
            if (local is not null)
            {
                Console.WriteLine("Stopping the nodes (SIGTERM)...");
                foreach (var line in local.Stop(StopTimeout))
                    Console.WriteLine($"  {line}");
                local.Dispose();
                if (!options.KeepData)
                    TryDelete(local.Root);
            }
        }
        return new ServiceRun(service, clusterLine, results, verification, problems);
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
    /// The service's built assembly, such as the sample's <c>samples/KeyValueStore/bin/CONFIG/TFM/KeyValueStore.dll</c>, under
    /// the repository root (the folder with Raft.sln above this program), preferring this program's
    /// own configuration.
    /// </summary>
    private static bool TryLocateService(ServiceKind service, out string dll, out string error)
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
            .Select(c => Path.Combine(root.FullName, service.Folder, "bin", c, tfm, service.Dll))
            .ToList();
        var found = candidates.FirstOrDefault(File.Exists);
        if (found is null)
        {
            error = $"{service.Name} is not built (looked for {string.Join(", ", candidates)}); run: dotnet build -c Release benchmarks/KeyValueStore.LoadGenerator";
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

/// <summary>What one service's run produced: its cluster, the workloads' results, the final check (null: not run), and what went wrong.</summary>
internal sealed record ServiceRun(ServiceKind Service, string Cluster, IReadOnlyList<WorkloadResult> Results, Verification? Verification, IReadOnlyList<string> Problems);
