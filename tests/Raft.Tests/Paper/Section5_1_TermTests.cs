using Raft.Tests.Core;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Paper;

/// <summary>
/// Raft paper §5.1 (and Figure 2, "Rules for Servers: All Servers"): terms act as a logical clock.
/// Each test is init / act / check, after etcd's raft_paper_test.go.
/// </summary>
public sealed class Section5_1_TermTests
{
    private static readonly int[] Three = [1, 2, 3];

    /// <summary>Puts node 1 of a 3-node cluster into <paramref name="role"/> at term 2.</summary>
    private static TestCore NodeInRole(RaftRole role)
    {
        var node = NewCore(1, Three, hardState: new HardState(1, 0, 0));
        switch (role)
        {
            case RaftRole.Follower:
                node.Step(new AppendEntries(2, 1, 2, 0, 0, [], 0));
                break;
            case RaftRole.Candidate:
                node.Campaign();
                break;
            case RaftRole.Leader:
                node.Campaign();
                node.Step(new RequestVoteResponse(2, 1, 2, Granted: true));
                break;
        }
        Assert.Equal(role, node.Core.Role);
        Assert.Equal(2, node.Core.Term);
        return node;
    }

    public static TheoryData<RaftRole, string> RolesAndMessages()
    {
        var data = new TheoryData<RaftRole, string>();
        foreach (var role in new[] { RaftRole.Follower, RaftRole.Candidate, RaftRole.Leader })
        {
            foreach (var kind in new[] { "AppendEntries", "AppendEntriesResponse", "RequestVote", "RequestVoteResponse" })
                data.Add(role, kind);
        }
        return data;
    }

