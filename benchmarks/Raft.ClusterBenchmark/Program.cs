using System.Runtime;
using System.Runtime.InteropServices;
using Raft.ClusterBenchmark;

// Throughput and latency of a 3-node cluster of this library next to DotNext.Net.Cluster, plus the
// floor (loopback round trip, fsync). See README.md beside this file.
BenchmarkOptions options;
try
{
    options = BenchmarkOptions.Parse(args);
}
catch (Exception ex) when (ex is ArgumentException or FormatException)
{
    Console.Error.WriteLine(ex.Message);
    Console.Error.WriteLine();
    Console.Error.WriteLine(BenchmarkOptions.Usage);
    return 2;
}
if (options.ShowHelp)
{
    Console.WriteLine(BenchmarkOptions.Usage);
    return 0;
}

var runRoot = Path.Combine(options.DataRoot, $"raft-cluster-bench-{Guid.NewGuid():N}");
Directory.CreateDirectory(runRoot);
var environment =
    $"Machine: {Environment.ProcessorCount} logical cores, {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription}, "
    + $"GC: {(GCSettings.IsServerGC ? "server" : "workstation")}{(GCSettings.LatencyMode == GCLatencyMode.Batch ? "" : " concurrent")}, "
#if DEBUG
    + "DEBUG BUILD (use -c Release), "
#endif
    + $"data: {runRoot}";
Console.WriteLine(environment);
Console.WriteLine($"Workloads: {string.Join(", ", options.Workloads.Select(w => w.Name))}; {options.Duration.TotalSeconds} s measured after {options.Warmup.TotalSeconds} s warm-up; "
    + $"{options.Rounds} round(s); DotNext: {(options.SkipDotNext ? "skipped" : "DotNext.Net.Cluster 6.12.0")}");

var exitCode = 0;
try
{
    var floors = new List<FloorResult>();
    // What append + fsync costs on this disk at rest; between runs the program waits until the disk is back near it.
    var restingFsync = await Floor.MeasureAsync(runRoot, quick: true);
    var restingFsyncNanoseconds = restingFsync.AppendFsync.PercentileNanoseconds(50);
    async Task SettleAsync()
    {
        var waited = await Floor.SettleDiskAsync(runRoot, restingFsyncNanoseconds, TimeSpan.FromSeconds(20));
        if (waited > TimeSpan.FromSeconds(1))
            Console.WriteLine($"  (waited {waited.TotalSeconds:0.0} s for the disk to settle)");
    }

    // Every run starts fresh clusters, but the process's JIT state carries over: compile (and let
    // tiered compilation promote) both sides' hot paths once before anything is measured.
    Console.WriteLine("JIT warm-up, not measured...");
    foreach (var side in options.SkipDotNext ? ["ours"] : new[] { "ours", "DotNext" })
    {
        var directory = Path.Combine(runRoot, $"000-jit-warmup-{side}");
        Directory.CreateDirectory(directory);
        var seconds = TimeSpan.FromSeconds(options.Quick ? 1 : 3);
        var warmups = await RunOneAsync(side, directory, [new Workload(16, 4096), new Workload(1, 100)], 0, TimeSpan.Zero, seconds);
        foreach (var warmup in warmups)
            Console.WriteLine(Report.RunLine(warmup).Replace("round 0]", "warm-up]", StringComparison.Ordinal));
        TryDelete(directory);
    }

    var results = new List<RunResult>();
    var runNumber = 0;
    foreach (var workload in options.Workloads)
    {
        Console.WriteLine($"Workload {workload.Name}: {workload.Proposers} proposer(s) x {workload.PayloadBytes} B");
        // The floor right before each workload, so that each is compared with the disk as it was then.
        if (!options.SkipFloor)
        {
            await SettleAsync();
            floors.Add(await MeasureFloorAsync(runRoot, options.Quick, $"before {workload.Name}", workload));
        }
        for (var round = 1; round <= options.Rounds; round++)
        {
            // Alternate sides so that drift of the machine (other load, disk state) hits both alike.
            foreach (var side in options.SkipDotNext ? ["ours"] : new[] { "ours", "DotNext" })
            {
                var directory = Path.Combine(runRoot, $"{++runNumber:000}-{side}-{workload.Name}-r{round}");
                Directory.CreateDirectory(directory);
                await SettleAsync();
                var result = (await RunOneAsync(side, directory, [workload], round, options.Warmup, options.Duration))[0];
                results.Add(result);
                Console.WriteLine(Report.RunLine(result));
                if (result.Problem is not null && side == "ours")
                    exitCode = 1;
                if (!options.KeepData)
                    TryDelete(directory);
                // Garbage of one run must not be collected inside the next run's window.
                GC.Collect();
                GC.WaitForPendingFinalizers();
                GC.Collect();
            }
        }
    }
    if (!options.SkipFloor)
    {
        await SettleAsync();
        floors.Add(await MeasureFloorAsync(runRoot, options.Quick, "end", next: null));
    }
    Console.WriteLine(Report.Markdown(options, floors, results, environment));
}
finally
{
    if (!options.KeepData)
        TryDelete(runRoot);
}
return exitCode;

