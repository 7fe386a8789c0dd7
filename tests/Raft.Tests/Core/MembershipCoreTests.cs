using Raft.Testing;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Core;

/// <summary>
/// Membership changes in the core (dissertation §4.3 joint consensus, §4.2.1 learners): the
/// configuration is in force when appended, rolled back when truncated; joint decisions need both
/// majorities; learners never count; one change at a time, only after the leader committed in its
/// term; the leader appends C(new) itself and hands over when it is removed.
/// </summary>
public sealed class MembershipCoreTests
{
    private static RaftOptions JoinOptions(int id, long maxPromotionLag = 1000) => new()
    {
        NodeId = id,
        Members = [],
        Join = true,
        MaxPromotionLag = maxPromotionLag,
        PreVote = false,
        CheckQuorum = false,
        Random = new Random(id),
    };

    private static RaftOptions Opts(int id, int[] members, bool checkQuorum = false, long maxPromotionLag = 1000) => new()
    {
        NodeId = id,
        Members = members,
        MaxPromotionLag = maxPromotionLag,
        PreVote = false,
        CheckQuorum = checkQuorum,
        Random = new Random(id),
    };

    private static LogEntry ConfigEntry(long index, long term, ClusterConfiguration configuration) =>
        new(index, term, EntryKind.Configuration, configuration.Encode());

    private static ClusterConfiguration Voters(params int[] ids) => ClusterConfiguration.FromVoters(ids);

    private static ProposeResult Change(TestCore leader, MembershipChange change) => leader.Core.ProposeMembershipChange(change, out _, out _);

    /// <summary>A network of nodes 1..<paramref name="voters"/> (node 1 elected) plus <paramref name="joiners"/> started with Join.</summary>
    private static Network Cluster(int voters, int[]? joiners = null, bool checkQuorum = false)
    {
        var ids = Ids(voters);
        var nodes = ids.Select(id => new TestCore(Opts(id, ids, checkQuorum), new InMemoryLogStore())).ToList();
        nodes.AddRange((joiners ?? []).Select(id => new TestCore(JoinOptions(id), new InMemoryLogStore())));
        var net = new Network(nodes);
        net.Campaign(1);
        Assert.Equal(RaftRole.Leader, net[1].Core.Role);
        return net;
    }

    // ------------------------------------------------------------------ encoding

    [Fact]
    public void A_configuration_round_trips_through_its_encoding_with_roles_addresses_and_both_halves()
    {
        var configuration = new ClusterConfiguration(
            [ClusterMember.Voter(3, "10.0.0.3:7003"), ClusterMember.Learner(9, "nœud:1"), ClusterMember.Voter(1)],
            [ClusterMember.Voter(1), ClusterMember.Voter(2, "b:2")]);

        Assert.True(ClusterConfiguration.TryDecode(configuration.Encode(), out var decoded, out var error), error);
        Assert.Equal(configuration, decoded);
        Assert.True(decoded.IsJoint);
        Assert.Equal([3, 1], decoded.Voters);
        Assert.Equal([9], decoded.Learners);
        Assert.Equal([1, 2], decoded.OutgoingVoters);
        Assert.True(decoded.IsVoter(2));
        Assert.False(decoded.IsVoter(9));
        Assert.Equal(new Dictionary<int, string?> { [2] = "b:2", [3] = "10.0.0.3:7003", [9] = "nœud:1" }, decoded.PeersOf(1));
    }

    public static TheoryData<string, byte[]> MalformedConfigurations
    {
        get
        {
            var good = new ClusterConfiguration([ClusterMember.Voter(1, "a:1"), ClusterMember.Learner(2)]).Encode();
            byte[] Patched(int at, byte value)
            {
                var copy = (byte[])good.Clone();
                copy[at] = value;
                return copy;
            }
            return new()
            {
                { "at least 5 bytes", [1, 0] },
                { "unknown configuration format version", Patched(0, 7) },
                { "unknown flags", Patched(7, 0x84) },
                { "is not positive", Patched(3, 0) },
                { "bytes follow the configuration", [.. good, 0] },
                { "cut off", good[..^2] },
                { "needs at least one voter", new ClusterConfiguration([ClusterMember.Voter(2)]).Encode() is var b ? Flag(b) : b },
                { "appears more than once", Duplicate() },
                { "not valid UTF-8", BadUtf8() },
            };
        }
    }

