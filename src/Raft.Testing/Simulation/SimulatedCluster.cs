using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Raft.Testing.Linearizability;

namespace Raft.Testing.Simulation;

/// <summary>
/// A deterministic simulation of a Raft cluster of shipped <see cref="RaftNode"/>s: the same event
/// loop, writer and apply loop code a host runs, driven round by round on one thread over a virtual
/// clock, crash-faithful log stores (<see cref="CrashFaithfulLogStore"/>, or the shipped
/// <see cref="FileLogStore"/> over a crash-faithful file system: <see cref="SimulationOptions.FileLogStore"/>), and a network that drops,
/// duplicates, delays, reorders and partitions messages, while nodes crash (tearing their writes)
/// and restart from what their stores kept. Clients write and read linearizably through leaders and
/// followers (forwarded and ReadIndex reads), leadership is transferred, snapshots are taken and
/// installed. One seed drives everything, so a failing seed replays exactly. <b>Testing only.</b>
/// </summary>
/// <remarks>
/// Invariants (checked as they can break): election safety, leader append-only, log matching,
/// committed entries never truncated, leader completeness (every committed, hence every
/// acknowledged, entry is in each new leader's log), state machine safety (one command per index,
/// in order; a restored snapshot is exactly the committed prefix it claims), exactly-once (no
/// command applied at two indexes), no node fault. At the end: durability of every acknowledged
/// write, linearizability of the clients' history (the testing package's checker), and liveness
/// after the faults heal.
/// </remarks>
public sealed partial class SimulatedCluster
{
    private const int KeyCount = 3;
    private const byte PutTag = 1;

    private readonly SimulationOptions _options;
    private readonly Random _random;
    private readonly Random _tearRandom;
    private readonly SimulatedTime _time = new();
    private readonly SimNode[] _nodes;
    private readonly PriorityQueue<SimEvent, (double Time, long Sequence)> _events = new();
    private readonly HashSet<(int From, int To)> _cut = [];
    private readonly HistoryRecorder _history;
    private readonly List<ClientOp> _pending = [];
    private readonly bool _preVote;
    private readonly bool _checkQuorum;
    private long _leaseReads; // served by processes that crashed since
    private readonly bool _pipelined;
    private readonly bool _forward;
    private readonly int _maxInflight;
    private readonly long _maxAppendBytes;
    private readonly int _snapshotInterval;
    private readonly int _snapshotTrail;
    private readonly int _snapshotChunkBytes;

    // Invariant records.
    private readonly Dictionary<long, int> _leaderOfTerm = [];
    private readonly Dictionary<(long Index, long Term), (long PrevTerm, EntryKind Kind, ulong Hash)> _entriesSeen = [];
    // Per committed command index: its term, content hash and the state after applying it.
    private readonly SortedList<long, (long Term, ulong Hash, ulong State)> _committed = [];
    // Per committed command index: an upper bound of the term in which it was committed (the highest
    // term that had a leader when it was first applied). Leader completeness binds the leaders of later terms.
    private readonly Dictionary<long, long> _committedBy = [];
    private long _highestLeaderTerm;
    private readonly Dictionary<long, long> _commandIndex = []; // command id -> the index it was applied at
    private readonly List<long> _acknowledgedWrites = [];        // command ids whose proposer was told "done"

    private long _sequence;
    private long _step;
    private double _dropRate;
    private long _nextCommand = 1;
    private bool _healing;
    private readonly Counters _counters = new();

    /// <summary>Creates a cluster for one run.</summary>
    /// <param name="options">The run's settings.</param>
    public SimulatedCluster(SimulationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _random = new Random(options.Seed);
        _tearRandom = new Random(options.Seed ^ 0x5EED);
        _history = new HistoryRecorder(_time);
        _preVote = options.PreVote ?? (options.Seed & 1) == 0;
        _checkQuorum = options.CheckQuorum ?? (options.Seed & 2) == 0;
        _pipelined = options.PipelinedWrites ?? (options.Seed & 4) == 0;
        _forward = options.ForwardToLeader ?? (options.Seed & 8) != 0;
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
            _nodes[i] = new SimNode(i + 1, 0.95 + _random.NextDouble() * 0.1, CreateLog(i + 1));
        foreach (var node in _nodes)
        {
            Start(node);
            Schedule(_random.NextDouble(), new TickEvent(node.Id, node.Epoch));
        }
        Schedule(NextExponential(_options.MeanTicksBetweenProposals), new ClientEvent());
        Schedule(NextExponential(_options.MeanTicksBetweenFaults), new FaultEvent());
    }

    /// <summary>Debugging aid for tests: sees every delivered message.</summary>
    internal Action<double, RaftMessage>? TraceDelivery { get; set; }

    /// <summary>Runs the faulty phase, then heals everything and checks liveness, durability and linearizability.</summary>
    /// <returns>What the run did.</returns>
    /// <exception cref="InvariantViolationException">An invariant broke; the message names the seed.</exception>
    public SimulationResult Run()
    {
        try
        {
            return RunCore();
        }
        finally
        {
            DisposeMeters(); // or every incarnation's node, store and disk stays reachable from the global list of meters
        }
    }

