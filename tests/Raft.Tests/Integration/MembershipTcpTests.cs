using Raft.Testing.Linearizability;
using Xunit.Abstractions;

namespace Raft.Tests.Integration;

/// <summary>
/// Membership changes on a real cluster (issue 12's "done when"): <see cref="TcpTransport"/> on
/// loopback with a cluster secret, <see cref="FileLogStore"/> and <see cref="FileSnapshotStore"/> in
/// temporary directories, concurrent clients whose history must be linearizable.
/// </summary>
[Collection(nameof(TcpClusterCollection))]
public sealed class MembershipTcpTests(ITestOutputHelper output)
{
    private static readonly string[] Keys = ["a", "b", "c", "d", "e", "f"];
    private static readonly int[] Originals = [1, 2, 3];

    [Fact]
    public async Task A_TCP_cluster_grows_from_3_to_5_loses_its_leader_and_another_original_while_serving_and_restarts_from_disk_with_the_final_configuration()
    {
        await using var cluster = new TcpMemberCluster(output, [1, 2, 3, 4, 5]);
        await using var clients = new KvClients(cluster, Keys);
        try
        {
            await RunAsync(cluster, clients);
        }
        finally
        {
            await clients.StopAsync();
            cluster.Print($"clients: {clients.Writes} writes and {clients.Reads} reads succeeded; longest gap between acknowledged writes {clients.LongestWriteGap.TotalMilliseconds:0} ms; errors: {clients.FormatErrors()}");
            var records = cluster.Logs.Records;
            foreach (var record in records.Where(r => r.Level >= Microsoft.Extensions.Logging.LogLevel.Warning || r.EventId is >= 1200 and <= 1209).Take(150))
                output.WriteLine("  " + record);
        }
    }

