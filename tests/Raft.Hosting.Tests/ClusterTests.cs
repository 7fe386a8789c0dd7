using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Raft.Hosting.Tests;

[CollectionDefinition("hosts", DisableParallelization = true)]
public sealed class HostsCollection;

/// <summary>Three generic hosts, each running one node from AddRaftNode, on loopback TCP and file stores.</summary>
[Collection("hosts")]
public sealed class ClusterTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Eventually = TimeSpan.FromSeconds(30);

    // Elections need at least two seconds of silence: a gap shorter than that cannot have come from
    // one. (Long, so that a loaded 2-core CI machine stalling a few hundred ms is not mistaken for one.)
    private static readonly TimeSpan ElectionMin = TimeSpan.FromSeconds(2);

    private sealed class Cluster : IAsyncDisposable
    {
        public required string DataRoot { get; init; }

        public required IHost[] Hosts { get; init; }

        public required RecordingStateMachine[] StateMachines { get; init; }

        public required ListLoggerProvider[] Logs { get; init; }

        public static async Task<Cluster> StartAsync()
        {
            var ports = TestHosts.FreePorts(3);
            var root = TestHosts.TempDirectory();
            var machines = Enumerable.Range(0, 3).Select(_ => new RecordingStateMachine()).ToArray();
            var logs = Enumerable.Range(0, 3).Select(_ => new ListLoggerProvider()).ToArray();
            var hosts = Enumerable.Range(1, 3)
                .Select(id => TestHosts.Build(TestHosts.Settings(id, ports, root, ElectionMin, ElectionMin * 1.5, TimeSpan.FromMilliseconds(100)), machines[id - 1], logs[id - 1]))
                .ToArray();
            await Task.WhenAll(hosts.Select(h => h.StartAsync()));
            return new Cluster { DataRoot = root, Hosts = hosts, StateMachines = machines, Logs = logs };
        }

        public async Task<IHost> LeaderAsync(IEnumerable<IHost>? among = null) =>
            await TestHosts.Eventually(() => (among ?? Hosts).FirstOrDefault(h => h.Node().Status.Role == RaftRole.Leader), Eventually, "a leader");

        public async ValueTask DisposeAsync()
        {
            foreach (var host in Hosts)
            {
                await host.StopAsync();
                host.Dispose();
            }
            Directory.Delete(DataRoot, recursive: true);
        }
    }

    private static ReadOnlyMemory<byte> Command(string text) => Encoding.UTF8.GetBytes(text);

    [Fact]
    public async Task Three_hosts_elect_a_leader_commit_a_write_everywhere_and_report_healthy()
    {
        await using var cluster = await Cluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Hosts.First(h => h != leader);
        await leader.Node().ProposeAsync(Command("through-leader"));
        await follower.Node().ProposeAsync(Command("through-follower")); // forwarded
        foreach (var machine in cluster.StateMachines)
            await TestHosts.Eventually(() => machine.Applied.SequenceEqual(["through-leader", "through-follower"]), Eventually, "both writes applied on every node");
        Assert.All(cluster.Hosts, h => Assert.True(Directory.EnumerateFiles(Path.Combine(h.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<RaftHostingOptions>>().Value.DataDirectory!, "log")).Any()));

        foreach (var host in cluster.Hosts)
        {
            var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
            var entry = report.Entries["raft"];
            Assert.Equal(HealthStatus.Healthy, entry.Status);
            var status = host.Node().Status;
            Assert.Equal(status.Role.ToString(), entry.Data["role"]);
            Assert.Equal(leader.Node().Id, entry.Data["leader"]);
            Assert.True((long)entry.Data["term"] >= 1);
            Assert.True((long)entry.Data["commit"] >= 3); // two no-op-free writes after the leader's no-op
            Assert.True((long)entry.Data["applied"] <= (long)entry.Data["commit"]);
        }
    }

    /// <summary>
    /// "No gap": a client proposing every 50 ms through the nodes that keep running (alternately)
    /// never waits ElectionTimeoutMin (2 s) or more between the last proposal acknowledged before
    /// the leader's host begins to stop and the first one acknowledged after it stopped; and sees at
    /// most one failed proposal in a row. Without the hand-over the followers must first hear nothing
    /// for ElectionTimeoutMin before one campaigns, so that gap would be longer (measured: 3.2 s
    /// with the hosted service's transferLeadership set to false, against 50-150 ms with it).
    /// </summary>
    [Fact]
    public async Task Stopping_the_leaders_host_hands_leadership_over_with_no_gap_for_a_client_polling_every_50_ms()
    {
        await using var cluster = await Cluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        var oldTerm = leader.Node().Status.Term;
        var remaining = cluster.Hosts.Where(h => h != leader).Select(h => h.Node()).ToArray();
        await TestHosts.Eventually(() => remaining.All(n => n.Status.LeaderId == leader.Node().Id), Eventually, "followers know the leader");

        var polls = new List<(TimeSpan Start, TimeSpan End, bool Ok, string Outcome)>();
        var clock = Stopwatch.StartNew();
        TimeSpan? stopStarted = null, stopEnded = null;
        using var done = new CancellationTokenSource();
        var client = Task.Run(async () =>
        {
            int i = 0;
            var next = clock.Elapsed;
            while (!done.IsCancellationRequested)
            {
                var start = clock.Elapsed;
                var node = remaining[i % remaining.Length];
                try
                {
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    await node.ProposeAsync(Command($"poll-{i}"), timeout.Token);
                    polls.Add((start, clock.Elapsed, true, $"ok via {node.Id}"));
                }
                catch (Exception ex) when (ex is RaftException or OperationCanceledException or TimeoutException)
                {
                    polls.Add((start, clock.Elapsed, false, $"{ex.GetType().Name} via {node.Id}: {ex.Message}"));
                }
                i++;
                next += TimeSpan.FromMilliseconds(50);
                var wait = next - clock.Elapsed;
                if (wait > TimeSpan.Zero)
                    await Task.Delay(wait);
                else
                    next = clock.Elapsed;
            }
        });

        await Task.Delay(500); // a baseline of acknowledged polls
        stopStarted = clock.Elapsed;
        await leader.StopAsync();
        stopEnded = clock.Elapsed;
        await Task.Delay(1000); // polls after the stop
        await done.CancelAsync();
        await client;

        foreach (var poll in polls)
            output.WriteLine($"{poll.Start.TotalMilliseconds,8:F0} {poll.End.TotalMilliseconds,8:F0} {poll.Outcome}");
        output.WriteLine($"leader {leader.Node().Id} stopped from {stopStarted.Value.TotalMilliseconds:F0} to {stopEnded.Value.TotalMilliseconds:F0} ms");

        var acks = polls.Where(p => p.Ok).Select(p => p.End).ToList();
        Assert.Contains(acks, t => t < stopStarted);
        Assert.Contains(acks, t => t > stopEnded);
        var longestGap = acks.Zip(acks.Skip(1), (a, b) => b - a).Max();
        var stopGap = acks.First(t => t > stopEnded) - acks.Last(t => t < stopStarted);
        int longestFailureRun = 0, run = 0;
        foreach (var poll in polls)
        {
            run = poll.Ok ? 0 : run + 1;
            longestFailureRun = Math.Max(longestFailureRun, run);
        }
        output.WriteLine($"across the stop: {stopGap.TotalMilliseconds:F0} ms between acknowledged polls; longest gap of the whole run: {longestGap.TotalMilliseconds:F0} ms; longest run of failed polls: {longestFailureRun}");
        Assert.True(stopGap < ElectionMin, $"the client waited {stopGap.TotalMilliseconds:F0} ms between the last write acknowledged before the stop and the first after it");
        Assert.True(longestFailureRun <= 1, $"{longestFailureRun} polls in a row failed");

        // Leadership moved by a hand-over (one term later), not by an election after a timeout.
        var newLeader = await TestHosts.Eventually(() => remaining.FirstOrDefault(n => n.Status.Role == RaftRole.Leader), Eventually, "a new leader");
        Assert.Equal(oldTerm + 1, newLeader.Status.Term);
        Assert.Contains(cluster.Logs[leader.Node().Id - 1].Entries, e => e.Message.Contains("handed leadership to node", StringComparison.Ordinal));
    }
}