    private SimulationResult RunCore()
    {
        for (var i = 0; i < _options.Steps && _events.Count > 0; i++)
            StepOnce();
        Heal();
        CheckLiveness();
        CheckDurability();
        CheckLinearizability();
        var c = _counters;
        return new SimulationResult(_options.Seed)
        {
            Steps = _step,
            VirtualTicks = _time.Now,
            Leaders = _leaderOfTerm.Count,
            LeaderChanges = c.LeaderChanges,
            CommittedCommands = _committed.Count,
            AcknowledgedWrites = _acknowledgedWrites.Count,
            ForwardedWrites = c.ForwardedWrites,
            Reads = c.Reads,
            FollowerReads = c.FollowerReads,
            Transfers = c.Transfers,
            RefusedCommands = c.RefusedCommands,
            Crashes = c.Crashes,
            TornWrites = _nodes.Sum(n => n.Store.TornWrites),
            FileLogLostOperations = _nodes.Sum(n => (n.Store as SimulatedFileLog)?.LostOperations ?? 0),
            FileLogTornTailsCut = _nodes.Sum(n => (n.Store as SimulatedFileLog)?.TornTailsCut ?? 0),
            FileLogLeftoversDeleted = _nodes.Sum(n => (n.Store as SimulatedFileLog)?.LeftoversDeleted ?? 0),
            Partitions = c.Partitions,
            MessagesDelivered = c.MessagesDelivered,
            MessagesDropped = c.MessagesDropped,
            SnapshotsTaken = c.SnapshotsTaken,
            SnapshotInstalls = c.SnapshotInstalls,
            CoveredWrites = c.CoveredWrites,
            SessionWrites = _sessionCounters.Writes,
            SessionRetries = _sessionCounters.Retries,
            SessionAcknowledged = _sessionCounters.Acknowledged,
            SessionDuplicatesAnswered = _sessionCounters.DuplicatesAnswered,
            LeaseReads = _leaseReads + _nodes.Where(n => n.Alive).Sum(n => n.Raft.LeaseReadsServed),
            MembershipChanges = _membershipChanges,
            LeaderRemovals = _leaderRemovals,
            Promotions = _promotions,
            Removals = _removals,
        };
    }

    // ------------------------------------------------------------------ nodes

    private void Start(SimNode node)
    {
        node.Store.Recover();
        node.Alive = true;
        node.Role = RaftRole.Follower;
        node.Term = 0;
        node.ApplyScheduled = node.WriteScheduled = node.PrepareScheduled = false;
        node.StateMachine = new SimStateMachine(this, node);
        node.Store.Appending = entries => OnAppend(node, entries);
        var options = new RaftNodeOptions
        {
            NodeId = node.Id,
            Members = BootstrapMembers(node),
            Join = Joins(node),
            TickInterval = SimulatedTime.TickLength,
            HeartbeatInterval = SimulatedTime.TickLength * 2,
            ElectionTimeoutMin = SimulatedTime.TickLength * 10,
            ElectionTimeoutMax = SimulatedTime.TickLength * 20,
            MaxInflightAppends = _maxInflight,
            MaxAppendBytes = _maxAppendBytes,
            MaxSnapshotChunkBytes = _snapshotChunkBytes,
            SnapshotInterval = _snapshotInterval,
            SnapshotTrailingEntries = _snapshotTrail,
            PreVote = _preVote,
            CheckQuorum = _checkQuorum,
            LeaseReads = _options.LeaseReads && _checkQuorum,
            PipelineLogWrites = _pipelined,
            ForwardToLeader = _forward,
            ForwardTimeout = SimulatedTime.TickLength * 50,
            RandomSeed = _random.Next(),
            ManualScheduling = true,
#if RAFT_MUTANTS
            Mutations = _options.Mutations,
#endif
        };
        var raft = new RaftNode(options, new SimTransport(this), node.Store, node.StateMachine, node.Snapshots, timeProvider: _time, meterFactory: new SimulationMeters(_meters));
        node.Raft = raft;
        var epoch = node.Epoch;
        raft.StateChanged += (_, change) => OnStateChanged(node, epoch, change);
        RunSync(node, raft.StartAsync(), "StartAsync");
        node.StateMachine.Started = true;
        Pump(node);
    }

    // RaftNode swallows (and logs) what a StateChanged handler throws, so that a host's handler cannot
    // stop consensus: a violation found here is kept and thrown once the node's round returns.
    private InvariantViolationException? _deferredViolation;

    private void OnStateChanged(SimNode node, int epoch, RaftStateChange change)
    {
        try
        {
            CheckStateChange(node, epoch, change);
        }
        catch (InvariantViolationException violation)
        {
            _deferredViolation ??= violation;
        }
    }

    private void CheckStateChange(SimNode node, int epoch, RaftStateChange change)
    {
        if (epoch != node.Epoch)
            return;
        if (change.Fault is { } fault)
            throw Violation("No node fault", $"node {node.Id} stopped: {fault.GetType().Name}: {fault.Message}", fault);
        node.Role = change.Role;
        node.Term = change.Term;
        if (change.Role != RaftRole.Leader)
            return;
        if (_leaderOfTerm.TryGetValue(change.Term, out var leader))
        {
            if (leader != node.Id)
                throw Violation("Election safety", $"nodes {leader} and {node.Id} are both leaders of term {change.Term}.");
            return;
        }
        _leaderOfTerm[change.Term] = node.Id;
        _highestLeaderTerm = Math.Max(_highestLeaderTerm, change.Term);
        _counters.LeaderChanges++;
        // New leaders die young now and then: the schedules that expose commit-rule bugs (Figure 8)
        // need a leader to fail right after it replicated old entries but before its own no-op.
        if (!_healing && _random.NextDouble() < _options.NewLeaderCrashRate)
            Schedule(_time.Now + _random.NextDouble() * 4, new CrashEvent(node.Id, node.Epoch));
    }

