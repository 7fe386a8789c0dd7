using FsCheck.Xunit;
using Raft.Testing;
using static Raft.Tests.Core.CoreHarness;

namespace Raft.Tests.Core;

/// <summary>
/// Random well-formed messages (terms near the current one and near <see cref="long.MaxValue"/>,
/// indexes around the log and far beyond it, entries mostly valid and sometimes corrupted, senders
/// that are members, non-members or the node itself) stepped into a core that starts as follower,
/// candidate or leader with a log. After every step: the core did not throw, the term never went
/// down, nothing committed was truncated or changed, the commit index stays within what the
/// members' messages could justify, and a non-member's message changed nothing at all.
/// </summary>
public sealed class CoreFuzzProperties
{
    private static readonly int[] Three = [1, 2, 3];

    /// <summary>Reads choices from FsCheck's bytes, so failing cases shrink; 0 once they run out.</summary>
    private sealed class Choices(byte[] data)
    {
        private int _position;

        public bool More => _position < data.Length;

        public int Next(int bound) => bound <= 1 || _position >= data.Length ? 0 : data[_position++] % bound;

        public bool OneIn(int n) => Next(n) == 0;
    }

    /// <summary>A core with its stores, driven as a host drives it (snapshots restored too), and the bookkeeping the checks need.</summary>
    private sealed class Subject
    {
        private readonly Choices _c;
        private readonly Dictionary<long, LogEntry> _committed = [];
        private readonly Dictionary<int, long> _acked = [];
        private long _lastApplied;
        private long _term;
        private long _justified;

        public Subject(Choices c)
        {
            _c = c;
            Store = CoreHarness.Store([1, 1, 2, 2], new HardState(2, 0, 2));
            Core = new RaftCore(
                new RaftOptions
                {
                    NodeId = 1,
                    Members = Three,
                    PreVote = c.OneIn(2),
                    CheckQuorum = c.OneIn(2),
                    MaxSnapshotBytes = 64,
                    MaxSnapshotChunkBytes = 16,
                    Random = new Random(7),
                },
                Store,
                Snapshots);
            Drain();
            _term = Core.Term;
            _justified = Core.CommitIndex; // recovered from the store
            switch (c.Next(3))
            {
                case 1:
                    Core.Campaign();
                    Drain();
                    break;
                case 2:
                    Core.Campaign();
                    Drain();
                    for (var voter = 2; Core.Role != RaftRole.Leader && voter <= 3; voter++)
                    {
                        Step(new RequestVoteResponse(voter, 1, Core.Role == RaftRole.PreCandidate ? Core.Term + 1 : Core.Term, Granted: true, PreVote: Core.Role == RaftRole.PreCandidate));
                        if (Core.Role == RaftRole.Candidate)
                            Step(new RequestVoteResponse(voter, 1, Core.Term, Granted: true));
                    }
                    Assert.Equal(RaftRole.Leader, Core.Role);
                    Step(new AppendEntriesResponse(2, 1, Core.Term, Success: true, MatchIndex: Core.LastIndex));
                    break;
            }
            _term = Core.Term;
            _justified = Math.Max(_justified, Core.CommitIndex);
        }

        public InMemoryLogStore Store { get; }

        public InMemorySnapshotStore Snapshots { get; } = new();

        public RaftCore Core { get; }

        public int Steps { get; private set; }

        public int Refused => (int)Core.RejectedMessages;

        /// <summary>Messages stepped while the core was leader, candidate or pre-candidate.</summary>
        public Dictionary<RaftRole, int> StepsAs { get; } = [];

        private (long, int, RaftRole, int, long, long, long, long, long, bool) State() =>
            (Core.Term, Core.VotedFor, Core.Role, Core.LeaderId, Core.LastIndex, Core.LastTerm, Core.CommitIndex, Core.AppliedIndex, Store.LastIndex, Core.HasReady);

        public void Drain()
        {
            for (var guard = 0; Core.HasReady; guard++)
            {
                Assert.True(guard < 1000, "The core never ran out of Readies.");
                var ready = Core.GetReady();
                if (ready.HardState is { } hs)
                    Store.SaveHardStateAsync(hs).AsTask().GetAwaiter().GetResult();
                if (ready.SnapshotToRestore is { } snapshot)
                {
                    var writer = Snapshots.CreateAsync(snapshot).AsTask().GetAwaiter().GetResult();
                    writer.Stream.Write(new byte[24]);
                    writer.CommitAsync().AsTask().GetAwaiter().GetResult();
                    Store.ResetAsync(snapshot.Index, snapshot.Term).AsTask().GetAwaiter().GetResult();
                    // The snapshot stands for every entry it covers: they can no longer be compared one by one.
                    foreach (var index in _committed.Keys.Where(i => i <= snapshot.Index).ToList())
                        _committed.Remove(index);
                    _lastApplied = snapshot.Index;
                }
                if (ready.Entries.Count > 0)
                    Store.AppendAsync(ready.Entries).AsTask().GetAwaiter().GetResult();
                foreach (var entry in ready.CommittedEntries)
                {
                    Assert.Equal(_lastApplied + 1, entry.Index); // in order, exactly once
                    _lastApplied = entry.Index;
                    _committed[entry.Index] = entry;
                }
                Core.Advance(ready);
                if (ready.CommittedEntries.Count > 0)
                    Core.ReportApplied(ready.CommittedEntries[^1].Index);
            }
        }

