using System.Diagnostics.CodeAnalysis;

namespace Raft;

// Exactly-once client sessions (dissertation §6.3; docs/sessions.md). Session entries are
// EntryKind.Session: a registration (its index is the client id) or a command carrying (client id,
// sequence number, lowest pending sequence). The leader stamps its clock, and for a registration its
// SessionOptions, into each one as it appends it. The apply loop keeps the session table: a command
// applied before is answered with its kept result and never reaches the state machine again. The
// table is saved in snapshots ahead of the state machine's data (SessionSnapshot).
public sealed partial class RaftNode
{
    // Owned by the apply loop (and by StartAsync, before the loop runs).
    private readonly SessionTable _sessionTable = new();

    internal RaftNodeOptions Options => _options;

    internal TimeProvider Time => _time;

    /// <summary>
    /// Opens an exactly-once client session: registers it through the log (so every replica knows
    /// it) and returns a handle whose commands are applied at most once each, however often they
    /// are retried.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting. The session may still be registered; an unused one expires.</param>
    /// <returns>The session; its <see cref="RaftSession.ClientId"/> is the index of its registration.</returns>
    /// <exception cref="NotLeaderException">As for <see cref="ProposeAsync"/>; nothing was registered.</exception>
    /// <exception cref="RaftBusyException">As for <see cref="ProposeAsync"/>; nothing was registered.</exception>
    /// <exception cref="ProposalDroppedException">As for <see cref="ProposeAsync"/>; nothing was registered, retry.</exception>
    /// <exception cref="ProposalOutcomeUnknownException">As for <see cref="ProposeAsync"/>: a session may have been registered (it expires unused); retry.</exception>
    /// <exception cref="RaftNodeFaultedException">The node stopped because of an error.</exception>
    public async Task<RaftSession> OpenSessionAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var result = await ProposeEntryAsync(EntryKind.Session, SessionEntry.EncodeOpen(), cancellationToken).ConfigureAwait(false);
            if (result is long clientId)
                return new RaftSession(this, clientId, nextSequence: 1);
            // CommittedWithoutResult: registered, but this node did not apply the entry itself (a
            // snapshot covered it) and so does not know its index; that session expires unused.
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    /// <summary>
    /// A handle on a session opened earlier (through this node or another one, by this process or
    /// a previous one), for a client that kept its client id and sequence numbers.
    /// </summary>
    /// <param name="clientId">The session's <see cref="RaftSession.ClientId"/>.</param>
    /// <param name="nextSequence">The first number <see cref="RaftSession.ReserveSequence"/> hands out: one past the last number the client used.</param>
    /// <returns>The handle. Nothing is checked until its first command: an unknown or expired session fails it with <see cref="SessionExpiredException"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="clientId"/> or <paramref name="nextSequence"/> is not positive.</exception>
    public RaftSession ResumeSession(long clientId, long nextSequence = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(clientId);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(nextSequence);
        ThrowIfFaulted();
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return new RaftSession(this, clientId, nextSequence);
    }

    /// <summary>Proposes an entry of the given kind (a command or a session entry); as <see cref="ProposeAsync"/>.</summary>
    internal ValueTask<object?> ProposeEntryAsync(EntryKind kind, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        ThrowIfNotRunning();
        if (cancellationToken.IsCancellationRequested)
            return ValueTask.FromCanceled<object?>(cancellationToken);
        var proposal = _proposals.Rent(data);
        proposal.Kind = kind;
        var result = proposal.Task;
        Enqueue(proposal);
        return cancellationToken.CanBeCanceled ? new ValueTask<object?>(result.AsTask().WaitAsync(cancellationToken)) : result;
    }

    // Event loop: whether a proposed (or forwarded) entry may be appended. Session payloads must be
    // well formed, and the command inside one passes the state machine's validator as a plain
    // command does.
    private bool TryValidateProposal(EntryKind kind, ReadOnlyMemory<byte> data, [NotNullWhen(false)] out string? error)
    {
        switch (kind)
        {
            case EntryKind.Command:
                if (_validator is not null)
                    return _validator.TryValidate(data.Span, out error);
                error = null;
                return true;
            case EntryKind.Session:
                if (!SessionEntry.TryParse(data, stamped: false, out var entry, out error))
                    return false;
                if (entry.Op == SessionOp.Command && _validator is not null)
                    return _validator.TryValidate(entry.Command.Span, out error);
                return true;
            default:
                error = $"entries of kind {kind} cannot be proposed";
                return false;
        }
    }