    private static byte[] Flag(byte[] single)
    {
        single[7] = 1; // the only voter becomes a learner
        return single;
    }

    private static byte[] Duplicate()
    {
        var bytes = new ClusterConfiguration([ClusterMember.Voter(1), ClusterMember.Voter(2)]).Encode();
        bytes[8] = 1; // the second member's id: 2 -> 1
        return bytes;
    }

    private static byte[] BadUtf8()
    {
        var bytes = new ClusterConfiguration([ClusterMember.Voter(1, "ab")]).Encode();
        bytes[^3] = 0xFF; // the address's last byte (the outgoing count follows)
        return bytes;
    }

    [Theory]
    [MemberData(nameof(MalformedConfigurations))]
    public void A_malformed_configuration_payload_is_refused_with_its_reason(string reason, byte[] payload)
    {
        Assert.False(ClusterConfiguration.TryDecode(payload, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Fact]
    public void An_append_carrying_a_configuration_entry_that_cannot_be_decoded_is_refused_whole()
    {
        var node = NewCore(2, Ids(3));
        var bad = new LogEntry(2, 1, EntryKind.Configuration, new byte[] { 1, 0 });
        node.Step(new AppendEntries(1, 2, 1, 0, 0, [new LogEntry(1, 1, EntryKind.NoOp, default), bad], 0));

        Assert.Equal(1, node.Core.RejectedMessages);
        Assert.Contains("configuration entry that cannot be decoded", node.Core.LastRejection, StringComparison.Ordinal);
        Assert.Equal(0, node.Core.LastIndex); // nothing of it was appended
        Assert.Equal(Voters(1, 2, 3), node.Core.Configuration);
    }

    // ------------------------------------------------------------------ in force on append, rolled back on truncation

    [Fact]
    public void A_configuration_is_in_force_as_soon_as_it_is_appended_and_rolled_back_when_truncated()
    {
        // Dissertation §4.1: a server uses the latest configuration in its log, committed or not.
        var node = NewCore(2, Ids(3));
        var added = Voters(1, 2, 3, 4);
        var output = node.Step(new AppendEntries(1, 2, 1, 0, 0, [new LogEntry(1, 1, EntryKind.NoOp, default), ConfigEntry(2, 1, added)], LeaderCommit: 1));

        Assert.Equal(1, node.Core.CommitIndex);
        Assert.Equal(added, node.Core.Configuration);
        Assert.Equal(2, node.Core.ConfigurationIndex);
        Assert.Equal(added, output.Readies.Select(r => r.Configuration).Single(c => c is not null)); // for ITransport.UpdatePeers

        // A leader of term 2 that never had the entry replaces index 2: the configuration rolls back.
        node.Step(new AppendEntries(3, 2, 2, 1, 1, [new LogEntry(2, 2, EntryKind.NoOp, default)], LeaderCommit: 1));
        Assert.Equal(Voters(1, 2, 3), node.Core.Configuration);
        Assert.Equal(0, node.Core.ConfigurationIndex);
    }

    [Fact]
    public void A_restarted_node_knows_its_configuration_from_its_log_not_from_its_options()
    {
        var net = Cluster(3);
        Assert.Equal(ProposeResult.Accepted, Change(net[1], MembershipChange.AddLearner(4, "d:4")));
        net.Stabilize();

        var restarted = net.Restart(2);
        Assert.Equal([1, 2, 3], restarted.Options.Members); // the options still say 1, 2, 3
        Assert.Equal([4], restarted.Core.Configuration.Learners);
        Assert.Equal("d:4", restarted.Core.Configuration.Find(4)!.Address);
    }

    // ------------------------------------------------------------------ joint quorums

    [Fact]
    public void In_a_joint_configuration_an_entry_commits_only_with_a_majority_of_both_halves()
    {
        var leader = SteadyLeader(Opts(1, Ids(3)));
        Assert.Equal(ProposeResult.Accepted, leader.Core.ProposeMembershipChange(new MembershipChange([
            new MembershipOperation(MembershipOperationKind.AddVoter, 4),
            new MembershipOperation(MembershipOperationKind.AddVoter, 5)]), out var index, out _));
        Assert.Equal(2, index);
        Assert.True(leader.Core.Configuration.IsJoint);
        leader.Drain();

        // 1, 4 and 5 are a majority of the new voters {1..5} but not of the old {1,2,3}.
        leader.Step(new AppendEntriesResponse(4, 1, 1, Success: true, MatchIndex: 2));
        leader.Step(new AppendEntriesResponse(5, 1, 1, Success: true, MatchIndex: 2));
        Assert.Equal(1, leader.Core.CommitIndex);

        // With 2, both halves have a majority.
        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 2));
        Assert.Equal(2, leader.Core.CommitIndex);
    }