static async Task<FloorResult> MeasureFloorAsync(string directory, bool quick, string label, Workload? next)
{
    DiskSync.FlushEverything();
    var floor = await Floor.MeasureAsync(directory, quick) with { Label = label, Next = next };
    Console.WriteLine($"  floor ({label}): loopback round trip p50 {floor.RoundTrip.PercentileNanoseconds(50) / 1e3:0.0} µs, append 100 B + fsync p50 {floor.AppendFsync.PercentileNanoseconds(50) / 1e3:0.0} µs (3 at once: {floor.ConcurrentAppendFsync.PercentileNanoseconds(50) / 1e3:0.0} µs)");
    return floor;
}

// Starts a fresh cluster of one side in directory, runs the workloads on it one after the other, stops it.
static async Task<List<RunResult>> RunOneAsync(string side, string directory, IReadOnlyList<Workload> workloads, int round, TimeSpan warmup, TimeSpan duration)
{
    var results = new List<RunResult>();
    DiskSync.FlushEverything(); // start from a clean disk: no writeback of the previous run left
    IClusterUnderTest cluster = side == "ours"
        ? new RaftClusterUnderTest(directory)
        : new DotNextClusterUnderTest(directory, workloads.Max(w => w.Proposers));
    try
    {
        using (var startTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            try
            {
                await cluster.StartAsync(startTimeout.Token);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                results.AddRange(workloads.Select(w => new RunResult(side, w, round) { Problem = $"the cluster did not start: {ex.GetType().Name}: {ex.Message}" }));
                return results;
            }
        }
        foreach (var workload in workloads)
            results.Add(await LoadRunner.RunAsync(cluster, workload, round, warmup, duration));
    }
    catch (Exception ex) when (ex is not OutOfMemoryException)
    {
        results.AddRange(workloads.Skip(results.Count).Select(w => new RunResult(side, w, round) { Problem = $"the run failed: {ex}" }));
    }
    finally
    {
        try
        {
            var dispose = cluster.DisposeAsync().AsTask();
            if (await Task.WhenAny(dispose, Task.Delay(TimeSpan.FromSeconds(30))) != dispose)
                Console.WriteLine($"  warning: {side} cluster did not stop within 30 s; abandoned");
            else
                await dispose;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Console.WriteLine($"  warning: stopping the {side} cluster failed: {ex.GetType().Name}: {ex.Message}");
        }
    }
    return results;
}

static void TryDelete(string directory)
{
    try
    {
        if (Directory.Exists(directory))
            Directory.Delete(directory, recursive: true);
    }
    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
    {
        Console.WriteLine($"  warning: could not delete {directory}: {ex.Message}");
    }
}
