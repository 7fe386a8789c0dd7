using System.Text;
using Raft.Testing;

namespace Raft.Tests.Core;

/// <summary>Builders for cores, stores and entries. Every core gets a seeded <see cref="Random"/>.</summary>
internal static class CoreHarness
{
    /// <summary>Core options; PreVote and CheckQuorum are off unless asked, so tests pin the plain §5 rules.</summary>
    public static RaftOptions Options(
        int id,
        IReadOnlyList<int> members,
        int seed = 1,
        bool preVote = false,
        bool checkQuorum = false,
        int electionMin = 10,
        int electionMax = 20,
        int heartbeat = 2,
        int maxInflight = 64,
        long maxAppendBytes = 1 << 20,
        int maxUncommitted = 1_000_000,
        bool eagerCommit = false) =>
        new()
        {
            NodeId = id,
            Members = members,
            ElectionTicksMin = electionMin,
            ElectionTicksMax = electionMax,
            HeartbeatTicks = heartbeat,
            MaxInflightAppends = maxInflight,
            MaxAppendBytes = maxAppendBytes,
            MaxUncommittedEntries = maxUncommitted,
            PreVote = preVote,
            CheckQuorum = checkQuorum,
            EagerCommitPropagation = eagerCommit,
            Random = new Random(seed * 7919 + id),
        };

    /// <summary>The payload of the pre-filled entry at (<paramref name="index"/>, <paramref name="term"/>): unique per position, so logs can be compared by content.</summary>
    public static ReadOnlyMemory<byte> Payload(long index, long term) => Encoding.UTF8.GetBytes($"{index}@{term}");

    public static LogEntry Entry(long index, long term, EntryKind kind = EntryKind.Command) =>
        new(index, term, kind, kind == EntryKind.NoOp ? ReadOnlyMemory<byte>.Empty : Payload(index, term));

    /// <summary>Entries at indexes 1.. with the given terms.</summary>
    public static LogEntry[] Entries(params long[] terms) => [.. terms.Select((t, i) => Entry(i + 1, t))];

    /// <summary>A store holding entries 1.. with <paramref name="terms"/> and <paramref name="hardState"/>.</summary>
    public static InMemoryLogStore Store(long[]? terms = null, HardState? hardState = null)
    {
        var store = new InMemoryLogStore();
        if (terms is { Length: > 0 })
            store.AppendAsync(Entries(terms)).AsTask().GetAwaiter().GetResult();
        var hs = hardState ?? new HardState(terms is { Length: > 0 } ? terms.Max() : 0, 0, 0);
        if (hs != default)
            store.SaveHardStateAsync(hs).AsTask().GetAwaiter().GetResult();
        return store;
    }

    public static TestCore NewCore(RaftOptions options, long[]? terms = null, HardState? hardState = null) =>
        new(options, Store(terms, hardState));

    public static TestCore NewCore(int id, IReadOnlyList<int> members, long[]? terms = null, HardState? hardState = null, int seed = 1) =>
        NewCore(Options(id, members, seed), terms, hardState);

    /// <summary>
    /// Node 1 elected leader of term 1 in a cluster of <paramref name="options"/>' members, with its
    /// no-op (index 1) acknowledged by every follower: every follower is in Replicate and index 1 is
    /// committed. The acknowledgements are exactly what the followers would send.
    /// </summary>
    public static TestCore SteadyLeader(RaftOptions options)
    {
        var leader = NewCore(options);
        leader.Campaign();
        if (options.PreVote)
        {
            for (var voter = 2; leader.Core.Role == RaftRole.PreCandidate; voter++)
                leader.Step(new RequestVoteResponse(voter, 1, 1, Granted: true, PreVote: true));
        }
        for (var voter = 2; leader.Core.Role != RaftRole.Leader; voter++)
            leader.Step(new RequestVoteResponse(voter, 1, 1, Granted: true));
        foreach (var follower in options.Members.Where(m => m != 1))
            leader.Step(new AppendEntriesResponse(follower, 1, 1, Success: true, MatchIndex: 1));
        Assert.Equal(1, leader.Core.CommitIndex);
        leader.Drain();
        return leader;
    }

