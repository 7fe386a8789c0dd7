using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Raft;

/// <summary>Describes a change of a node's role, leader or term.</summary>
/// <param name="NodeId">The node whose state changed.</param>
/// <param name="Role">The new role.</param>
/// <param name="LeaderId">The leader the node now knows, or 0.</param>
/// <param name="Term">The current term.</param>
/// <param name="Fault">Set when the node stopped because of an error (the same exception as <see cref="RaftStatus.Fault"/>); the node does nothing more.</param>
public sealed record RaftStateChange(int NodeId, RaftRole Role, int LeaderId, long Term, Exception? Fault = null);

/// <summary>
/// A Raft node a host embeds: it runs the consensus core on one event loop, persists through an
/// <see cref="ILogStore"/>, talks through an <see cref="ITransport"/> and applies committed
/// commands to an <see cref="IStateMachine"/>.
/// </summary>
/// <remarks>
/// <para>Create it, call <see cref="StartAsync"/>, then <see cref="ProposeAsync"/> on the leader
/// (a follower throws <see cref="NotLeaderException"/> naming the leader it knows). Dispose it to
/// stop; the transport is stopped, the store and state machine are left to the host.</para>
/// <para>Every public member is thread-safe.</para>
/// <para>Ordering: the node makes its hard state and entries durable before it sends any message
/// that depends on them (a vote, an append acknowledgement); as leader it writes its own log in
/// parallel with replication and counts itself toward a majority only once its write is durable.
/// Committed commands are applied on a separate loop, in order, exactly once per process
/// lifetime (the state machine starts empty, or from a snapshot, and the log is replayed).</para>
/// </remarks>
public sealed partial class RaftNode : IAsyncDisposable
{
    private readonly RaftNodeOptions _options;
    private readonly ITransport _transport;
    private readonly ILogStore _store;
    private readonly IStateMachine _stateMachine;
    private readonly ISnapshotStore? _snapshots;
    private readonly ICommandValidator? _validator;
    // Manual scheduling (the deterministic simulator): no loop tasks and no timer; the simulator
    // runs each loop's rounds itself (RunEventRoundAsync, RunApplyRoundAsync, RunWriterRoundAsync)
    // on one thread, over stores that complete synchronously. The code of every round is the code
    // the production loops run.
    private readonly bool _manual;
    private Exception? _fault; // set once, by Fail; read with Volatile semantics through the property below
    // Bytes of network messages queued in the inbox (RaftNodeOptions.MaxInboxBytes), and the signal
    // DeliverAsync waits on when they are over the budget.
    private long _inboxBytes;
    private readonly Lock _inboxSpaceLock = new();
    private TaskCompletionSource? _inboxSpace;
    // Bytes of entries handed to the pipelined writer and not yet durable (RaftNodeOptions.MaxUnpersistedBytes).
    private long _unpersistedBytes;
    private ISnapshotWriter? _incomingSnapshot;
    private long _pendingCompaction = -1;
    // Owned by the apply loop.
    private long _lastAppliedTerm;
    private long _lastSnapshotIndex;
    private readonly RaftOptions _coreOptions;
    private RaftCore _core;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly RaftMetrics _metrics;
    private readonly Channel<object> _inbox = Channel.CreateUnbounded<object>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Channel<object> _applyQueue = Channel.CreateUnbounded<object>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly CancellationTokenSource _shutdown = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Dictionary<long, TaskCompletionSource> _pendingReads = [];
    private readonly ProposalPool _proposals = new(4096);
    // Accepted proposals, from the event loop to the apply loop, which takes them in before it applies
    // the next batch. Not through _applyQueue: that would wake the apply loop once per round for
    // nothing. Every batch that holds a proposal's entry is queued after the proposal is enqueued here.
    private readonly ConcurrentQueue<Proposal> _registrations = new();
    private long _nextReadId;
    private int _pendingTicks;
    private ITimer? _timer;
    private Task _loop = Task.CompletedTask;
    private Task _applyLoop = Task.CompletedTask;
    // Pipelined log writes (RaftNodeOptions.PipelineLogWrites): Readies whose entries are being
    // written, oldest first, by the writer task; the loop waits for none of them unless it must
    // persist something else (a hard state, a snapshot, an overwrite) or compact.
    private readonly bool _pipelined;
    private readonly Channel<Ready> _writes = Channel.CreateUnbounded<Ready>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly Lock _writesLock = new();
    private int _writesInFlight;
    private TaskCompletionSource? _writesDrained;
    private Task _writer = Task.CompletedTask;
    private volatile StatusHolder _status;
    private long _appliedIndex;
    private int _started;
    private int _disposed;
    private readonly List<TaskCompletionSource<int>> _leaderWaiters = [];

    /// <summary>Creates a node. It does nothing until <see cref="StartAsync"/>, which restores the state machine from the latest snapshot (when there is a snapshot store).</summary>
    /// <param name="options">The node's settings. The node copies them (lists and nested options included) and validates the copy; changing <paramref name="options"/> afterwards has no effect on the node.</param>
    /// <param name="transport">Carries messages to and from the other members.</param>
    /// <param name="logStore">The node's durable log; its current content is recovered.</param>
    /// <param name="stateMachine">Receives committed commands (and, with a snapshot store, writes and restores snapshots).</param>
    /// <param name="snapshotStore">Where snapshots are kept. The default, null, disables snapshots (the log then grows without bound, and a follower can only catch up from the log).</param>
    /// <param name="loggerFactory">Creates the node's logger. The default, null, is <see cref="NullLoggerFactory"/>: nothing is logged.</param>
    /// <param name="timeProvider">The clock of the node's ticks and timeouts. The default, null, is <see cref="TimeProvider.System"/>; tests pass a fake one.</param>
    /// <param name="meterFactory">Creates the node's <see cref="System.Diagnostics.Metrics.Meter"/> (named <see cref="RaftTelemetry.MeterName"/>, tagged with the node id). The default, null, makes the node create and own an unshared meter.</param>
    /// <exception cref="ArgumentException">The options are invalid (the message names the values).</exception>
    /// <exception cref="InvalidOperationException">The log was compacted past what the snapshot store covers.</exception>
    public RaftNode(
        RaftNodeOptions options,
        ITransport transport,
        ILogStore logStore,
        IStateMachine stateMachine,
        ISnapshotStore? snapshotStore = null,
        ILoggerFactory? loggerFactory = null,
        TimeProvider? timeProvider = null,
        System.Diagnostics.Metrics.IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(logStore);
        ArgumentNullException.ThrowIfNull(stateMachine);
        // The node's own copy: nothing the host changes later reaches it.
        options = options.DeepCopy();
        // One Random for the core's election timeouts and the forward ids below, as before RandomSeed.
        var random = options.RandomSeed is { } seed ? new Random(seed) : null;
        var coreOptions = options.ToCoreOptions(random);
        _options = options;
        _transport = transport;
        _store = logStore;
        _pipelined = options.PipelineLogWrites && logStore.SupportsReadsDuringAppend;
        _stateMachine = stateMachine;
        _validator = stateMachine as ICommandValidator;
        _manual = options.ManualScheduling;
        _snapshots = snapshotStore;
        _time = timeProvider ?? TimeProvider.System;
        _logger = loggerFactory?.CreateLogger<RaftNode>() ?? (ILogger)NullLogger.Instance;
        // The state machine is restored from the latest snapshot in StartAsync, before anything is applied.
        _coreOptions = coreOptions;
        // A snapshot ahead of the log (the log reset after an InstallSnapshot did not happen) is
        // repaired in StartAsync; until then the core only serves Status.
        var latest = snapshotStore?.Latest;
        _core = latest is not null && latest.Index > logStore.LastIndex
            ? new RaftCore(coreOptions, logStore, snapshotStore, appliedIndex: logStore.LastIndex)
            : new RaftCore(coreOptions, logStore, snapshotStore);
        _appliedIndex = _core.AppliedIndex;
        _lastSnapshotIndex = snapshotStore?.Latest?.Index ?? 0;
        _lastAppliedTerm = snapshotStore?.Latest?.Term ?? 0;
        _appliedConfiguration = snapshotStore?.Latest?.Configuration ?? coreOptions.BootstrapConfiguration();
        _status = new StatusHolder(_core.Status);
        _metrics = new RaftMetrics(meterFactory, options.NodeId, () => Status);
        AttachTelemetry(transport, logStore);
        _nextForwardId = (random ?? Random.Shared).NextInt64(1, 1L << 62);
    }

