using System.Buffers.Binary;

namespace Raft.Testing.Simulation;

/// <summary>
/// A deterministic simulation of a Raft cluster: <see cref="RaftCore"/>s on
/// <see cref="InMemoryLogStore"/>s, a virtual clock, and a network that drops, duplicates, delays,
/// reorders and partitions messages, while nodes crash and restart from their persisted state and a
/// client keeps proposing. One seed drives everything, so a failing seed replays exactly. After
/// every event it checks the safety invariants; after the faults heal, liveness. <b>Testing only.</b>
/// </summary>
/// <remarks>
/// The simulated host follows the same contract as <see cref="RaftNode"/>: it sends
/// <see cref="Ready.Messages"/>, persists the hard state and entries, then sends
/// <see cref="Ready.MessagesAfterPersist"/>, applies committed entries in order, and advances.
/// Invariants checked (DESIGN.md §7): election safety, leader append-only, log matching, leader
/// completeness, state machine safety (including in-order, exactly-once apply), durability of
/// acknowledged proposals, and liveness after healing.
/// </remarks>
public sealed class SimulatedCluster
{
    private const double TickLength = 1.0;

    private readonly SimulationOptions _options;
    private readonly Random _random;
    private readonly SimNode[] _nodes;
    private readonly PriorityQueue<SimEvent, (double Time, long Sequence)> _events = new();
    private readonly HashSet<(int From, int To)> _cut = [];
    private readonly bool _preVote;
    private readonly bool _pipelined;
    private readonly bool _eagerCommit;
    private readonly bool _checkQuorum;
    private readonly int _maxInflight;
    private readonly long _maxAppendBytes;
    private readonly int _snapshotInterval;
    private readonly int _snapshotTrail;
    private readonly int _snapshotChunkBytes;
    private int _snapshotsTaken;
    private int _snapshotsInstalled;
    private int _tornWrites;

    // Invariant records.
    private readonly Dictionary<long, int> _leaderOfTerm = [];
    private readonly Dictionary<(long Index, long Term), (long PrevTerm, EntryKind Kind, ulong Hash)> _entriesSeen = [];
    // Per committed index: its term, its content hash, and the hash of the state after applying it.
    private readonly List<(long Term, ulong Hash, ulong State)> _committed = [(0, 0, 0)]; // index 0 is a sentinel
    private readonly List<(long Index, long Term, long Command)> _acknowledged = [];

    private double _now;

    /// <summary>Debugging aid for tests: sees every delivered message.</summary>
    internal Action<double, RaftMessage>? TraceDelivery { get; set; }
    private long _sequence;
    private long _step;
    private double _dropRate;
    private long _nextCommand = 1;
    private int _crashes;
    private int _partitions;
    private long _delivered;
    private long _dropped;
    private bool _healing;

    /// <summary>Creates a cluster for one run.</summary>
    /// <param name="options">The run's settings.</param>
    public SimulatedCluster(SimulationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _random = new Random(options.Seed);
        _preVote = options.PreVote ?? (options.Seed & 1) == 0;
        _checkQuorum = options.CheckQuorum ?? (options.Seed & 2) == 0;
        _pipelined = options.PipelinedWrites ?? (options.Seed & 4) == 0;
        _eagerCommit = options.EagerCommitPropagation ?? (options.Seed & 8) != 0;
        // Flow-control settings vary by seed: one entry per message exposes different schedules than big batches.
        _maxInflight = new[] { 1, 4, 64 }[_random.Next(3)];
        _maxAppendBytes = new[] { 1L, 256L, 1L << 16 }[_random.Next(3)];
        // Snapshots and compaction, by seed: never, or every few entries with a short trail, so that
        // lagging and restarted nodes often need InstallSnapshot.
        _snapshotInterval = new[] { 0, 5, 20, 60 }[_random.Next(4)];
        _snapshotTrail = new[] { 0, 3, 10 }[_random.Next(3)];
        _snapshotChunkBytes = new[] { 16, 100, 4096 }[_random.Next(3)];
        _nodes = new SimNode[options.Nodes];
        for (var i = 0; i < _nodes.Length; i++)
        {
            var node = new SimNode(i + 1, new InMemoryLogStore(), new InMemorySnapshotStore(), 0.95 + _random.NextDouble() * 0.1);
            _nodes[i] = node;
            node.Core = CreateCore(node);
            Schedule(_random.NextDouble() * TickLength, new TickEvent(node.Id));
        }
        Schedule(NextExponential(_options.MeanTicksBetweenProposals), new ClientEvent());
        Schedule(NextExponential(_options.MeanTicksBetweenFaults), new FaultEvent());
    }