    // Event loop: an entry a leader sent; a session entry must be well formed and stamped.
    private bool TryValidateEntry(in LogEntry entry, [NotNullWhen(false)] out string? error)
    {
        switch (entry.Kind)
        {
            case EntryKind.Command when _validator is not null:
                return _validator.TryValidate(entry.Data.Span, out error);
            case EntryKind.Session:
                if (!SessionEntry.TryParse(entry.Data, stamped: true, out var parsed, out error))
                    return false;
                if (parsed.Op == SessionOp.Command && _validator is not null)
                    return _validator.TryValidate(parsed.Command.Span, out error);
                return true;
            default:
                error = null;
                return true;
        }
    }

    // Event loop, leader: the payload as appended, with the leader's clock and limits written in.
    private ReadOnlyMemory<byte> StampForAppend(EntryKind kind, ReadOnlyMemory<byte> data) =>
        kind == EntryKind.Session ? SessionEntry.Stamp(data.Span, _time.GetUtcNow().ToUnixTimeMilliseconds(), _options.Sessions) : data;

    // Apply loop: a committed session entry. Returns the proposer's answer: the client id of a
    // registration, a command's result (the kept one for a duplicate), or a SessionRefusal.
    private async ValueTask<object?> ApplySessionEntryAsync(LogEntry entry, CancellationToken token)
    {
        if (!SessionEntry.TryParse(entry.Data, stamped: true, out var parsed, out var error))
        {
            // Validated before it was appended and when it was received, so only a leader of another
            // version could have written it: refused the same way on every replica.
            SessionLog.MalformedEntry(_logger, Id, entry.Index, error);
            return new SessionRefusal(() => new InvalidCommandException($"The session entry at index {entry.Index} is malformed: {error}."));
        }
        if (parsed.Op == SessionOp.Open)
        {
            var evicted = _sessionTable.Open(entry.Index, parsed);
            if (evicted > 0)
                SessionLog.SessionsEvicted(_logger, Id, evicted, parsed.MaxSessions, entry.Index);
            return entry.Index;
        }
        var clientId = parsed.ClientId;
        var sequence = parsed.Sequence;
        switch (_sessionTable.Check(parsed, out var kept, out var lowestKept))
        {
            case SessionTable.Verdict.Duplicate:
                SessionLog.DuplicateAnswered(_logger, Id, clientId, sequence, entry.Index);
                return SessionResultCodec.Decode(kept, _stateMachine as ISessionResultSerializer);
            case SessionTable.Verdict.Expired:
                return new SessionRefusal(() => new SessionExpiredException(clientId));
            case SessionTable.Verdict.Stale:
                return new SessionRefusal(() => new SessionSequenceException(clientId, sequence, lowestKept));
        }
        var result = await _stateMachine.ApplyAsync(new LogEntry(entry.Index, entry.Term, EntryKind.Command, parsed.Command), token).ConfigureAwait(false);
        var encoded = SessionResultCodec.Encode(result, _stateMachine as ISessionResultSerializer, out var saved);
        if (!saved)
            SessionLog.ResultNotSaved(_logger, Id, clientId, sequence, entry.Index, result!.GetType().FullName);
        _sessionTable.Record(clientId, sequence, encoded);
        return result;
    }

    // Apply loop: the session section of a snapshot being written, ahead of the state machine's data.
    private async ValueTask WriteSessionSnapshotAsync(Stream destination, CancellationToken token)
    {
#if RAFT_MUTANTS
        if ((_options.Mutations & Mutation.SessionsNotInSnapshot) != 0)
            return;
#endif
        if (!_sessionTable.IsPristine)
            await SessionSnapshot.WriteAsync(destination, _sessionTable, token).ConfigureAwait(false);
    }

    // Apply loop (or StartAsync): restores the session table and then the state machine from a snapshot.
    private async ValueTask RestoreSnapshotWithSessionsAsync(Stream source, CancellationToken token)
    {
        var data = await SessionSnapshot.ReadAsync(source, _sessionTable, token).ConfigureAwait(false);
        await _stateMachine.RestoreSnapshotAsync(data, token).ConfigureAwait(false);
    }

    /// <summary>The number of sessions this node's table holds (tests).</summary>
    internal int SessionCount => _sessionTable.Count;
}