    // Runs a node's loops until none has work: the event loop at once; the writer and the apply
    // loop after a random delay each, so they lag as they do on a real machine.
    private void Pump(SimNode node)
    {
        while (node.Alive && node.Raft.HasInboxWork)
            RunSync(node, node.Raft.RunEventRoundAsync(), "event round");
        if (!node.Alive)
            return;
        if (node.Raft.HasWriterWork && !node.WriteScheduled)
        {
            node.WriteScheduled = true;
            Schedule(_time.Now + _random.NextDouble(), new WriteEvent(node.Id, node.Epoch));
        }
        if (node.Raft.HasApplyWork && !node.ApplyScheduled)
        {
            node.ApplyScheduled = true;
            // Usually quick; now and then a slow state machine lags well behind the log.
            var delay = _random.NextDouble() < 0.1 ? _random.NextDouble() * 5 : _random.NextDouble() * 0.5;
            Schedule(_time.Now + delay, new ApplyEvent(node.Id, node.Epoch));
        }
        if (node.Raft.HasCompactionPrepareWork && !node.PrepareScheduled)
        {
            // A file log's compaction point is made durable off the node's loop: later, while the
            // node goes on appending (only file logs have this step, so other runs draw no number here).
            node.PrepareScheduled = true;
            Schedule(_time.Now + _random.NextDouble() * 2, new PrepareEvent(node.Id, node.Epoch));
        }
        PollClients(node);
    }

    private void RunSync(SimNode node, Task round, string what)
    {
        if (_deferredViolation is { } deferred)
            throw deferred;
        if (!round.IsCompleted)
            throw Violation("Determinism", $"node {node.Id}'s {what} did not complete synchronously: something in it waited for another thread or a timer.");
        if (_deferredViolation is { } found)
            throw found;
        if (round.Exception?.InnerException is { } error)
        {
            if (error is SimulatedCrashException)
            {
                // The power failed in the middle of a write (an armed tear): the node is down.
                CrashNow(node);
                return;
            }
            if (error is InvariantViolationException violation)
                throw violation;
            throw Violation("No node fault", $"node {node.Id}'s {what} threw {error.GetType().Name}: {error.Message}", error);
        }
    }

    // ------------------------------------------------------------------ event loop

    private void StepOnce()
    {
        var ev = _events.Dequeue();
        _time.Now = Math.Max(_time.Now, ev.Time);
        _step++;
        switch (ev)
        {
            case TickEvent tick:
            {
                var node = Node(tick.NodeId);
                if (node.Alive && node.Epoch == tick.Epoch)
                {
                    node.Raft.TickForSimulation();
                    Pump(node);
                    Schedule(_time.Now + node.TickScale, new TickEvent(node.Id, node.Epoch));
                }
                break;
            }
            case DeliverEvent deliver:
            {
                var target = Node(deliver.Message.To);
                if (!target.Alive || _cut.Contains((deliver.Message.From, deliver.Message.To)))
                {
                    _counters.MessagesDropped++;
                    break;
                }
                _counters.MessagesDelivered++;
                TraceDelivery?.Invoke(_time.Now, deliver.Message);
                if (target.Raft.TryDeliver(deliver.Message))
                    Pump(target);
                break;
            }
            case PrepareEvent prepare:
            {
                var node = Node(prepare.NodeId);
                if (node.Alive && node.Epoch == prepare.Epoch)
                {
                    node.PrepareScheduled = false;
                    RunSync(node, node.Raft.RunCompactionPrepareRoundAsync(), "compaction preparation");
                    Pump(node);
                }
                break;
            }
            case WriteEvent write:
            {
                var node = Node(write.NodeId);
                if (node.Alive && node.Epoch == write.Epoch)
                {
                    node.WriteScheduled = false;
                    if (node.Raft.HasWriterWork)
                        RunSync(node, node.Raft.RunWriterRoundAsync(), "writer round");
                    Pump(node);
                }
                break;
            }
            case ApplyEvent apply:
            {
                var node = Node(apply.NodeId);
                if (node.Alive && node.Epoch == apply.Epoch)
                {
                    node.ApplyScheduled = false;
                    if (node.Raft.HasApplyWork)
                        RunSync(node, node.Raft.RunApplyRoundAsync(), "apply round");
                    Pump(node);
                }
                break;
            }
            case ClientEvent:
                ClientAct();
                if (!_healing)
                    Schedule(_time.Now + NextExponential(_options.MeanTicksBetweenProposals), ev);
                break;
            case FaultEvent:
                if (!_healing)
                {
                    InjectFault();
                    Schedule(_time.Now + NextExponential(_options.MeanTicksBetweenFaults), ev);
                }
                break;
            case CrashEvent crash:
            {
                var node = Node(crash.NodeId);
                if (!_healing && node.Epoch == crash.Epoch)
                    Crash(node);
                break;
            }
            case RestartEvent restart:
            {
                var node = Node(restart.NodeId);
                if (!_healing && !node.Alive)
                    Restart(node);
                break;
            }
            case HealEvent:
                if (!_healing)
                    _cut.Clear();
                break;
        }
    }

    // ------------------------------------------------------------------ invariants on the way