    /// <summary>Runs the faulty phase, then heals everything and checks liveness and durability.</summary>
    /// <returns>What the run did.</returns>
    /// <exception cref="InvariantViolationException">An invariant broke; the message names the seed.</exception>
    public SimulationResult Run()
    {
        for (var i = 0; i < _options.Steps && _events.Count > 0; i++)
            StepOnce();
        Heal();
        CheckLiveness();
        CheckDurability();
        var committed = _committed.Count - 1;
        return new SimulationResult(_options.Seed, _step, _now, _leaderOfTerm.Count, committed, _acknowledged.Count, _crashes, _partitions, _delivered, _dropped)
        {
            SnapshotsTaken = _snapshotsTaken,
            SnapshotsInstalled = _snapshotsInstalled,
            TornWrites = _tornWrites,
        };
    }

    // ------------------------------------------------------------------ event loop

    private void StepOnce()
    {
        var ev = _events.Dequeue();
        _now = Math.Max(_now, ev.Time);
        _step++;
        try
        {
            switch (ev)
            {
                case TickEvent tick:
                    var node = Node(tick.NodeId);
                    if (node.Alive)
                    {
                        node.Core.Tick();
                        ProcessReady(node);
                    }
                    Schedule(_now + TickLength * node.TickScale, tick);
                    break;
                case DeliverEvent deliver:
                    var target = Node(deliver.Message.To);
                    if (!target.Alive || _cut.Contains((deliver.Message.From, deliver.Message.To)))
                    {
                        _dropped++;
                        break;
                    }
                    _delivered++;
                    TraceDelivery?.Invoke(_now, deliver.Message);
                    target.Core.Step(deliver.Message);
                    ProcessReady(target);
                    break;
                case ClientEvent:
                    Propose();
                    if (!_healing)
                        Schedule(_now + NextExponential(_options.MeanTicksBetweenProposals), ev);
                    break;
                case FaultEvent:
                    if (!_healing)
                    {
                        InjectFault();
                        Schedule(_now + NextExponential(_options.MeanTicksBetweenFaults), ev);
                    }
                    break;
                case CrashEvent crash:
                    if (!_healing)
                        Crash(Node(crash.NodeId));
                    break;
                case RestartEvent restart:
                    if (!_healing)
                        Restart(Node(restart.NodeId));
                    break;
                case WriteDoneEvent done:
                    var writer = Node(done.NodeId);
                    if (writer.Alive && writer.Epoch == done.Epoch)
                    {
                        writer.WriteScheduled = false;
                        if (writer.Writing.Count == 0)
                            break; // drained by a Ready that had to be persisted in place
                        // One or more of the writes in flight complete, in order.
                        var completed = CompleteWrites(writer, 1 + _random.Next(writer.Writing.Count));
                        foreach (var ready in completed)
                            writer.Core.Persisted(ready);
                        ScheduleWrite(writer);
                        ProcessReady(writer);
                    }
                    break;
                case HealEvent:
                    if (!_healing)
                        _cut.Clear();
                    break;
            }
        }
        catch (InvariantViolationException)
        {
            throw;
        }
        catch (Exception ex) when (ex is System.Diagnostics.UnreachableException or InvalidOperationException or ArgumentException)
        {
            throw Violation("Core consistency", $"a node threw {ex.GetType().Name}: {ex.Message}", ex);
        }
    }