    public static TestCore SteadyLeader(int size = 3, int maxInflight = 64, long maxAppendBytes = 1 << 20) =>
        SteadyLeader(Options(1, Ids(size), maxInflight: maxInflight, maxAppendBytes: maxAppendBytes));

    public static int[] Ids(int count) => [.. Enumerable.Range(1, count)];

    public static string Text(LogEntry entry) => Encoding.UTF8.GetString(entry.Data.Span);

    public static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    /// <summary>The whole log of a store, in index order.</summary>
    public static List<LogEntry> ReadAll(InMemoryLogStore store)
    {
        var list = new List<LogEntry>();
        if (store.LastIndex >= store.FirstIndex)
            store.ReadEntries(store.FirstIndex, store.LastIndex + 1, long.MaxValue, list);
        return list;
    }

    public static long[] Terms(InMemoryLogStore store) => [.. ReadAll(store).Select(e => e.Term)];
}

/// <summary>What draining one or more <see cref="Ready"/>s produced, in order.</summary>
internal sealed class Output
{
    public List<Ready> Readies { get; } = [];

    /// <summary>Messages the core allowed to send before persisting.</summary>
    public List<RaftMessage> Messages { get; } = [];

    /// <summary>Messages the core allowed to send only after persisting.</summary>
    public List<RaftMessage> MessagesAfterPersist { get; } = [];

    /// <summary>All messages, in the order the host sends them.</summary>
    public List<RaftMessage> Sent { get; } = [];

    public List<LogEntry> Committed { get; } = [];

    public List<LogEntry> Persisted { get; } = [];

    public List<ReadState> ReadStates { get; } = [];

    public List<HardState> HardStates { get; } = [];

    public List<SoftState> SoftStates { get; } = [];

    public IEnumerable<T> Of<T>() where T : RaftMessage => Sent.OfType<T>();

    public IEnumerable<T> To<T>(int to) where T : RaftMessage => Sent.OfType<T>().Where(m => m.To == to);

    public void Add(Ready ready)
    {
        Readies.Add(ready);
        Messages.AddRange(ready.Messages);
        MessagesAfterPersist.AddRange(ready.MessagesAfterPersist);
        Sent.AddRange(ready.Messages);
        Sent.AddRange(ready.MessagesAfterPersist);
        Committed.AddRange(ready.CommittedEntries);
        Persisted.AddRange(ready.Entries);
        ReadStates.AddRange(ready.ReadStates);
        if (ready.HardState is { } hs)
            HardStates.Add(hs);
        if (ready.SoftState is { } soft)
            SoftStates.Add(soft);
    }
}

/// <summary>
/// One core with its store, driven the way a host drives it: GetReady, persist hard state and
/// entries, collect the messages, hand out committed entries, Advance.
/// </summary>
internal sealed class TestCore
{
    private readonly ISnapshotStore? _snapshots;

    public TestCore(RaftOptions options, InMemoryLogStore store, ISnapshotStore? snapshots = null)
    {
        Options = options;
        Store = store;
        _snapshots = snapshots;
        Core = new RaftCore(options, store, snapshots);
    }

    public RaftOptions Options { get; }

    public InMemoryLogStore Store { get; }

    public RaftCore Core { get; }

    public int Id => Core.Id;

    /// <summary>Every committed entry handed out so far (across all Readies), in the order handed out.</summary>
    public List<LogEntry> Applied { get; } = [];

    /// <summary>Every read state handed out so far (across all Readies), in the order handed out.</summary>
    public List<ReadState> Reads { get; } = [];

    /// <summary>Carries out one Ready: persist, collect, apply, Advance.</summary>
    public Output HandleReady(Ready ready, Output? into = null)
    {
        var output = into ?? new Output();
        if (ready.HardState is { } hs)
            Store.SaveHardStateAsync(hs).AsTask().GetAwaiter().GetResult();
        if (ready.Entries.Count > 0)
            Store.AppendAsync(ready.Entries).AsTask().GetAwaiter().GetResult();
        output.Add(ready);
        Applied.AddRange(ready.CommittedEntries);
        Reads.AddRange(ready.ReadStates);
        Core.Advance(ready);
        if (ready.CommittedEntries.Count > 0)
            Core.ReportApplied(ready.CommittedEntries[^1].Index);
        return output;
    }