    private static async Task RunAsync(TcpMemberCluster cluster, KvClients clients)
    {
        // 1. Three bootstrap voters that know each other's addresses; writes and reads from the start.
        foreach (var id in Originals)
            await cluster.StartAsync(id, Originals, join: false, peers: Originals);
        var leader = await cluster.WaitForLeaderAsync();
        cluster.Print($"node {leader.Id} leads term {leader.Node.Status.Term}");
        clients.Target(Originals);
        clients.Start(clients: 4);
        // Enough history that the leader's log is compacted behind a snapshot: the new members can only catch up through InstallSnapshot.
        await cluster.WaitUntilAsync(
            () => cluster.Leader() is { } l && l.Log.FirstIndex > 1 && l.Snapshots.Latest is not null,
            "the leader compacts its log behind a snapshot");
        cluster.Print($"leader log compacted: {cluster.Describe()}");

        // 2. Nodes 4 and 5 join: empty stores, Join = true, only the original members' addresses in their transport options.
        var learner4 = await cluster.StartAsync(4, [], join: true, peers: Originals);
        var learner5 = await cluster.StartAsync(5, [], join: true, peers: Originals);
        Assert.True(learner4.Node.Status.Configuration.IsEmpty, "a joining node starts without a configuration");
        await cluster.ChangeAsync(MembershipChange.AddLearner(4, cluster.Address(4)), c => c.Learners.Contains(4));
        await cluster.ChangeAsync(MembershipChange.AddLearner(5, cluster.Address(5)), c => c.Learners.Contains(5));
        clients.Target([1, 2, 3, 4, 5]); // learners serve forwarded writes and reads too
        await clients.WaitForWritesAsync(20, "with two learners added");

        // 3. The learners catch up (through a snapshot), then both are promoted in one joint change.
        await cluster.WaitUntilAsync(
            () => cluster.Leader() is { } l && l.Node.Status is var s
                && s.Progress.GetValueOrDefault(4) >= s.CommitIndex - TcpMemberCluster.SnapshotInterval
                && s.Progress.GetValueOrDefault(5) >= s.CommitIndex - TcpMemberCluster.SnapshotInterval,
            "the learners catch up with the leader");
        Assert.True(learner4.Machine.Restores >= 1 && learner5.Machine.Restores >= 1,
            $"the learners caught up through InstallSnapshot (restores: node 4 {learner4.Machine.Restores}, node 5 {learner5.Machine.Restores})");
        Assert.False(learner4.Node.Status.IsRemoved || learner5.Node.Status.IsRemoved, "a caught-up learner is a member");
        cluster.Print($"learners caught up: {cluster.Describe()}");
        await cluster.ChangeAsync(
            new MembershipChange([new MembershipOperation(MembershipOperationKind.Promote, 4), new MembershipOperation(MembershipOperationKind.Promote, 5)]),
            c => c.IsVoter(4) && c.IsVoter(5));
        await clients.WaitForWritesAsync(20, "with five voters");

        // 4. Remove the leader: it hands leadership over to a voter of the new configuration.
        var removedLeader = (await cluster.WaitForLeaderAsync()).Id;
        await cluster.ChangeAsync(MembershipChange.Remove(removedLeader), c => !c.Contains(removedLeader));
        var survivors = new[] { 1, 2, 3, 4, 5 }.Where(id => id != removedLeader).ToArray();
        clients.Target(survivors);
        var newLeader = await cluster.WaitForLeaderAsync(among: survivors);
        cluster.Print($"node {newLeader.Id} leads term {newLeader.Node.Status.Term} after node {removedLeader} was removed");
        await cluster.WaitUntilAsync(() => cluster.Nodes[removedLeader].Node.Status is { IsRemoved: true, Role: not RaftRole.Leader }, $"the removed leader {removedLeader} steps down and knows it was removed");
        await clients.WaitForWritesAsync(20, $"after removing the leader {removedLeader}");

        // 5. Remove another original member.
        var removedOther = Originals.First(id => id != removedLeader && id != newLeader.Id);
        await cluster.ChangeAsync(MembershipChange.Remove(removedOther), c => !c.Contains(removedOther));
        int[] finalMembers = [.. survivors.Where(id => id != removedOther)];
        clients.Target(finalMembers);
        await cluster.WaitUntilAsync(() => cluster.Nodes[removedOther].Node.Status.IsRemoved, $"node {removedOther} knows it was removed");
        await clients.WaitForWritesAsync(20, $"after removing node {removedOther}");

        // The removed nodes stay up, silent: never leading, never campaigning past the cluster's term.
        var final = (await cluster.WaitForLeaderAsync(among: finalMembers)).Node.Status.Configuration;
        Assert.Equal(finalMembers.Order(), final.Voters.Order());
        Assert.Empty(final.Learners);
        Assert.False(final.IsJoint);
        await clients.WaitForWritesAsync(20, "on the final configuration");
        await clients.StopAsync();
        cluster.Print($"final configuration {final}; {cluster.Describe()}");
        AssertRemovedStaySilent(cluster, [removedLeader, removedOther], finalMembers);

        // 6. The history of every client operation so far is linearizable.
        var history = clients.History.Operations;
        var check = LinearizabilityChecker.Check(history, TimeSpan.FromSeconds(30));
        cluster.Print(check.ToString());
        Assert.True(check.IsLinearizable, check.ToString());
        Assert.Empty(clients.Unexpected);
        Assert.True(history.Count(o => o.Outcome == OperationOutcome.Ok && o.Input.Kind != KvOperationKind.Get) >= 100, "at least 100 writes were acknowledged");

        // Every member holds the same state once it applied the leader's commit index.
        var reference = await ReadAllAsync(cluster, finalMembers);

        // 7. Stop every member and restart it from its directories with options that do not list
        // the final members: node 4 and 5 with Join and no members, the original one with the
        // original bootstrap list; no transport peers at all, so addresses come from the log too.
        foreach (var id in finalMembers)
            await cluster.StopAsync(id);
        cluster.Print("stopped every member");
        foreach (var id in finalMembers)
        {
            var restarted = Originals.Contains(id)
                ? await cluster.StartAsync(id, Originals, join: false, peers: [])
                : await cluster.StartAsync(id, [], join: true, peers: []);
            var configuration = restarted.Node.Status.Configuration;
            Assert.True(configuration.Equals(final), $"node {id} restarted with {configuration}, not the final {final}");
            Assert.False(restarted.Node.Status.IsRemoved);
        }
        var restartedLeader = await cluster.WaitForLeaderAsync(among: finalMembers);
        cluster.Print($"restarted; node {restartedLeader.Id} leads term {restartedLeader.Node.Status.Term}");

        // It serves a write (through a follower, forwarded) and linearizable reads on every member, and the state survived.
        var follower = cluster.Nodes[finalMembers.First(id => id != restartedLeader.Id)];
        await ProposeUntilAcceptedAsync(cluster, follower, KvMachine.Put("after-restart", "yes"));
        reference["after-restart"] = "yes";
        var restartedState = await ReadAllAsync(cluster, finalMembers);
        Assert.Equal(reference.OrderBy(p => p.Key, StringComparer.Ordinal), restartedState.OrderBy(p => p.Key, StringComparer.Ordinal));
        AssertRemovedStaySilent(cluster, [removedLeader, removedOther], finalMembers);
        cluster.Print($"done: {cluster.Describe()}");

        // No node ever sent to a member its transport did not know (3024), nor took a correct peer
        // for a hostile one (1011): the transport follows every member the node sends to.
        Assert.DoesNotContain(cluster.Logs.Records, r => r.EventId is 3024 or 1011);
    }

