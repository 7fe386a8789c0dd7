namespace Raft;

// Reads that need no locks in the state machine (QueryAsync), waiting for an applied index
// (WaitForAppliedAsync), and the timeouts of proposals and reads (RaftNodeOptions.ProposalTimeout,
// ReadTimeout). See docs/reads-and-typed-api.md for the threading contract.
public sealed partial class RaftNode
{
    // Event loop: deadlines of accepted or forwarded proposals and of reads, oldest first (one
    // timeout each, so enqueue order is deadline order, give or take concurrent callers). A proposal
    // is pooled: its Generation tells whether the entry is still about the use that was tracked.
    private readonly Queue<(long Deadline, Proposal Proposal, int Generation)> _proposalDeadlines = new();
    private readonly Queue<(long Deadline, TaskCompletionSource Completion)> _readDeadlines = new();
    private long? _lastExpiryPost;

    // Lease reads: the timestamp up to which whole ticks were counted (NaN before the first).
    private readonly Lock _clockLock = new();
    private double _tickedUpTo = double.NaN;

    /// <summary>The state machine the node applies to (the typed API finds its adapter here).</summary>
    internal IStateMachine StateMachine => _stateMachine;

    /// <summary>
    /// Runs <paramref name="query"/> against the state machine once a read is linearizable (as
    /// <see cref="ReadBarrierAsync"/>), on the apply loop between two applies, and returns its result:
    /// the state cannot change while the query runs, so the state machine needs no locks.
    /// </summary>
    /// <remarks>
    /// <para><typeparamref name="TState"/> is the type of the state machine given to the node, or, with
    /// the typed API, of the <see cref="IStateMachine{TCommand, TResult}"/> inside its
    /// <see cref="RaftStateMachine{TCommand, TResult}"/>. The state seen is at least as new as every
    /// write committed before the call (it may include later ones: still linearizable).</para>
    /// <para>The query must be quick (applies wait for it), must not change the state, and must not
    /// wait for this node (a deadlock). An exception it throws is handed to the caller; the node
    /// goes on. On a follower it works like <see cref="ReadBarrierAsync"/>: with
    /// <see cref="RaftNodeOptions.ForwardToLeader"/> the read index comes from the leader.</para>
    /// </remarks>
    /// <typeparam name="TState">The state machine's type.</typeparam>
    /// <typeparam name="TResult">What the query returns.</typeparam>
    /// <param name="query">Reads the state.</param>
    /// <param name="cancellationToken">Stops waiting; the query may still run.</param>
    /// <returns>The query's result.</returns>
    /// <exception cref="InvalidOperationException">The node's state machine is not a <typeparamref name="TState"/>, or <see cref="StartAsync"/> was not called.</exception>
    /// <exception cref="NotLeaderException">As <see cref="ReadBarrierAsync"/>.</exception>
    /// <exception cref="RaftTimeoutException">The read was not confirmed within <see cref="RaftNodeOptions.ReadTimeout"/>.</exception>
    /// <exception cref="RaftNodeFaultedException">The node stopped because of an error (the inner exception).</exception>
    public async Task<TResult> QueryAsync<TState, TResult>(Func<TState, TResult> query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        var state = ResolveState<TState>();
        await ReadBarrierAsync(cancellationToken).ConfigureAwait(false);
        var request = new QueryItem<TState, TResult>(state, query);
        Enqueue(request);
        return await request.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Waits until this node has applied the log up to <paramref name="index"/> (for instance the
    /// leader's <see cref="RaftStatus.CommitIndex"/>, to read one's own writes on a follower).
    /// </summary>
    /// <param name="index">The log index to wait for; 0 or less completes at once.</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>A task that completes when <see cref="RaftStatus.AppliedIndex"/> is at least <paramref name="index"/>.</returns>
    /// <exception cref="RaftTimeoutException">Not applied within <see cref="RaftNodeOptions.ReadTimeout"/> (an index that does not exist yet is never applied).</exception>
    /// <exception cref="RaftNodeFaultedException">The node stopped because of an error (the inner exception).</exception>
    /// <exception cref="InvalidOperationException"><see cref="StartAsync"/> was not called.</exception>
    /// <exception cref="ObjectDisposedException">The node was disposed.</exception>
    public Task WaitForAppliedAsync(long index, CancellationToken cancellationToken = default)
    {
        ThrowIfNotRunning();
        if (cancellationToken.IsCancellationRequested)
            return Task.FromCanceled(cancellationToken);
        if (Interlocked.Read(ref _appliedIndex) >= index)
            return Task.CompletedTask;
        var waiter = new AppliedWaiter(index, DeadlineAfter(_options.ReadTimeout));
        Enqueue(waiter);
        return cancellationToken.CanBeCanceled ? waiter.Completion.Task.WaitAsync(cancellationToken) : waiter.Completion.Task;
    }

    private TState ResolveState<TState>()
    {
        if (_stateMachine is TState state)
            return state;
        if (_stateMachine is ITypedStateMachineAdapter { Inner: TState inner })
            return inner;
        var inside = _stateMachine is ITypedStateMachineAdapter adapter ? $" (wrapping a {adapter.Inner.GetType().Name})" : "";
        throw new InvalidOperationException(
            $"QueryAsync<{typeof(TState).Name}, ...>: node {Id}'s state machine is a {_stateMachine.GetType().Name}{inside}, not a {typeof(TState).Name}.");
    }

    // With lease reads the node's tick count must keep up with its clock: a timer that fires late
    // (a starved thread pool, a stalled loop) would otherwise make a leader count less time than
    // passed, and serve reads from a lease that has run out. Each timer callback, and each event
    // round before it reads, counts the whole ticks that really elapsed since the last count.
    private int TicksOwed()
    {
        var now = (double)_time.GetTimestamp();
        var perTick = _options.TickInterval.TotalSeconds * _time.TimestampFrequency;
        lock (_clockLock)
        {
            if (double.IsNaN(_tickedUpTo))
            {
                _tickedUpTo = now; // where the count starts does not matter: a lease compares two counts
                return 0;
            }
            var owed = (int)Math.Min(int.MaxValue / 2, Math.Floor((now - _tickedUpTo) / perTick));
            if (owed <= 0)
                return 0;
            _tickedUpTo += owed * perTick;
            return owed;
        }
    }

    // Event loop, at the start of a round with lease reads: ticks the core up to now, so a read this
    // round checks its lease against the time that really passed.
    private void CatchUpClock()
    {
        var owed = TicksOwed();
        if (owed > 0)
            Interlocked.Add(ref _pendingTicks, owed);
        var ticks = Interlocked.Exchange(ref _pendingTicks, 0);
        for (var i = 0; i < ticks; i++)
            _core.Tick();
    }

    private long DeadlineAfter(TimeSpan timeout)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
            return long.MaxValue;
        var ticks = timeout.TotalSeconds * _time.TimestampFrequency;
        var now = _time.GetTimestamp();
        return ticks >= long.MaxValue - (double)now ? long.MaxValue : now + (long)ticks;
    }

    // Event loop: a proposal whose caller's deadline passed while it waited in the inbox is not
    // appended at all, so its outcome is known.
    private bool ExpiredBeforeAppend(Proposal proposal)
    {
        if (proposal.Deadline == long.MaxValue || proposal.Deadline > _time.GetTimestamp())
            return false;
        Log.ProposalTimedOut(_logger, Id, 0, "before it was appended");
        proposal.TrySetException(new RaftTimeoutException(
            $"Node {Id}: the proposal was not appended within ProposalTimeout ({_options.ProposalTimeout}); it was not submitted and will not take effect.",
            outcomeKnown: true));
        return true;
    }

    private void TrackDeadline(Proposal proposal)
    {
        if (proposal.Deadline != long.MaxValue)
            _proposalDeadlines.Enqueue((proposal.Deadline, proposal, proposal.Generation));
    }

    private void TrackDeadline(TaskCompletionSource completion, long deadline)
    {
        if (deadline != long.MaxValue)
            _readDeadlines.Enqueue((deadline, completion));
    }

    // Event loop, on each tick: fails the reads past their deadline, and asks the apply loop, which
    // owns accepted proposals, to fail those past theirs (at most once per 10 ticks while one waits
    // elsewhere: forwarded and not yet answered, it is ForwardTimeout's).
    private void CheckDeadlines()
    {
        var now = _time.GetTimestamp();
        var expired = false;
        while (_proposalDeadlines.TryPeek(out var head))
        {
            if (head.Proposal.Generation != head.Generation || head.Proposal.IsCompleted)
            {
                _proposalDeadlines.Dequeue(); // done (and maybe reused since)
                continue;
            }
            expired = head.Deadline <= now;
            break;
        }
        if (expired && (_lastExpiryPost is not { } last || (now - last) / (double)_time.TimestampFrequency >= _options.TickInterval.TotalSeconds * 10))
        {
            _lastExpiryPost = now;
            _applyQueue.Writer.TryWrite(new ProposalExpiry(now));
        }
        while (_readDeadlines.TryPeek(out var read))
        {
            if (!read.Completion.Task.IsCompleted && read.Deadline > now)
                break;
            _readDeadlines.Dequeue();
            if (read.Completion.TrySetException(new RaftTimeoutException(
                $"Node {Id}: the read was not confirmed within ReadTimeout ({_options.ReadTimeout}); it had no effect, retry it.", outcomeKnown: true)))
            {
                Log.ReadTimedOut(_logger, Id, _core.LeaderId);
            }
        }
    }

    // Apply loop: fails the accepted proposals past their deadline. Each was appended, so it may
    // still commit: the outcome is unknown.
    private void ExpireWaitingProposals(long now)
    {
        List<(long Index, Proposal? Kept)>? changed = null;
        foreach (var (index, head) in _waiting)
        {
            Proposal? kept = null, last = null;
            var dropped = false;
            for (var p = head; p is not null;)
            {
                var next = p.NextAtIndex;
                if (p.Deadline <= now)
                {
                    p.NextAtIndex = null;
                    dropped = true;
                    Log.ProposalTimedOut(_logger, Id, index, "appended, not yet applied");
                    p.TrySetException(new RaftTimeoutException(
                        $"Node {Id}: the proposal appended at index {index} (term {p.Term}) was not applied within ProposalTimeout ({_options.ProposalTimeout}); it may still commit and take effect: read the state before retrying.",
                        outcomeKnown: false));
                }
                else
                {
                    if (last is null)
                        kept = p;
                    else
                        last.NextAtIndex = p;
                    last = p;
                }
                p = next;
            }
            if (last is not null)
                last.NextAtIndex = null;
            if (dropped)
                (changed ??= []).Add((index, kept));
        }
        if (changed is null)
            return;
        foreach (var (index, kept) in changed)
        {
            if (kept is null)
                _waiting.Remove(index);
            else
                _waiting[index] = kept;
        }
    }

    // Apply loop, when it stops: reads and queries still queued for it would otherwise never complete.
    private void FailQueuedReads(Exception error)
    {
        while (_applyQueue.Reader.TryRead(out var item))
        {
            if (item is ReadRelease read)
                read.Fail(error);
            else if (item is QueryRequest query)
                query.Fail(error);
        }
    }

    private sealed class AppliedWaiter(long index, long deadline)
    {
        public long Index { get; } = index;

        public long Deadline { get; } = deadline;

        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed record ProposalExpiry(long Now);

    private abstract class QueryRequest
    {
        public abstract void Run();

        public abstract void Fail(Exception error);
    }

    private sealed class QueryItem<TState, TResult>(TState state, Func<TState, TResult> query) : QueryRequest
    {
        public TaskCompletionSource<TResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override void Run()
        {
            try
            {
                Completion.TrySetResult(query(state));
            }
#pragma warning disable CA1031 // The host's query failed: its caller gets the exception; the node goes on.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Completion.TrySetException(ex);
            }
        }

        public override void Fail(Exception error) => Completion.TrySetException(error);
    }

    /// <summary>Reads this node confirmed from its leader lease (event loop; the simulator's coverage count).</summary>
    internal long LeaseReadsServed => _core.LeaseReadsServed;
}
