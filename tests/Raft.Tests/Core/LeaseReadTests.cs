namespace Raft.Tests.Core;

/// <summary>
/// Lease reads (dissertation §6.4.1, <see cref="RaftOptions.LeaseReads"/>): a leader that a majority
/// acknowledged within the lease answers a read without a heartbeat round, and only then. The
/// clock-drift margin itself is pinned by the mutant build (LeaseMutantTests, LeaseWithoutDriftBound).
/// </summary>
public class LeaseReadTests
{
    private static readonly int[] Three = [1, 2, 3];

    private static RaftOptions Options(int id, bool lease = true, double drift = 0.1) => new()
    {
        NodeId = id,
        Members = Three,
        ElectionTicksMin = 10,
        ElectionTicksMax = 20,
        HeartbeatTicks = 2,
        PreVote = false,
        CheckQuorum = true,
        LeaseReads = lease,
        LeaseClockDriftBound = drift,
        Random = new Random(id),
    };

    /// <summary>Three cores on a lossless network that delivers until quiet, except to and from cut nodes.</summary>
    private sealed class Net
    {
        public Net(bool lease) => Nodes = Three.ToDictionary(id => id, id => CoreHarness.NewCore(Options(id, lease)));

        public Dictionary<int, TestCore> Nodes { get; }

        public HashSet<int> Cut { get; } = [];

        public Dictionary<int, List<ReadState>> Reads { get; } = Three.ToDictionary(id => id, _ => new List<ReadState>());

        public void Stabilize(Queue<RaftMessage>? pending = null)
        {
            var queue = pending ?? new Queue<RaftMessage>();
            foreach (var node in Nodes.Values)
                Collect(node, node.Drain(), queue);
            while (queue.Count > 0)
            {
                var message = queue.Dequeue();
                if (Cut.Contains(message.From) || Cut.Contains(message.To))
                    continue;
                var target = Nodes[message.To];
                Collect(target, target.Step(message), queue);
            }
        }

        public void TickAll(int ticks = 1)
        {
            for (var i = 0; i < ticks; i++)
            {
                var queue = new Queue<RaftMessage>();
                foreach (var node in Nodes.Values)
                    Collect(node, node.Tick(), queue);
                Stabilize(queue);
            }
        }

        private void Collect(TestCore node, Output output, Queue<RaftMessage> queue)
        {
            Reads[node.Id].AddRange(output.ReadStates);
            foreach (var message in output.Sent)
                queue.Enqueue(message);
        }

        /// <summary>Ticks everyone past the start-up quiet period until a leader is elected, and lets it commit its no-op and one heartbeat round.</summary>
        public TestCore ElectLeader()
        {
            for (var i = 0; i < 40 && !Nodes.Values.Any(n => n.Core.Role == RaftRole.Leader); i++)
                TickAll();
            var leader = Nodes.Values.Single(n => n.Core.Role == RaftRole.Leader);
            TickAll(2); // a heartbeat round, acknowledged
            return leader;
        }
    }

    [Fact]
    public void A_leader_with_a_fresh_lease_answers_a_read_at_once_without_a_heartbeat_round()
    {
        var net = new Net(lease: true);
        var leader = net.ElectLeader();
        Assert.True(leader.Core.HasLease);
        var commit = leader.Core.CommitIndex;

        Assert.True(leader.Core.ReadIndex(7));
        var output = leader.Drain();

        Assert.Equal([new ReadState(7, commit)], output.ReadStates);
        Assert.Empty(output.Sent); // no heartbeat round: the lease vouches for the leadership
    }

    [Fact]
    public void Without_lease_reads_the_same_read_waits_for_a_heartbeat_round()
    {
        var net = new Net(lease: false);
        var leader = net.ElectLeader();
        Assert.False(leader.Core.HasLease);

        Assert.True(leader.Core.ReadIndex(7));
        var output = leader.Drain();

        Assert.Empty(output.ReadStates);
        Assert.Equal(2, output.Of<AppendEntries>().Count()); // one heartbeat per follower
    }

