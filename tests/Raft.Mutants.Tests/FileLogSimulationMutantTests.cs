using System.Diagnostics;
using Raft.Testing.Simulation;
using Xunit.Abstractions;

namespace Raft.Mutants.Tests;

/// <summary>
/// Proof that the simulator, running the shipped <see cref="FileLogStore"/> on every node
/// (<see cref="SimulationOptions.FileLogStore"/>), catches a store that claims durability but never
/// fsyncs (<see cref="Mutation.FileLogNoFsync"/>): a cluster-level safety invariant must break within
/// the seed budget, and the catching seed must then run clean with the mutation off.
/// </summary>
public class FileLogSimulationMutantTests(ITestOutputHelper output)
{
    // Stops at the first catch, so the budget costs time only when the bug is hard to expose.
    private const int SeedBudget = 300;

    [Theory]
    [InlineData(3)]
    [InlineData(5)]
    public void Simulator_on_file_logs_catches_FileLogNoFsync(int nodes)
    {
        var firstSeed = nodes == 3 ? 0 : 100_000;
        var watch = Stopwatch.StartNew();
        var refusedRecoveries = 0;
        for (var seed = firstSeed; seed < firstSeed + SeedBudget; seed++)
        {
            try
            {
                Run(seed, nodes, Mutation.FileLogNoFsync);
            }
            catch (InvariantViolationException ex) when (ex.Invariant is not "Liveness" and not "Linearizability check inconclusive" and not SimulatedFileLog.RecoveryInvariant)
            {
                // Only a Raft safety invariant counts: what the cluster promised its clients, or its own rules.
                output.WriteLine($"{Mutation.FileLogNoFsync} on {nodes} nodes with file logs caught by seed {seed} ({seed - firstSeed + 1} seed(s), {watch.Elapsed.TotalSeconds:F1} s; {refusedRecoveries} earlier seed(s) ended in a refused recovery): {ex.Invariant}");
                output.WriteLine(ex.Message);
                // The same seed on the clean store: the violation is the mutant's, not the seed's.
                var clean = Run(seed, nodes, Mutation.None);
                output.WriteLine($"seed {seed} with the mutation off: {clean.AcknowledgedWrites} acknowledged writes, {clean.Crashes} crashes, {clean.TornWrites} torn writes, no violation");
                return;
            }
            catch (InvariantViolationException ex) when (ex.Invariant == SimulatedFileLog.RecoveryInvariant)
            {
                // The store refusing to reopen what the lost fsyncs left also shows the bug, but the
                // promise at stake is the cluster's: keep looking for a safety violation.
                refusedRecoveries++;
            }
            catch (InvariantViolationException)
            {
                // A liveness failure (or an inconclusive check) under the mutant proves nothing about it.
            }
        }
        Assert.Fail($"The simulator on file logs did not catch {Mutation.FileLogNoFsync} on {nodes} nodes within {SeedBudget} seeds ({refusedRecoveries} ended in a refused recovery).");
    }

    [Fact]
    public void Unmutated_build_runs_clean_on_file_logs()
    {
        // The mutant build itself, with no mutation, must be as clean on file logs as the shipped build.
        for (var seed = 0; seed < 50; seed++)
            Run(seed, 3, Mutation.None);
    }

    private static SimulationResult Run(int seed, int nodes, Mutation mutation) =>
        new SimulatedCluster(new SimulationOptions { Seed = seed, Nodes = nodes, FileLogStore = true, Mutations = mutation, LivenessEventsPerTick = 200 }).Run();
}