    [Fact]
    public async Task Members_added_at_run_time_and_removed_again_learn_they_were_removed()
    {
        // Nodes 4 and 5 are reachable only through the addresses the configuration gives them: the
        // leader must keep those addresses until the removing configuration has reached them.
        await using var cluster = new TcpMemberCluster(output, [1, 2, 3, 4, 5]);
        foreach (var id in Originals)
            await cluster.StartAsync(id, Originals, join: false, peers: Originals);
        await cluster.WaitForLeaderAsync();
        await cluster.StartAsync(4, [], join: true, peers: Originals);
        await cluster.StartAsync(5, [], join: true, peers: Originals);
        await cluster.ChangeAsync(MembershipChange.AddLearner(4, cluster.Address(4)), c => c.Learners.Contains(4));
        await cluster.ChangeAsync(MembershipChange.AddLearner(5, cluster.Address(5)), c => c.Learners.Contains(5));
        await cluster.WaitUntilAsync(() => cluster.Nodes[4].Node.Status.Configuration.Contains(5), "node 4 holds the configuration adding node 5");
        await cluster.ChangeAsync(MembershipChange.Promote(4), c => c.IsVoter(4));
        await cluster.WaitUntilAsync(() => cluster.Nodes[4].Node.Status.Configuration.IsVoter(4) && cluster.Nodes[5].Node.Status.Configuration.IsVoter(4), "nodes 4 and 5 hold the configuration promoting node 4");

        // A learner's removal takes effect in one step; a voter's goes through the joint configuration.
        await cluster.ChangeAsync(MembershipChange.Remove(5), c => !c.Contains(5));
        await cluster.WaitUntilAsync(() => cluster.Nodes[5].Node.Status.IsRemoved, "the removed learner 5 learns it was removed");
        await cluster.ChangeAsync(MembershipChange.Remove(4), c => !c.Contains(4));
        await cluster.WaitUntilAsync(() => cluster.Nodes[4].Node.Status.IsRemoved, "the removed voter 4 learns it was removed");

        // The three originals carry on.
        var leader = await cluster.WaitForLeaderAsync(among: Originals);
        await ProposeUntilAcceptedAsync(cluster, leader, KvMachine.Put("k", "v"));
        AssertRemovedStaySilent(cluster, [4, 5], Originals);
    }

