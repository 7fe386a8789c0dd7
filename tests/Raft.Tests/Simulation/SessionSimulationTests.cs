using System.Collections.Concurrent;
using System.Diagnostics;
using Raft.Testing.Simulation;
using Xunit.Abstractions;

namespace Raft.Tests.Simulation;

/// <summary>
/// The simulator with session clients (<see cref="SimulationOptions.SessionClients"/>): commands
/// re-sent as duplicates, delayed copies and retries across leader changes, forwarding timeouts,
/// crashes and snapshot installs must each be applied exactly once, and every acknowledgement must
/// carry the first result. CI budget: 300 seeds of 4,000 steps on 3 nodes and 100 on 5 (a few
/// seconds). Longer soaks scale with RAFT_SIM_SEEDS as <see cref="SimulationTests"/> do.
/// </summary>
public class SessionSimulationTests(ITestOutputHelper output)
{
    private const int Steps = 4_000;

    [Fact]
    public void Session_commands_apply_exactly_once_on_three_nodes() => RunSeeds(nodes: 3, firstSeed: 0, count: SimulationTests.SeedsPerRun(300));

    [Fact]
    public void Session_commands_apply_exactly_once_on_five_nodes() => RunSeeds(nodes: 5, firstSeed: 100_000, count: SimulationTests.SeedsPerRun(100));

    /// <summary>Replays one seed with session clients: RAFT_SIM_SEED=N [RAFT_SIM_NODES=3|5] (the seed a failure or the mutant test printed).</summary>
    [Fact]
    public void Replay()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("RAFT_SIM_SEED"), out var s) ? s : 0;
        var nodes = int.TryParse(Environment.GetEnvironmentVariable("RAFT_SIM_NODES"), out var n) ? n : (seed >= 100_000 ? 5 : 3);
        var result = new SimulatedCluster(new SimulationOptions { Seed = seed, Nodes = nodes, Steps = Steps, SessionClients = 3 }).Run();
        output.WriteLine(result.ToString());
        Assert.True(result.SessionAcknowledged > 0);
    }

    [Fact]
    public void Sessions_off_leave_every_seed_as_it_was()
    {
        // The knob draws nothing from the seed's random source when it is 0.
        var before = new SimulatedCluster(new SimulationOptions { Seed = 7, Steps = 2_000 }).Run();
        var off = new SimulatedCluster(new SimulationOptions { Seed = 7, Steps = 2_000, SessionClients = 0 }).Run();
        Assert.Equal(before, off);
        Assert.Equal(0, off.SessionWrites);
    }

    [Fact]
    public void A_session_seed_replays_exactly()
    {
        var a = new SimulatedCluster(new SimulationOptions { Seed = 11, Steps = Steps, SessionClients = 3 }).Run();
        var b = new SimulatedCluster(new SimulationOptions { Seed = 11, Steps = Steps, SessionClients = 3 }).Run();
        Assert.Equal(a, b);
    }

    private void RunSeeds(int nodes, int firstSeed, int count)
    {
        var failures = new ConcurrentBag<InvariantViolationException>();
        var results = new ConcurrentBag<SimulationResult>();
        var watch = Stopwatch.StartNew();
        Parallel.For(firstSeed, firstSeed + count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, seed =>
        {
            try
            {
                results.Add(new SimulatedCluster(new SimulationOptions { Seed = seed, Nodes = nodes, Steps = Steps, SessionClients = 3 }).Run());
            }
            catch (InvariantViolationException ex)
            {
                failures.Add(ex);
            }
        });
        var all = results.ToArray();
        output.WriteLine($"{count} seeds on {nodes} nodes in {watch.Elapsed.TotalSeconds:F1} s: " +
            $"{all.Sum(r => r.SessionWrites)} session writes, {all.Sum(r => r.SessionAcknowledged)} acknowledged, " +
            $"{all.Sum(r => r.SessionRetries)} copies re-sent, {all.Sum(r => r.SessionDuplicatesAnswered)} answered from the kept result, " +
            $"{all.Sum(r => r.SnapshotInstalls)} snapshot installs, {all.Sum(r => r.Crashes)} crashes, {all.Sum(r => r.LeaderChanges)} leader changes");
        if (!failures.IsEmpty)
            Assert.Fail(string.Join(Environment.NewLine + Environment.NewLine, failures.OrderBy(f => f.Seed).Take(3).Select(f => f.ToString())));
        // The seeds must have exercised what they claim to test.
        Assert.True(all.Sum(r => r.SessionAcknowledged) >= count * 5, "too few acknowledged session writes");
        Assert.True(all.Sum(r => r.SessionDuplicatesAnswered) >= count / 5, "too few copies answered from the kept result");
        Assert.True(all.Sum(r => r.SnapshotInstalls) >= count / 10, "too few snapshot installs");
    }
}
