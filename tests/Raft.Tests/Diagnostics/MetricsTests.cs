using System.Text;

namespace Raft.Tests.Diagnostics;

/// <summary>
/// The node's meter: named and versioned in the .NET convention, tagged with the node id, and
/// the instruments docs/observability.md lists, each recorded where the docs say.
/// </summary>
[Collection(nameof(TelemetryCollection))]
public sealed class MetricsTests
{
    private static ReadOnlyMemory<byte> Command(string text) => Encoding.UTF8.GetBytes(text);

    /// <summary>Every instrument of a node, with its unit: what docs/observability.md documents.</summary>
    public static readonly (string Name, string Unit)[] NodeInstruments =
    [
        ("raft.elections", "{election}"),
        ("raft.role.changes", "{change}"),
        ("raft.proposals", "{proposal}"),
        ("raft.messages.rejected", "{message}"),
        ("raft.snapshot.sends", "{snapshot}"),
        ("raft.snapshot.installs", "{snapshot}"),
        ("raft.snapshot.created", "{snapshot}"),
        ("raft.append.duration", "s"),
        ("raft.apply.duration", "s"),
        ("raft.proposal.commit.duration", "s"),
        ("raft.proposal.apply.duration", "s"),
        ("raft.storage.fsync.duration", "s"),
        ("raft.term", "{term}"),
        ("raft.commit_index", "{index}"),
        ("raft.applied_index", "{index}"),
        ("raft.last_log_index", "{index}"),
        ("raft.follower.lag", "{entry}"),
        ("raft.transport.messages.sent", "{message}"),
        ("raft.transport.bytes.sent", "By"),
        ("raft.transport.messages.received", "{message}"),
        ("raft.transport.bytes.received", "By"),
        ("raft.transport.messages.dropped", "{message}"),
    ];

    [Fact]
    public async Task The_meter_is_named_Raft_Node_versioned_and_tagged_with_the_node_id()
    {
        await using var cluster = await TelemetryCluster.StartAsync(size: 1);
        using var recorder = new MetricsRecorder(cluster.Meters);

        Assert.Equal("Raft.Node", RaftTelemetry.MeterName);
        Assert.Equal("Raft.Node", RaftTelemetry.ActivitySourceName);
        Assert.False(string.IsNullOrEmpty(RaftTelemetry.Version));
        Assert.DoesNotContain('+', RaftTelemetry.Version);
        lock (recorder.Published)
        {
            Assert.NotEmpty(recorder.Published);
            Assert.All(recorder.Published, instrument =>
            {
                Assert.Equal(RaftTelemetry.MeterName, instrument.Meter.Name);
                Assert.Equal(RaftTelemetry.Version, instrument.Meter.Version);
                Assert.Contains(new KeyValuePair<string, object?>("raft.node.id", 1), instrument.Meter.Tags!);
            });
            var published = recorder.Published.Select(i => (i.Name, i.Unit ?? "")).Order().ToArray();
            Assert.Equal(NodeInstruments.Order().ToArray(), published);
            Assert.All(recorder.Published, instrument => Assert.False(string.IsNullOrWhiteSpace(instrument.Description), instrument.Name));
        }
    }

    [Fact]
    public void The_observability_guide_documents_every_instrument_with_its_unit()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Raft.sln")))
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("Raft.sln not found above the test binaries.");
        var rows = File.ReadAllLines(Path.Combine(root, "docs", "observability.md"))
            .Where(l => l.StartsWith("| `raft.", StringComparison.Ordinal) && (l.Contains("| Counter |", StringComparison.Ordinal) || l.Contains("| Histogram |", StringComparison.Ordinal) || l.Contains("| ObservableGauge |", StringComparison.Ordinal)))
            .ToArray();

