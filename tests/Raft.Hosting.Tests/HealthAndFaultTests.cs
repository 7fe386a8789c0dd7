using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Raft.Hosting.Tests;

/// <summary>The health check's states and the hosted service's reaction to a fault, on one-node hosts.</summary>
[Collection("hosts")]
public sealed class HealthAndFaultTests
{
    private static readonly TimeSpan Eventually = TimeSpan.FromSeconds(30);

    private static Dictionary<string, string?> Settings(int nodeId, int[] ports, string root) =>
        TestHosts.Settings(nodeId, ports, root, TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(600), TimeSpan.FromMilliseconds(50));

    private static async Task<HealthReportEntry> HealthAsync(IHost host) =>
        (await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync()).Entries["raft"];

    [Fact]
    public async Task Unhealthy_before_start_degraded_without_a_leader_unhealthy_once_stopped()
    {
        var root = TestHosts.TempDirectory();
        using var host = TestHosts.Build(Settings(1, TestHosts.FreePorts(3), root)); // the other two members never start
        var before = await HealthAsync(host);
        Assert.Equal(HealthStatus.Unhealthy, before.Status);
        Assert.Contains("not been started", before.Description, StringComparison.Ordinal);

        await host.StartAsync();
        await Task.Delay(TimeSpan.FromSeconds(1)); // longer than an election timeout: it campaigns, nobody answers
        var alone = await HealthAsync(host);
        Assert.Equal(HealthStatus.Degraded, alone.Status);
        Assert.Contains("knows no leader", alone.Description, StringComparison.Ordinal);
        Assert.Equal(0, alone.Data["leader"]);

        await host.StopAsync();
        var stopped = await HealthAsync(host);
        Assert.Equal(HealthStatus.Unhealthy, stopped.Status);
        Assert.Contains("stopped", stopped.Description, StringComparison.Ordinal);
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task A_host_that_joins_is_added_and_promoted_and_the_removed_first_node_reports_unhealthy()
    {
        var root = TestHosts.TempDirectory();
        var ports = TestHosts.FreePorts(2);
        using var first = TestHosts.Build(Settings(1, [ports[0]], root)); // a one-node cluster, grown below
        var joining = Settings(2, [ports[0]], root); // knows where node 1 is, not listed itself
        joining["Raft:Join"] = "true";
        joining["Raft:ListenAddress"] = $"127.0.0.1:{ports[1]}";
        using var second = TestHosts.Build(joining);
        await first.StartAsync();
        await second.StartAsync();
        var one = first.Node();
        var two = second.Node();
        await one.WaitForLeaderAsync().WaitAsync(Eventually);
        await one.ProposeAsync(Encoding.UTF8.GetBytes("before")).AsTask().WaitAsync(Eventually);
        Assert.True(two.Status.Configuration.IsEmpty); // waits to be added; never campaigns

        await one.ChangeMembershipAsync(MembershipChange.AddLearner(2, $"127.0.0.1:{ports[1]}")).WaitAsync(Eventually);
        await TestHosts.Eventually(() => two.Status.AppliedIndex >= one.Status.CommitIndex, Eventually, "the learner caught up");
        await one.ChangeMembershipAsync(MembershipChange.Promote(2)).WaitAsync(Eventually);
        Assert.Equal(HealthStatus.Healthy, (await HealthAsync(first)).Status);

        // Removing node 1, the leader: it commits the change, hands over to node 2 and says it was removed.
        await one.ChangeMembershipAsync(MembershipChange.Remove(1)).WaitAsync(Eventually);
        await TestHosts.Eventually(() => two.Status.Role == RaftRole.Leader, Eventually, "node 2 leads");
        await TestHosts.Eventually(() => one.Status.IsRemoved, Eventually, "node 1 knows it was removed");
        var removed = await HealthAsync(first);
        Assert.Equal(HealthStatus.Unhealthy, removed.Status);
        Assert.Contains("was removed from the cluster", removed.Description, StringComparison.Ordinal);
        await two.ProposeAsync(Encoding.UTF8.GetBytes("after")).AsTask().WaitAsync(Eventually);
        Assert.Equal(HealthStatus.Healthy, (await HealthAsync(second)).Status);

        await second.StopAsync();
        await first.StopAsync();
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task Degraded_while_applies_lag_commits_by_more_than_the_threshold()
    {
        var root = TestHosts.TempDirectory();
        var machine = new RecordingStateMachine();
        using var host = TestHosts.Build(Settings(1, TestHosts.FreePorts(1), root), machine, maxApplyLag: 2);
        await host.StartAsync();
        var node = host.Node();
        await node.WaitForLeaderAsync();
        await TestHosts.Eventually(() => node.Status.AppliedIndex == node.Status.CommitIndex && node.Status.CommitIndex > 0, Eventually, "the no-op applied");
        Assert.Equal(HealthStatus.Healthy, (await HealthAsync(host)).Status);

        machine.Gate.Reset();
        var writes = Enumerable.Range(0, 4).Select(i => node.ProposeAsync(Encoding.UTF8.GetBytes($"w{i}")).AsTask()).ToArray();
        await TestHosts.Eventually(() => node.Status.CommitIndex - node.Status.AppliedIndex >= 3, Eventually, "three committed entries not applied");
        var lagging = await HealthAsync(host);
        Assert.Equal(HealthStatus.Degraded, lagging.Status);
        Assert.Contains("not yet applied (more than 2)", lagging.Description, StringComparison.Ordinal);

        machine.Gate.Set();
        await Task.WhenAll(writes);
        await TestHosts.Eventually(() => node.Status.AppliedIndex == node.Status.CommitIndex, Eventually, "caught up");
        Assert.Equal(HealthStatus.Healthy, (await HealthAsync(host)).Status);
        await host.StopAsync();
        Directory.Delete(root, recursive: true);
    }

    [Fact]
    public async Task A_faulted_node_is_logged_critical_stops_the_application_and_reports_unhealthy()
    {
        var root = TestHosts.TempDirectory();
        var logs = new ListLoggerProvider();
        using var host = TestHosts.Build(Settings(1, TestHosts.FreePorts(1), root), logs: logs);
        await host.StartAsync();
        var node = host.Node();
        await node.WaitForLeaderAsync();
        var stopping = host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        Assert.False(stopping.IsCancellationRequested);

        await Assert.ThrowsAnyAsync<Exception>(() => node.ProposeAsync(Encoding.UTF8.GetBytes("poison")).AsTask());
        await TestHosts.Eventually(() => stopping.IsCancellationRequested, Eventually, "the application asked to stop");
        Assert.Contains(logs.Entries, e => e.Category == typeof(RaftNodeAccessor).Namespace + ".RaftHostedService"
            && e.Level == LogLevel.Critical
            && e.Message.Contains("cannot apply 'poison'", StringComparison.Ordinal)
            && e.Message.Contains("stopping the application", StringComparison.Ordinal));
        var health = await HealthAsync(host);
        Assert.Equal(HealthStatus.Unhealthy, health.Status);
        Assert.Contains("cannot apply 'poison'", (string)health.Data["fault"], StringComparison.Ordinal);

        await host.StopAsync(); // stops cleanly after the fault
        Directory.Delete(root, recursive: true);
    }
}
