using Raft.Testing.Linearizability;
using Xunit.Abstractions;

namespace Raft.Tests.Linearizability;

public sealed class LinearizabilityPerformanceTests(ITestOutputHelper output)
{
    [Fact]
    public void Five_thousand_operations_over_ten_keys_and_sixteen_clients_check_quickly()
    {
        var history = RegisterSimulation.Run(new SimulationSettings(Seed: 42, Clients: 16, Operations: 5_000, Keys: 10, UnknownPercent: 2, FailedPercent: 1));
        Assert.Equal(5_000, history.Count);

        var result = LinearizabilityChecker.Check(history, TimeSpan.FromSeconds(30));
        output.WriteLine(result.ToString());
        foreach (var key in result.Keys)
            output.WriteLine(key.ToString());
        Assert.True(result.IsLinearizable, result.ToString());
        Assert.True(result.Elapsed < TimeSpan.FromSeconds(10), $"took {result.Elapsed}");
    }

    [Fact]
    public void A_stale_read_among_five_thousand_operations_is_found_quickly()
    {
        var history = RegisterSimulation.Run(new SimulationSettings(Seed: 43, Clients: 16, Operations: 5_000, Keys: 10, UnknownPercent: 2, FailedPercent: 1));
        var stale = RegisterSimulation.MakeStaleRead(history, pick: 4_000);
        Assert.NotNull(stale);

        var result = LinearizabilityChecker.Check(history, TimeSpan.FromSeconds(30));
        output.WriteLine(result.ToString());
        Assert.False(result.IsLinearizable);
        Assert.Equal(stale.Key, result.Failure?.Key);
        Assert.True(result.Elapsed < TimeSpan.FromSeconds(10), $"took {result.Elapsed}");
    }

    [Fact]
    public void Two_thousand_operations_on_one_hot_key_with_sixteen_clients_check_quickly()
    {
        var history = RegisterSimulation.Run(new SimulationSettings(Seed: 7, Clients: 16, Operations: 2_000, Keys: 1, UnknownPercent: 2, FailedPercent: 1));

        var result = LinearizabilityChecker.Check(history, TimeSpan.FromSeconds(30));
        output.WriteLine(result.ToString());
        output.WriteLine(result.Keys[0].ToString());
        Assert.True(result.IsLinearizable, result.ToString());
        Assert.True(result.Elapsed < TimeSpan.FromSeconds(10), $"took {result.Elapsed}");
    }
}