    /// <summary>Handles Readies until the core has nothing left to do.</summary>
    public Output Drain(Output? into = null)
    {
        var output = into ?? new Output();
        for (var guard = 0; Core.HasReady; guard++)
        {
            if (guard > 1000)
                throw new InvalidOperationException($"Node {Id} never ran out of Readies.");
            HandleReady(Core.GetReady(), output);
        }
        return output;
    }

    public Output Step(RaftMessage message)
    {
        Core.Step(message);
        return Drain();
    }

    public Output Tick(int ticks = 1)
    {
        var output = new Output();
        for (var i = 0; i < ticks; i++)
        {
            Core.Tick();
            Drain(output);
        }
        return output;
    }

    public Output Campaign()
    {
        Core.Campaign();
        return Drain();
    }

    /// <summary>Proposes <paramref name="text"/> (must be accepted) and returns its index; the Ready is left for the caller.</summary>
    public long Propose(string text)
    {
        var result = Core.Propose(CoreHarness.Bytes(text), out var index);
        Assert.Equal(ProposeResult.Accepted, result);
        return index;
    }

    /// <summary>A copy of the durable state, as a crash would leave it, started as a new core.</summary>
    public TestCore Restart() => new(Options, Store.Clone(), _snapshots);
}

/// <summary>
/// An in-process network over several cores, after etcd's raft_test.go <c>network</c>: messages
/// are delivered in FIFO order until the network is quiet; links can be cut, nodes isolated and
/// messages dropped by predicate. It checks election safety and state machine safety as it goes.
/// </summary>
internal sealed class Network
{
    private readonly Dictionary<int, TestCore> _nodes = [];
    private readonly List<RaftMessage> _queue = [];
    private Random? _chaos;
    private double _dropRate;
    private double _duplicateRate;
    private readonly HashSet<(int From, int To)> _cut = [];
    private readonly List<Func<RaftMessage, bool>> _drops = [];
    private readonly Dictionary<long, int> _leaderOfTerm = [];
    private readonly Dictionary<long, LogEntry> _appliedAt = [];
    private readonly Dictionary<int, List<ReadState>> _readStates = [];

    public Network(IEnumerable<TestCore> nodes)
    {
        foreach (var node in nodes)
            _nodes.Add(node.Id, node);
    }

    /// <summary><paramref name="count"/> fresh nodes 1..count with the given options.</summary>
    public static Network Create(int count, Func<int, int[], RaftOptions>? options = null, Func<int, long[]?>? terms = null, Func<int, HardState?>? hardState = null)
    {
        var ids = CoreHarness.Ids(count);
        options ??= (id, members) => CoreHarness.Options(id, members);
        return new Network(ids.Select(id => CoreHarness.NewCore(options(id, ids), terms?.Invoke(id), hardState?.Invoke(id))));
    }

    public TestCore this[int id] => _nodes[id];

    public IEnumerable<TestCore> Nodes => _nodes.Values;

    /// <summary>Every message that reached a node, in delivery order.</summary>
    public List<RaftMessage> Delivered { get; } = [];

    /// <summary>Every message that was dropped.</summary>
    public List<RaftMessage> Dropped { get; } = [];

    public void Cut(int a, int b)
    {
        _cut.Add((a, b));
        _cut.Add((b, a));
    }

    public void Isolate(int id)
    {
        foreach (var other in _nodes.Keys.Where(o => o != id))
            Cut(id, other);
    }

    /// <summary>Drops every message matching <paramref name="predicate"/> until <see cref="Heal"/>.</summary>
    public void Drop(Func<RaftMessage, bool> predicate) => _drops.Add(predicate);

    public void Heal()
    {
        _cut.Clear();
        _drops.Clear();
        _chaos = null;
    }