        public void Step(RaftMessage message)
        {
            Steps++;
            StepsAs[Core.Role] = StepsAs.GetValueOrDefault(Core.Role) + 1;
            var member = message.From is 2 or 3;
            // A request from a node outside the configuration is handled while this node is out of
            // contact with any leader it knows (a newer configuration may list the sender: RaftCore.
            // AcceptsFromOutsideConfiguration); it must then keep every invariant, like a member's.
            var stranger = !member && message.From > 0 && message.From != 1 && Core.AcceptsFromOutsideConfiguration(message);
            var before = State();
            var refused = Core.RejectedMessages;
            if (member || stranger)
                Justify(message);
            Core.Step(message);
            if (!member && !stranger)
            {
                Assert.Equal(before, State());
                Assert.Equal(refused + 1, Core.RejectedMessages);
            }
            Drain();
            Check(message);
        }

        public void Act()
        {
            switch (_c.Next(4))
            {
                case 0:
                    for (var i = _c.Next(6); i >= 0; i--)
                        Core.Tick();
                    break;
                case 1:
                    Core.Propose(Bytes($"p{Steps}"), out _);
                    break;
                case 2:
                    Core.ReadIndex(Steps);
                    break;
                default:
                    if (_c.OneIn(2))
                        Core.Campaign();
                    else
                        Core.TransferLeadership(2 + _c.Next(2));
                    break;
            }
            Steps++;
            Drain();
            Check(null);
        }

        /// <summary>Raises the bound on the commit index by what a member's message could justify, if the core believes it.</summary>
        private void Justify(RaftMessage message)
        {
            switch (message)
            {
                case AppendEntries append when append.Entries is not null && append.PrevLogIndex >= 0 && append.PrevLogIndex <= long.MaxValue - append.Entries.Count:
                    _justified = Math.Max(_justified, Math.Min(append.LeaderCommit, append.PrevLogIndex + append.Entries.Count));
                    break;
                case InstallSnapshot chunk:
                    _justified = Math.Max(_justified, chunk.SnapshotIndex);
                    break;
                case AppendEntriesResponse { Success: true } response:
                    _acked[response.From] = Math.Max(_acked.GetValueOrDefault(response.From), response.MatchIndex);
                    break;
                case InstallSnapshotResponse { Success: true, Done: true } response:
                    _acked[response.From] = Math.Max(_acked.GetValueOrDefault(response.From), response.SnapshotIndex);
                    break;
            }
        }

        private void Check(RaftMessage? message)
        {
            var what = message?.ToString() ?? "a host action";
            Assert.True(Core.Term >= _term, $"The term went from {_term} to {Core.Term} after {what}.");
            _term = Core.Term;
            Assert.Equal(Core.Term, Store.HardState.Term);
            Assert.True(Core.CommitIndex <= Core.LastIndex, $"Commit {Core.CommitIndex} is beyond the last index {Core.LastIndex} after {what}.");
            if (Core.Role == RaftRole.Leader)
            {
                // What a leader may commit: the highest index held by a majority (itself durably, and the members' acknowledgements).
                var held = new[] { Store.LastIndex, _acked.GetValueOrDefault(2), _acked.GetValueOrDefault(3) }.Order().ToArray();
                _justified = Math.Max(_justified, held[1]);
            }
            Assert.True(Core.CommitIndex <= _justified, $"Commit {Core.CommitIndex} is beyond what any member justified ({_justified}) after {what}.");
            // Nothing committed is ever truncated or replaced.
            foreach (var (index, entry) in _committed)
            {
                Assert.True(index >= Store.FirstIndex && index <= Store.LastIndex, $"Committed index {index} left the log [{Store.FirstIndex}, {Store.LastIndex}] after {what}.");
                var stored = new List<LogEntry>();
                Store.ReadEntries(index, index + 1, long.MaxValue, stored);
                Assert.True(stored[0].Term == entry.Term && stored[0].Data.Span.SequenceEqual(entry.Data.Span), $"Committed entry {index} changed after {what}.");
            }
        }