    [Fact]
    public void After_the_joint_configuration_commits_the_leader_appends_the_new_one_and_then_needs_only_its_majority()
    {
        var leader = SteadyLeader(Opts(1, Ids(3)));
        Assert.Equal(ProposeResult.Accepted, Change(leader, MembershipChange.Remove(3)));
        leader.Drain();
        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 2));
        Assert.Equal(2, leader.Core.CommitIndex);
        leader.Drain();

        Assert.Equal(3, leader.Core.ConfigurationIndex);
        Assert.Equal(Voters(1, 2), leader.Core.Configuration);
        Assert.Equal(ProposeResult.MembershipChangePending, Change(leader, MembershipChange.Remove(2))); // C(new) not committed yet
        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 3));
        Assert.Equal(3, leader.Core.CommitIndex);
    }

    [Fact]
    public async Task In_a_joint_configuration_a_candidate_needs_votes_from_a_majority_of_both_halves()
    {
        var joint = new ClusterConfiguration([ClusterMember.Voter(1), ClusterMember.Voter(4), ClusterMember.Voter(5)], [ClusterMember.Voter(1), ClusterMember.Voter(2), ClusterMember.Voter(3)]);
        var store = new InMemoryLogStore();
        await store.AppendAsync([ConfigEntry(1, 1, joint)]);
        await store.SaveHardStateAsync(new HardState(1, 0, 0));
        var node = new TestCore(Opts(1, Ids(3)), store);

        var asked = node.Campaign().Of<RequestVote>().Select(v => v.To).Order();
        Assert.Equal([2, 3, 4, 5], asked);
        node.Step(new RequestVoteResponse(4, 1, 2, Granted: true)); // 1 and 4: a majority of {1,4,5} only
        Assert.Equal(RaftRole.Candidate, node.Core.Role);
        node.Step(new RequestVoteResponse(2, 1, 2, Granted: true)); // and 1, 2 of {1,2,3}
        Assert.Equal(RaftRole.Leader, node.Core.Role);
    }

    [Fact]
    public void A_read_after_adding_a_voter_is_confirmed_only_by_a_majority_that_counts_the_new_voter()
    {
        var leader = SteadyLeader(Opts(1, Ids(3)));
        Change(leader, MembershipChange.AddVoter(4));
        leader.Drain();
        foreach (var id in new[] { 2, 4 })
            leader.Step(new AppendEntriesResponse(id, 1, 1, Success: true, MatchIndex: 2));
        leader.Drain(); // commit 2 (joint), then C(new) at 3 appended
        Assert.True(leader.Core.ReadIndex(7));
        var round = leader.Drain().Of<AppendEntries>().Max(a => a.ReadSequence);
        // Joint or not, node 4 alone with the leader is not a majority of {1,2,3,4}.
        Assert.Empty(leader.Step(new AppendEntriesResponse(4, 1, 1, Success: true, MatchIndex: 2, ReadSequence: round)).ReadStates);
        Assert.Single(leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 2, ReadSequence: round)).ReadStates);
    }

    [Fact]
    public void CheckQuorum_in_a_joint_configuration_steps_down_without_a_majority_of_the_old_half()
    {
        var leader = SteadyLeader(Opts(1, Ids(3), checkQuorum: true));
        Change(leader, MembershipChange.To([ClusterMember.Voter(1), ClusterMember.Voter(4), ClusterMember.Voter(5)]));
        leader.Drain();
        Assert.True(leader.Core.Configuration.IsJoint);
        // Only the new members answer: {1,4,5} is active, {1,2,3} is not.
        for (var tick = 0; tick < 25 && leader.Core.Role == RaftRole.Leader; tick++)
        {
            leader.Tick();
            leader.Step(new AppendEntriesResponse(4, 1, 1, Success: true, MatchIndex: 0));
            leader.Step(new AppendEntriesResponse(5, 1, 1, Success: true, MatchIndex: 0));
        }
        Assert.Equal(RaftRole.Follower, leader.Core.Role);
    }

    // ------------------------------------------------------------------ learners

    [Fact]
    public void A_learner_receives_the_log_but_its_acknowledgements_never_commit_and_it_never_campaigns()
    {
        var net = Cluster(2, joiners: [3]);
        Assert.Equal(ProposeResult.Accepted, Change(net[1], MembershipChange.AddLearner(3)));
        net.Stabilize();
        Assert.Equal(net[1].Core.LastIndex, net[3].Core.LastIndex); // it has the log
        Assert.Equal(RaftStatus_Progress(net[1], 3), net[3].Core.LastIndex); // progress tracked

        net.Isolate(2);
        var index = net.Propose(1, "x");
        Assert.True(net[1].Core.CommitIndex < index); // 1 and the learner 3 are not a majority of {1,2}

        net.Heal();
        net.Isolate(1);
        net.Tick(3, 200);
        Assert.Equal(RaftRole.Follower, net[3].Core.Role);
        Assert.DoesNotContain(net.Delivered, m => m is RequestVote && m.From == 3);
    }

    private static long RaftStatus_Progress(TestCore leader, int id) => leader.Core.Status.Progress[id];

    [Fact]
    public void A_learner_is_promoted_only_within_the_lag_bound_and_then_votes()
    {
        var ids = Ids(2);
        var nodes = ids.Select(id => new TestCore(Opts(id, ids, maxPromotionLag: 2), new InMemoryLogStore())).ToList();
        nodes.Add(new TestCore(JoinOptions(3), new InMemoryLogStore()));
        var net = new Network(nodes);
        net.Campaign(1);
        Change(net[1], MembershipChange.AddLearner(3));
        net.Stabilize();

        net.Isolate(3);
        for (var i = 0; i < 3; i++)
            net.Propose(1, $"x{i}");
        Assert.Equal(ProposeResult.LearnerNotCaughtUp, net[1].Core.ProposeMembershipChange(MembershipChange.Promote(3), out _, out var reason));
        Assert.Contains("MaxPromotionLag is 2", reason, StringComparison.Ordinal);

        net.Heal();
        net.Tick(1, 10); // heartbeats catch it up
        Assert.Equal(ProposeResult.Accepted, Change(net[1], MembershipChange.Promote(3)));
        net.Stabilize();
        Assert.Equal([1, 2, 3], net[1].Core.Configuration.Voters.Order());
        Assert.False(net[1].Core.Configuration.IsJoint);
        Assert.Equal(net[1].Core.Configuration, net[3].Core.Configuration);
    }

    // ------------------------------------------------------------------ one change at a time

    [Fact]
    public void A_change_is_refused_before_the_leader_commits_in_its_term_and_while_another_is_uncommitted()
    {
        var leader = NewCore(Opts(1, Ids(3)));
        leader.Campaign();
        leader.Step(new RequestVoteResponse(2, 1, 1, Granted: true));
        Assert.Equal(RaftRole.Leader, leader.Core.Role);
        Assert.Equal(ProposeResult.MembershipChangePending, leader.Core.ProposeMembershipChange(MembershipChange.AddLearner(4), out _, out var notYet));
        Assert.Contains("has not committed an entry of its term", notYet, StringComparison.Ordinal);

        leader.Drain();
        leader.Step(new AppendEntriesResponse(2, 1, 1, Success: true, MatchIndex: 1));
        Assert.Equal(ProposeResult.Accepted, Change(leader, MembershipChange.AddLearner(4)));
        Assert.Equal(ProposeResult.MembershipChangePending, leader.Core.ProposeMembershipChange(MembershipChange.AddLearner(5), out _, out var pending));
        Assert.Contains("is not committed yet", pending, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(MembershipOperationKind.AddVoter, 2, "already a member")]
    [InlineData(MembershipOperationKind.Remove, 9, "not a member")]
    [InlineData(MembershipOperationKind.Promote, 2, "already a voter")]
    public void A_change_that_does_not_fit_the_configuration_is_refused_with_the_reason(MembershipOperationKind kind, int id, string reason)
    {
        var leader = SteadyLeader(Opts(1, Ids(3)));
        Assert.Equal(ProposeResult.InvalidMembershipChange, leader.Core.ProposeMembershipChange(new MembershipChange([new MembershipOperation(kind, id)]), out var index, out var why));
        Assert.Contains(reason, why, StringComparison.Ordinal);
        Assert.Equal(0, index);
        Assert.Equal(1, leader.Core.LastIndex);
    }

    [Fact]
    public void A_follower_cannot_change_the_membership()
    {
        var node = NewCore(2, Ids(3));
        Assert.Equal(ProposeResult.NotLeader, Change(node, MembershipChange.AddLearner(4)));
    }

    // ------------------------------------------------------------------ removal

    [Fact]
    public void A_removed_leader_leads_until_the_new_configuration_commits_then_hands_over_and_never_campaigns()
    {
        var net = Cluster(3);
        Assert.Equal(ProposeResult.Accepted, Change(net[1], MembershipChange.Remove(1)));
        net.Stabilize();

        Assert.Equal(Voters(2, 3), net[2].Core.Configuration);
        Assert.Contains(net.Delivered, m => m is TimeoutNow && m.From == 1);
        var leader = net.Nodes.Single(n => n.Core.Role == RaftRole.Leader);
        Assert.NotEqual(1, leader.Id);
        Assert.True(net[1].Core.IsRemoved);
        Assert.True(net[1].Core.Status.IsRemoved);

        // The new leader commits without node 1; node 1 stays silent forever.
        var index = net.Propose(leader.Id, "after");
        Assert.Equal(index, leader.Core.CommitIndex);
        var before = net.Delivered.Count;
        net.Tick(1, 200);
        Assert.DoesNotContain(net.Delivered.Skip(before), m => m.From == 1 && m is RequestVote);
        Assert.Equal(RaftRole.Follower, net[1].Core.Role);
    }

    [Fact]
    public void A_removed_voter_stops_campaigning_and_says_so()
    {
        var net = Cluster(3);
        Change(net[1], MembershipChange.Remove(3));
        net.Stabilize();
        Assert.True(net[3].Core.IsRemoved);
        net.Isolate(1);
        var before = net.Delivered.Count;
        net.Tick(3, 100);
        Assert.DoesNotContain(net.Delivered.Skip(before), m => m.From == 3);
    }

    // ------------------------------------------------------------------ joining, snapshots

    [Fact]
    public void A_joining_node_knows_no_configuration_never_campaigns_and_follows_the_leader_that_adds_it()
    {
        var joiner = new TestCore(JoinOptions(4), new InMemoryLogStore());
        Assert.True(joiner.Core.Configuration.IsEmpty);
        Assert.False(joiner.Core.IsRemoved);
        Assert.Empty(joiner.Tick(100).Sent);

        var net = Cluster(3, joiners: [4]);
        Change(net[1], MembershipChange.AddVoter(4, "d:4"));
        net.Stabilize();
        Assert.Equal([1, 2, 3, 4], net[4].Core.Configuration.Voters.Order());
        net.Tick(1, 2); // the next heartbeat carries the last commit index
        Assert.Equal(net[1].Core.CommitIndex, net[4].Core.CommitIndex);
    }

    [Fact]
    public void A_node_in_contact_with_its_leader_refuses_a_strangers_append_but_takes_it_once_out_of_contact()
    {
        var node = NewCore(2, Ids(3));
        node.Step(new AppendEntries(1, 2, 1, 0, 0, [], 0));
        node.Step(new AppendEntries(9, 2, 2, 0, 0, [], 0));
        Assert.Equal(1, node.Core.RejectedMessages);
        Assert.Equal(1, node.Core.Term);

        node.Tick(10); // a whole minimum election timeout without its leader
        Assert.Equal(RaftRole.Follower, node.Core.Role);
        node.Step(new AppendEntries(9, 2, 2, 0, 0, [], 0));
        Assert.Equal(1, node.Core.RejectedMessages);
        Assert.Equal((2L, 9), (node.Core.Term, node.Core.LeaderId));

        // A stranger's acknowledgement never counts, whatever the contact.
        var leader = SteadyLeader(Opts(1, Ids(3)));
        leader.Step(new AppendEntriesResponse(9, 1, 1, Success: true, MatchIndex: 1));
        Assert.Equal(1, leader.Core.RejectedMessages);
    }

    [Fact]
    public void A_stale_leader_outside_the_configuration_is_told_the_newer_term()
    {
        // Node 9 leads term 2 of a configuration this node (term 5, in contact or not) never had:
        // it must learn of term 5 to step down, though nothing else of its message is handled.
        var node = NewCore(2, Ids(3), hardState: new HardState(5, 0, 0));
        var output = node.Step(new AppendEntries(9, 2, 2, 0, 0, [], 0));
        Assert.Equal(0, node.Core.RejectedMessages);
        var answer = Assert.Single(output.Of<AppendEntriesResponse>());
        Assert.Equal((9, 5L, false), (answer.To, answer.Term, answer.Success));
        Assert.Equal(5, node.Core.Term);
    }

    [Fact]
    public async Task A_learner_that_stops_hearing_its_leader_forgets_it_though_it_never_campaigns()
    {
        var store = new InMemoryLogStore();
        var configuration = new ClusterConfiguration([ClusterMember.Voter(1), ClusterMember.Voter(2), ClusterMember.Learner(3)]);
        await store.AppendAsync([ConfigEntry(1, 1, configuration)]);
        await store.SaveHardStateAsync(new HardState(1, 0, 0));
        var learner = new TestCore(JoinOptions(3), store); // the configuration comes from the log
        learner.Step(new AppendEntries(1, 3, 1, 1, 1, [], 1));
        Assert.Equal(1, learner.Core.LeaderId);

        var output = learner.Tick(25); // past the largest election timeout
        Assert.Empty(output.Sent);
        Assert.Equal((RaftRole.Follower, 0), (learner.Core.Role, learner.Core.LeaderId));
    }

    [Fact]
    public void A_snapshot_carries_the_configuration_and_the_follower_that_installs_it_adopts_it()
    {
        var configuration = new ClusterConfiguration([ClusterMember.Voter(1, "a:1"), ClusterMember.Voter(2), ClusterMember.Learner(5, "e:5")]);
        var node = NewCore(2, Ids(3));
        var ready = node.Step(new InstallSnapshot(1, 2, 3, 10, 2, configuration, 0, new byte[] { 1, 2 }, Done: true)).Readies;

        Assert.Equal(configuration, node.Core.Configuration);
        Assert.Equal(10, node.Core.ConfigurationIndex);
        Assert.Equal(configuration, ready.Select(r => r.SnapshotToRestore).Single(s => s is not null)!.Configuration);
        Assert.Contains(ready, r => Equals(r.Configuration, configuration));
    }

    [Fact]
    public void A_snapshot_chunk_with_an_empty_configuration_is_refused()
    {
        var node = NewCore(2, Ids(3));
        node.Step(new InstallSnapshot(1, 2, 3, 10, 2, ClusterConfiguration.Empty, 0, new byte[] { 1 }, Done: true));
        Assert.Equal(1, node.Core.RejectedMessages);
        Assert.Contains("lists no members", node.Core.LastRejection, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_leader_streams_its_snapshots_configuration()
    {
        var configuration = new ClusterConfiguration([ClusterMember.Voter(1, "a:1"), ClusterMember.Voter(2), ClusterMember.Voter(3)]);
        var snapshots = new InMemorySnapshotStore();
        var writer = await snapshots.CreateAsync(new SnapshotMetadata(5, 1, configuration));
        writer.Stream.Write([1, 2, 3]);
        await writer.CommitAsync();
        var store = new InMemoryLogStore();
        await store.ResetAsync(5, 1);
        await store.SaveHardStateAsync(new HardState(1, 0, 5));
        var core = new RaftCore(Opts(1, Ids(2)), store, snapshots);

        Assert.Equal(configuration, core.Configuration); // from the snapshot, not the options
        core.Campaign();
        var harness = new Output();
        var ready = core.GetReady();
        core.Advance(ready);
        core.Step(new RequestVoteResponse(2, 1, 2, Granted: true));
        Assert.Equal(RaftRole.Leader, core.Role);
        ready = core.GetReady();
        await store.AppendAsync(ready.Entries);
        core.Advance(ready);
        core.Step(new AppendEntriesResponse(2, 1, 2, Success: false, MatchIndex: 5, HintIndex: 1));
        ready = core.GetReady();
        harness.Add(ready);
        core.Advance(ready);
        var chunk = Assert.Single(harness.Of<InstallSnapshot>());
        Assert.Equal(configuration, chunk.Configuration);
    }
}