    /// <summary>This node's id.</summary>
    public int Id => _options.NodeId;

    /// <summary>A snapshot of the node's state: role, term, leader, commit and applied indexes, and (on the leader) each follower's match index.</summary>
    public RaftStatus Status
    {
        get
        {
            // The applied index is read live; the rest was published at the end of the loop's last
            // round. Anything applied was committed, so the commit index is at least the applied one.
            var applied = Interlocked.Read(ref _appliedIndex);
            var status = _status.Value;
            return status with { AppliedIndex = applied, CommitIndex = Math.Max(status.CommitIndex, applied), Fault = Volatile.Read(ref _fault) };
        }
    }

    /// <summary>Raised, from the node's loop, when the role, the known leader or the term changes. Handlers must be quick and must not block.</summary>
    public event EventHandler<RaftStateChange>? StateChanged;

    /// <summary>Completes when the node has stopped: successfully after disposal, faulted (with the cause) when a store, transport or state machine error stopped it.</summary>
    /// <remarks>A node stopped by an error also shows it in <see cref="RaftStatus.Fault"/>, raises <see cref="StateChanged"/> with the fault, logs it at Critical, and every later call throws <see cref="RaftNodeFaultedException"/> carrying the cause.</remarks>
    public Task Completion => _completion.Task;

