using Raft.Tests.Core;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Paper;

/// <summary>Raft paper §5.4, Safety: the election restriction and the commitment rule (Figure 8).</summary>
public sealed class Section5_4_SafetyTests
{
    private static readonly int[] Three = [1, 2, 3];

    private static RequestVoteResponse VoteOn(TestCore voter, long term, long lastIndex, long lastTerm)
    {
        var output = voter.Step(new RequestVote(2, 1, term, lastIndex, lastTerm));
        return Assert.Single(output.Of<RequestVoteResponse>());
    }

    // Raft paper §5.4.1: "the voter denies its vote if its own log is more up-to-date than that of
    // the candidate ... If the logs end with the same term, then whichever log is longer is more up-to-date."
    [Fact]
    public void Vote_IsDeniedAtTheSameTermToACandidateWithAShorterLog()
    {
        var voter = NewCore(1, Three, terms: [1, 2, 2]);

        var response = VoteOn(voter, term: 3, lastIndex: 2, lastTerm: 2);

        Assert.False(response.Granted);
        Assert.Equal(3, response.Term);
        Assert.Equal(0, voter.Core.VotedFor);
    }

    // Raft paper §5.4.1: "If the logs have last entries with different terms, then the log with the
    // later term is more up-to-date" — however long the other log is.
    [Fact]
    public void Vote_IsDeniedToACandidateWhoseLastTermIsLower_EvenWithALongerLog()
    {
        var voter = NewCore(1, Three, terms: [1, 2]);

        var response = VoteOn(voter, term: 3, lastIndex: 10, lastTerm: 1);

        Assert.False(response.Granted);
        Assert.Equal(0, voter.Core.VotedFor);
    }

    // Raft paper §5.4.1: the comparison, case by case (etcd TestVoter).
    [Theory]
    [InlineData(2, 2, true)]   // same last term, same length
    [InlineData(3, 2, true)]   // same last term, longer
    [InlineData(1, 3, true)]   // later last term, shorter
    [InlineData(1, 2, false)]  // same last term, shorter
    [InlineData(5, 1, false)]  // earlier last term, longer
    public void Vote_IsGrantedOnlyToACandidateAtLeastAsUpToDate(long lastIndex, long lastTerm, bool granted)
    {
        var voter = NewCore(1, Three, terms: [1, 2]);

        var response = VoteOn(voter, term: 3, lastIndex, lastTerm);

        Assert.Equal(granted, response.Granted);
        Assert.Equal(granted ? 2 : 0, voter.Core.VotedFor);
    }