    // Every append reaching a node's store, before it is written.
    private void OnAppend(SimNode node, IReadOnlyList<LogEntry> entries)
    {
        if (entries.Count == 0)
            return;
        var store = node.Store;
        var first = entries[0].Index;
        // Leader append-only: a leader's own writes never replace entries of its log. (A write of a
        // later term's entries comes from a Ready in which the node stepped down; the role change
        // is reported after that Ready is persisted.)
        if (node.Role == RaftRole.Leader && first <= store.LastIndex && entries[0].Term == node.Term)
            throw Violation("Leader append-only", $"leader {node.Id} of term {node.Term} overwrote its log from index {first} (last {store.LastIndex}): writing terms [{string.Join(",", entries.Select(e => e.Term))}] over terms [{string.Join(",", Enumerable.Range((int)first, (int)(store.LastIndex - first + 1)).Select(i => store.GetTerm(i)))}]; the node reports {node.Raft.Status.Role} at term {node.Raft.Status.Term}.");
        // Committed entries are never truncated (a follower may apply entries before its own copy is durable).
        if (first <= store.LastIndex && first <= node.StateMachine.LastCommandIndex)
            throw Violation("Committed entries are never truncated", $"node {node.Id} replaced its log from index {first}, at or below its applied command index {node.StateMachine.LastCommandIndex}.");
        // Log matching, incrementally: every (index, term) pair has one content and one predecessor
        // term, so two logs that share an (index, term) agree on every entry before it.
        var prevTerm = first - 1 >= store.FirstIndex - 1 && first - 1 <= store.LastIndex ? store.GetTerm(first - 1) : -1;
        for (var i = 0; i < entries.Count; i++)
        {
            var entry = entries[i];
            var record = (prevTerm, entry.Kind, Hash(entry.Data.Span));
            if (_entriesSeen.TryGetValue((entry.Index, entry.Term), out var seen))
            {
                var predecessorsDiffer = seen.PrevTerm != -1 && prevTerm != -1 && seen.PrevTerm != prevTerm;
                if (predecessorsDiffer || seen.Kind != entry.Kind || seen.Hash != record.Item3)
                    throw Violation("Log matching", $"node {node.Id} holds entry ({entry.Index}, term {entry.Term}) with predecessor term {prevTerm} and content {record.Item3:x}; another node had predecessor term {seen.PrevTerm} and content {seen.Hash:x}.");
            }
            else
            {
                _entriesSeen[(entry.Index, entry.Term)] = record;
            }
            prevTerm = entry.Term;
            // Leader completeness: when a leader first writes an entry of its own term, everything
            // committed before it must already be in its log.
            if (node.Role == RaftRole.Leader && entry.Term == node.Term && node.CompletenessCheckedTerm != node.Term)
            {
                node.CompletenessCheckedTerm = node.Term;
                CheckLeaderCompleteness(node, entry.Index);
            }
        }
    }

    private void CheckLeaderCompleteness(SimNode node, long firstOwnIndex)
    {
        var store = node.Store;
        foreach (var (index, committed) in _committed)
        {
            if (_committedBy[index] >= node.Term)
                continue; // possibly committed in this leader's term or later: not bound by it
            if (index < store.FirstIndex)
                continue; // compacted into the leader's snapshot, which the restore check covered
            if (index >= firstOwnIndex)
            {
                throw Violation("Leader completeness", $"node {node.Id} became leader of term {node.Term} and writes its own entries from index {firstOwnIndex}, over committed index {index} (term {committed.Term}).");
            }
            if (index > store.LastIndex || store.GetTerm(index) != committed.Term)
            {
                var has = index > store.LastIndex ? "nothing" : $"term {store.GetTerm(index)}";
                throw Violation("Leader completeness", $"node {node.Id} became leader of term {node.Term} with {has} at committed index {index} (committed term {committed.Term}).");
            }
        }
    }

    // Every command a node's state machine applies.
    internal void OnApply(SimNode node, SimStateMachine machine, LogEntry entry, long commandId)
    {
        if (entry.Index <= machine.LastCommandIndex)
            throw Violation("State machine safety", $"node {node.Id} applied index {entry.Index} after index {machine.LastCommandIndex} (not in order, or not exactly once).");
        var hash = Hash(entry.Data.Span);
        var state = Mix(machine.State, entry.Index, entry.Term, hash);
        if (_committed.TryGetValue(entry.Index, out var seen))
        {
            if (seen != (entry.Term, hash, state))
                throw Violation("State machine safety", $"node {node.Id} applied (term {entry.Term}) at index {entry.Index}, where term {seen.Term} was applied before (or the state before it differed).");
        }
        else
        {
            if (_committed.Count > 0 && entry.Index < _committed.Keys[^1])
                throw Violation("State machine safety", $"node {node.Id} applied a command at index {entry.Index}, where an earlier node applied none (it applied up to {_committed.Keys[^1]}).");
            _committed.Add(entry.Index, (entry.Term, hash, state));
            _committedBy[entry.Index] = Math.Max(_highestLeaderTerm, entry.Term);
        }
        if (_commandIndex.TryGetValue(commandId, out var at))
        {
            if (at != entry.Index)
                throw Violation("Exactly once", $"command {commandId} was applied at index {at} and again at index {entry.Index} (node {node.Id}).");
        }
        else
        {
            _commandIndex[commandId] = entry.Index;
        }
        machine.State = state;
        machine.LastCommandIndex = entry.Index;
    }