    /// <summary>Starts the transport, the event loop and the clock.</summary>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <returns>A task that completes once the node runs.</returns>
    /// <exception cref="InvalidOperationException">The node was already started.</exception>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfFaulted();
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        cancellationToken.ThrowIfCancellationRequested();
        if (Interlocked.Exchange(ref _started, 1) != 0)
            throw new InvalidOperationException($"Node {Id} was already started.");
        if (_snapshots?.Latest is { } latest && latest.Index >= _store.FirstIndex - 1
            && (latest.Index > _store.LastIndex || _store.GetTerm(latest.Index) != latest.Term))
        {
            // A snapshot received from the leader was committed, but the process stopped before the log
            // was reset to it: finish that now, or the log would replay entries older than the snapshot
            // on top of it.
            await _store.ResetAsync(latest.Index, latest.Term, cancellationToken).ConfigureAwait(false);
            _core = new RaftCore(_coreOptions, _store, _snapshots);
            Interlocked.Exchange(ref _appliedIndex, _core.AppliedIndex);
            _status = new StatusHolder(_core.Status);
        }
        if (_snapshots?.OpenLatest() is { } snapshot)
        {
            await using (snapshot.ConfigureAwait(false))
                await RestoreSnapshotWithSessionsAsync(snapshot, cancellationToken).ConfigureAwait(false);
        }
        await _transport.StartAsync(Id, DeliverAsync, cancellationToken).ConfigureAwait(false);
        InitTransportPeers(); // the members its log (or snapshot) names
        Log.Started(_logger, Id, _core.Term, _options.Members);
        if (_manual)
            return; // the simulator runs the rounds and the clock
        _loop = Task.Run(RunLoopAsync, CancellationToken.None);
        _applyLoop = Task.Run(RunApplyLoopAsync, CancellationToken.None);
        if (_pipelined)
            _writer = Task.Run(RunWriterAsync, CancellationToken.None);
        _timer = _time.CreateTimer(static state => ((RaftNode)state!).OnTimer(), this, _options.TickInterval, _options.TickInterval);
    }

    /// <summary>Hands an inbound message to the node. Transports call this (it is the handler given to <see cref="ITransport.StartAsync"/>); hosts with their own network code may call it directly.</summary>
    /// <param name="message">A message addressed to this node.</param>
    /// <param name="cancellationToken">Cancels the hand-off.</param>
    /// <returns>A task that completes when the message is queued (or dropped: misaddressed, from a non-member, or the node stopped).</returns>
    /// <remarks>Back-pressure: while the messages queued and not yet handled hold more than
    /// <see cref="RaftNodeOptions.MaxInboxBytes"/>, the returned task waits, so a transport that awaits
    /// it stops reading from the network (one message is always admitted into an inbox under the budget).</remarks>
    public ValueTask DeliverAsync(RaftMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (!Accepts(message))
            return ValueTask.CompletedTask;
        var size = InboxCost(message);
        if (TryAdmit(size))
        {
            if (!_inbox.Writer.TryWrite(message))
                Interlocked.Add(ref _inboxBytes, -size); // stopped: dropped
            return ValueTask.CompletedTask;
        }
        return DeliverWhenRoomAsync(message, size, cancellationToken);
    }

    // Whether a message may reach the core: addressed here, from another member.
    private bool Accepts(RaftMessage message)
    {
        // A sender the configuration in force does not list may be a member of a newer one this node
        // has not received yet (or the leader of a node that joins): the core decides (RaftCore.Step).
        if (message.To != Id || message.From == Id || message.From <= 0)
        {
            Log.Misaddressed(_logger, Id, message.To, message.From);
            return false;
        }
        return true;
    }

    /// <summary>The simulator's delivery: queues the message if the inbox has room, or drops it (a lossy network) and returns false.</summary>
    internal bool TryDeliver(RaftMessage message)
    {
        if (!Accepts(message))
            return false;
        var size = InboxCost(message);
        if (!TryAdmit(size))
            return false;
        if (_inbox.Writer.TryWrite(message))
            return true;
        Interlocked.Add(ref _inboxBytes, -size);
        return false;
    }

    private bool TryAdmit(long size)
    {
        var after = Interlocked.Add(ref _inboxBytes, size);
        if (after - size <= 0 || after <= _options.MaxInboxBytes)
            return true; // under the budget, or the inbox was empty: one message is always admitted
        Interlocked.Add(ref _inboxBytes, -size);
        return false;
    }

    private async ValueTask DeliverWhenRoomAsync(RaftMessage message, long size, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task room;
            lock (_inboxSpaceLock)
            {
                _inboxSpace ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                room = _inboxSpace.Task;
            }
            // Re-checked after the signal is in place, so a drain between the two is not missed.
            if (TryAdmit(size))
            {
                if (!_inbox.Writer.TryWrite(message))
                    Interlocked.Add(ref _inboxBytes, -size);
                return;
            }
            if (Volatile.Read(ref _fault) is not null || _disposed != 0)
                return; // stopped: dropped
            await room.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    // Called by the event loop after it took messages out of the inbox.
    private void SignalInboxRoom()
    {
        if (Volatile.Read(ref _inboxSpace) is null || Interlocked.Read(ref _inboxBytes) > _options.MaxInboxBytes)
            return;
        TaskCompletionSource? room;
        lock (_inboxSpaceLock)
        {
            room = _inboxSpace;
            _inboxSpace = null;
        }
        room?.TrySetResult();
    }

    // What a queued message is charged against MaxInboxBytes: its payload bytes and a fixed overhead.
    private static long InboxCost(RaftMessage message)
    {
        const long Overhead = 64;
        switch (message)
        {
            case AppendEntries append:
                // Entries null only from a custom transport's malformed message: the core refuses it.
                return Overhead + (append.Entries is { } entries ? EntryBytes(entries) : 0);
            case InstallSnapshot chunk:
                return Overhead + chunk.Data.Length + (64L * (chunk.Configuration?.Members.Count ?? 0));
            case ForwardRequest forward:
            {
                long bytes = Overhead;
                var commands = forward.Commands;
                for (var i = 0; i < (commands?.Count ?? 0); i++)
                    bytes += commands![i].Length + 8;
                return bytes;
            }
            default:
                return Overhead;
        }
    }

    /// <summary>
    /// Replicates <paramref name="command"/> and applies it once committed; completes with the
    /// state machine's result.
    /// </summary>
    /// <remarks>
    /// The returned <see cref="ValueTask{TResult}"/> is backed by a pooled object, so proposing
    /// allocates nothing per command in steady state: await it exactly once. To await it more
    /// than once, combine it (<c>Task.WhenAll</c>) or keep it, call <see cref="ValueTask{TResult}.AsTask"/> first.
    /// </remarks>
    /// <param name="command">The command. The node keeps a reference until it is applied: do not modify the buffer afterwards.</param>
    /// <param name="cancellationToken">Stops waiting. The command may still commit: cancellation abandons the result, not the proposal. Without it the wait still ends after <see cref="RaftNodeOptions.ProposalTimeout"/> (30 s by default).</param>
    /// <returns>The result of <see cref="IStateMachine.ApplyAsync"/> for the command; or
    /// <see cref="CommittedWithoutResult.Instance"/> when the command committed but this node did not
    /// apply it itself (a follower that forwarded it got the leader's snapshot covering it), so no
    /// result exists here.</returns>
    /// <exception cref="NotLeaderException">This node is not the leader (and does not forward, or knows no leader: <see cref="RaftNodeOptions.ForwardToLeader"/>); nothing was submitted.</exception>
    /// <exception cref="RaftBusyException">Too many uncommitted entries, or a leadership transfer is under way; nothing was submitted.</exception>
    /// <exception cref="ProposalDroppedException">The command was appended but another entry committed at its index; it did not take effect.</exception>
    /// <exception cref="ProposalOutcomeUnknownException">The node cannot tell whether the command took effect (a snapshot covered it, or a forwarded command got no answer).</exception>
    /// <exception cref="InvalidCommandException">The state machine's <see cref="ICommandValidator"/> refused the command; nothing was submitted.</exception>
    /// <exception cref="RaftTimeoutException">Not applied within <see cref="RaftNodeOptions.ProposalTimeout"/>; <see cref="RaftTimeoutException.OutcomeKnown"/> says whether it may still take effect.</exception>
    /// <exception cref="RaftNodeFaultedException">The node stopped because of an error (the inner exception); nothing was submitted.</exception>
    /// <exception cref="InvalidOperationException"><see cref="StartAsync"/> was not called.</exception>
    /// <exception cref="ObjectDisposedException">The node was disposed.</exception>
    public ValueTask<object?> ProposeAsync(ReadOnlyMemory<byte> command, CancellationToken cancellationToken = default)
    {
        ThrowIfNotRunning();
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled<object?>(cancellationToken);
        var proposal = _proposals.Rent(command);
        proposal.Deadline = DeadlineAfter(_options.ProposalTimeout);
        var result = proposal.Task;
        var span = EnqueueTraced(proposal, ProposeSpan);
        if (cancellationToken.CanBeCanceled)
            result = new ValueTask<object?>(result.AsTask().WaitAsync(cancellationToken));
        return span is null ? result : TraceProposeAsync(result, span);
    }

    /// <summary>
    /// Waits until a read of the local state machine is linearizable: this node confirmed with a
    /// majority that it is still the leader, and it has applied everything committed before the
    /// call (the ReadIndex protocol, dissertation §6.4; or its lease, <see cref="RaftNodeOptions.LeaseReads"/>).
    /// With <see cref="RaftNodeOptions.ForwardToLeader"/>, a follower asks the leader for the read
    /// index and waits until it has applied that far itself.
    /// </summary>
    /// <remarks>
    /// The apply loop goes on applying newer commands while the caller reads after this returns, so
    /// a state machine read this way must be safe to read concurrently with
    /// <see cref="IStateMachine.ApplyAsync"/> (a lock, or immutable state swapped atomically); a plain
    /// <see cref="Dictionary{TKey, TValue}"/> is not. <see cref="QueryAsync{TState, TResult}"/> runs the
    /// read on the apply loop instead and needs no locks.
    /// </remarks>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>A task that completes when the read is safe.</returns>
    /// <exception cref="NotLeaderException">This node is not the leader (and does not forward, or knows no leader), or leadership was lost before the read was confirmed.</exception>
    /// <exception cref="RaftTimeoutException">Not confirmed within <see cref="RaftNodeOptions.ReadTimeout"/> (the read had no effect: retry).</exception>
    /// <exception cref="RaftNodeFaultedException">The node stopped because of an error (the inner exception).</exception>
    /// <exception cref="InvalidOperationException"><see cref="StartAsync"/> was not called.</exception>
    public Task ReadBarrierAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfNotRunning();
        if (cancellationToken.IsCancellationRequested)
            return Task.FromCanceled(cancellationToken);
        var read = new ReadRequest { Deadline = DeadlineAfter(_options.ReadTimeout) };
        var span = EnqueueTraced(read, ReadBarrierSpan);
        var result = cancellationToken.CanBeCanceled ? read.Completion.Task.WaitAsync(cancellationToken) : read.Completion.Task;
        return span is null ? result : TraceAsync(result, span);
    }

    /// <summary>Asks the leader (this node) to hand leadership to <paramref name="transferee"/>.</summary>
    /// <param name="transferee">The member to become leader; it should be caught up.</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>A task that completes when this node has stepped down (leadership moved or a new election happened).</returns>
    /// <exception cref="NotLeaderException">This node is not the leader.</exception>
    /// <exception cref="ArgumentException"><paramref name="transferee"/> is not another member.</exception>
    /// <exception cref="RaftNodeFaultedException">The node stopped because of an error (the inner exception).</exception>
    /// <exception cref="InvalidOperationException"><see cref="StartAsync"/> was not called.</exception>
    public Task TransferLeadershipAsync(int transferee, CancellationToken cancellationToken = default)
    {
        ThrowIfNotRunning();
        var request = new TransferRequest(transferee);
        Enqueue(request);
        return request.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Waits until this node knows a leader, and returns its id.</summary>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>The id of the leader this node knows.</returns>
    /// <exception cref="RaftNodeFaultedException">The node stopped because of an error (the inner exception).</exception>
    public Task<int> WaitForLeaderAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfFaulted();
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var waiter = new LeaderWaiter();
        Enqueue(waiter);
        return waiter.Completion.Task.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Stops the node gracefully: a leader first hands leadership to its most caught-up follower (so
    /// clients see no leaderless gap of an election timeout), then the node is disposed.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting for the hand-over; the node is disposed anyway.</param>
    /// <returns>A task that completes when the node has stopped.</returns>
    public Task StopAsync(CancellationToken cancellationToken = default) => StopAsync(transferLeadership: true, cancellationToken);

    /// <summary>
    /// Stops the node: when <paramref name="transferLeadership"/> is set and this node leads, it first
    /// hands leadership to its most caught-up follower and waits (at most
    /// <see cref="RaftNodeOptions.ElectionTimeoutMax"/>) until it stepped down; then it is disposed
    /// (<see cref="DisposeAsync"/>). Idempotent; a faulted node is just disposed.
    /// </summary>
    /// <param name="transferLeadership">Whether a leader hands leadership over before it stops.</param>
    /// <param name="cancellationToken">Stops waiting for the hand-over; the node is disposed anyway.</param>
    /// <returns>A task that completes when the node has stopped.</returns>
    public async Task StopAsync(bool transferLeadership, CancellationToken cancellationToken = default)
    {
        if (transferLeadership && _disposed == 0 && Volatile.Read(ref _fault) is null && Volatile.Read(ref _started) != 0)
        {
            var status = Status;
            var target = status.Role == RaftRole.Leader
                ? status.Progress.Where(p => p.Key != Id && status.Configuration.IsVoter(p.Key)).OrderByDescending(p => p.Value).ThenBy(p => p.Key).Select(p => p.Key).FirstOrDefault()
                : 0;
            if (target != 0)
            {
                try
                {
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    timeout.CancelAfter(_options.ElectionTimeoutMax * 2);
                    await TransferLeadershipAsync(target, timeout.Token).ConfigureAwait(false);
                    Log.LeadershipHandedOver(_logger, Id, target);
                }
                catch (Exception ex) when (ex is RaftException or OperationCanceledException or ArgumentException or ObjectDisposedException)
                {
                    // Not the leader any more, the follower did not take over in time, or the caller
                    // stopped waiting: stop anyway; the others elect a leader.
                    Log.LeadershipHandOverFailed(_logger, Id, target, ex.Message);
                }
            }
        }
        await DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Stops the node at once (no leadership hand-over: see <see cref="StopAsync(CancellationToken)"/>): the clock, the loops and the transport. Pending operations fail with <see cref="ObjectDisposedException"/>. Idempotent.</summary>
    /// <returns>A task that completes when the node has stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            await _completion.Task.ConfigureAwait(false);
            return;
        }
        if (_timer is not null)
            await _timer.DisposeAsync().ConfigureAwait(false);
        _inbox.Writer.TryComplete();
        await _shutdown.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.ShutdownError(_logger, Id, ex);
        }
        _writes.Writer.TryComplete();
        try
        {
            await _writer.ConfigureAwait(false);
            await _compactionPrepare.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.ShutdownError(_logger, Id, ex);
        }
        _applyQueue.Writer.TryComplete();
        try
        {
            await _applyLoop.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.ShutdownError(_logger, Id, ex);
        }
        try
        {
            if (_started != 0)
                await _transport.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.ShutdownError(_logger, Id, ex);
        }
        if (_incomingSnapshot is not null)
            await _incomingSnapshot.DisposeAsync().ConfigureAwait(false);
        FailPending(new ObjectDisposedException(nameof(RaftNode), $"Node {Id} was disposed."));
        _metrics.Dispose();
        _shutdown.Dispose();
        Log.Stopped(_logger, Id);
        _completion.TrySetResult();
    }

    // ------------------------------------------------------------------ event loop

    private void Enqueue(object item)
    {
        // The inbox is completed only by disposal or a fatal error.
        if (!_inbox.Writer.TryWrite(item))
        {
            ThrowIfFaulted();
            throw new ObjectDisposedException(nameof(RaftNode), $"Node {Id} was disposed.");
        }
    }

    private void ThrowIfFaulted()
    {
        if (Volatile.Read(ref _fault) is { } fault)
            throw new RaftNodeFaultedException(Id, fault);
    }

    private void ThrowIfNotRunning()
    {
        ThrowIfFaulted();
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (Volatile.Read(ref _started) == 0)
            throw new InvalidOperationException($"Node {Id} is not started: call StartAsync first.");
    }

    /// <summary>The simulator's clock: one tick, as the timer would give it.</summary>
    internal void TickForSimulation() => OnTimer();

    private void OnTimer()
    {
        var ticks = _options.LeaseReads ? TicksOwed() : 1;
        if (ticks > 0 && Interlocked.Add(ref _pendingTicks, ticks) == ticks)
            _inbox.Writer.TryWrite(TickSignal.Instance);
    }

    private async Task RunLoopAsync()
    {
        var token = _shutdown.Token;
        var reader = _inbox.Reader;
        try
        {
            // No token for the wait: disposal and failure complete the inbox, which ends the loop; an
            // uncancellable wait also lets the channel reuse one waiter instead of allocating one per round.
            while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
                await RunEventRoundAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            Fail(ex);
        }
        if (Volatile.Read(ref _fault) is { } fault)
            FailPending(new RaftNodeFaultedException(Id, fault));
    }

    /// <summary>Whether the event loop has work queued (the simulator runs a round when it has).</summary>
    internal bool HasInboxWork => _inbox.Reader.TryPeek(out _);

    /// <summary>
    /// One round of the event loop: handles everything queued, flushes forwarded work, turns every
    /// Ready into its effects (persist, send, hand off to the apply loop), compacts, publishes the
    /// status. The production loop runs it whenever the inbox has items; the simulator runs it directly.
    /// </summary>
    internal async Task RunEventRoundAsync()
    {
        var token = _shutdown.Token;
        var reader = _inbox.Reader;
        if (_options.LeaseReads)
            CatchUpClock();
        // Drain everything queued: all proposals of this round go out in one batch (group commit).
        var handled = 0;
        long messageBytes = 0;
        while (handled < 4096 && reader.TryRead(out var item))
        {
            if (item is RaftMessage message)
                messageBytes += InboxCost(message);
            Handle(item);
            handled++;
        }
        if (messageBytes > 0)
        {
            Interlocked.Add(ref _inboxBytes, -messageBytes);
            SignalInboxRoom();
        }
        if (_forwardProposals.Count > 0 || _forwardReads.Count > 0)
            FlushForwards();
        while (_core.HasReady)
            await ProcessReadyAsync(token).ConfigureAwait(false);
        if (_membershipWaiters.Count > 0)
            CheckMembershipWaiters();
        if (_pendingCompaction >= 0 || _preparedCompaction >= 0)
            await CompactAsync(token).ConfigureAwait(false);
        PublishStatus();
    }

    private void Handle(object item)
    {
        switch (item)
        {
            case ForwardRequest request:
                HandleForwardRequest(request);
                break;
            case ForwardResponse response:
                HandleForwardResponse(response);
                break;
            case AppendEntries append when FindInvalidEntry(append) is { } invalid:
                // A command the state machine cannot apply would stop this node once committed: an
                // honest leader validated it before appending, so this is a forged or buggy leader (or
                // validators that disagree between versions). Refused whole; the leader retries.
                _metrics.RejectedMessages.Add(1, new KeyValuePair<string, object?>(RaftTelemetry.MessageTypeTag, nameof(AppendEntries)));
                Log.CommandRefused(_logger, Id, append.From, $"an AppendEntries at term {append.Term} carries a command at index {invalid.Index} that the state machine refuses ({invalid.Reason}); the whole message was refused");
                break;
            case RaftMessage message:
                var rejected = _core.RejectedMessages;
                _core.Step(message);
                if (_core.RejectedMessages != rejected)
                    OnRejected(message);
                break;
            case TickSignal:
                var ticks = Interlocked.Exchange(ref _pendingTicks, 0);
                for (var i = 0; i < ticks; i++)
                    _core.Tick();
                if (_forwarded.Count > 0)
                    ExpireForwards();
                if (_proposalDeadlines.Count > 0 || _readDeadlines.Count > 0)
                    CheckDeadlines();
                break;
            case Proposal proposal:
                HandleProposal(proposal);
                break;
            case ReadRequest read:
                TrackDeadline(read.Completion, read.Deadline);
                HandleRead(read.Completion);
                break;
            case TracedItem traced:
                HandleTraced(traced);
                break;
            case AppliedWaiter applied:
                TrackDeadline(applied.Completion, applied.Deadline);
                _applyQueue.Writer.TryWrite(new ReadRelease(applied.Index, [applied.Completion]));
                break;
            case QueryRequest query:
                _applyQueue.Writer.TryWrite(query); // runs after everything queued before it is applied
                break;
            case MembershipRequest membership:
                HandleMembershipRequest(membership);
                break;
            case TransferRequest transfer:
                if (_core.Role != RaftRole.Leader)
                    transfer.Completion.TrySetException(new NotLeaderException(_core.LeaderId));
                else if (!_core.TransferLeadership(transfer.Transferee))
                    transfer.Completion.TrySetException(new ArgumentException($"Node {transfer.Transferee} is not another member of the cluster ({string.Join(",", _core.Members)})."));
                else
                    _applyQueue.Writer.TryWrite(transfer); // completed on the next role change, below
                break;
            case LeaderWaiter waiter:
                if (_core.LeaderId != 0)
                    waiter.Completion.TrySetResult(_core.LeaderId);
                else
                    _leaderWaiters.Add(waiter.Completion);
                break;
            case AppliedSignal applied:
                _core.ReportApplied(applied.Index);
                break;
            case CompactRequest compact:
                _pendingCompaction = Math.Max(_pendingCompaction, compact.Index);
                break;
            case CompactionPrepared prepared:
                _preparedCompaction = prepared.Index;
                break;
            case PersistedSignal persisted:
                _core.Persisted(persisted.Ready);
                break;
        }
    }

    private (long Index, string Reason)? FindInvalidEntry(AppendEntries append)
    {
        var entries = append.Entries;
        for (var i = 0; i < (entries?.Count ?? 0); i++)
        {
            var entry = entries![i];
            if (!TryValidateEntry(entry, out var reason))
                return (entry.Index, reason);
        }
        return null;
    }

    // The core refused a message no correct member sends. Logged at Warning once per sender per
    // minute (a flood must not flood the log), at Debug otherwise; always counted.
    private readonly Dictionary<int, long> _rejectionWarned = [];

    private void OnRejected(RaftMessage message)
    {
        _metrics.RejectedMessages.Add(1, new KeyValuePair<string, object?>(RaftTelemetry.MessageTypeTag, message.GetType().Name));
        var reason = _core.LastRejection ?? "refused";
        var now = _time.GetTimestamp();
        if (!_rejectionWarned.TryGetValue(message.From, out var last) || _time.GetElapsedTime(last, now) >= TimeSpan.FromMinutes(1))
        {
            _rejectionWarned[message.From] = now;
            Log.MessageRejected(_logger, Id, message.From, reason);
        }
        else
        {
            Log.MessageRejectedAgain(_logger, Id, message.From, reason);
        }
    }

    private void HandleRead(TaskCompletionSource completion)
    {
        var id = ++_nextReadId;
#if RAFT_MUTANTS
        if ((_options.Mutations & Mutation.ReadBarrierAtOnce) != 0 && _core.Role == RaftRole.Leader)
        {
            completion.TrySetResult();
            return;
        }
#endif
        if (_core.ReadIndex(id))
            _pendingReads[id] = completion;
        else if (CanForward())
            _forwardReads.Add(completion);
        else
            completion.TrySetException(new NotLeaderException(_core.LeaderId));
    }

    private void HandleProposal(Proposal proposal)
    {
        if (ExpiredBeforeAppend(proposal))
            return;
        if (!TryValidateProposal(proposal.Kind, proposal.Command, out var invalid))
        {
            // Refused before it is appended (or forwarded): a command the state machine cannot apply
            // would stop every replica that applies it.
            Log.CommandRefused(_logger, Id, Id, invalid);
            proposal.TrySetException(new InvalidCommandException($"The state machine refused the command: {invalid}"));
            return;
        }
        // A session entry gets the leader's clock as it is appended; a follower forwards it unstamped.
        var data = _core.Role == RaftRole.Leader ? StampForAppend(proposal.Kind, proposal.Command) : proposal.Command;
        var result = _core.ProposeEntry(proposal.Kind, data, out var index);
        switch (result)
        {
            case ProposeResult.Accepted:
                proposal.Index = index;
                proposal.Term = _core.Term;
                TrackDeadline(proposal);
                _metrics.Proposals.Add(1);
                MarkProposed(index);
                // Registered with the apply loop before any Ready can hand out the entry as committed.
                _registrations.Enqueue(proposal);
                break;
            case ProposeResult.NotLeader when CanForward():
                TrackDeadline(proposal);
                _forwardProposals.Add(proposal);
                break;
            case ProposeResult.NotLeader:
                proposal.TrySetException(new NotLeaderException(_core.LeaderId));
                break;
            default:
                Log.ProposalRefused(_logger, Id, result);
                proposal.TrySetException(new RaftBusyException(result == ProposeResult.Backpressure
                    ? "Too many entries are waiting to commit; retry later."
                    : "A leadership transfer is under way; retry on the new leader."));
                break;
        }
    }

    private async Task ProcessReadyAsync(CancellationToken token)
    {
        var ready = _core.GetReady();
        WidenTransportPeers(ready);
        if (_pipelined && ready.CanPersistAsynchronously && Interlocked.Read(ref _unpersistedBytes) < _options.MaxUnpersistedBytes)
        {
            HandOffWrite(ready);
            return;
        }
        // Persisted in place, after every write in flight (their acknowledgements go out first); also
        // when the writes in flight hold MaxUnpersistedBytes: this round then waits for the disk.
        await WaitForWritesAsync(token).ConfigureAwait(false);
        SendAll(ready.Messages);
#if RAFT_MUTANTS
        var ackedEarly = (_options.Mutations & Mutation.AckBeforePersist) != 0;
        if (ackedEarly)
            SendAll(ready.MessagesAfterPersist);
#endif
        if (ready.MustSync)
        {
            var started = _time.GetTimestamp();
            if (ready.HardState is { } hs)
                await _store.SaveHardStateAsync(hs, token).ConfigureAwait(false);
            if (ready.SnapshotChunks.Count > 0 || ready.SnapshotToRestore is not null)
                await ReceiveSnapshotAsync(ready, token).ConfigureAwait(false);
            if (ready.Entries.Count > 0)
            {
                var span = StartAppendSpan(ready.Entries);
                try
                {
                    await _store.AppendAsync(ready.Entries, token).ConfigureAwait(false);
                }
                finally
                {
                    EndSpan(span);
                }
                Log.Persisted(_logger, Id, ready.Entries.Count, ready.Entries[^1].Index);
            }
            _metrics.AppendDuration.Record(_time.GetElapsedTime(started).TotalSeconds);
        }
#if RAFT_MUTANTS
        if (!ackedEarly)
#endif
        SendAll(ready.MessagesAfterPersist);
        HandOffResults(ready);
        _core.Advance(ready);
    }

    // An indexed loop: foreach over an IReadOnlyList boxes its enumerator (an allocation per Ready).
    private void SendAll(IReadOnlyList<RaftMessage> messages)
    {
        for (var i = 0; i < messages.Count; i++)
        {
            CountSend(messages[i]);
            _transport.Send(messages[i]);
        }
    }

    // What follows persistence on either path: role change, committed entries and released reads.
    private void HandOffResults(Ready ready)
    {
        if (ready.SoftState is { } soft)
            OnSoftStateChanged(soft);
        if (ready.Configuration is { } configuration)
            OnConfigurationChanged(configuration);
        NarrowTransportPeers();
        if (ready.CommittedEntries.Count > 0)
        {
            MarkCommitted(ready.CommittedEntries[^1].Index); // before the batch is queued: the apply loop finds the marks
            _applyQueue.Writer.TryWrite(new ApplyBatch(ready.CommittedEntries));
        }
        var reads = ready.ReadStates;
        for (var i = 0; i < reads.Count; i++)
        {
            var read = reads[i];
            if (_pendingReads.Remove(read.RequestId, out var completion))
            {
#if RAFT_MUTANTS
                if ((_options.Mutations & Mutation.ReadBeforeApply) != 0)
                {
                    completion.TrySetResult();
                    continue;
                }
#endif
                _applyQueue.Writer.TryWrite(new ReadRelease(read.Index, [completion]));
            }
            else if (_remoteReads.Remove(read.RequestId, out var remote))
                AnswerRemoteRead(remote, read.Index);
        }
    }

    private async Task ReceiveSnapshotAsync(Ready ready, CancellationToken token)
    {
        if (_snapshots is null)
            throw new InvalidOperationException($"Node {Id} was sent a snapshot by the leader but has no ISnapshotStore: give every node of a cluster that compacts its log a snapshot store.");
        foreach (var chunk in ready.SnapshotChunks)
        {
            if (chunk.Offset == 0)
            {
                if (_incomingSnapshot is not null)
                    await _incomingSnapshot.DisposeAsync().ConfigureAwait(false);
                _incomingSnapshot = await _snapshots.CreateAsync(new SnapshotMetadata(chunk.SnapshotIndex, chunk.SnapshotTerm, chunk.Configuration), token).ConfigureAwait(false);
            }
            if (_incomingSnapshot is null)
                throw new UnreachableException($"Snapshot chunk at offset {chunk.Offset} without a snapshot being received.");
            await _incomingSnapshot.Stream.WriteAsync(chunk.Data, token).ConfigureAwait(false);
        }
        if (ready.SnapshotToRestore is { } restore)
        {
            var writer = _incomingSnapshot ?? throw new UnreachableException($"Snapshot {restore.Index} to restore without its data.");
            _incomingSnapshot = null;
            await using (writer.ConfigureAwait(false))
                await writer.CommitAsync(token).ConfigureAwait(false);
            // The log now starts after the snapshot; the state machine is restored in order on the apply loop.
            await _store.ResetAsync(restore.Index, restore.Term, token).ConfigureAwait(false);
            _metrics.SnapshotInstalls.Add(1);
            _applyQueue.Writer.TryWrite(new RestoreRequest(restore));
        }
        else if (ready.SnapshotChunks.Count > 0 && ready.SnapshotChunks[^1].Done && _incomingSnapshot is not null)
        {
            // The log already held what the snapshot covers.
            await _incomingSnapshot.DisposeAsync().ConfigureAwait(false);
            _incomingSnapshot = null;
        }
    }

    // Pipelined: the entries go to the writer; everything that does not wait for them happens now.
    private void HandOffWrite(Ready ready)
    {
        SendAll(ready.Messages);
#if RAFT_MUTANTS
        if ((_options.Mutations & Mutation.AckBeforePersist) != 0)
            SendAll(ready.MessagesAfterPersist);
#endif
        Interlocked.Add(ref _unpersistedBytes, EntryBytes(ready.Entries));
        lock (_writesLock)
            _writesInFlight++;
        _writes.Writer.TryWrite(ready);
        HandOffResults(ready);
        _core.AdvanceBeforePersisting(ready);
    }

    private static long EntryBytes(IReadOnlyList<LogEntry> entries)
    {
        long bytes = 0;
        for (var i = 0; i < entries.Count; i++)
            bytes += entries[i].Data.Length + 32;
        return bytes;
    }

    private async Task WaitForWritesAsync(CancellationToken token)
    {
        if (_manual)
        {
            // The simulator's writes complete synchronously: finish them here, in order, as the
            // writer would while this loop waits.
            while (_writes.Reader.TryPeek(out _))
                await RunWriterRoundAsync().ConfigureAwait(false);
            return;
        }
        Task drained;
        lock (_writesLock)
        {
            if (_writesInFlight == 0)
                return;
            _writesDrained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            drained = _writesDrained.Task;
        }
        await drained.WaitAsync(token).ConfigureAwait(false);
    }

    // Writes the handed-off entries in order: everything queued goes into one append (one fsync);
    // then the acknowledgements that waited for it are sent, and the loop is told (PersistedSignal).
    private async Task RunWriterAsync()
    {
        var token = _shutdown.Token;
        var reader = _writes.Reader;
        try
        {
            while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
                await RunWriterRoundAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            Fail(ex);
        }
    }

    /// <summary>Whether pipelined writes wait for the writer (the simulator runs a round when they do).</summary>
    internal bool HasWriterWork => _writes.Reader.TryPeek(out _);

    /// <summary>Bytes of entries handed to the pipelined writer and not yet durable (tests).</summary>
    internal long UnpersistedBytes => Interlocked.Read(ref _unpersistedBytes);

    private readonly List<Ready> _writeBatch = [];
    private readonly List<LogEntry> _writeEntries = [];

    /// <summary>One round of the writer: everything handed off so far goes into one append (one fsync), then the acknowledgements that waited for it are sent.</summary>
    internal async Task RunWriterRoundAsync()
    {
        var token = _shutdown.Token;
        var reader = _writes.Reader;
        var batch = _writeBatch;
        var entries = _writeEntries;
        batch.Clear();
        entries.Clear();
        while (reader.TryRead(out var ready))
        {
            batch.Add(ready);
            entries.AddRange(ready.Entries);
        }
        if (batch.Count == 0)
            return;
        var started = _time.GetTimestamp();
#if RAFT_MUTANTS
        var ackedEarly = (_options.Mutations & Mutation.AckBeforePersist) != 0;
#else
        const bool ackedEarly = false;
#endif
        var appendSpan = StartAppendSpan(entries);
        try
        {
            await _store.AppendAsync(entries, token).ConfigureAwait(false);
        }
        finally
        {
            EndSpan(appendSpan);
        }
        Log.Persisted(_logger, Id, entries.Count, entries[^1].Index);
        _metrics.AppendDuration.Record(_time.GetElapsedTime(started).TotalSeconds);
        Interlocked.Add(ref _unpersistedBytes, -EntryBytes(entries));
        var count = batch.Count;
        foreach (var ready in batch)
        {
            if (!ackedEarly)
                SendAll(ready.MessagesAfterPersist);
            _inbox.Writer.TryWrite(new PersistedSignal(ready));
        }
        batch.Clear();
        entries.Clear();
        lock (_writesLock)
        {
            _writesInFlight -= count;
            if (_writesInFlight == 0 && _writesDrained is { } drained)
            {
                _writesDrained = null;
                drained.TrySetResult();
            }
        }
    }

    private async Task CompactAsync(CancellationToken token)
    {
        if (_preparedCompaction < 0 && _store is ICompactionPreparer preparer)
        {
            // The file store records the compaction point first (a metadata file and two fsyncs,
            // tens of milliseconds while the disk is busy): done off the loop, which then only drops
            // segments. One at a time; a newer request waits in _pendingCompaction. Under the
            // simulator (manual scheduling) the same two steps run, the first as an event of its own.
            if (!_compactionPrepare.IsCompleted || _manualPrepare is not null)
                return;
            var point = CompactionTarget();
            _pendingCompaction = -1;
            if (point > _store.FirstIndex - 1)
            {
                if (_manual)
                    _manualPrepare = (preparer, point); // RunCompactionPrepareRoundAsync, when the simulator says
                else
                    _compactionPrepare = Task.Run(() => PrepareCompaction(preparer, point), CancellationToken.None);
            }
            return;
        }
        await WaitForWritesAsync(token).ConfigureAwait(false);
        var target = _preparedCompaction >= 0 ? Math.Min(_preparedCompaction, _store.LastIndex) : CompactionTarget();
        if (_preparedCompaction < 0)
            _pendingCompaction = -1;
        _preparedCompaction = -1;
        if (target > _store.FirstIndex - 1)
            await _store.CompactAsync(target, token).ConfigureAwait(false);
    }

    // Never past the latest snapshot, nor past what this node's state machine has applied.
    private long CompactionTarget() =>
        Math.Min(Math.Min(_pendingCompaction, Math.Min(_snapshots?.Latest?.Index ?? 0, _core.AppliedIndex)), _store.LastIndex);

    // FileLogStore compaction, first step (thread pool): the point made durable; then the loop compacts.
    private Task _compactionPrepare = Task.CompletedTask;
    // Manual scheduling: a compaction point waiting for the simulator to prepare it, at a time it
    // chooses, so appends, resets and crashes interleave with it as they do with the thread-pool task.
    private (ICompactionPreparer Preparer, long Point)? _manualPrepare;

    internal bool HasCompactionPrepareWork => _manualPrepare is not null;

    // Manual scheduling: the thread-pool step of a compaction, run by the simulator. A store failure
    // (a simulated power cut) faults the returned task, as a round's does.
    internal Task RunCompactionPrepareRoundAsync()
    {
        if (_manualPrepare is not { } work)
            return Task.CompletedTask;
        _manualPrepare = null;
        try
        {
            work.Preparer.PrepareCompaction(work.Point);
        }
#pragma warning disable CA1031 // Handed to the simulator, which tells a power cut from a fault.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            return Task.FromException(ex);
        }
        _inbox.Writer.TryWrite(new CompactionPrepared(work.Point));
        return Task.CompletedTask;
    }

    private long _preparedCompaction = -1; // owned by the loop: a point PrepareCompaction made durable, or -1

    private void PrepareCompaction(ICompactionPreparer preparer, long point)
    {
        try
        {
            preparer.PrepareCompaction(point);
            _inbox.Writer.TryWrite(new CompactionPrepared(point));
        }
#pragma warning disable CA1031 // A store failure stops the node, as on the loop.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Fail(ex);
        }
    }

    private void OnSoftStateChanged(SoftState soft)
    {
        Log.RoleChanged(_logger, Id, soft.Role, soft.Term, soft.LeaderId);
        OnRoleChangedForTelemetry(soft);
        if (soft.Role != RaftRole.Leader && _pendingReads.Count > 0)
        {
            // The core dropped its pending reads with its leadership.
            var error = new NotLeaderException(soft.LeaderId);
            foreach (var (_, completion) in _pendingReads)
                completion.TrySetException(error);
            _pendingReads.Clear();
        }
        if (soft.Role != RaftRole.Leader && _remoteReads.Count > 0)
            RefuseRemoteReads();
        if (_forwarded.Count > 0)
            AbandonForwards(soft.LeaderId);
        if (soft.LeaderId != 0 && _leaderWaiters.Count > 0)
        {
            foreach (var waiter in _leaderWaiters)
                waiter.TrySetResult(soft.LeaderId);
            _leaderWaiters.Clear();
        }
        if (soft.Role != RaftRole.Leader)
            _applyQueue.Writer.TryWrite(new SteppedDown());
        try
        {
            StateChanged?.Invoke(this, new RaftStateChange(Id, soft.Role, soft.LeaderId, soft.Term));
        }
#pragma warning disable CA1031 // A host's handler must not stop consensus.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.ShutdownError(_logger, Id, ex);
        }
    }

    private void PublishStatus()
    {
        // Runs every loop round: builds (and allocates) a new status only when something changed.
        if (!_core.StatusEquals(_status.Value))
            _status = new StatusHolder(_core.Status);
    }

    // ------------------------------------------------------------------ apply loop

    // Owned by the apply loop: proposals waiting for their index, keyed by index; reads (local and
    // forwarded) waiting for this node to apply their read index; transfers waiting for a step-down.
    private readonly Dictionary<long, Proposal> _waiting = [];
    private readonly List<ReadRelease> _waitingReads = [];
    private readonly List<TransferRequest> _transfers = [];

    private async Task RunApplyLoopAsync()
    {
        var token = _shutdown.Token;
        var reader = _applyQueue.Reader;
        try
        {
            while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
                await RunApplyRoundAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            Fail(ex);
        }
        FailApplyWaiters(Volatile.Read(ref _fault) is { } fault
            ? new RaftNodeFaultedException(Id, fault)
            : new ObjectDisposedException(nameof(RaftNode), $"Node {Id} was disposed before the command was applied."));
    }

    private void FailApplyWaiters(Exception error)
    {
        TakeRegistrations(_waiting);
        foreach (var (_, proposal) in _waiting)
            FailChain(proposal, error);
        _waiting.Clear();
        foreach (var read in _waitingReads)
            read.Fail(error);
        _waitingReads.Clear();
        foreach (var transfer in _transfers)
            transfer.Completion.TrySetException(error);
        _transfers.Clear();
        FailQueuedReads(error);
    }

    /// <summary>Whether the apply loop has work queued (the simulator runs a round when it has).</summary>
    internal bool HasApplyWork => _applyQueue.Reader.TryPeek(out _);

    /// <summary>One round of the apply loop: applies, restores and releases everything queued for it, in order.</summary>
    internal async Task RunApplyRoundAsync()
    {
        var token = _shutdown.Token;
        var reader = _applyQueue.Reader;
        while (reader.TryRead(out var item))
        {
            switch (item)
            {
                case ReadRelease read:
                    // Safe once everything committed before the read was requested is applied.
                    if (Interlocked.Read(ref _appliedIndex) >= read.Index)
                        read.Complete();
                    else
                        _waitingReads.Add(read);
                    break;
                case ApplyBatch batch:
                    TakeRegistrations(_waiting);
                    await ApplyBatchAsync(batch.Entries, _waiting, token).ConfigureAwait(false);
                    ReleaseReads();
                    await MaybeTakeSnapshotAsync(token).ConfigureAwait(false);
                    break;
                case RestoreRequest restore:
                    TakeRegistrations(_waiting);
                    await RestoreAsync(restore.Snapshot, _waiting, token).ConfigureAwait(false);
                    ReleaseReads();
                    break;
                case TransferRequest transfer:
                    _transfers.Add(transfer);
                    break;
                case QueryRequest query:
                    query.Run();
                    break;
                case ProposalExpiry expiry:
                    TakeRegistrations(_waiting);
                    ExpireWaitingProposals(expiry.Now);
                    break;
                case SteppedDown:
                    foreach (var transfer in _transfers)
                        transfer.Completion.TrySetResult();
                    _transfers.Clear();
                    break;
            }
        }
    }

    // Releases the waiting reads (local and forwarded) whose index is applied.
    private void ReleaseReads()
    {
        if (_waitingReads.Count == 0)
            return;
        var applied = Interlocked.Read(ref _appliedIndex);
        var kept = 0;
        for (var i = 0; i < _waitingReads.Count; i++)
        {
            var read = _waitingReads[i];
            if (read.Index <= applied)
                read.Complete();
            else
                _waitingReads[kept++] = read;
        }
        _waitingReads.RemoveRange(kept, _waitingReads.Count - kept);
    }

    // Apply loop: takes in the proposals registered since the last batch.
    private void TakeRegistrations(Dictionary<long, Proposal> waiting)
    {
        while (_registrations.TryDequeue(out var proposal))
        {
            if (proposal.Index <= Interlocked.Read(ref _appliedIndex))
            {
                // Only a forwarded proposal: the leader's answer came after this node had applied
                // the index (or a snapshot covered it), so its entry went unseen.
                ResolveCovered(proposal, Interlocked.Read(ref _appliedIndex), _lastAppliedTerm);
                continue;
            }
            // Another proposal may wait at the same index (this node proposed there before, in an
            // older term, and lost the entry): both wait, the applied term decides.
            if (waiting.Remove(proposal.Index, out var older))
                proposal.NextAtIndex = older;
            waiting[proposal.Index] = proposal;
        }
    }

    private async Task RestoreAsync(SnapshotMetadata requested, Dictionary<long, Proposal> waiting, CancellationToken token)
    {
        // The store may already hold a newer snapshot than the one this request restores: another
        // one was received while this request waited behind slow applies. Restore the newest (its
        // own request follows and finds nothing left to do); entries it covers are skipped when their
        // batches come. Restoring the requested one's data from the newest would mislabel the state.
        SnapshotMetadata? snapshot;
        Stream? stream;
        while (true)
        {
            snapshot = _snapshots!.Latest;
            stream = _snapshots.OpenLatest();
            var again = _snapshots.Latest;
            if (stream is null || (again?.Index == snapshot?.Index && again?.Term == snapshot?.Term))
                break;
            await stream.DisposeAsync().ConfigureAwait(false); // replaced in between: open the newest again
        }
        if (snapshot is null || stream is null)
            throw new InvalidOperationException($"Node {Id} committed snapshot {requested.Index} but the snapshot store has none.");
        if (snapshot.Index < requested.Index)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw new InvalidOperationException($"Node {Id} committed snapshot {requested.Index} but the snapshot store's latest is the older {snapshot.Index}.");
        }
        if (snapshot.Index <= Interlocked.Read(ref _appliedIndex))
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            return; // an earlier request already restored it
        }
        await using (stream.ConfigureAwait(false))
            await RestoreSnapshotWithSessionsAsync(stream, token).ConfigureAwait(false);
        foreach (var index in waiting.Keys.Where(i => i <= snapshot.Index).ToList())
        {
            waiting.Remove(index, out var proposal);
            for (var p = proposal; p is not null;)
            {
                var next = p.NextAtIndex;
                p.NextAtIndex = null;
                ResolveCovered(p, snapshot.Index, snapshot.Term);
                p = next;
            }
        }
        _lastAppliedTerm = snapshot.Term;
        _appliedConfiguration = snapshot.Configuration;
        _lastSnapshotIndex = snapshot.Index;
        Interlocked.Exchange(ref _appliedIndex, snapshot.Index);
        _inbox.Writer.TryWrite(new AppliedSignal(snapshot.Index));
    }

    // A proposal whose entry this node will never apply itself: the state it has (a snapshot, or
    // entries applied before it learned the proposal's index) already covers the index. Whether the
    // proposal committed is known when the covering entry, the last at coveredIndex, has the
    // proposal's term: the leader of that term appended both, and its log up to coveredIndex is what
    // committed (log matching), so the proposal is in it. Otherwise the outcome is unknown.
    private void ResolveCovered(Proposal proposal, long coveredIndex, long coveredTerm)
    {
        if (proposal.Term == coveredTerm && proposal.Index <= coveredIndex)
        {
            proposal.TrySetResult(CommittedWithoutResult.Instance);
            return;
        }
        proposal.TrySetException(new ProposalOutcomeUnknownException(
            $"The outcome of the proposal is unknown: node {Id} applied index {proposal.Index} from the leader's snapshot or before it learned the proposal's index, and cannot tell whether the entry there is the proposal (appended in term {proposal.Term}; the state covers index {coveredIndex} of term {coveredTerm})."));
    }

    private async Task MaybeTakeSnapshotAsync(CancellationToken token)
    {
        var applied = Interlocked.Read(ref _appliedIndex);
        if (_snapshots is null || _options.SnapshotInterval == 0 || applied - _lastSnapshotIndex < _options.SnapshotInterval)
            return;
        // A node that joined knows no configuration for the entries before the one that added it;
        // a snapshot of them could not tell a follower its members, so it waits for that entry.
        if (_appliedConfiguration is null || _appliedConfiguration.IsEmpty)
            return;
        // Taken on the apply loop: applying pauses while the state machine writes, heartbeats do not.
        var writer = await _snapshots.CreateAsync(new SnapshotMetadata(applied, _lastAppliedTerm, _appliedConfiguration), token).ConfigureAwait(false);
        await using (writer.ConfigureAwait(false))
        {
            await WriteSessionSnapshotAsync(writer.Stream, token).ConfigureAwait(false);
            await _stateMachine.WriteSnapshotAsync(writer.Stream, token).ConfigureAwait(false);
            await writer.CommitAsync(token).ConfigureAwait(false);
        }
        _lastSnapshotIndex = applied;
        _metrics.SnapshotsCreated.Add(1);
        Log.SnapshotTaken(_logger, Id, applied);
        _inbox.Writer.TryWrite(new CompactRequest(applied - _options.SnapshotTrailingEntries));
    }

    private async Task ApplyBatchAsync(IReadOnlyList<LogEntry> entries, Dictionary<long, Proposal> waiting, CancellationToken token)
    {
        var started = _time.GetTimestamp();
        var covered = Interlocked.Read(ref _appliedIndex);
        for (var i = 0; i < entries.Count; i++)
        {
            var entry = entries[i];
            if (entry.Index <= covered)
                continue; // a newer snapshot, restored ahead of this batch, already holds it
            object? result = null;
            if (entry.Kind is EntryKind.Command or EntryKind.Session)
            {
                try
                {
                    result = entry.Kind == EntryKind.Command
                        ? await _stateMachine.ApplyAsync(entry, token).ConfigureAwait(false)
                        : await ApplySessionEntryAsync(entry, token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !token.IsCancellationRequested)
                {
                    Log.ApplyFailed(_logger, Id, entry.Index, ex);
                    throw;
                }
            }
            else if (entry.Kind == EntryKind.Configuration)
            {
                OnConfigurationApplied(entry);
            }
            if (waiting.Remove(entry.Index, out var proposal))
                Resolve(proposal, entry.Term, result);
            _lastAppliedTerm = entry.Term;
            Interlocked.Exchange(ref _appliedIndex, entry.Index);
        }
        _metrics.ApplyDuration.Record(_time.GetElapsedTime(started).TotalSeconds);
        MarkApplied(entries[^1].Index);
        _inbox.Writer.TryWrite(new AppliedSignal(entries[^1].Index));
    }

    // A store, transport or state machine error stopped the node: the first one is the fault. It is
    // logged at Critical, shown in Status, raised through StateChanged, and carried by the
    // RaftNodeFaultedException that every pending and later call gets. Each loop fails what it owns
    // as it ends (the event loop its reads, forwards and waiters; the apply loop its proposals).
    private void Fail(Exception error)
    {
        if (Interlocked.CompareExchange(ref _fault, error, null) is not null)
            return;
        Log.NodeFaulted(_logger, Id, error);
        _inbox.Writer.TryComplete();
        _applyQueue.Writer.TryComplete();
        _writes.Writer.TryComplete();
        if (!_shutdown.IsCancellationRequested)
        {
            try
            {
                _shutdown.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }
        TaskCompletionSource? room;
        lock (_inboxSpaceLock)
        {
            room = _inboxSpace;
            _inboxSpace = null;
        }
        room?.TrySetResult(); // DeliverAsync callers see the fault and drop
        var status = _status.Value;
        try
        {
            StateChanged?.Invoke(this, new RaftStateChange(Id, status.Role, status.LeaderId, status.Term, error));
        }
#pragma warning disable CA1031 // A host's handler must not hide the fault.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.ShutdownError(_logger, Id, ex);
        }
        _completion.TrySetException(error);
    }

    private void FailPending(Exception error)
    {
        while (_inbox.Reader.TryRead(out var item))
            FailItem(item, error);
        foreach (var membership in _membershipWaiters)
            membership.Completion.TrySetException(error);
        _membershipWaiters.Clear();
        foreach (var (_, completion) in _pendingReads)
            completion.TrySetException(error);
        _pendingReads.Clear();
        FailForwards(error);
        foreach (var waiter in _leaderWaiters)
            waiter.TrySetException(error);
        _leaderWaiters.Clear();
    }

    // A queued caller's request the loop will never handle: its caller gets the error.
    private static void FailItem(object item, Exception error)
    {
        switch (item)
        {
            case Proposal proposal:
                proposal.TrySetException(error);
                break;
            case ReadRequest read:
                read.Completion.TrySetException(error);
                break;
            case TracedItem traced:
                FailItem(traced.Item, error);
                break;
            case TransferRequest transfer:
                transfer.Completion.TrySetException(error);
                break;
            case LeaderWaiter waiter:
                waiter.Completion.TrySetException(error);
                break;
            case AppliedWaiter applied:
                applied.Completion.TrySetException(error);
                break;
            case QueryRequest query:
                query.Fail(error);
                break;
            case MembershipRequest membership:
                membership.Completion.TrySetException(error);
                break;
        }
    }

    // ------------------------------------------------------------------ loop items

    private sealed class StatusHolder(RaftStatus value)
    {
        public RaftStatus Value { get; } = value;
    }

    private sealed class TickSignal
    {
        public static readonly TickSignal Instance = new();
    }

    private sealed class ReadRequest
    {
        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public long Deadline { get; init; } = long.MaxValue;
    }


    private sealed class TransferRequest(int transferee)
    {
        public int Transferee { get; } = transferee;

        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class LeaderWaiter
    {
        public TaskCompletionSource<int> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed record ApplyBatch(IReadOnlyList<LogEntry> Entries);

    private sealed record AppliedSignal(long Index);

    private sealed record CompactRequest(long Index);

    private sealed record CompactionPrepared(long Index);

    private sealed record PersistedSignal(Ready Ready);

    private sealed record RestoreRequest(SnapshotMetadata Snapshot);

    private sealed class SteppedDown;
}