    /// <summary>From now until <see cref="Heal"/>: deliver pending messages in random order, drop and duplicate some.</summary>
    public void Chaos(Random random, double dropRate, double duplicateRate)
    {
        _chaos = random;
        _dropRate = dropRate;
        _duplicateRate = duplicateRate;
    }

    /// <summary>Replaces a node by a restart from its durable state (what a crash leaves).</summary>
    public TestCore Restart(int id)
    {
        var restarted = _nodes[id].Restart();
        _nodes[id] = restarted;
        return restarted;
    }

    public void Send(IEnumerable<RaftMessage> messages)
    {
        _queue.AddRange(messages);
    }

    /// <summary>Drains every node's Readies and delivers messages until nothing is left.</summary>
    public void Stabilize()
    {
        foreach (var node in _nodes.Values)
            Collect(node, node.Drain());
        var delivered = 0;
        while (_queue.Count > 0)
        {
            if (++delivered > 200_000)
                throw new InvalidOperationException("The network never became quiet.");
            var at = _chaos?.Next(_queue.Count) ?? 0;
            var message = _queue[at];
            _queue.RemoveAt(at);
            if (_cut.Contains((message.From, message.To)) || _drops.Any(d => d(message)) || !_nodes.TryGetValue(message.To, out var target)
                || (_chaos is not null && _chaos.NextDouble() < _dropRate))
            {
                Dropped.Add(message);
                continue;
            }
            if (_chaos is not null && _chaos.NextDouble() < _duplicateRate)
                _queue.Add(message);
            Delivered.Add(message);
            target.Core.Step(message);
            Collect(target, target.Drain());
        }
    }

    public void Campaign(int id)
    {
        _nodes[id].Core.Campaign();
        Stabilize();
    }

    /// <summary>Ticks every node once per round (in id order), delivering messages after each round.</summary>
    public void TickAll(int rounds)
    {
        for (var r = 0; r < rounds; r++)
        {
            foreach (var node in _nodes.Values.OrderBy(n => n.Id))
                node.Core.Tick();
            Stabilize();
        }
    }

    public void Tick(int id, int ticks)
    {
        for (var i = 0; i < ticks; i++)
        {
            _nodes[id].Core.Tick();
            Stabilize();
        }
    }

    /// <summary>Ticks node <paramref name="id"/> (delivering after each tick) until <paramref name="condition"/> holds or <paramref name="maxTicks"/> ran out.</summary>
    public void TickUntil(int id, Func<bool> condition, int maxTicks)
    {
        for (var i = 0; i < maxTicks && !condition(); i++)
            Tick(id, 1);
    }

    public long Propose(int id, string text)
    {
        var index = _nodes[id].Propose(text);
        Stabilize();
        return index;
    }

    /// <summary>Every read released by node <paramref name="id"/>, in order.</summary>
    public List<ReadState> ReadStates(int id) => _readStates.TryGetValue(id, out var list) ? list : _readStates[id] = [];

    public IEnumerable<TestCore> Leaders => _nodes.Values.Where(n => n.Core.Role == RaftRole.Leader);

    private void Collect(TestCore node, Output output)
    {
        // Election safety: at most one leader per term (checked on every role change).
        foreach (var soft in output.SoftStates.Where(s => s.Role == RaftRole.Leader))
        {
            if (_leaderOfTerm.TryGetValue(soft.Term, out var other) && other != node.Id)
                Assert.Fail($"Two leaders in term {soft.Term}: node {other} and node {node.Id}.");
            _leaderOfTerm[soft.Term] = node.Id;
        }
        // State machine safety: no two nodes apply different entries at one index.
        foreach (var entry in output.Committed)
        {
            if (_appliedAt.TryGetValue(entry.Index, out var seen))
            {
                Assert.True(seen.Term == entry.Term && seen.Data.Span.SequenceEqual(entry.Data.Span),
                    $"Node {node.Id} applied ({entry.Index}, term {entry.Term}) where another node applied ({seen.Index}, term {seen.Term}).");
            }
            else
            {
                _appliedAt[entry.Index] = entry;
            }
        }
        ReadStates(node.Id).AddRange(output.ReadStates);
        Send(output.Sent);
    }
}