    // A node's state machine restored a snapshot: it must be exactly the committed prefix it claims.
    internal void OnRestore(SimNode node, SimStateMachine machine, long lastCommandIndex, ulong state, bool atStart)
    {
        var claimed = node.Snapshots.Latest?.Index ?? 0;
        if (lastCommandIndex > claimed)
            throw Violation("State machine safety", $"node {node.Id} restored a snapshot labelled index {claimed} holding commands up to index {lastCommandIndex}.");
        // The state after the last committed command at or below the claimed index.
        var expectedIndex = 0L;
        var expectedState = 0UL;
        foreach (var (index, committed) in _committed)
        {
            if (index > claimed)
                break;
            expectedIndex = index;
            expectedState = committed.State;
        }
        if (expectedIndex != lastCommandIndex || expectedState != state)
            throw Violation("State machine safety", $"node {node.Id} restored a snapshot at index {claimed} whose last command is at {lastCommandIndex} with state {state:x}; the committed log has {expectedIndex} with state {expectedState:x}.");
        machine.State = state;
        machine.LastCommandIndex = lastCommandIndex;
        if (!atStart)
            _counters.SnapshotInstalls++;
    }

    internal void OnSnapshotTaken() => _counters.SnapshotsTaken++;

    // ------------------------------------------------------------------ network

    internal void Send(RaftMessage message)
    {
        var from = Node(message.From);
        if (!from.Alive || _cut.Contains((message.From, message.To)) || _random.NextDouble() < _dropRate)
        {
            _counters.MessagesDropped++;
            return;
        }
        Schedule(_time.Now + _random.NextDouble() * _options.MaxDelayTicks, new DeliverEvent(message));
        if (_random.NextDouble() < _options.DuplicateRate)
            Schedule(_time.Now + _random.NextDouble() * _options.MaxDelayTicks, new DeliverEvent(message));
    }

    // ------------------------------------------------------------------ clients

    private void ClientAct()
    {
        if (MaybeChangeMembership())
            return;
        var roll = _random.NextDouble();
        if (roll < 0.02)
        {
            TransferLeadership();
            return;
        }
        if (_pending.Count >= _options.MaxClientOperations)
            return;
        // The client talks to a node that believes it leads (or, half the time, to any node).
        var leaders = _nodes.Where(n => n.Alive && n.Role == RaftRole.Leader).ToArray();
        var node = leaders.Length > 0 && _random.Next(2) == 0 ? leaders[_random.Next(leaders.Length)] : _nodes[_random.Next(_nodes.Length)];
        if (!node.Alive)
            return;
        if (roll >= 0.04 + _options.ReadFraction && SessionAct())
            return; // a session client's write (SimulatedCluster.Sessions.cs), when enabled
        if (roll < 0.04)
            ProposeGarbage(node);
        else if (roll < 0.04 + _options.ReadFraction)
            Read(node);
        else
            _ = Write(node, _random.Next(KeyCount));
    }

    private ClientOp Write(SimNode node, int key)
    {
        var command = _nextCommand++;
        var value = "v" + command.ToString(CultureInfo.InvariantCulture);
        var handle = _history.Invoke(clientId: (int)command, KvInput.Put(KeyName(key), value));
        var op = new ClientOp(node, handle, command, node.Role != RaftRole.Leader, OpKind.Write)
        {
#pragma warning disable CA2012 // Consumed once, by TryFinish, after the simulator saw it complete.
            Write = node.Raft.ProposeAsync(EncodePut(command, key, value)),
#pragma warning restore CA2012
        };
        _pending.Add(op);
        Pump(node);
        return op;
    }

    private void Read(SimNode node)
    {
        var key = _random.Next(KeyCount);
        var handle = _history.Invoke(clientId: (int)(_nextCommand++), KvInput.Get(KeyName(key)));
        var op = new ClientOp(node, handle, 0, node.Role != RaftRole.Leader, OpKind.Read)
        {
            Read = node.Raft.ReadBarrierAsync(),
            Key = key,
        };
        _pending.Add(op);
        Pump(node);
    }

    private void ProposeGarbage(SimNode node)
    {
        // A command the state machine cannot apply: its validator must refuse it before it is replicated.
        var bytes = new byte[1 + _random.Next(12)];
        _random.NextBytes(bytes);
        bytes[0] = 0xFF;
#pragma warning disable CA2012 // Consumed once, by TryFinish, after the simulator saw it complete.
        var op = new ClientOp(node, default, 0, false, OpKind.Garbage) { Write = node.Raft.ProposeAsync(bytes) };
#pragma warning restore CA2012
        _pending.Add(op);
        Pump(node);
    }

    private void TransferLeadership()
    {
        var leader = _nodes.FirstOrDefault(n => n.Alive && n.Role == RaftRole.Leader);
        if (leader is null || _nodes.Length < 2)
            return;
        var others = _nodes.Where(n => n.Id != leader.Id).ToArray();
        var target = others[_random.Next(others.Length)];
        var op = new ClientOp(leader, default, 0, false, OpKind.Transfer) { Transfer = leader.Raft.TransferLeadershipAsync(target.Id) };
        _pending.Add(op);
        Pump(leader);
    }

    // Completes the operations of one node that have finished: each is recorded with what its client saw.
    private void PollClients(SimNode node)
    {
        if (_sessionAttempts.Count > 0)
            PollSessions();
        PollMembership(node);
        for (var i = 0; i < _pending.Count; i++)
        {
            var op = _pending[i];
            if (op.Node != node || !TryFinish(op))
                continue;
            _pending.RemoveAt(i);
            i--;
        }
    }