    [Fact]
    public async Task A_learner_added_before_its_address_is_reachable_catches_up_once_it_starts()
    {
        await using var cluster = new TcpMemberCluster(output, [1, 2, 3, 4]);
        await using var clients = new KvClients(cluster, Keys);
        foreach (var id in Originals)
            await cluster.StartAsync(id, Originals, join: false, peers: Originals);
        await cluster.WaitForLeaderAsync();
        clients.Target(Originals);
        clients.Start(clients: 2);

        // Nothing listens at node 4's address yet: the change still commits (learners never count),
        // and the leader keeps trying to reach it.
        await cluster.ChangeAsync(MembershipChange.AddLearner(4, cluster.Address(4)), c => c.Learners.Contains(4));
        await clients.WaitForWritesAsync(20, "while the new learner is unreachable");
        var learner = await cluster.StartAsync(4, [], join: true, peers: Originals);
        await cluster.WaitUntilAsync(
            () => cluster.Leader() is { } l && learner.Node.Status.AppliedIndex >= l.Node.Status.CommitIndex - TcpMemberCluster.SnapshotInterval && learner.Node.Status.Configuration.Contains(4),
            "the late learner catches up");
        await cluster.ChangeAsync(MembershipChange.Promote(4), c => c.IsVoter(4));
        await clients.WaitForWritesAsync(20, "with the late learner promoted");
        await clients.StopAsync();
        var check = LinearizabilityChecker.Check(clients.History.Operations, TimeSpan.FromSeconds(30));
        Assert.True(check.IsLinearizable, check.ToString());
        await ReadAllAsync(cluster, [1, 2, 3, 4]);
    }

    [Fact]
    public async Task A_member_that_is_down_is_removed_and_does_not_disturb_the_cluster_when_it_comes_back()
    {
        await using var cluster = new TcpMemberCluster(output, [1, 2, 3, 4]);
        foreach (var id in Originals)
            await cluster.StartAsync(id, Originals, join: false, peers: Originals);
        await cluster.WaitForLeaderAsync();
        await cluster.StartAsync(4, [], join: true, peers: Originals);
        await cluster.ChangeAsync(MembershipChange.AddVoter(4, cluster.Address(4)), c => c.IsVoter(4));
        await cluster.WaitUntilAsync(() => cluster.Nodes[4].Node.Status.Configuration.IsVoter(4), "node 4 holds the configuration adding it");

        // Node 4 goes down; the other three (a majority of both halves) remove it.
        await cluster.StopAsync(4);
        await cluster.ChangeAsync(MembershipChange.Remove(4), c => !c.Contains(4));
        var leader = await cluster.WaitForLeaderAsync(among: Originals);
        await ProposeUntilAcceptedAsync(cluster, leader, KvMachine.Put("k", "without 4"));

        // It comes back from its disk, still believing it is a voter: it must not disturb the others.
        var back = await cluster.StartAsync(4, [], join: true, peers: Originals);
        var termBefore = Originals.Max(id => cluster.Nodes[id].Node.Status.Term);
        await Task.Delay(TimeSpan.FromSeconds(3)); // several election timeouts of node 4's
        leader = await cluster.WaitForLeaderAsync(among: Originals);
        await ProposeUntilAcceptedAsync(cluster, leader, KvMachine.Put("k", "still without 4"));
        var status = back.Node.Status;
        cluster.Print($"node 4 after coming back: {back.Describe()}; members' term before {termBefore}, now {leader.Node.Status.Term}");
        Assert.NotEqual(RaftRole.Leader, status.Role);
        Assert.Null(status.Fault);
        Assert.False(leader.Node.Status.Configuration.Contains(4));
        Assert.True(status.Term <= leader.Node.Status.Term, $"node 4 reached term {status.Term}, past the members' {leader.Node.Status.Term}");
    }