    // Raft paper §5.4.1: "a candidate must contact a majority of the cluster in order to be elected,
    // which means that every committed entry must be present in at least one of those servers."
    // Three candidates with different logs; the other members' logs decide: only the candidate at
    // least as up to date as a majority can collect one.
    //   node 1: [1 1]      node 2: [1 1 1]      node 3: [1 2]      nodes 4, 5: [1 2]
    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, true)]
    public void ThreeCandidatesWithDifferentLogs_OnlyTheMostUpToDateCanWin(int candidate, bool wins)
    {
        var net = Network.Create(5,
            terms: id => id switch { 1 => [1, 1], 2 => [1, 1, 1], _ => [1, 2] },
            hardState: _ => new HardState(2, 0, 1));

        net.Campaign(candidate);

        Assert.Equal(wins, net[candidate].Core.Role == RaftRole.Leader);
        Assert.Equal(wins ? 1 : 0, net.Leaders.Count());
        var grants = net.Delivered.OfType<RequestVoteResponse>().Count(r => r.To == candidate && r.Granted);
        Assert.Equal(candidate switch { 1 => 0, 2 => 1, _ => 4 }, grants);
    }

    /// <summary>
    /// The Figure 8 set-up: five nodes; node 1 (leader of term 2) replicated (2, term 2) to node 2
    /// only, then node 5 led term 3 and wrote (2, term 3) alone. Now node 1 is elected for term 4.
    /// Appends are one entry each (tiny MaxAppendBytes) and appends of index 3 (the new leader's
    /// no-op of term 4) are dropped, so the old entry (2, term 2) reaches a majority alone.
    /// </summary>
    private static Network Figure8()
    {
        var net = Network.Create(5,
            options: (id, members) => Options(id, members, maxAppendBytes: 1),
            terms: id => id switch { 1 or 2 => [1, 2], 5 => [1, 3], _ => [1] },
            hardState: _ => new HardState(3, 0, 1));
        net.Isolate(5);
        net.Drop(m => m is AppendEntries a && a.Entries.Any(e => e.Index == 3));
        net.Campaign(1);
        Assert.Equal(RaftRole.Leader, net[1].Core.Role);
        Assert.Equal(4, net[1].Core.Term);
        // Heartbeats let the followers' progress recover and the one-entry appends of index 2 flow.
        net.TickUntil(1, () => new[] { 2, 3, 4 }.All(id => net[id].Core.LastIndex >= 2 && net[id].Store.LastIndex >= 2 && net[id].Store.GetTerm(2) == 2), 2 * net[1].Options.ElectionTicksMin);
        return net;
    }

    // Raft paper §5.4.2 and Figure 8: "Raft never commits log entries from previous terms by counting
    // replicas." (2, term 2) sits on nodes 1-4, a majority, yet it is not committed.
    [Fact]
    public void Figure8_AnOldTermEntryOnAMajority_IsNotCommittedByCounting()
    {
        var net = Figure8();

        Assert.All(new[] { 1, 2, 3, 4 }, id => Assert.Equal(2, net[id].Store.GetTerm(2)));
        Assert.Equal([2, 3, 4], net[1].Core.Status.Progress.Where(p => p.Key != 1 && p.Value >= 2).Select(p => p.Key).Order());
        Assert.All(net.Nodes, n => Assert.Equal(1, n.Core.CommitIndex));
        Assert.All(net.Nodes, n => Assert.DoesNotContain(n.Applied, e => e.Index == 2));
    }

    // Raft paper §5.4.2: "Only log entries from the leader's current term are committed by counting
    // replicas; once an entry from the current term has been committed in this way, then all prior
    // entries are committed indirectly because of the Log Matching Property."
    [Fact]
    public void Figure8_TheOldTermEntryIsCommittedTogetherWithAnEntryOfTheCurrentTerm()
    {
        var net = Figure8();

        net.Heal();
        net.Isolate(5);
        net.TickUntil(1, () => net[1].Core.CommitIndex >= 3, net[1].Options.ElectionTicksMin);

        Assert.Equal(3, net[1].Core.CommitIndex);
        Assert.Equal([1L, 2L, 4L], Terms(net[1].Store));
        Assert.Equal([(2L, 2L), (3L, 4L)], net[1].Applied.Where(e => e.Index > 1).Select(e => (e.Index, e.Term)));
    }

    // Raft paper §5.4.2, Figure 8 (d): why counting is not enough. The entry (2, term 2) on a majority can
    // still be overwritten: node 5, whose last term is 3, is elected with the votes of nodes 2-4 and
    // replaces it. Had node 1 committed it, a committed entry would be lost.
    [Fact]
    public void Figure8_TheOldTermEntryOnAMajority_CanStillBeOverwrittenByANewerLeader()
    {
        var net = Figure8();
        net.Heal();
        net.Isolate(1);

        net.Campaign(5); // term 4: nodes 2-4 already voted for node 1 in term 4
        Assert.Equal(RaftRole.Follower, net[5].Core.Role);
        net.Campaign(5); // term 5

        Assert.Equal(RaftRole.Leader, net[5].Core.Role);
        Assert.Equal(5, net[5].Core.Term);
        Assert.All(new[] { 2, 3, 4 }, id => Assert.Equal(3, net[id].Store.GetTerm(2)));
        Assert.All(net.Nodes, n => Assert.DoesNotContain(n.Applied, e => e.Index == 2 && e.Term == 2));
    }

    // Raft paper §5.4 (Leader Completeness): "if a log entry is committed in a given term, then that
    // entry will be present in the logs of the leaders for all higher-numbered terms". Nodes 4 and 5
    // missed the committed entries: they cannot win; the next leaders, whoever they are, hold them.
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void CommittedEntries_AreInTheLogOfEveryLaterLeader(int seed)
    {
        var net = Network.Create(5, options: (id, members) => Options(id, members, seed));
        net.Campaign(1);
        net.Isolate(4);
        net.Isolate(5);
        for (var i = 0; i < 3; i++)
            net.Propose(1, $"c{i}");
        var committed = ReadAll(net[1].Store).Take((int)net[1].Core.CommitIndex).Select(e => (e.Index, e.Term)).ToArray();
        Assert.Equal(4, committed.Length);
        net.Heal();
        net.Isolate(1);

        // The stale nodes campaign first: they must lose.
        net.Campaign(4);
        net.Campaign(5);
        Assert.DoesNotContain(net.Leaders, n => n.Id is 4 or 5);
        var second = ElectAmong(net, excluded: [1]);
        Assert.Contains(second.Id, new[] { 2, 3 });
        Assert.Equal(committed, ReadAll(second.Store).Select(e => (e.Index, e.Term)).Take(committed.Length));

        // And the leader after that (any of the three left) holds them too.
        net.Heal();
        net.Isolate(1);
        net.Isolate(second.Id);
        var third = ElectAmong(net, excluded: [1, second.Id]);
        Assert.True(third.Core.Term > second.Core.Term);
        Assert.Equal(committed, ReadAll(third.Store).Select(e => (e.Index, e.Term)).Take(committed.Length));
    }

    private static TestCore ElectAmong(Network net, int[] excluded)
    {
        var term = excluded.Max(id => net[id].Core.Term);
        for (var i = 0; i < 300; i++)
        {
            var leader = net.Leaders.FirstOrDefault(n => !excluded.Contains(n.Id) && n.Core.Term > term);
            if (leader is not null)
                return leader;
            net.TickAll(1);
        }
        throw new InvalidOperationException("No leader was elected.");
    }

    // Raft paper §5.4.3 (State Machine Safety): "if a server has applied a log entry at a given
    // index to its state machine, no other server will ever apply a different log entry for the
    // same index." Leaders come and go under partitions; the network checks every applied entry.
    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    [InlineData(13)]
    [InlineData(14)]
    public void UnderChangingPartitions_NoTwoNodesApplyDifferentEntriesAtAnIndex(int seed)
    {
        var random = new Random(seed);
        var net = Network.Create(5, options: (id, members) => Options(id, members, seed));
        var proposals = 0;
        for (var round = 0; round < 300; round++)
        {
            if (round % 25 == 0)
            {
                net.Heal();
                for (var cuts = random.Next(0, 4); cuts > 0; cuts--)
                    net.Cut(random.Next(1, 6), random.Next(1, 6));
            }
            net.TickAll(1);
            foreach (var leader in net.Leaders.ToArray())
            {
                leader.Propose($"r{round}-n{leader.Id}");
                proposals++;
            }
            net.Stabilize();
        }
        net.Heal();
        net.TickAll(60);

        Assert.True(proposals > 100);
        var max = net.Nodes.Max(n => n.Core.CommitIndex);
        Assert.True(max > 50, $"Only {max} entries committed: the run exercised little.");
        var reference = net.Nodes.First(n => n.Core.CommitIndex == max);
        Assert.All(net.Nodes, n =>
        {
            Assert.Equal(max, n.Core.CommitIndex);
            Assert.Equal(reference.Applied.Select(e => (e.Index, e.Term, Text(e))), n.Applied.Select(e => (e.Index, e.Term, Text(e))));
        });
    }

    // Raft paper §5.5 and §5.4: messages may be lost, duplicated and reordered and the protocol stays
    // safe. Under such a network (plus partitions), with or without PreVote and CheckQuorum: at most
    // one leader per term and no two nodes applying different entries at an index (both checked by
    // the network as it goes), Log Matching between every pair of logs, and, once healed, one log.
    [Theory]
    [InlineData(21, false, false)]
    [InlineData(22, true, false)]
    [InlineData(23, false, true)]
    [InlineData(24, true, true)]
    [InlineData(25, true, true)]
    public void UnderLossDuplicationAndReordering_LogsStaySafeAndConverge(int seed, bool preVote, bool checkQuorum)
    {
        var random = new Random(seed);
        var net = Network.Create(5, options: (id, members) => Options(id, members, seed, preVote: preVote, checkQuorum: checkQuorum, maxInflight: 4, maxAppendBytes: 64));
        for (var round = 0; round < 400; round++)
        {
            if (round % 40 == 0)
            {
                net.Heal();
                net.Chaos(random, dropRate: 0.1, duplicateRate: 0.1);
                if (random.Next(2) == 0)
                    net.Isolate(random.Next(1, 6));
            }
            net.TickAll(1);
            foreach (var leader in net.Leaders.ToArray())
            {
                if (leader.Core.Propose(Bytes($"r{round}"), out _) == ProposeResult.Accepted)
                    net.Stabilize();
            }
            if (round % 10 == 9)
            {
                var logs = net.Nodes.Select(n => ReadAll(n.Store)).ToArray();
                for (var x = 0; x < logs.Length; x++)
                {
                    for (var y = x + 1; y < logs.Length; y++)
                        AssertLogMatching(logs[x], logs[y]);
                }
            }
        }
        net.Heal();
        net.TickAll(100);

        var commit = net.Nodes.Max(n => n.Core.CommitIndex);
        Assert.True(commit > 40, $"Only {commit} entries committed.");
        var reference = ReadAll(net.Nodes.First().Store).Select(e => (e.Index, e.Term, Text(e))).ToArray();
        Assert.All(net.Nodes, n =>
        {
            Assert.Equal(commit, n.Core.CommitIndex);
            Assert.Equal(reference, ReadAll(n.Store).Select(e => (e.Index, e.Term, Text(e))));
            Assert.Equal(reference.Take((int)commit), n.Applied.Select(e => (e.Index, e.Term, Text(e))));
        });
    }

    private static void AssertLogMatching(List<LogEntry> a, List<LogEntry> b)
    {
        for (var i = Math.Min(a.Count, b.Count) - 1; i >= 0; i--)
        {
            if (a[i].Term != b[i].Term)
                continue;
            for (var j = 0; j <= i; j++)
            {
                Assert.True(a[j].Term == b[j].Term && a[j].Data.Span.SequenceEqual(b[j].Data.Span),
                    $"Logs share ({i + 1}, term {a[i].Term}) but differ at index {j + 1}.");
            }
            return;
        }
    }
}