    private void ProcessReady(SimNode node)
    {
        while (node.Core.HasReady)
        {
            var ready = node.Core.GetReady();
            foreach (var message in ready.Messages)
                Send(message);
#if RAFT_MUTANTS
            var ackedEarly = (_options.Mutations & Mutation.AckBeforePersist) != 0;
            if (ackedEarly)
            {
                foreach (var message in ready.MessagesAfterPersist)
                    Send(message);
            }
#endif
            if (_pipelined && ready.CanPersistAsynchronously && !node.TearNextWrite)
            {
                // The write goes in flight; its acknowledgements wait for it (WriteDoneEvent).
                foreach (var entry in ready.CommittedEntries)
                    Apply(node, entry);
                if (node.Core.Role == RaftRole.Leader)
                    OnLeader(node);
                node.Core.AdvanceBeforePersisting(ready);
                node.Writing.Enqueue(ready);
                ScheduleWrite(node);
                if (ready.CommittedEntries.Count > 0)
                    node.Core.ReportApplied(ready.CommittedEntries[^1].Index);
                continue;
            }
            // Anything else is persisted in place, after every write in flight (as RaftNode does).
            var drained = CompleteWrites(node, node.Writing.Count);
            if (node.TearNextWrite && ready.MustSync)
            {
                // Power fails in the middle of this write: a prefix of it reaches the disk (a torn tail
                // is cut off on recovery), nothing that depends on it is sent, and the node is down.
                node.TearNextWrite = false;
                if (ready.HardState is { } torn && _random.Next(2) == 0)
                    Complete(node.Store.SaveHardStateAsync(torn));
                var keep = _random.Next(ready.Entries.Count + 1);
                if (keep > 0 && ready.SnapshotToRestore is null)
                    Persist(node, [.. ready.Entries.Take(keep)]);
                _tornWrites++;
                Crash(node);
                return;
            }
            if (ready.HardState is { } hardState)
                Complete(node.Store.SaveHardStateAsync(hardState));
            foreach (var chunk in ready.SnapshotChunks)
                ReceiveChunk(node, chunk);
            if (ready.SnapshotToRestore is { } snapshot)
                InstallSnapshot(node, snapshot);
            else if (ready.SnapshotChunks.Count > 0 && ready.SnapshotChunks[^1].Done)
                node.Incoming = null; // the log already held it
            if (ready.Entries.Count > 0)
                Persist(node, ready.Entries);
#if RAFT_MUTANTS
            if (!ackedEarly)
#endif
            {
                foreach (var message in ready.MessagesAfterPersist)
                    Send(message);
            }
            foreach (var entry in ready.CommittedEntries)
                Apply(node, entry);
            if (node.Core.Role == RaftRole.Leader)
                OnLeader(node);
            node.Core.Advance(ready);
            foreach (var done in drained)
                node.Core.Persisted(done);
            if (ready.CommittedEntries.Count > 0)
                node.Core.ReportApplied(ready.CommittedEntries[^1].Index);
            MaybeSnapshot(node);
        }
    }

    /// <summary>Makes the first <paramref name="count"/> writes in flight durable, in order, and sends their acknowledgements.</summary>
    private List<Ready> CompleteWrites(SimNode node, int count)
    {
        var completed = new List<Ready>(count);
        for (var i = 0; i < count; i++)
        {
            var ready = node.Writing.Dequeue();
            Persist(node, ready.Entries);
#if RAFT_MUTANTS
            if ((_options.Mutations & Mutation.AckBeforePersist) == 0)
#endif
            {
                foreach (var message in ready.MessagesAfterPersist)
                    Send(message);
            }
            completed.Add(ready);
        }
        return completed;
    }

    private void ScheduleWrite(SimNode node)
    {
        if (node.Writing.Count == 0 || node.WriteScheduled)
            return;
        node.WriteScheduled = true;
        Schedule(_now + _random.NextDouble() * TickLength, new WriteDoneEvent(node.Id, node.Epoch));
    }

    private void ReceiveChunk(SimNode node, InstallSnapshot chunk)
    {
        if (chunk.Offset == 0)
            node.Incoming = new MemoryStream();
        if (node.Incoming is null || node.Incoming.Length != chunk.Offset)
            throw Violation("Snapshot transfer", $"node {node.Id} was handed a chunk at offset {chunk.Offset} of snapshot {chunk.SnapshotIndex} but holds {node.Incoming?.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"} bytes.");
        node.Incoming.Write(chunk.Data.Span);
    }