    [Fact]
    public async Task A_learner_restarted_in_the_middle_of_its_catch_up_finishes_it_from_its_disk_and_is_promoted()
    {
        await using var cluster = new TcpMemberCluster(output, [1, 2, 3, 4]);
        foreach (var id in Originals)
            await cluster.StartAsync(id, Originals, join: false, peers: Originals);
        var leader = await cluster.WaitForLeaderAsync();
        // A state of a few hundred KiB: its snapshot streams in hundreds of 1 KiB chunks.
        var big = new string('x', 2048);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            for (var i = w; i < 200; i += 4)
                await ProposeUntilAcceptedAsync(cluster, cluster.Nodes[1 + (i % 3)], KvMachine.Put($"big{i}", big + i));
        })));
        await cluster.WaitUntilAsync(() => cluster.Leader() is { } l && l.Log.FirstIndex > 1, "the leader compacts its log");

        var learner = await cluster.StartAsync(4, [], join: true, peers: Originals);
        await cluster.ChangeAsync(MembershipChange.AddLearner(4, cluster.Address(4)), c => c.Learners.Contains(4));
        // Stop it while the snapshot streams in (a partial file in its snapshot directory), or, should
        // the stream win the race, right after.
        await cluster.WaitUntilAsync(
            () => learner.Machine.Restores > 0 || Directory.EnumerateFiles(learner.Snapshots.DirectoryPath, "*.tmp").Any(f => new FileInfo(f).Length > 0),
            "the learner starts receiving the snapshot");
        var before = learner.Describe();
        await cluster.StopAsync(4);
        cluster.Print($"stopped the learner mid-catch-up: {before}");

        var restarted = await cluster.StartAsync(4, [], join: true, peers: Originals);
        await cluster.WaitUntilAsync(
            () => cluster.Leader() is { } l && restarted.Node.Status.AppliedIndex >= l.Node.Status.CommitIndex && restarted.Node.Status.Configuration.Contains(4),
            "the restarted learner catches up");
        await cluster.ChangeAsync(MembershipChange.Promote(4), c => c.IsVoter(4));
        leader = await cluster.WaitForLeaderAsync();
        await ProposeUntilAcceptedAsync(cluster, restarted, KvMachine.Put("after", "promotion"));
        var state = await ReadAllAsync(cluster, [1, 2, 3, 4]);
        Assert.Equal(big + 199, state["big199"]);
        Assert.Equal(201, state.Count);
    }

    /// <summary>A removed node says so, never leads, and never campaigned past the term the members reached.</summary>
    private static void AssertRemovedStaySilent(TcpMemberCluster cluster, int[] removed, int[] members)
    {
        var memberTerm = members.Max(id => cluster.Nodes[id].Node.Status.Term);
        foreach (var id in removed)
        {
            var status = cluster.Nodes[id].Node.Status;
            Assert.True(status.IsRemoved, $"removed node {id} does not say IsRemoved: {status}");
            Assert.NotEqual(RaftRole.Leader, status.Role);
            Assert.True(status.Term <= memberTerm, $"removed node {id} reached term {status.Term}, past the members' {memberTerm}: it campaigned");
            Assert.Null(status.Fault);
        }
    }

    /// <summary>Reads every key linearizably on each of <paramref name="ids"/> and checks they agree.</summary>
    private static async Task<Dictionary<string, string>> ReadAllAsync(TcpMemberCluster cluster, int[] ids)
    {
        Dictionary<string, string>? first = null;
        foreach (var id in ids)
        {
            var state = await RetryAsync(cluster, () => cluster.Nodes[id].Node.QueryAsync<KvMachine, Dictionary<string, string>>(m => m.Capture()), $"a linearizable read on node {id}");
            if (first is null)
                first = state;
            else
                Assert.Equal(first.OrderBy(p => p.Key, StringComparer.Ordinal), state.OrderBy(p => p.Key, StringComparer.Ordinal));
        }
        return first!;
    }

    private static Task<object?> ProposeUntilAcceptedAsync(TcpMemberCluster cluster, TcpMember member, byte[] command) =>
        RetryAsync(cluster, async () => await member.Node.ProposeAsync(command), $"a write through node {member.Id}");

    /// <summary>Retries an operation refused with nothing done (no leader yet, a leader change) until it succeeds.</summary>
    private static async Task<T> RetryAsync<T>(TcpMemberCluster cluster, Func<Task<T>> operation, string what)
    {
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await operation();
            }
            catch (Exception ex) when (ex is NotLeaderException or RaftBusyException or RaftTimeoutException or ProposalDroppedException && deadline.Elapsed < TcpMemberCluster.Patience)
            {
                cluster.Print($"{what}: {ex.GetType().Name}, retrying");
                await Task.Delay(50);
            }
        }
    }
}