        /// <summary>One random message, mostly plausible, sometimes absurd.</summary>
        public RaftMessage Message()
        {
            var from = _c.Next(10) switch
            {
                < 4 => 2,
                < 7 => 3,
                7 => 4,
                8 => 1,
                _ => new[] { 0, -1, 9, int.MaxValue, int.MinValue }[_c.Next(5)],
            };
            var term = Term();
            return _c.Next(7) switch
            {
                0 => Append(from, term),
                1 => new AppendEntriesResponse(from, 1, term, _c.OneIn(2), Index(), _c.OneIn(3) ? Index() : 0, _c.OneIn(3) ? _c.Next(5) : 0, _c.OneIn(5) ? long.MaxValue : _c.Next(4)),
                2 => new RequestVote(from, 1, term, Index(), _c.Next(6), PreVote: _c.OneIn(2), LeadershipTransfer: _c.OneIn(4)),
                3 => new RequestVoteResponse(from, 1, term, Granted: !_c.OneIn(3), PreVote: _c.OneIn(2)),
                4 => new InstallSnapshot(from, 1, term, Index(), _c.Next(5), _c.OneIn(8) ? [] : Three, _c.OneIn(6) ? long.MaxValue - _c.Next(3) : 16 * _c.Next(6), new byte[_c.OneIn(4) ? 0 : 16], Done: _c.OneIn(3)),
                5 => new InstallSnapshotResponse(from, 1, term, Index(), _c.OneIn(4) ? 1L << 40 : 16 * _c.Next(4), _c.OneIn(3), _c.OneIn(2)),
                _ => new TimeoutNow(from, 1, term),
            };
        }

        private long Term()
        {
            var current = Core.Term;
            static long Plus(long a, long b) => a > long.MaxValue - b ? long.MaxValue : a + b;
            return _c.Next(12) switch
            {
                < 2 => Math.Max(0, current - 1),
                < 7 => current,
                < 9 => Plus(current, 1),
                9 => Plus(current, 2),
                10 => new[] { long.MaxValue, long.MaxValue - 1, Plus(current, (1L << 32) + 1), Plus(current, 1L << 32), -1 }[_c.Next(5)],
                _ => _c.Next(5),
            };
        }

        private long Index() => _c.Next(10) switch
        {
            8 => -1 - _c.Next(2),
            9 => _c.OneIn(2) ? long.MaxValue : Core.LastIndex + 1 + _c.Next(1000),
            _ => _c.Next((int)Math.Min(Core.LastIndex + 3, 60)),
        };

        private AppendEntries Append(int from, long term)
        {
            var prev = _c.OneIn(5) ? Index() : Math.Max(0, Core.LastIndex - _c.Next(4));
            // Usually the term this node holds at prev, so the message matches and entries land.
            var prevTerm = !_c.OneIn(4) && prev >= Store.FirstIndex - 1 && prev <= Store.LastIndex ? Store.GetTerm(prev) : _c.Next(5);
            var count = _c.Next(4);
            var entries = new LogEntry[count];
            var entryTerm = Math.Max(1, prevTerm);
            for (var i = 0; i < count; i++)
            {
                if (_c.OneIn(3))
                    entryTerm = Math.Min(term, entryTerm + 1);
                var index = prev + 1 + i;
                entries[i] = _c.OneIn(12) // corrupted: a wrong index or term
                    ? new LogEntry(_c.OneIn(2) ? index + _c.Next(3) - 1 : index, _c.OneIn(2) ? entryTerm : _c.Next(6) - 1, EntryKind.Command, Bytes($"e{Steps}.{i}"))
                    : new LogEntry(index, entryTerm, EntryKind.Command, Bytes($"e{Steps}.{i}"));
            }
            var commit = _c.Next(4) switch
            {
                0 => 0,
                1 => Index(),
                2 => prev + count,
                _ => long.MaxValue,
            };
            return new AppendEntries(from, 1, term, prev, prevTerm, entries, commit, _c.Next(3));
        }
    }

    private static void Run(byte[] data)
    {
        var c = new Choices(data);
        var subject = new Subject(c);
        while (c.More && subject.Steps < 300)
        {
            if (c.OneIn(5))
                subject.Act();
            else
                subject.Step(subject.Message());
        }
    }

    [Property(MaxTest = 300, EndSize = 400)]
    public void NoMessage_ThrowsOrBreaksTheCoresInvariants(byte[] data) => Run(data);

    /// <summary>The same, over fixed seeds, so a run is reproducible and the coverage does not depend on FsCheck's luck.</summary>
    [Fact]
    public void NoMessage_ThrowsOrBreaksTheCoresInvariants_OnFixedSeeds()
    {
        var refused = 0;
        var asRole = new Dictionary<RaftRole, int>();
        var committed = 0L;
        for (var seed = 0; seed < 300; seed++)
        {
            var data = new byte[600];
            new Random(seed).NextBytes(data);
            var c = new Choices(data);
            var subject = new Subject(c);
            while (c.More && subject.Steps < 300)
            {
                if (c.OneIn(5))
                    subject.Act();
                else
                    subject.Step(subject.Message());
            }
            refused += subject.Refused;
            foreach (var (role, steps) in subject.StepsAs)
                asRole[role] = asRole.GetValueOrDefault(role) + steps;
            committed += subject.Core.CommitIndex;
        }
        // The runs must reach the interesting states, or they test little.
        Assert.True(refused > 2000, $"Only {refused} messages were refused.");
        foreach (var role in new[] { RaftRole.Follower, RaftRole.PreCandidate, RaftRole.Candidate, RaftRole.Leader })
            Assert.True(asRole.GetValueOrDefault(role) > 300, $"Only {asRole.GetValueOrDefault(role)} messages reached a {role}.");
        Assert.True(committed > 500, $"The runs committed only {committed} entries in all.");
    }
}