    private bool TryFinish(ClientOp op)
    {
        if (op.Transfer is { } transfer)
        {
            if (!transfer.IsCompleted)
                return false;
            if (transfer.IsCompletedSuccessfully)
                _counters.Transfers++;
            _ = transfer.Exception; // observed
            return true;
        }
        if (op.Read is { } read)
        {
            if (!read.IsCompleted)
                return false;
            if (read.IsFaulted && read.Exception!.InnerException is not (NotLeaderException or RaftTimeoutException))
                throw Violation("Client outcome", $"a read on node {op.Node.Id} failed with an unexpected {read.Exception.InnerException!.GetType().Name}: {read.Exception.InnerException.Message}", read.Exception.InnerException);
            if (read.IsCompletedSuccessfully)
            {
                op.Node.StateMachine.Data.TryGetValue(KeyName(op.Key), out var value);
                _history.CompleteGet(op.Handle, value);
                _counters.Reads++;
                if (op.ViaFollower)
                    _counters.FollowerReads++;
            }
            else
            {
                _ = read.Exception;
                _history.CompleteFailed(op.Handle); // a read that failed had no effect
            }
            return true;
        }
        var write = op.Write;
        if (!write.IsCompleted)
            return false;
        try
        {
            var result = write.GetAwaiter().GetResult();
            if (result is CommittedWithoutResult)
                _counters.CoveredWrites++;
            if (op.Garbage)
                throw Violation("Bad commands are refused", $"node {op.Node.Id} committed and applied a command its state machine's validator refuses.");
            _history.Complete(op.Handle);
            _acknowledgedWrites.Add(op.Command);
            if (op.ViaFollower && _forward)
                _counters.ForwardedWrites++;
        }
        catch (InvalidCommandException) when (op.Garbage)
        {
            _counters.RefusedCommands++;
        }
        catch (Exception ex) when (ex is NotLeaderException or RaftBusyException or ProposalDroppedException or InvalidCommandException)
        {
            // Nothing was submitted, or another entry won the index: it did not take effect.
            if (!op.Garbage)
                _history.CompleteFailed(op.Handle);
        }
        catch (ProposalOutcomeUnknownException)
        {
            if (!op.Garbage)
                _history.CompleteUnknown(op.Handle);
        }
        catch (RaftTimeoutException timeout)
        {
            // ProposalTimeout passed: known not appended (no effect), or appended and perhaps committed.
            if (!op.Garbage && timeout.OutcomeKnown)
                _history.CompleteFailed(op.Handle);
            else if (!op.Garbage)
                _history.CompleteUnknown(op.Handle);
        }
        catch (Exception ex) when (ex is not InvariantViolationException)
        {
            throw Violation("Client outcome", $"a proposal on node {op.Node.Id} failed with an unexpected {ex.GetType().Name}: {ex.Message}", ex);
        }
        return true;
    }

    // The client never hears back: a read had no effect, a write may or may not have taken effect.
    private void Abandon(ClientOp op)
    {
        if (op.Kind == OpKind.Read)
            _history.CompleteFailed(op.Handle);
        else if (op.Kind == OpKind.Write)
            _history.CompleteUnknown(op.Handle);
    }

    private static string KeyName(int key) => "k" + key.ToString(CultureInfo.InvariantCulture);

