using System.Diagnostics;
using Raft.Testing.Simulation;
using Xunit.Abstractions;

namespace Raft.Mutants.Tests;

/// <summary>
/// Proof that the session simulation (<see cref="SimulationOptions.SessionClients"/>) catches a
/// broken session layer: a node that leaves its session table out of snapshots forgets, once it
/// restores one, the sessions and results that make retries safe. The seed that catches it must run
/// clean on the unmutated build.
/// </summary>
public class SessionMutantTests(ITestOutputHelper output)
{
    private const int SeedBudget = 2000;

    [Theory]
    [InlineData(3)]
    [InlineData(5)]
    public void Simulator_catches_sessions_left_out_of_snapshots(int nodes)
    {
        var firstSeed = nodes == 3 ? 0 : 100_000;
        var watch = Stopwatch.StartNew();
        for (var seed = firstSeed; seed < firstSeed + SeedBudget; seed++)
        {
            try
            {
                Run(seed, nodes, Mutation.SessionsNotInSnapshot);
            }
            catch (InvariantViolationException ex) when (ex.Invariant is not "Liveness" and not "Linearizability check inconclusive")
            {
                output.WriteLine($"SessionsNotInSnapshot on {nodes} nodes caught by seed {seed} ({seed - firstSeed + 1} seed(s), {watch.Elapsed.TotalSeconds:F1} s): {ex.Invariant}");
                output.WriteLine(ex.Message);
                var clean = Run(seed, nodes, Mutation.None);
                output.WriteLine($"seed {seed} on the clean build: {clean.SessionAcknowledged} acknowledged session writes, {clean.SessionDuplicatesAnswered} copies answered from the kept result, no violation");
                return;
            }
            catch (InvariantViolationException)
            {
                // A liveness failure proves nothing about the mutant: keep looking.
            }
        }
        Assert.Fail($"The simulator did not catch SessionsNotInSnapshot on {nodes} nodes within {SeedBudget} seeds.");
    }

    private static SimulationResult Run(int seed, int nodes, Mutation mutation) =>
        new SimulatedCluster(new SimulationOptions { Seed = seed, Nodes = nodes, Steps = 4_000, SessionClients = 3, Mutations = mutation, LivenessEventsPerTick = 200 }).Run();
}
