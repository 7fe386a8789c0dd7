using System.Text;
using Raft.Testing;
using Raft.Tests.Core;

namespace Raft.Mutants.Tests;

/// <summary>
/// Proof that the lease's clock-drift margin matters (Mutation.LeaseWithoutDriftBound): a leader
/// whose clock runs 15 % slow (inside the 20 % bound it was configured with) is cut off, the others
/// elect a new leader and commit a write; the old leader must not serve a read from its lease then.
/// </summary>
public class LeaseMutantTests
{
    private static readonly int[] Three = [1, 2, 3];

    [Theory]
    [InlineData(Mutation.None)]
    [InlineData(Mutation.LeaseWithoutDriftBound)]
    public void ASlowClockedOldLeader_ServesNoStaleLeaseRead_UnlessTheDriftMarginIsDropped(Mutation mutation)
    {
        // The InMemoryLogStore the core reads must be the one the host writes: build them together.
        var stores = Three.ToDictionary(id => id, _ => new InMemoryLogStore());
        var nodes = Three.ToDictionary(id => id, id => new TestCore(new RaftOptions
        {
            NodeId = id,
            Members = Three,
            ElectionTicksMin = 10,
            ElectionTicksMax = 20,
            HeartbeatTicks = 2,
            PreVote = false,
            CheckQuorum = true,
            LeaseReads = true,
            LeaseClockDriftBound = 0.2, // lease = floor(10 * 0.8) - 2 = 6 ticks; the mutant's is 10
            Random = new Random(id),
            Mutations = mutation,
        }, stores[id]));
        var cut = new HashSet<int>();
        void Stabilize()
        {
            var queue = new Queue<RaftMessage>(nodes.Values.SelectMany(n => n.Drain().Sent));
            while (queue.Count > 0)
            {
                var message = queue.Dequeue();
                if (cut.Contains(message.From) || cut.Contains(message.To))
                    continue;
                var target = nodes[message.To];
                target.Core.Step(message);
                foreach (var next in target.Drain().Sent)
                    queue.Enqueue(next);
            }
        }

        // Past the start-up quiet period, then node 1 campaigns.
        for (var i = 0; i < 10 && nodes.Values.All(n => n.Core.Role != RaftRole.Leader); i++)
        {
            foreach (var n in nodes.Values)
                n.Core.Tick();
            Stabilize();
        }
        if (nodes.Values.All(n => n.Core.Role != RaftRole.Leader))
        {
            nodes[1].Core.Campaign();
            Stabilize();
        }
        var old = nodes.Values.Single(n => n.Core.Role == RaftRole.Leader);
        var others = nodes.Values.Where(n => n != old).ToArray();
        Assert.Equal(ProposeResult.Accepted, old.Core.Propose(Encoding.UTF8.GetBytes("x=1"), out var first));
        Stabilize();
        // One heartbeat round, acknowledged by both followers: a fresh lease.
        for (var i = 0; i < 2; i++)
        {
            foreach (var n in nodes.Values)
                n.Core.Tick();
            Stabilize();
        }
        Assert.True(old.Core.HasLease);

        cut.Add(old.Core.Id);
        // The followers count an election timeout; the old leader's clock runs at 85 %: 8 ticks.
        for (var i = 1; i <= 10; i++)
        {
            foreach (var n in others)
                n.Core.Tick();
            if ((int)(i * 0.85) > (int)((i - 1) * 0.85))
                old.Core.Tick();
            Stabilize();
        }
        if (others.All(n => n.Core.Role != RaftRole.Leader))
        {
            others[0].Core.Campaign();
            Stabilize();
        }
        var fresh = others.Single(n => n.Core.Role == RaftRole.Leader);
        Assert.Equal(ProposeResult.Accepted, fresh.Core.Propose(Encoding.UTF8.GetBytes("x=2"), out var second));
        Stabilize();
        Assert.Equal(second, fresh.Core.CommitIndex); // x=2 committed and acknowledged

        Assert.Equal(RaftRole.Leader, old.Core.Role); // it has heard of nothing
        Assert.True(old.Core.ReadIndex(99));
        Stabilize();
        var stale = old.Reads.Where(r => r.RequestId == 99 && r.Index < second).ToList();
        if (mutation == Mutation.None)
            Assert.Empty(stale);
        else
            Assert.Equal([new ReadState(99, first)], stale); // reflects x=1 after x=2 committed
    }
}