    // Dissertation §6.4.1: the lease starts when the acknowledged heartbeat round started, and lasts
    // ElectionTicksMin × (1 − drift) less the 2-tick margin: 10 × 0.9 − 2 = 7 ticks here.
    [Fact]
    public void The_lease_runs_out_LeaseTicks_after_the_last_acknowledged_round_started()
    {
        var net = new Net(lease: true);
        var leader = net.ElectLeader();
        Assert.Equal(7, Options(1).LeaseTicks);
        // The acknowledged round started at the last heartbeat; every later round goes unanswered.
        foreach (var id in Three.Where(id => id != leader.Id))
            net.Cut.Add(id);
        var held = 0;
        while (leader.Core.HasLease)
        {
            leader.Tick();
            held++;
            Assert.True(held < 20, "the lease never ran out");
        }
        Assert.Equal(7, held);

        Assert.True(leader.Core.ReadIndex(8));
        var output = leader.Drain();
        Assert.Empty(output.ReadStates); // a ReadIndex round again, which the cut followers never confirm
        Assert.NotEmpty(output.Of<AppendEntries>());
    }

    [Fact]
    public void Heartbeats_renew_the_lease_while_a_majority_answers()
    {
        var net = new Net(lease: true);
        var leader = net.ElectLeader();
        for (var i = 0; i < 50; i++)
        {
            net.TickAll();
            Assert.True(leader.Core.HasLease, $"lease lost at tick {i} although every follower answers");
        }
        net.Cut.Add(Three.First(id => id != leader.Id)); // one follower gone: still a majority
        for (var i = 0; i < 50; i++)
        {
            net.TickAll();
            Assert.True(leader.Core.HasLease, $"lease lost at tick {i} with a majority answering");
        }
    }

    // The transferee campaigns at once (TimeoutNow), and the followers vote for it however recently
    // they heard from the leader: from the start of a transfer the lease proves nothing.
    [Fact]
    public void A_leader_handing_over_leadership_does_not_read_from_its_lease()
    {
        var net = new Net(lease: true);
        var leader = net.ElectLeader();
        Assert.True(leader.Core.HasLease);
        var other = Three.First(id => id != leader.Id);

        Assert.True(leader.Core.TransferLeadership(other));
        Assert.False(leader.Core.HasLease);
        Assert.True(leader.Core.ReadIndex(9));
        Assert.Empty(leader.Drain().ReadStates);
    }

    // A follower that acknowledged the lease and restarted at once has forgotten the leader; with
    // lease reads on it still ignores candidates for an election timeout, or a candidate could win
    // with its vote while the old leader's lease runs.
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_node_that_just_started_ignores_candidates_for_an_election_timeout_with_lease_reads(bool lease)
    {
        var node = CoreHarness.NewCore(Options(2, lease));
        var vote = new RequestVote(3, 2, 5, LastLogIndex: 0, LastLogTerm: 0);

        var early = node.Step(vote).Of<RequestVoteResponse>().ToList();
        if (lease)
        {
            Assert.Empty(early);
            node.Tick(10);
            Assert.Contains(node.Step(vote with { Term = 6 }).Of<RequestVoteResponse>(), r => r.Granted);
        }
        else
        {
            Assert.Contains(early, r => r.Granted);
        }
    }

    [Fact]
    public void Lease_reads_need_CheckQuorum_and_a_drift_bound_below_one()
    {
        var noQuorum = new RaftNodeOptions { NodeId = 1, Members = [1], LeaseReads = true, CheckQuorum = false };
        Assert.Contains("CheckQuorum", Assert.Throws<ArgumentException>(noQuorum.Validate).Message);

        var drift = new RaftNodeOptions { NodeId = 1, Members = [1], LeaseReads = true, LeaseClockDriftBound = 1 };
        Assert.Throws<ArgumentOutOfRangeException>(drift.Validate);

        // 300 ms at 10 ms ticks is 30 ticks; a 0.95 bound leaves floor(1.5) − 2 < 1.
        var tooShort = new RaftNodeOptions { NodeId = 1, Members = [1], LeaseReads = true, LeaseClockDriftBound = 0.95 };
        Assert.Contains("lease of", Assert.Throws<ArgumentException>(tooShort.Validate).Message);

        new RaftNodeOptions { NodeId = 1, Members = [1], LeaseReads = true }.Validate(); // the defaults work
    }
}