        foreach (var (name, unit) in NodeInstruments)
        {
            var row = Assert.Single(rows, r => r.StartsWith($"| `{name}` |", StringComparison.Ordinal));
            Assert.Contains($"| `{unit}` |", row, StringComparison.Ordinal);
        }
        Assert.Equal(NodeInstruments.Length, rows.Length);
    }

    [Fact]
    public async Task Role_changes_and_elections_are_counted_with_the_raft_role_tag()
    {
        await using var cluster = await TelemetryCluster.StartAsync();
        using var recorder = new MetricsRecorder(cluster.Meters);

        var leader = await cluster.LeaderAsync();

        var changes = recorder.Of("raft.role.changes", leader.Id);
        Assert.Contains(changes, c => Equals(c.Tag("raft.role"), "Leader"));
        Assert.All(changes, c => Assert.Equal(["raft.role"], c.Tags.Keys));
        Assert.Contains(recorder.Of("raft.elections"), e => e.NodeId == leader.Id);
    }

    [Fact]
    public async Task Proposal_latencies_are_recorded_per_batch_in_seconds_from_propose_to_commit_and_to_apply()
    {
        await using var cluster = await TelemetryCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        using var recorder = new MetricsRecorder(cluster.Meters);
        cluster.Network.SetDelay(TimeSpan.FromMilliseconds(5), TimeSpan.FromMilliseconds(5)); // a round trip takes virtual time

        for (var i = 0; i < 5; i++)
            await cluster.RunAsync(leader.ProposeAsync(Command($"c{i}")).AsTask(), $"proposal {i}");

        var commits = recorder.Of("raft.proposal.commit.duration", leader.Id);
        var applies = recorder.Of("raft.proposal.apply.duration", leader.Id);
        // One proposal at a time: each is a batch of its own, measured once on each path.
        Assert.Equal(5, commits.Count);
        Assert.Equal(5, applies.Count);
        Assert.All(commits.Concat(applies), m => Assert.Equal("s", m.Unit));
        // Replication takes at least a network round on the virtual clock; applying comes after committing.
        Assert.All(commits, m => Assert.True(m.Value > 0, $"commit latency {m.Value}"));
        for (var i = 0; i < 5; i++)
            Assert.True(applies[i].Value >= commits[i].Value, $"apply latency {applies[i].Value} < commit latency {commits[i].Value}");
        // Only the leader measures.
        Assert.All(cluster.Followers(leader), f => Assert.Empty(recorder.Of("raft.proposal.commit.duration", f.Id)));
    }

    [Fact]
    public async Task Proposals_accepted_together_are_measured_once()
    {
        await using var cluster = await TelemetryCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        using var recorder = new MetricsRecorder(cluster.Meters);

        // Twenty proposals accepted without the clock moving: one batch. The leader appends them on
        // its own loop, so wait (in real time, the virtual clock still) until all twenty are in its
        // log; moving the clock earlier would split them between two marks.
        var before = leader.Status.LastLogIndex;
        var proposals = Enumerable.Range(0, 20).Select(i => leader.ProposeAsync(Command($"b{i}")).AsTask()).ToArray();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (leader.Status.LastLogIndex < before + 20)
        {
            Assert.True(DateTime.UtcNow < deadline, "the leader did not append twenty proposals within 30 s");
            await Task.Delay(1);
        }
        await cluster.RunAsync(Task.WhenAll(proposals), "twenty proposals");

        Assert.Single(recorder.Of("raft.proposal.commit.duration", leader.Id));
        Assert.Single(recorder.Of("raft.proposal.apply.duration", leader.Id));
    }

    [Fact]
    public async Task A_forwarded_proposal_is_measured_by_the_leader_that_appended_it()
    {
        await using var cluster = await TelemetryCluster.StartAsync(forwardToLeader: true);
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();
        using var recorder = new MetricsRecorder(cluster.Meters);

        await cluster.RunAsync(follower.ProposeAsync(Command("f")).AsTask(), "a forwarded proposal");
        await cluster.RunUntilAsync(() => recorder.Of("raft.proposal.apply.duration", leader.Id).Count == 1, "the leader to apply it");

        Assert.Single(recorder.Of("raft.proposal.commit.duration", leader.Id));
        Assert.Empty(recorder.Of("raft.proposal.commit.duration", follower.Id));
    }

    [Fact]
    public async Task Follower_lag_on_the_leader_is_its_last_index_minus_each_followers_match_index()
    {
        await using var cluster = await TelemetryCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        var followers = cluster.Followers(leader).ToArray();
        var (lagging, other) = (followers[0], followers[1]);
        using var recorder = new MetricsRecorder(cluster.Meters);

        cluster.Network.SetFilter(m => !(m is AppendEntries && m.To == lagging.Id));
        for (var i = 0; i < 4; i++)
            await cluster.RunAsync(leader.ProposeAsync(Command($"l{i}")).AsTask(), $"proposal {i} without the lagging follower");
        await cluster.RunUntilAsync(() => leader.Status.Progress.GetValueOrDefault(other.Id) == leader.Status.LastLogIndex, "the other follower to catch up");

        var status = leader.Status;
        var lag = recorder.Observe("raft.follower.lag");
        Assert.Equal(2, lag.Count); // the leader's two followers; followers report none
        Assert.All(lag, m => Assert.Equal(leader.Id, m.NodeId));
        var laggingLag = Assert.Single(lag, m => Equals(m.Tag("raft.peer.id"), lagging.Id));
        Assert.Equal(status.LastLogIndex - status.Progress[lagging.Id], laggingLag.Value);
        Assert.True(laggingLag.Value >= 4, $"lag {laggingLag.Value}");
        Assert.Equal(0, Assert.Single(lag, m => Equals(m.Tag("raft.peer.id"), other.Id)).Value);

        // The index gauges, per node.
        Assert.Equal(status.LastLogIndex, Assert.Single(recorder.Observe("raft.last_log_index", leader.Id)).Value);
        Assert.Equal(status.Term, Assert.Single(recorder.Observe("raft.term", leader.Id)).Value);

        cluster.Network.SetFilter(null);
        await cluster.RunUntilAsync(() => recorder.Observe("raft.follower.lag").All(m => m.Value == 0), "the lagging follower to catch up");
    }

    [Fact]
    public async Task Snapshot_sends_installs_and_creations_are_counted()
    {
        await using var cluster = await TelemetryCluster.StartAsync(snapshotInterval: 5);
        var leader = await cluster.LeaderAsync();
        var lagging = cluster.Followers(leader).First();
        using var recorder = new MetricsRecorder(cluster.Meters);

        // The follower misses enough entries that the leader's log no longer has them.
        cluster.Network.SetFilter(m => m.To != lagging.Id && m.From != lagging.Id);
        for (var i = 0; i < 12; i++)
            await cluster.RunAsync(leader.ProposeAsync(Command($"s{i}")).AsTask(), $"proposal {i}");
        await cluster.RunUntilAsync(() => recorder.Of("raft.snapshot.created", leader.Id).Count > 0, "the leader to take a snapshot");
        cluster.Network.SetFilter(null);
        await cluster.RunUntilAsync(() => cluster.Machines[lagging.Id].Commands.Length == 12, "the follower to catch up from the snapshot");

        var sends = recorder.Of("raft.snapshot.sends", leader.Id);
        Assert.NotEmpty(sends);
        Assert.All(sends, s => Assert.Equal(lagging.Id, s.Tag("raft.peer.id")));
        Assert.Single(recorder.Of("raft.snapshot.installs", lagging.Id));
        Assert.Empty(recorder.Of("raft.snapshot.installs", leader.Id));
    }
}
