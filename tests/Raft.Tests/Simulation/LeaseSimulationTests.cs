using System.Collections.Concurrent;
using Raft.Testing.Simulation;
using Xunit.Abstractions;

namespace Raft.Tests.Simulation;

/// <summary>
/// The simulator with lease reads on (<see cref="SimulationOptions.LeaseReads"/>, CheckQuorum forced
/// on): leaders answer reads from their lease under every fault, with and without membership changes,
/// and every history must stay linearizable. The simulated clocks never drift, so the drift margin
/// itself is pinned by the core's lease tests and the LeaseWithoutDriftBound mutant.
/// </summary>
public class LeaseSimulationTests(ITestOutputHelper output)
{
    private const int Steps = 4_000;

    [Fact]
    public void Lease_reads_stay_linearizable_on_three_nodes() =>
        Run(count: SimulationTests.SeedsPerRun(300), seed => new SimulationOptions { Seed = seed, Nodes = 3, Steps = Steps, CheckQuorum = true, LeaseReads = true, ReadFraction = 0.5 });

    [Fact]
    public void Lease_reads_stay_linearizable_on_five_nodes_through_membership_changes() =>
        Run(count: SimulationTests.SeedsPerRun(200), seed => new SimulationOptions
        {
            Seed = 300_000 + seed, Nodes = 5, Steps = Steps, CheckQuorum = true, LeaseReads = true, ReadFraction = 0.5, MembershipChanges = 0.05, InitialVoters = 3,
        });

    private void Run(int count, Func<int, SimulationOptions> options)
    {
        var failures = new ConcurrentBag<InvariantViolationException>();
        var results = new ConcurrentBag<SimulationResult>();
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, seed =>
        {
            try
            {
                results.Add(new SimulatedCluster(options(seed)).Run());
            }
            catch (InvariantViolationException ex)
            {
                failures.Add(ex);
            }
        });
        if (!failures.IsEmpty)
            Assert.Fail(string.Join(Environment.NewLine + Environment.NewLine, failures.OrderBy(f => f.Seed).Take(3).Select(f => f.ToString())));
        var all = results.ToArray();
        long reads = all.Sum(r => r.Reads), lease = all.Sum(r => r.LeaseReads);
        output.WriteLine($"{count} seeds: {reads:N0} reads, {lease:N0} confirmed from a lease, {all.Sum(r => r.MembershipChanges):N0} membership changes, {all.Sum(r => r.LeaderChanges):N0} leader changes, {all.Sum(r => r.Crashes):N0} crashes");
        Assert.True(lease >= count * 5L, $"too few reads served from a lease: {lease:N0} in {count} seeds");
        Assert.True(lease < reads, "every read came from a lease: the ReadIndex path went unexercised");
    }
}
