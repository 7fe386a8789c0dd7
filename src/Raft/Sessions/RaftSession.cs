namespace Raft;

/// <summary>
/// An exactly-once client session (dissertation §6.3): commands proposed through it carry the
/// session's client id and a sequence number, and the cluster applies each (client id, sequence)
/// at most once. A retry of a command that already took effect, even after a leader change, a
/// forwarding timeout or a lost answer, gets the first result back without the state machine
/// being called again.
/// </summary>
/// <remarks>
/// <para>Get one from <see cref="RaftNode.OpenSessionAsync"/> (a registration through the log; the
/// client id is the index of that entry), or <see cref="RaftNode.ResumeSession"/> for a session a
/// client opened earlier, possibly through another node.</para>
/// <para><see cref="ProposeAsync(ReadOnlyMemory{byte}, CancellationToken)"/> numbers commands itself
/// and retries on every outcome that leaves the command's fate open; callers that keep their own
/// sequence numbers (a client that survives its process, an HTTP client with an idempotency key)
/// use <see cref="ProposeAsync(ReadOnlyMemory{byte}, long, CancellationToken)"/> and retry with the
/// same number.</para>
/// <para>Each command also tells the cluster the lowest sequence number this handle still waits
/// for, so results below it are dropped. A session expires after <see cref="SessionOptions.Timeout"/>
/// of log time without a command. Thread-safe.</para>
/// </remarks>
public sealed class RaftSession
{
    private readonly RaftNode _node;
    private readonly Lock _lock = new();
    private readonly SortedSet<long> _pending = [];
    private long _next;

    internal RaftSession(RaftNode node, long clientId, long nextSequence)
    {
        _node = node;
        ClientId = clientId;
        _next = nextSequence;
    }

    /// <summary>The session's client id: the log index of its registration.</summary>
    public long ClientId { get; }

    /// <summary>The node this handle proposes through.</summary>
    public RaftNode Node => _node;

    /// <summary>Reserves the next sequence number of this handle (1, 2, …, or from the number given to <see cref="RaftNode.ResumeSession"/>).</summary>
    /// <returns>A sequence number no earlier call returned.</returns>
    public long ReserveSequence()
    {
        lock (_lock)
            return _next++;
    }

    /// <summary>
    /// Proposes <paramref name="command"/> under the next sequence number and retries it, with the
    /// same number, until the cluster answers: the first result of the command, applied exactly once.
    /// </summary>
    /// <remarks>Retried (with a backoff measured by the node's <see cref="TimeProvider"/>, doubling from
    /// 10 ms up to <see cref="RaftNodeOptions.ElectionTimeoutMax"/>) after
    /// <see cref="ProposalOutcomeUnknownException"/>, <see cref="ProposalDroppedException"/>,
    /// <see cref="NotLeaderException"/> and <see cref="RaftBusyException"/>, and when the node committed
    /// the command without having its result (<see cref="CommittedWithoutResult"/>: the retry fetches
    /// the kept result). Give a <paramref name="cancellationToken"/> with a deadline: on a node that
    /// never learns a leader, it retries until cancelled.</remarks>
    /// <param name="command">The command for <see cref="IStateMachine.ApplyAsync"/>. Do not modify the buffer afterwards.</param>
    /// <param name="cancellationToken">Stops retrying. The command may still take effect (once).</param>
    /// <returns>The state machine's result for the command (kept by the session for retries: see <see cref="ISessionResultSerializer"/>).</returns>
    /// <exception cref="SessionExpiredException">The session expired or was evicted; the command was not applied.</exception>
    /// <exception cref="SessionSequenceException">The session no longer keeps the result of this sequence number.</exception>
    /// <exception cref="InvalidCommandException">The state machine's <see cref="ICommandValidator"/> refused the command.</exception>
    /// <exception cref="RaftNodeFaultedException">The node stopped because of an error.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<object?> ProposeAsync(ReadOnlyMemory<byte> command, CancellationToken cancellationToken = default)
    {
        var sequence = ReserveSequence();
        var delay = TimeSpan.FromMilliseconds(10);
        var maxDelay = _node.Options.ElectionTimeoutMax;
        while (true)
        {
            try
            {
                var result = await ProposeAsync(command, sequence, cancellationToken).ConfigureAwait(false);
                if (result is not CommittedWithoutResult)
                    return result;
                // It took effect, but this node did not apply it itself: ask again for the kept result.
                MarkPending(sequence);
            }
            catch (RaftException ex) when (ex is ProposalOutcomeUnknownException or ProposalDroppedException or NotLeaderException or RaftBusyException)
            {
            }
            await Task.Delay(delay, _node.Time, cancellationToken).ConfigureAwait(false);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, maxDelay.Ticks));
        }
    }

    /// <summary>
    /// Proposes <paramref name="command"/> as sequence number <paramref name="sequence"/> of this
    /// session, once. A retry with the same number, through any node, never applies it twice.
    /// </summary>
    /// <param name="command">The command for <see cref="IStateMachine.ApplyAsync"/>. Do not modify the buffer afterwards.</param>
    /// <param name="sequence">The command's sequence number in the session, at least 1: a new number for a new command, the same number for a retry.</param>
    /// <param name="cancellationToken">Stops waiting. The command may still take effect (once).</param>
    /// <returns>As <see cref="RaftNode.ProposeAsync"/>: the state machine's result (the first one, for a retry of a command that took effect), or <see cref="CommittedWithoutResult.Instance"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="sequence"/> is not positive.</exception>
    /// <exception cref="SessionExpiredException">The session expired or was evicted; the command was not applied.</exception>
    /// <exception cref="SessionSequenceException">The session no longer keeps the result of this sequence number; it was not applied again.</exception>
    /// <exception cref="NotLeaderException">As for <see cref="RaftNode.ProposeAsync"/>; retry with the same number.</exception>
    /// <exception cref="RaftBusyException">As for <see cref="RaftNode.ProposeAsync"/>; retry with the same number.</exception>
    /// <exception cref="ProposalDroppedException">As for <see cref="RaftNode.ProposeAsync"/>; retry with the same number.</exception>
    /// <exception cref="ProposalOutcomeUnknownException">As for <see cref="RaftNode.ProposeAsync"/>; retry with the same number: it is applied at most once.</exception>
    /// <exception cref="InvalidCommandException">The state machine's <see cref="ICommandValidator"/> refused the command.</exception>
    /// <exception cref="RaftNodeFaultedException">The node stopped because of an error.</exception>
    public async Task<object?> ProposeAsync(ReadOnlyMemory<byte> command, long sequence, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sequence);
        long lowest;
        lock (_lock)
        {
            _pending.Add(sequence);
            lowest = _pending.Min;
        }
        var payload = SessionEntry.EncodeCommand(ClientId, sequence, lowest, command.Span);
        try
        {
            var result = await _node.ProposeEntryAsync(EntryKind.Session, payload, cancellationToken).ConfigureAwait(false);
            Done(sequence);
            return result;
        }
        catch (Exception ex) when (ex is SessionExpiredException or SessionSequenceException or InvalidCommandException)
        {
            Done(sequence); // a final answer: nothing is waited for under this number any more
            throw;
        }
    }

    private void MarkPending(long sequence)
    {
        lock (_lock)
            _pending.Add(sequence);
    }

    private void Done(long sequence)
    {
        lock (_lock)
            _pending.Remove(sequence);
    }

    /// <inheritdoc />
    public override string ToString() => $"session {ClientId} on node {_node.Id}";
}