    private void InstallSnapshot(SimNode node, SnapshotMetadata snapshot)
    {
        var data = node.Incoming?.ToArray() ?? throw Violation("Snapshot transfer", $"node {node.Id} must restore snapshot {snapshot.Index} but received no data.");
        node.Incoming = null;
        var (index, state) = ParseSnapshot(node, data);
        if (index != snapshot.Index)
            throw Violation("Snapshot transfer", $"node {node.Id} received snapshot data for index {index} labelled {snapshot.Index}.");
        var writer = node.Snapshots.CreateAsync(snapshot).AsTask().GetAwaiter().GetResult();
        writer.Stream.Write(data);
        Complete(writer.CommitAsync());
        Complete(writer.DisposeAsync());
        Complete(node.Store.ResetAsync(snapshot.Index, snapshot.Term));
        RestoreState(node, index, state);
        _snapshotsInstalled++;
    }

    private void RestoreState(SimNode node, long index, ulong state)
    {
        // State machine safety for snapshots: a snapshot is exactly the committed prefix it claims.
        if (index >= _committed.Count || _committed[(int)index].State != state)
            throw Violation("State machine safety", $"node {node.Id} restored a snapshot at index {index} whose state does not match the committed log.");
        node.AppliedIndex = index;
        node.State = state;
        node.LastSnapshotIndex = Math.Max(node.LastSnapshotIndex, index);
    }

    private void MaybeSnapshot(SimNode node)
    {
        if (_snapshotInterval == 0 || node.AppliedIndex - node.LastSnapshotIndex < _snapshotInterval || node.Core.HasReady || node.Writing.Count > 0)
            return;
        var index = node.AppliedIndex;
        var term = node.Store.GetTerm(index);
        var writer = node.Snapshots.CreateAsync(new SnapshotMetadata(index, term, [.. Enumerable.Range(1, _nodes.Length)])).AsTask().GetAwaiter().GetResult();
        writer.Stream.Write(SnapshotBytes(index, node.State));
        Complete(writer.CommitAsync());
        Complete(writer.DisposeAsync());
        node.LastSnapshotIndex = index;
        _snapshotsTaken++;
        var compactTo = Math.Max(node.Store.FirstIndex - 1, index - _snapshotTrail);
        Complete(node.Store.CompactAsync(compactTo));
    }

