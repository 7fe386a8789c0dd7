using System.Text;
using Raft.Testing;
using Raft.Tests.Core;

namespace Raft.Mutants.Tests;

/// <summary>
/// Core-level proof that the core's two wave-2 mutation points break a rule: the same scenario is
/// safe on the clean build and unsafe with the mutant on.
/// </summary>
public class CoreMutantTests
{
    private static readonly int[] Three = [1, 2, 3];

    private static RaftOptions Options(int id, Mutation mutations) => new()
    {
        NodeId = id,
        Members = Three,
        PreVote = false,
        CheckQuorum = false,
        Random = new Random(id),
        Mutations = mutations,
    };

    private static LogEntry Entry(long index, long term, string text) => new(index, term, EntryKind.Command, Encoding.UTF8.GetBytes(text));

    /// <summary>Three hosts; messages are delivered in order until none is left, except across cut links.</summary>
    private sealed class Net(Mutation mutations)
    {
        private readonly HashSet<int> _isolated = [];

        public Dictionary<int, TestCore> Nodes { get; } = Three.ToDictionary(id => id, id => new TestCore(Options(id, mutations), new InMemoryLogStore()));

        public void Isolate(int id) => _isolated.Add(id);

        public void Stabilize()
        {
            var queue = new Queue<RaftMessage>(Nodes.Values.SelectMany(n => n.Drain().Sent));
            while (queue.Count > 0)
            {
                var message = queue.Dequeue();
                if (_isolated.Contains(message.From) || _isolated.Contains(message.To))
                    continue;
                var target = Nodes[message.To];
                target.Core.Step(message);
                foreach (var next in target.Drain().Sent)
                    queue.Enqueue(next);
            }
        }
    }

    // Dissertation §6.4: a leader may answer a read only after a heartbeat round shows a majority
    // still follows it. With ReadWithoutQuorum, a deposed leader cut off from the others answers
    // at once from its stale state, missing a write the new leader committed.
    [Theory]
    [InlineData(Mutation.None)]
    [InlineData(Mutation.ReadWithoutQuorum)]
    public void AnIsolatedOldLeader_ReleasesNoStaleRead_UnlessTheMutantSkipsTheQuorum(Mutation mutation)
    {
        var net = new Net(mutation);
        net.Nodes[1].Core.Campaign();
        net.Stabilize();
        Assert.Equal(ProposeResult.Accepted, net.Nodes[1].Core.Propose(Encoding.UTF8.GetBytes("x=1"), out var first));
        net.Stabilize();
        Assert.Equal(first, net.Nodes[1].Core.CommitIndex);

        net.Isolate(1);
        net.Nodes[2].Core.Campaign();
        net.Stabilize();
        Assert.Equal(ProposeResult.Accepted, net.Nodes[2].Core.Propose(Encoding.UTF8.GetBytes("x=2"), out var second));
        net.Stabilize();
        Assert.Equal(second, net.Nodes[2].Core.CommitIndex); // x=2 is committed (and acknowledged to its client)

        Assert.Equal(RaftRole.Leader, net.Nodes[1].Core.Role); // it has not heard of term 2
        Assert.True(net.Nodes[1].Core.ReadIndex(99));
        net.Stabilize();
        for (var tick = 0; tick < 20; tick++)
        {
            net.Nodes[1].Core.Tick();
            net.Stabilize();
        }

        var stale = net.Nodes[1].Reads.Where(r => r.Index < second).ToList();
        if (mutation == Mutation.None)
        {
            Assert.Empty(net.Nodes[1].Reads);
        }
        else
        {
            // The read reflects index 2 (x=1) after x=2 committed at index 4: not linearizable.
            Assert.Equal([new ReadState(99, first)], stale);
        }
    }

    // The commit index saved with the hard state is a hint for restarts. Written in the same Ready
    // as the entries it covers, it must not cover them: if the hard state reaches the disk and the
    // entries do not (a crash in between), the restarted node would commit and apply the stale
    // entries its store still holds at those indexes.
    [Theory]
    [InlineData(Mutation.None)]
    [InlineData(Mutation.CommitHintNotDurable)]
    public async Task ACrashBetweenHardStateAndEntries_AppliesNoStaleEntry_UnlessTheHintIsNotCapped(Mutation mutation)
    {
        // A follower holding [1@1, 2@1, 3@1] (only index 1 committed) learns from the leader of term 3
        // that indexes 2 and 3 are 2@3 and 3@3, committed.
        var store = new InMemoryLogStore();
        await store.AppendAsync([Entry(1, 1, "a"), Entry(2, 1, "stale b"), Entry(3, 1, "stale c")]);
        await store.SaveHardStateAsync(new HardState(1, 0, 1));
        var follower = new TestCore(Options(1, mutation), store);
        follower.Drain();
        follower.Core.Step(new AppendEntries(2, 1, 3, 1, 1, [Entry(2, 3, "b"), Entry(3, 3, "c")], 3));
        var ready = follower.Core.GetReady();
        Assert.NotNull(ready.HardState); // the new term must be saved
        Assert.Equal(2, ready.Entries.Count);

        // Crash: the hard state is durable, the entries are not.
        await store.SaveHardStateAsync(ready.HardState.Value);
        var restarted = new TestCore(Options(1, mutation), store.Clone());
        restarted.Drain();

        var staleApplied = restarted.Applied.Where(e => e.Term == 1 && e.Index >= 2).ToList();
        if (mutation == Mutation.None)
        {
            Assert.Empty(staleApplied);
            Assert.Equal(1, restarted.Core.CommitIndex);
        }
        else
        {
            // Indexes 2 and 3 were committed as term 3 entries; the restarted node applies term 1 ones.
            Assert.Equal([2L, 3L], staleApplied.Select(e => e.Index));
        }
    }
}