    private static RaftMessage MessageWithTerm(string kind, int from, long term) => kind switch
    {
        "AppendEntries" => new AppendEntries(from, 1, term, 0, 0, [], 0),
        "AppendEntriesResponse" => new AppendEntriesResponse(from, 1, term, Success: false, MatchIndex: 0),
        "RequestVote" => new RequestVote(from, 1, term, 0, 0),
        "RequestVoteResponse" => new RequestVoteResponse(from, 1, term, Granted: false),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    // Raft paper §5.1: "If one server's current term is smaller than the other's, then it updates
    // its current term to the larger value. If a candidate or leader discovers that its term is out
    // of date, it immediately reverts to follower state."
    [Theory]
    [MemberData(nameof(RolesAndMessages))]
    public void AnyMessageWithAHigherTerm_MakesAnyRoleAFollowerOfThatTerm(RaftRole role, string kind)
    {
        var node = NodeInRole(role);

        var output = node.Step(MessageWithTerm(kind, 3, 5));

        Assert.Equal(RaftRole.Follower, node.Core.Role);
        Assert.Equal(5, node.Core.Term);
        // The new term is durable: it is in the hard state handed out with the change.
        Assert.Equal(5, output.HardStates[^1].Term);
        Assert.Equal(5, node.Store.HardState.Term);
        // Only AppendEntries names a leader; the others leave the leader unknown in the new term.
        Assert.Equal(kind == "AppendEntries" ? 3 : 0, node.Core.LeaderId);
    }

    // Raft paper §5.1: a higher term clears the vote: the node may vote again in the new term.
    [Fact]
    public void AdoptingAHigherTerm_ClearsTheVoteOfTheOldTerm()
    {
        var node = NodeInRole(RaftRole.Candidate);
        Assert.Equal(1, node.Core.VotedFor);

        var output = node.Step(new AppendEntries(2, 1, 3, 0, 0, [], 0));

        Assert.Equal(0, node.Core.VotedFor);
        Assert.Equal(new HardState(3, 0, 0), output.HardStates[^1]);
    }

    // Raft paper §5.1: "If a server receives a request with a stale term number, it rejects the request."
    [Fact]
    public void AppendEntriesWithALowerTerm_IsRejectedAndAnsweredWithTheCurrentTerm()
    {
        var node = NewCore(1, Three, terms: [1, 1], hardState: new HardState(5, 0, 0));

        var output = node.Step(new AppendEntries(2, 1, 3, 2, 1, [Entry(3, 3)], 3));

        var response = Assert.Single(output.Of<AppendEntriesResponse>());
        Assert.Equal(new AppendEntriesResponse(1, 2, 5, Success: false, MatchIndex: 0), response);
        Assert.Equal(2, node.Core.LastIndex);
        Assert.Equal(0, node.Core.CommitIndex);
        Assert.Equal(0, node.Core.LeaderId);
        Assert.Equal(5, node.Core.Term);
    }

    // Raft paper §5.1: a stale candidate's RequestVote is rejected, with the current term so it can catch up.
    [Fact]
    public void RequestVoteWithALowerTerm_IsDeniedAndAnsweredWithTheCurrentTerm()
    {
        var node = NewCore(1, Three, hardState: new HardState(5, 0, 0));

        // The candidate's log is more up to date; only its term is stale.
        var output = node.Step(new RequestVote(2, 1, 4, LastLogIndex: 10, LastLogTerm: 4));

        var response = Assert.Single(output.Of<RequestVoteResponse>());
        Assert.False(response.Granted);
        Assert.Equal(5, response.Term);
        Assert.Equal(0, node.Core.VotedFor);
        Assert.Equal(5, node.Core.Term);
    }

    // Raft paper §5.1: a vote answered in an older term does not count in the current election.
    [Fact]
    public void VoteGrantedInALowerTerm_DoesNotCount()
    {
        var node = NewCore(1, Three, hardState: new HardState(1, 0, 0));
        node.Campaign();
        node.Campaign(); // a second election: term 3
        Assert.Equal(3, node.Core.Term);

        node.Step(new RequestVoteResponse(2, 1, 2, Granted: true));

        Assert.Equal(RaftRole.Candidate, node.Core.Role);
        node.Step(new RequestVoteResponse(3, 1, 3, Granted: true));
        Assert.Equal(RaftRole.Leader, node.Core.Role);
    }

    // Raft paper §5.1: an acknowledgement from an older term does not move the leader's match index.
    [Fact]
    public void AppendAcknowledgementWithALowerTerm_IsIgnoredByTheLeader()
    {
        var node = NodeInRole(RaftRole.Leader);
        node.Drain();
        var noop = node.Core.LastIndex;

        var output = node.Step(new AppendEntriesResponse(3, 1, 1, Success: true, MatchIndex: noop));

        Assert.Equal(0, node.Core.Status.Progress[3]);
        Assert.Empty(output.Sent);
        Assert.Equal(RaftRole.Leader, node.Core.Role);
    }

    // Raft paper §5.1: a stale leader learns the newer term from a follower's answer and steps down.
    [Fact]
    public void StaleLeader_StepsDownWhenAFollowerAnswersWithAHigherTerm()
    {
        var net = Network.Create(3);
        net.Campaign(1);
        net.Isolate(1);
        net.Campaign(2);
        Assert.Equal(RaftRole.Leader, net[2].Core.Role);
        Assert.Equal(RaftRole.Leader, net[1].Core.Role); // still believes it leads term 2
        net.Heal();

        net[1].Propose("stale");
        net.Stabilize();

        Assert.Equal(RaftRole.Follower, net[1].Core.Role);
        Assert.Equal(2, net[1].Core.Term);
        // The new leader's next heartbeat brings the old one in line; its stale entry is gone.
        net.Tick(2, net[2].Options.HeartbeatTicks);
        Assert.Equal(2, net[1].Core.LeaderId);
        Assert.Equal(Terms(net[2].Store), Terms(net[1].Store));
        Assert.DoesNotContain(ReadAll(net[1].Store), e => e.Data.Length > 0 && Text(e) == "stale");
    }

    // Raft paper §5.1: "Current terms are exchanged whenever servers communicate" and only ever grow:
    // whatever a node receives, its term and its persisted term never go down.
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Terms_OnlyGrow_WhateverMessagesArrive(int seed)
    {
        var random = new Random(seed);
        var node = NewCore(Options(1, [1, 2, 3, 4, 5], seed, preVote: seed % 2 == 0, checkQuorum: seed > 2), terms: [1, 1, 2]);
        var term = node.Core.Term;
        var persisted = node.Store.HardState.Term;
        for (var i = 0; i < 2000; i++)
        {
            var from = random.Next(2, 6);
            var msgTerm = random.Next(0, 12);
            var lastIndex = random.Next(0, 6);
            RaftMessage message = random.Next(6) switch
            {
                0 => new AppendEntries(from, 1, msgTerm, random.Next(0, 4), random.Next(0, 3), [], random.Next(0, 4)),
                1 => new AppendEntriesResponse(from, 1, msgTerm, random.Next(2) == 0, random.Next(0, (int)node.Core.LastIndex + 1)),
                2 => new RequestVote(from, 1, msgTerm, lastIndex, random.Next(0, 12), PreVote: random.Next(2) == 0),
                3 => new RequestVoteResponse(from, 1, msgTerm, random.Next(2) == 0, random.Next(2) == 0),
                4 => new TimeoutNow(from, 1, msgTerm),
                _ => null!,
            };
            if (message is null)
                node.Tick(random.Next(1, 8));
            else if (message is AppendEntries && msgTerm == node.Core.Term && node.Core.Role == RaftRole.Leader)
                continue; // two leaders in one term cannot happen (§5.2); not an input to test

            else
                node.Step(message);

            Assert.True(node.Core.Term >= term, $"Term went from {term} to {node.Core.Term} after {message}.");
            Assert.True(node.Store.HardState.Term >= persisted, $"Persisted term went from {persisted} to {node.Store.HardState.Term}.");
            Assert.True(node.Store.HardState.Term == node.Core.Term, "The term in force is not durable after the Ready was handled.");
            term = node.Core.Term;
            persisted = node.Store.HardState.Term;
        }
        Assert.True(term > 2, "The random run never moved the term: it tested nothing.");
    }
}