    private static byte[] EncodePut(long command, int key, string value)
    {
        var data = new byte[10 + Encoding.UTF8.GetByteCount(value)];
        data[0] = PutTag;
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(1), command);
        data[9] = (byte)key;
        Encoding.UTF8.GetBytes(value, data.AsSpan(10));
        return data;
    }

    internal static bool TryDecodePut(ReadOnlySpan<byte> data, out long command, out string key, out string value)
    {
        command = 0;
        key = value = "";
        if (data.Length < 10 || data[0] != PutTag || data[9] >= KeyCount)
            return false;
        command = BinaryPrimitives.ReadInt64LittleEndian(data[1..]);
        key = KeyName(data[9]);
        value = Encoding.UTF8.GetString(data[10..]);
        return true;
    }

    // ------------------------------------------------------------------ faults

    private void InjectFault()
    {
        switch (_random.Next(8))
        {
            case 7:
            {
                // The next write of a node is torn by a power failure; or the power fails right
                // after its next hard state is durable, before the entries of the same Ready.
                var alive = _nodes.Where(n => n.Alive).ToArray();
                if (alive.Length > 0)
                {
                    var victim = alive[_random.Next(alive.Length)];
                    if (_random.Next(2) == 0)
                        victim.Store.ArmTear(_tearRandom);
                    else
                        victim.Store.ArmCrashAfterHardState();
                }
                break;
            }
            case 0:
            case 1:
            {
                // Crash a node (often the leader) and restart it later from what its stores kept.
                var alive = _nodes.Where(n => n.Alive).ToArray();
                if (alive.Length == 0)
                    return;
                var leader = alive.FirstOrDefault(n => n.Role == RaftRole.Leader);
                Crash(leader is not null && _random.Next(2) == 0 ? leader : alive[_random.Next(alive.Length)]);
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
                _counters.Partitions++;
                Schedule(_time.Now + 5 + _random.NextDouble() * 60, new HealEvent());
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
                _counters.Partitions++;
                Schedule(_time.Now + 5 + _random.NextDouble() * 60, new HealEvent());
                break;
            }
            case 4:
            {
                // Isolate the leader: it keeps believing it leads for a while (stale reads would show).
                var leader = _nodes.FirstOrDefault(n => n.Alive && n.Role == RaftRole.Leader);
                if (leader is null)
                    return;
                foreach (var other in _nodes)
                {
                    if (other.Id == leader.Id)
                        continue;
                    _cut.Add((leader.Id, other.Id));
                    _cut.Add((other.Id, leader.Id));
                }
                _counters.Partitions++;
                Schedule(_time.Now + 5 + _random.NextDouble() * 60, new HealEvent());
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
        // Power fails while writes may be in flight: sometimes in the middle of the pending one.
        if (node.Raft.HasWriterWork && _random.Next(2) == 0)
        {
            node.Store.ArmTear(_tearRandom);
            RunSync(node, node.Raft.RunWriterRoundAsync(), "writer round");
            if (!node.Alive)
                return; // torn: CrashNow ran
        }
        CrashNow(node);
    }

    private void CrashNow(SimNode node)
    {
        if (!node.Alive)
            return;
        node.Alive = false;
        _leaseReads += node.Raft.LeaseReadsServed; // the process's count dies with it
        node.Store.Crash();
        node.Epoch++;
        _counters.Crashes++;
        // The clients of the dead process never hear back.
        AbandonMembership(node);
        for (var i = 0; i < _pending.Count; i++)
        {
            var op = _pending[i];
            if (op.Node != node)
                continue;
            Abandon(op);
            _pending.RemoveAt(i);
            i--;
        }
        Schedule(_time.Now + 1 + _random.NextDouble() * 40, new RestartEvent(node.Id));
    }

    private void Restart(SimNode node)
    {
        Start(node);
        Schedule(_time.Now + _random.NextDouble(), new TickEvent(node.Id, node.Epoch));
    }

    // ------------------------------------------------------------------ healing, liveness, durability, linearizability

    private void Heal()
    {
        _healing = true;
        _cut.Clear();
        _dropRate = 0;
        foreach (var node in _nodes)
        {
            node.Store.DisarmTear();
            if (!node.Alive)
                Restart(node);
        }
    }

    private void CheckLiveness()
    {
        var deadline = _time.Now + _options.LivenessTicks;
        // Work is bounded as well as virtual time: a message storm that never lets time advance is a liveness failure too.
        var eventBudget = _step + _options.LivenessEventsPerTick * _options.LivenessTicks * _nodes.Length;
        ClientOp? probe = null;
        while (_time.Now < deadline && _events.Count > 0)
        {
            if (_step > eventBudget)
                throw Violation("Liveness", $"more than {_options.LivenessEventsPerTick * _options.LivenessTicks * _nodes.Length} events within {_options.LivenessTicks} ticks after healing: a message storm.");
            if (probe is not null && _pending.Contains(probe) && probe.Node.Role != RaftRole.Leader)
            {
                // Its proposer lost the leadership: the proposal waits for its index, which may never
                // be reached without new writes. The client gives up (outcome unknown) and retries.
                _pending.Remove(probe);
                Abandon(probe);
                probe = null;
            }
            if (probe is null || (!_pending.Contains(probe) && !_acknowledgedWrites.Contains(probe.Command)))
            {
                // A proposal that did not take effect is retried on the current leader.
                var leader = _nodes.FirstOrDefault(n => n.Alive && n.Role == RaftRole.Leader);
                if (leader is not null)
                {
                    probe = Write(leader, _random.Next(KeyCount));
                }
            }
            else if (_acknowledgedWrites.Contains(probe.Command))
            {
                // Then every node must converge: applied everything, nothing left to write.
                var target = _committed.Count == 0 ? 0 : _committed.Keys[^1];
                if (_nodes.Where(MustConverge).All(n => n.StateMachine.LastCommandIndex >= target && !n.Raft.HasWriterWork && !n.Raft.HasApplyWork))
                    return;
            }
            StepOnce();
        }
        var state = string.Join("; ", _nodes.Select(n =>
        {
            var status = n.Raft.Status;
            return $"node {n.Id}: {status.Role} term {status.Term} commit {status.CommitIndex} applied {status.AppliedIndex} (last command {n.StateMachine.LastCommandIndex}, writer {n.Raft.HasWriterWork}, apply {n.Raft.HasApplyWork}) log [{n.Store.FirstIndex}, {n.Store.LastIndex}] snapshot {n.Snapshots.Latest?.Index}" +
                (MembershipEnabled ? $" configuration {status.Configuration}" : "") +
                (status.Role == RaftRole.Leader ? $" progress {string.Join(",", status.Progress.Select(p => $"{p.Key}:{p.Value}"))}" : "");
        }));
        throw Violation("Liveness", probe is null
            ? $"no leader accepted a proposal within {_options.LivenessTicks} ticks after healing ({state})."
            : $"the cluster did not commit a proposal and converge within {_options.LivenessTicks} ticks after healing (probe: command {probe.Command} on node {probe.Node.Id}, {(_pending.Contains(probe) ? "pending" : "finished")}, {(_acknowledgedWrites.Contains(probe.Command) ? "acknowledged" : "not acknowledged")}, last committed command at {(_committed.Count == 0 ? 0 : _committed.Keys[^1])}; {state}).");
    }

    private void CheckDurability()
    {
        foreach (var command in _acknowledgedWrites)
        {
            if (!_commandIndex.TryGetValue(command, out var index))
                throw Violation("Durability", $"acknowledged command {command} was never applied.");
            var term = _committed[index].Term;
            foreach (var node in _nodes.Where(MustConverge))
            {
                var store = node.Store;
                if (index < store.FirstIndex)
                {
                    // Compacted: the node's snapshot (checked against the committed log) must cover it.
                    if ((node.Snapshots.Latest?.Index ?? 0) < index)
                        throw Violation("Durability", $"acknowledged command {command} at index {index} was compacted from node {node.Id} without a snapshot covering it.");
                    continue;
                }
                if (index > store.LastIndex || store.GetTerm(index) != term)
                    throw Violation("Durability", $"acknowledged command {command} at index {index} (term {term}) is missing from node {node.Id}'s log.");
            }
        }
    }

    private void CheckLinearizability()
    {
        // Operations still in flight are unknown (writes) or had no effect (reads).
        foreach (var op in _pending)
            Abandon(op);
        _pending.Clear();
        AbandonSessionWrites();
        var result = LinearizabilityChecker.Check(_history.Operations, TimeSpan.FromSeconds(30));
        if (result.TimedOut)
            throw Violation("Linearizability check inconclusive", $"the checker gave up (time or memory) on {result.OperationCount} operations.");
        if (!result.IsLinearizable)
            throw Violation("Linearizability", result.Failure?.Description ?? result.ToString());
    }

    // ------------------------------------------------------------------ helpers

    private SimNode Node(int id) => _nodes[id - 1];

    private void Schedule(double time, SimEvent ev)
    {
        ev.Time = time;
        _events.Enqueue(ev, (time, _sequence++));
    }

    private double NextExponential(double mean) => -mean * Math.Log(1 - _random.NextDouble());

    private InvariantViolationException Violation(string invariant, string detail, Exception? inner = null) =>
        new(invariant, _options.Seed, _step, _options.FileLogStore ? detail + " [file logs: replay with FileLogSimulationTests.Replay]" : detail, inner);

    internal static ulong Mix(ulong state, long index, long term, ulong hash)
    {
        var x = state ^ hash ^ ((ulong)index * 0x9E3779B97F4A7C15UL) ^ ((ulong)term << 32);
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdUL;
        x ^= x >> 33;
        return x;
    }

    internal static ulong Hash(ReadOnlySpan<byte> data)
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

    internal sealed class SimNode(int id, double tickScale, ISimulatedLog store)
    {
        public int Id { get; } = id;

        // What survives a crash: the log store and the snapshot store.
        public ISimulatedLog Store { get; } = store;

        public InMemorySnapshotStore Snapshots { get; } = new();

        // Each node's clock runs at its own slightly different rate.
        public double TickScale { get; } = tickScale;

        // The current incarnation: the shipped node and its state machine.
        public RaftNode Raft { get; set; } = null!;

        public SimStateMachine StateMachine { get; set; } = null!;

        public bool Alive { get; set; }

        // Bumped by each crash, so that events scheduled for an older incarnation are ignored.
        public int Epoch { get; set; }

        // The role and term the node last reported (StateChanged).
        public RaftRole Role { get; set; }

        public long Term { get; set; }

        public long CompletenessCheckedTerm { get; set; }

        public bool WriteScheduled { get; set; }

        public bool PrepareScheduled { get; set; }

        public bool ApplyScheduled { get; set; }
    }

    private enum OpKind
    {
        Write,
        Read,
        Garbage,
        Transfer,
    }

    private sealed class ClientOp(SimNode node, OperationHandle handle, long command, bool viaFollower, OpKind kind)
    {
        public SimNode Node { get; } = node;

        public OpKind Kind { get; } = kind;

        public bool Garbage => Kind == OpKind.Garbage;

        public OperationHandle Handle { get; } = handle;

        public long Command { get; } = command;

        public bool ViaFollower { get; } = viaFollower;

        public ValueTask<object?> Write { get; init; }

        public Task? Read { get; init; }

        public int Key { get; init; }

        public Task? Transfer { get; init; }

    }

    private sealed class Counters
    {
        public int LeaderChanges;
        public int ForwardedWrites;
        public int Reads;
        public int FollowerReads;
        public int Transfers;
        public int RefusedCommands;
        public int Crashes;
        public int Partitions;
        public long MessagesDelivered;
        public long MessagesDropped;
        public int SnapshotsTaken;
        public int SnapshotInstalls;
        public int CoveredWrites;
    }

    private sealed class SimTransport(SimulatedCluster cluster) : ITransport
    {
        public ValueTask StartAsync(int localId, RaftMessageHandler handler, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public void Send(RaftMessage message) => cluster.Send(message);

        public ValueTask StopAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
    }

    private abstract class SimEvent
    {
        public double Time { get; set; }
    }

    private sealed class TickEvent(int nodeId, int epoch) : SimEvent
    {
        public int NodeId { get; } = nodeId;

        public int Epoch { get; } = epoch;
    }

    private sealed class DeliverEvent(RaftMessage message) : SimEvent
    {
        public RaftMessage Message { get; } = message;
    }

    private sealed class PrepareEvent(int nodeId, int epoch) : SimEvent
    {
        public int NodeId { get; } = nodeId;

        public int Epoch { get; } = epoch;
    }

    private sealed class WriteEvent(int nodeId, int epoch) : SimEvent
    {
        public int NodeId { get; } = nodeId;

        public int Epoch { get; } = epoch;
    }

    private sealed class ApplyEvent(int nodeId, int epoch) : SimEvent
    {
        public int NodeId { get; } = nodeId;

        public int Epoch { get; } = epoch;
    }

    private sealed class ClientEvent : SimEvent;

    private sealed class FaultEvent : SimEvent;

    private sealed class CrashEvent(int nodeId, int epoch) : SimEvent
    {
        public int NodeId { get; } = nodeId;

        public int Epoch { get; } = epoch;
    }

    private sealed class RestartEvent(int nodeId) : SimEvent
    {
        public int NodeId { get; } = nodeId;
    }

    private sealed class HealEvent : SimEvent;
}