    private static byte[] SnapshotBytes(long index, ulong state)
    {
        // 16 bytes of state and a deterministic filler, so that snapshots span several chunks.
        var data = new byte[16 + 200];
        BinaryPrimitives.WriteInt64LittleEndian(data, index);
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(8), state);
        for (var i = 16; i < data.Length; i++)
            data[i] = (byte)(state >> (i % 8 * 8));
        return data;
    }

    private (long Index, ulong State) ParseSnapshot(SimNode node, byte[] data)
    {
        if (data.Length < 16)
            throw Violation("Snapshot transfer", $"node {node.Id} received a truncated snapshot of {data.Length} bytes.");
        var index = BinaryPrimitives.ReadInt64LittleEndian(data);
        var state = BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(8));
        if (!data.AsSpan().SequenceEqual(SnapshotBytes(index, state)))
            throw Violation("Snapshot transfer", $"node {node.Id} received a corrupted snapshot for index {index}.");
        return (index, state);
    }

    private void Persist(SimNode node, IReadOnlyList<LogEntry> entries)
    {
        var first = entries[0].Index;
        // Leader append-only: a leader's own writes never replace entries of its log.
        if (node.Core.Role == RaftRole.Leader && first <= node.Store.LastIndex)
            throw Violation("Leader append-only", $"leader {node.Id} of term {node.Core.Term} overwrote its log from index {first} (last {node.Store.LastIndex}).");
        // (With pipelined writes a follower may apply committed entries before its own copy is durable.)
        if (first <= node.Store.LastIndex && first <= node.CommittedFloor())
            throw Violation("Committed entries are never truncated", $"node {node.Id} replaced its log from index {first}, at or below its applied index {node.AppliedIndex}.");
        Complete(node.Store.AppendAsync(entries));
        // Log matching, incrementally: every (index, term) pair has one content and one predecessor term,
        // so two logs that share an (index, term) agree on every entry before it.
        foreach (var entry in entries)
        {
            var prevTerm = entry.Index - 1 >= node.Store.FirstIndex - 1 ? node.Store.GetTerm(entry.Index - 1) : -1;
            var record = (prevTerm, entry.Kind, Hash(entry.Data.Span));
            if (_entriesSeen.TryGetValue((entry.Index, entry.Term), out var seen))
            {
                if (seen != record)
                    throw Violation("Log matching", $"node {node.Id} holds entry ({entry.Index}, term {entry.Term}) with predecessor term {prevTerm} and content {record.Item3:x}, another node had predecessor term {seen.PrevTerm} and content {seen.Hash:x}.");
            }
            else
            {
                _entriesSeen[(entry.Index, entry.Term)] = record;
            }
        }
    }

    private void Apply(SimNode node, LogEntry entry)
    {
        if (entry.Index != node.AppliedIndex + 1)
            throw Violation("State machine safety", $"node {node.Id} applied index {entry.Index} after {node.AppliedIndex} (not in order, or not exactly once).");
        node.AppliedIndex = entry.Index;
        node.State = Mix(node.State, entry.Index, entry.Term, Hash(entry.Data.Span));
        var record = (entry.Term, Hash(entry.Data.Span), node.State);
        if (entry.Index < _committed.Count)
        {
            if (_committed[(int)entry.Index] != record)
                throw Violation("State machine safety", $"node {node.Id} applied (term {entry.Term}) at index {entry.Index}, where term {_committed[(int)entry.Index].Term} was applied before (or its state before it differed).");
        }
        else
        {
            if (entry.Index != _committed.Count)
                throw Violation("State machine safety", $"index {entry.Index} was applied before index {_committed.Count}.");
            _committed.Add(record);
        }
        if (node.Pending.Remove(entry.Index, out var pending) && pending.Term == entry.Term && entry.Kind == EntryKind.Command
            && BinaryPrimitives.ReadInt64LittleEndian(entry.Data.Span) == pending.Command)
        {
            _acknowledged.Add((entry.Index, entry.Term, pending.Command));
        }
    }

    private void OnLeader(SimNode node)
    {
        var term = node.Core.Term;
        if (_leaderOfTerm.TryGetValue(term, out var leader))
        {
            if (leader != node.Id)
                throw Violation("Election safety", $"nodes {leader} and {node.Id} are both leaders of term {term}.");
            return;
        }
        _leaderOfTerm[term] = node.Id;
        // New leaders die young now and then: the schedules that expose commit-rule bugs (Figure 8)
        // need a leader to fail right after it replicated old entries but before its own no-op.
        if (!_healing && _random.NextDouble() < _options.NewLeaderCrashRate)
            Schedule(_now + _random.NextDouble() * 4 * TickLength, new CrashEvent(node.Id));
        // Leader completeness: every entry committed so far is in the new leader's log.
        var store = node.Store;
        // Entries compacted into the leader's snapshot are covered by the snapshot's state check.
        for (var index = Math.Max(1, store.FirstIndex); index < _committed.Count; index++)
        {
            if (index > store.LastIndex || store.GetTerm(index) != _committed[(int)index].Term)
            {
                var has = index > store.LastIndex ? "nothing" : $"term {store.GetTerm(index)}";
                throw Violation("Leader completeness", $"node {node.Id} became leader of term {term} with {has} at committed index {index} (committed term {_committed[(int)index].Term}).");
            }
        }
    }

    // ------------------------------------------------------------------ network

    private void Send(RaftMessage message)
    {
        if (!Node(message.From).Alive || _cut.Contains((message.From, message.To)) || _random.NextDouble() < _dropRate)
        {
            _dropped++;
            return;
        }
        Schedule(_now + _random.NextDouble() * _options.MaxDelayTicks * TickLength, new DeliverEvent(message));
        if (_random.NextDouble() < _options.DuplicateRate)
            Schedule(_now + _random.NextDouble() * _options.MaxDelayTicks * TickLength, new DeliverEvent(message));
    }

    // ------------------------------------------------------------------ workload and faults

    private void Propose()
    {
        // The client talks to a node that believes it leads (or, half the time, to any node).
        SimNode node;
        var leaders = _nodes.Where(n => n.Alive && n.Core.Role == RaftRole.Leader).ToArray();
        if (leaders.Length > 0 && _random.Next(2) == 0)
            node = leaders[_random.Next(leaders.Length)];
        else
            node = _nodes[_random.Next(_nodes.Length)];
        if (!node.Alive)
            return;
        var command = _nextCommand++;
        var data = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(data, command);
        if (node.Core.Propose(data, out var index) == ProposeResult.Accepted)
        {
            node.Pending[index] = (node.Core.Term, command);
            ProcessReady(node);
        }
    }

    private void InjectFault()
    {
        switch (_random.Next(8))
        {
            case 7:
            {
                // The next write of a node (often the leader's) is torn by a crash.
                var alive = _nodes.Where(n => n.Alive).ToArray();
                if (alive.Length > 0)
                    alive[_random.Next(alive.Length)].TearNextWrite = true;
                break;
            }
            case 0:
            case 1:
            {
                // Crash a node (often the leader) and restart it later from its persisted state.
                var alive = _nodes.Where(n => n.Alive).ToArray();
                if (alive.Length == 0)
                    return;
                var leader = alive.FirstOrDefault(n => n.Core.Role == RaftRole.Leader);
                var victim = leader is not null && _random.Next(2) == 0 ? leader : alive[_random.Next(alive.Length)];
                Crash(victim);
                break;
            }
            case 2:
            {
                // Symmetric partition into two random groups.
                _cut.Clear();
                var side = _nodes.Select(_ => _random.Next(2)).ToArray();
                for (var a = 0; a < _nodes.Length; a++)
                {
                    for (var b = 0; b < _nodes.Length; b++)
                    {
                        if (a != b && side[a] != side[b])
                            _cut.Add((a + 1, b + 1));
                    }
                }
                _partitions++;
                Schedule(_now + 5 + _random.NextDouble() * 60, new HealEvent());
                break;
            }
            case 3:
            {
                // Asymmetric partition: some directed links fail.
                var links = 1 + _random.Next(_nodes.Length);
                for (var i = 0; i < links; i++)
                {
                    var from = 1 + _random.Next(_nodes.Length);
                    var to = 1 + _random.Next(_nodes.Length);
                    if (from != to)
                        _cut.Add((from, to));
                }
                _partitions++;
                Schedule(_now + 5 + _random.NextDouble() * 60, new HealEvent());
                break;
            }
            case 4:
            {
                // Isolate the leader.
                var leader = _nodes.FirstOrDefault(n => n.Alive && n.Core.Role == RaftRole.Leader);
                if (leader is null)
                    return;
                foreach (var other in _nodes)
                {
                    if (other.Id == leader.Id)
                        continue;
                    _cut.Add((leader.Id, other.Id));
                    _cut.Add((other.Id, leader.Id));
                }
                _partitions++;
                Schedule(_now + 5 + _random.NextDouble() * 60, new HealEvent());
                break;
            }
            case 5:
                _dropRate = _random.NextDouble() * _options.MaxDropRate;
                break;
            default:
                _cut.Clear();
                _dropRate = 0;
                break;
        }
    }

    private void Crash(SimNode node)
    {
        if (!node.Alive)
            return;
        node.Alive = false;
        node.Pending.Clear();
        node.TearNextWrite = false;
        // Power fails with writes in flight: a prefix of their entries reaches the disk, and nothing
        // that depends on them was sent.
        if (node.Writing.Count > 0)
        {
            var inFlight = node.Writing.SelectMany(r => r.Entries).ToList();
            var keep = _random.Next(inFlight.Count + 1);
            if (keep > 0)
                Persist(node, inFlight.GetRange(0, keep));
            node.Writing.Clear();
        }
        node.WriteScheduled = false;
        node.Epoch++;
        _crashes++;
        Schedule(_now + 1 + _random.NextDouble() * 40, new RestartEvent(node.Id));
    }

    private void Restart(SimNode node)
    {
        if (node.Alive)
            return;
        Revive(node);
    }

    private void Revive(SimNode node)
    {
        node.Alive = true;
        node.Pending.Clear();
        node.Incoming = null;
        // Only what the stores made durable survives: the state machine restarts from the latest
        // snapshot (or empty) and replays the log; the core restarts from the log store.
        node.AppliedIndex = 0;
        node.State = 0;
        if (node.Snapshots.OpenLatest() is { } stream)
        {
            using (stream)
            {
                var (index, state) = ParseSnapshot(node, ((MemoryStream)stream).ToArray());
                RestoreState(node, index, state);
            }
        }
        node.Core = CreateCore(node);
        ProcessReady(node);
    }

    private RaftCore CreateCore(SimNode node) => new(new RaftOptions
    {
        NodeId = node.Id,
        Members = [.. Enumerable.Range(1, _nodes.Length)],
        ElectionTicksMin = 10,
        ElectionTicksMax = 20,
        HeartbeatTicks = 2,
        MaxInflightAppends = _maxInflight,
        MaxAppendBytes = _maxAppendBytes,
        MaxSnapshotChunkBytes = _snapshotChunkBytes,
        PreVote = _preVote,
        CheckQuorum = _checkQuorum,
        EagerCommitPropagation = _eagerCommit,
        Random = new Random(_random.Next()),
#if RAFT_MUTANTS
        Mutations = _options.Mutations,
#endif
    }, node.Store, node.Snapshots);

    // ------------------------------------------------------------------ healing, liveness, durability

    private void Heal()
    {
        _healing = true;
        _cut.Clear();
        _dropRate = 0;
        foreach (var node in _nodes)
        {
            node.TearNextWrite = false;
            if (!node.Alive)
                Revive(node);
        }
    }

    private void CheckLiveness()
    {
        var deadline = _now + _options.LivenessTicks * TickLength;
        long? command = null;
        SimNode? proposer = null;
        long proposerTerm = 0;
        // Work is bounded as well as virtual time: a message storm that never lets time advance is a liveness failure too.
        var eventBudget = _step + _options.LivenessEventsPerTick * _options.LivenessTicks * _nodes.Length;
        while (_now < deadline && _events.Count > 0)
        {
            if (_step > eventBudget)
                throw Violation("Liveness", $"more than {_options.LivenessEventsPerTick * _options.LivenessTicks * _nodes.Length} events within {_options.LivenessTicks} ticks after healing: a message storm.");
            // A proposal whose leader lost its term before committing it is retried on the next leader.
            if (command is not null && !_acknowledged.Any(a => a.Command == command)
                && (proposer!.Core.Role != RaftRole.Leader || proposer.Core.Term != proposerTerm))
            {
                command = null;
            }
            if (command is null)
            {
                var leader = _nodes.FirstOrDefault(n => n.Core.Role == RaftRole.Leader);
                if (leader is not null)
                {
                    var id = _nextCommand++;
                    var data = new byte[8];
                    BinaryPrimitives.WriteInt64LittleEndian(data, id);
                    if (leader.Core.Propose(data, out var index) == ProposeResult.Accepted)
                    {
                        leader.Pending[index] = (leader.Core.Term, id);
                        command = id;
                        proposer = leader;
                        proposerTerm = leader.Core.Term;
                        ProcessReady(leader);
                    }
                }
            }
            else if (_acknowledged.Any(a => a.Command == command))
            {
                // Then every node must converge on the committed log (and, with pipelined writes,
                // have finished writing it: a follower may apply entries before they are durable).
                var target = _committed.Count - 1;
                if (_nodes.All(n => n.AppliedIndex >= target && n.Writing.Count == 0))
                    return;
            }
            StepOnce();
        }
        var state = string.Join("; ", _nodes.Select(n =>
            $"node {n.Id}: {n.Core.Role} term {n.Core.Term} commit {n.Core.CommitIndex} applied {n.AppliedIndex} log [{n.Store.FirstIndex}, {n.Store.LastIndex}] snapshot {n.Snapshots.Latest?.Index}" +
            (n.Core.Role == RaftRole.Leader ? $" progress {string.Join(",", n.Core.Status.Progress.Select(p => $"{p.Key}:{p.Value}"))}" : "")));
        throw Violation("Liveness", command is null
            ? $"no leader accepted a proposal within {_options.LivenessTicks} ticks after healing ({state})."
            : $"the cluster did not commit a proposal and converge within {_options.LivenessTicks} ticks after healing ({state}).");
    }

    private void CheckDurability()
    {
        foreach (var (index, term, command) in _acknowledged)
        {
            foreach (var node in _nodes)
            {
                var store = node.Store;
                if (index < store.FirstIndex)
                {
                    // Compacted: the node's snapshot (checked against the committed log) must cover it.
                    if (node.LastSnapshotIndex < index && node.Snapshots.Latest?.Index < index)
                        throw Violation("Durability", $"acknowledged command {command} at index {index} was compacted from node {node.Id} without a snapshot covering it.");
                    continue;
                }
                if (index > store.LastIndex || store.GetTerm(index) != term)
                    throw Violation("Durability", $"acknowledged command {command} at index {index} (term {term}) is missing from node {node.Id}'s log.");
            }
        }
    }

    // ------------------------------------------------------------------ helpers

    private SimNode Node(int id) => _nodes[id - 1];

    private static void Complete(ValueTask write)
    {
        // The in-memory store completes synchronously, which keeps the simulation on one thread.
        if (!write.IsCompleted)
            throw new InvalidOperationException("The simulated store did not complete synchronously.");
        write.GetAwaiter().GetResult();
    }

    private void Schedule(double time, SimEvent ev)
    {
        ev.Time = time;
        _events.Enqueue(ev, (time, _sequence++));
    }

    private double NextExponential(double mean) => -mean * Math.Log(1 - _random.NextDouble());

    private InvariantViolationException Violation(string invariant, string detail, Exception? inner = null) =>
        new(invariant, _options.Seed, _step, detail, inner);

    private static ulong Mix(ulong state, long index, long term, ulong hash)
    {
        var x = state ^ hash ^ ((ulong)index * 0x9E3779B97F4A7C15UL) ^ ((ulong)term << 32);
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdUL;
        x ^= x >> 33;
        return x;
    }

    private static ulong Hash(ReadOnlySpan<byte> data)
    {
        // FNV-1a: enough to tell commands apart in a simulation.
        var hash = 14695981039346656037UL;
        foreach (var b in data)
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }
        return hash;
    }

    private sealed class SimNode(int id, InMemoryLogStore store, InMemorySnapshotStore snapshots, double tickScale)
    {
        public int Id { get; } = id;

        public InMemoryLogStore Store { get; } = store;

        public InMemorySnapshotStore Snapshots { get; } = snapshots;

        // The state machine: a hash of everything applied, in order.
        public ulong State { get; set; }

        public long LastSnapshotIndex { get; set; }

        // The snapshot being received.
        public MemoryStream? Incoming { get; set; }

        // Crash in the middle of the next write.
        public bool TearNextWrite { get; set; }

        // Each node's clock runs at its own slightly different rate.
        public double TickScale { get; } = tickScale;

        public RaftCore Core { get; set; } = null!;

        public bool Alive { get; set; } = true;

        public long AppliedIndex { get; set; }

        public Dictionary<long, (long Term, long Command)> Pending { get; } = [];

        // Pipelined writes in flight, oldest first, and whether a WriteDoneEvent is scheduled for them.
        public Queue<Ready> Writing { get; } = new();

        public bool WriteScheduled { get; set; }

        // Bumped by each crash, so that a write completion scheduled before it is ignored.
        public int Epoch { get; set; }

        public long CommittedFloor() => AppliedIndex;
    }

    private abstract class SimEvent
    {
        public double Time { get; set; }
    }

    private sealed class TickEvent(int nodeId) : SimEvent
    {
        public int NodeId { get; } = nodeId;
    }

    private sealed class DeliverEvent(RaftMessage message) : SimEvent
    {
        public RaftMessage Message { get; } = message;
    }

    private sealed class ClientEvent : SimEvent;

    private sealed class FaultEvent : SimEvent;

    private sealed class CrashEvent(int nodeId) : SimEvent
    {
        public int NodeId { get; } = nodeId;
    }

    private sealed class RestartEvent(int nodeId) : SimEvent
    {
        public int NodeId { get; } = nodeId;
    }

    private sealed class HealEvent : SimEvent;

    private sealed class WriteDoneEvent(int nodeId, int epoch) : SimEvent
    {
        public int NodeId { get; } = nodeId;

        public int Epoch { get; } = epoch;
    }
}
