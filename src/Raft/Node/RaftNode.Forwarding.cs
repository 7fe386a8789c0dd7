namespace Raft;

// Forwarding (RaftNodeOptions.ForwardToLeader): a follower sends its callers' commands and reads to
// the leader over the Raft transport, one ForwardRequest per loop round and kind; the leader appends
// the commands (or confirms a read index) and answers with a ForwardResponse. Everything here runs
// on the event loop, except what the apply loop does with the items queued for it.
public sealed partial class RaftNode
{
    // Follower side: queued this round, then sent by FlushForwards.
    private List<Proposal> _forwardProposals = [];
    private List<TaskCompletionSource> _forwardReads = [];
    // Sent and not answered yet, by request id.
    private readonly Dictionary<long, PendingForward> _forwarded = [];
    private readonly List<long> _expiredForwards = [];
    // Request ids start at a random point, so that a restarted follower's ids do not repeat the
    // ones its leader saw before the restart (see _recentForwards).
    private long _nextForwardId = Random.Shared.NextInt64(1, 1L << 62);
    // Leader side: reads asked for by followers, by this node's read id.
    private readonly Dictionary<long, RemoteRead> _remoteReads = [];
    // Leader side: the latest request ids seen per follower. A transport may deliver a message
    // twice; appending a forwarded batch twice would apply its commands twice.
    private readonly Dictionary<int, RecentIds> _recentForwards = [];

    private bool CanForward() => _options.ForwardToLeader && _core.LeaderId != 0 && _core.LeaderId != Id;

    private void FlushForwards()
    {
        var proposals = _forwardProposals;
        var reads = _forwardReads;
        _forwardProposals = [];
        _forwardReads = [];
        var trace = _forwardTrace;
        _forwardTrace = default;
        if (!CanForward())
        {
            // The leader changed during the round: this node may lead now, or know no leader.
            foreach (var proposal in proposals)
                HandleProposal(proposal);
            foreach (var read in reads)
                HandleRead(read);
            return; // CanForward() is still false: nothing was queued for forwarding again.
        }
        _forwardTrace = trace; // the parent of this round's forward spans (StartForwardSpan)
        var leader = _core.LeaderId;
        if (reads.Count > 0)
            Forward(leader, new PendingForward(leader, _time.GetTimestamp(), null, reads), isRead: true, []);
        if (proposals.Count == 0)
        {
            _forwardTrace = default;
            return;
        }

        // One request per MaxAppendBytes of commands, so a request fits in a transport frame as an AppendEntries does.
        var start = 0;
        long bytes = 0;
        for (var i = 0; i < proposals.Count; i++)
        {
            bytes += proposals[i].Command.Length;
            if (bytes >= _options.MaxAppendBytes || i == proposals.Count - 1)
            {
                var batch = start == 0 && i == proposals.Count - 1 ? proposals : proposals.GetRange(start, i - start + 1);
                var commands = new ReadOnlyMemory<byte>[batch.Count];
                EntryKind[]? kinds = null;
                for (var j = 0; j < batch.Count; j++)
                {
                    commands[j] = batch[j].Command;
                    if (batch[j].Kind != EntryKind.Command)
                        (kinds ??= new EntryKind[batch.Count])[j] = batch[j].Kind;
                }
                Forward(leader, new PendingForward(leader, _time.GetTimestamp(), batch, null), isRead: false, commands, kinds);
                start = i + 1;
                bytes = 0;
            }
        }
        _forwardTrace = default;
    }

    private void Forward(int leader, PendingForward pending, bool isRead, ReadOnlyMemory<byte>[] commands, EntryKind[]? kinds = null)
    {
        var id = ++_nextForwardId;
        _forwarded[id] = pending;
        pending.Span = StartForwardSpan(leader, isRead, commands.Length);
        _transport.Send(new ForwardRequest(Id, leader, _core.Term, id, isRead, commands) { TraceParent = pending.Span?.Id, Kinds = kinds });
    }

    // Leader side: append the commands as proposals, or queue a read index for the follower.
    private void HandleForwardRequest(ForwardRequest request)
    {
        if (request.To != Id || request.From == Id || !IsMember(request.From))
        {
            Log.Misaddressed(_logger, Id, request.To, request.From);
            return;
        }
        if (!_recentForwards.TryGetValue(request.From, out var recent))
            _recentForwards[request.From] = recent = new RecentIds(RecentIdsPerFollower);
        if (!recent.Add(request.RequestId))
            return; // A duplicate: the first copy was handled and answered.
        var span = StartForwardHandleSpan(request);
        try
        {
            HandleForwardRequest(request, span);
        }
        finally
        {
            EndSpan(span); // never throws: a host listener's exception must not reach the loop
        }
    }

    private void HandleForwardRequest(ForwardRequest request, System.Diagnostics.Activity? span)
    {
        if (request.IsRead)
        {
            if (_remoteReads.Count >= MaxRemoteReads)
            {
                // A follower (or a forger) asks faster than reads are confirmed: refuse rather than grow.
                Answer(request.From, request.RequestId, ForwardStatus.Busy, 0, 0);
                return;
            }
            var readId = ++_nextReadId;
            if (_core.ReadIndex(readId))
                _remoteReads[readId] = new RemoteRead(request.From, request.RequestId);
            else
                Answer(request.From, request.RequestId, ForwardStatus.NotLeader, 0, 0);
            return;
        }
        var commands = request.Commands ?? []; // null only from a custom transport's malformed message
        var kinds = request.Kinds;
        if (kinds is not null && kinds.Count != commands.Count)
        {
            Log.CommandRefused(_logger, Id, request.From, $"a forwarded request carries {kinds.Count} entry kinds for {commands.Count} commands");
            Answer(request.From, request.RequestId, ForwardStatus.Invalid, 0, 0);
            return;
        }
        long first = 0;
        var appended = 0;
        var status = ForwardStatus.Accepted;
        for (var i = 0; i < commands.Count; i++)
        {
            var kind = kinds?[i] ?? EntryKind.Command;
            if (!TryValidateProposal(kind, commands[i], out var invalid))
            {
                // Refused before it is appended: the commands before it stand, it and the rest are
                // not submitted (an honest follower validates before forwarding, so this is a
                // forged request or a follower whose validator disagrees).
                Log.CommandRefused(_logger, Id, request.From, invalid);
                status = ForwardStatus.Invalid;
                break;
            }
            var result = _core.ProposeEntry(kind, _core.Role == RaftRole.Leader ? StampForAppend(kind, commands[i]) : commands[i], out var index);
            if (result != ProposeResult.Accepted)
            {
                status = result switch
                {
                    ProposeResult.NotLeader => ForwardStatus.NotLeader,
                    ProposeResult.TransferInProgress => ForwardStatus.Transferring,
                    _ => ForwardStatus.Busy,
                };
                Log.ProposalRefused(_logger, Id, result);
                break;
            }
            if (appended++ == 0)
                first = index;
        }
        if (appended > 0)
        {
            if (status != ForwardStatus.Invalid)
                status = ForwardStatus.Accepted;
            _metrics.Proposals.Add(appended);
            MarkProposed(first);
        }
        span?.SetTag("raft.forward.status", status.ToString());
        // Sent now, ahead of the AppendEntries that will carry the entries: the follower learns the
        // indexes before it can apply them.
        Answer(request.From, request.RequestId, status, first, appended);
    }

    private void Answer(int to, long requestId, ForwardStatus status, long index, int count) =>
        _transport.Send(new ForwardResponse(Id, to, _core.Term, requestId, status, index, count, _core.LeaderId));

    private void AnswerRemoteRead(RemoteRead read, long index) =>
        Answer(read.From, read.RequestId, ForwardStatus.Accepted, index, 0);

    private void RefuseRemoteReads()
    {
        // The core dropped the pending reads with its leadership (the answer names the leader it knows now).
        foreach (var (_, read) in _remoteReads)
            Answer(read.From, read.RequestId, ForwardStatus.NotLeader, 0, 0);
        _remoteReads.Clear();
    }

    // Follower side: the leader's answer.
    private void HandleForwardResponse(ForwardResponse response)
    {
        if (!_forwarded.TryGetValue(response.RequestId, out var pending) || pending.Leader != response.From)
            return; // Late (abandoned or expired) or not from the node asked: nothing waits for it.
        _forwarded.Remove(response.RequestId);
        EndForwardSpan(pending.Span, response.Status);
        if (pending.Reads is { } reads)
        {
            if (response.Status == ForwardStatus.Accepted)
                _applyQueue.Writer.TryWrite(new ReadRelease(response.Index, reads));
            else
                FailAll(reads, new NotLeaderException(response.LeaderId));
            return;
        }
        var proposals = pending.Proposals!;
        var appended = response.Status is ForwardStatus.Accepted or ForwardStatus.Invalid && response.Index > 0;
        var accepted = appended ? Math.Clamp(response.Count, 0, proposals.Count) : 0;
        for (var i = 0; i < accepted; i++)
        {
            var proposal = proposals[i];
            proposal.Index = response.Index + i;
            proposal.Term = response.Term;
            // Registered with the apply loop, which completes it when this node applies the index.
            _registrations.Enqueue(proposal);
        }
        if (accepted == proposals.Count)
            return;
        if (response.Status == ForwardStatus.Invalid)
        {
            proposals[accepted].TrySetException(new InvalidCommandException($"The leader (node {response.From}) refused the command: its state machine cannot apply it."));
            for (var i = accepted + 1; i < proposals.Count; i++)
                proposals[i].TrySetException(new RaftBusyException("The command was not submitted: the leader refused an invalid command forwarded in the same batch; retry."));
            return;
        }
        Exception refusal = response.Status switch
        {
            ForwardStatus.NotLeader => new NotLeaderException(response.LeaderId),
            ForwardStatus.Transferring => new RaftBusyException("A leadership transfer is under way; retry on the new leader."),
            _ => new RaftBusyException("Too many entries are waiting to commit on the leader; retry later."),
        };
        for (var i = accepted; i < proposals.Count; i++)
            proposals[i].TrySetException(refusal);
    }

    // The known leader changed: whoever was asked will not answer usefully any more.
    private void AbandonForwards(int leaderId)
    {
        foreach (var (id, pending) in _forwarded)
        {
            if (pending.Leader != leaderId)
                _expiredForwards.Add(id);
        }
        FailExpired(pending => pending.Reads is not null
            ? new NotLeaderException(leaderId)
            : new ProposalOutcomeUnknownException($"The outcome of the proposal is unknown: it was forwarded to node {pending.Leader}, which stopped being the known leader before it answered."));
    }

    private void ExpireForwards()
    {
        foreach (var (id, pending) in _forwarded)
        {
            if (_time.GetElapsedTime(pending.Started) >= _options.ForwardTimeout)
                _expiredForwards.Add(id);
        }
        if (_expiredForwards.Count == 0)
            return;
        FailExpired(pending => pending.Reads is not null
            ? new NotLeaderException($"The read was forwarded to node {pending.Leader}, which did not answer within {_options.ForwardTimeout.TotalSeconds:0.###} s (ForwardTimeout).")
            : new ProposalOutcomeUnknownException($"The outcome of the proposal is unknown: it was forwarded to node {pending.Leader}, which did not answer within {_options.ForwardTimeout.TotalSeconds:0.###} s (ForwardTimeout)."));
    }

    private void FailExpired(Func<PendingForward, Exception> error)
    {
        foreach (var id in _expiredForwards)
        {
            if (_forwarded.Remove(id, out var pending))
                pending.Fail(error(pending));
        }
        _expiredForwards.Clear();
    }

    private void FailForwards(Exception error)
    {
        foreach (var proposal in _forwardProposals)
            proposal.TrySetException(error);
        _forwardProposals.Clear();
        FailAll(_forwardReads, error);
        _forwardReads.Clear();
        foreach (var (_, pending) in _forwarded)
            pending.Fail(error);
        _forwarded.Clear();
    }

    private bool IsMember(int id)
    {
        var members = _core.Members;
        for (var i = 0; i < members.Count; i++)
        {
            if (members[i] == id)
                return true;
        }
        return false;
    }

    private static void FailAll(List<TaskCompletionSource> completions, Exception error)
    {
        foreach (var completion in completions)
            completion.TrySetException(error);
    }

    // ------------------------------------------------------------------ apply loop side

    // Completes every proposal chained at one index: the one appended in the applied entry's term
    // gets the result; any other was appended in another term and lost its entry.
    private static void Resolve(Proposal proposal, long appliedTerm, object? result)
    {
        for (Proposal? p = proposal; p is not null;)
        {
            var next = p.NextAtIndex; // read before completing: a completed proposal may be reused at once
            p.NextAtIndex = null;
            if (p.Term != appliedTerm)
                p.TrySetException(new ProposalDroppedException());
            else if (result is SessionRefusal refusal)
                p.TrySetException(refusal.CreateException());
            else
                p.TrySetResult(result);
            p = next;
        }
    }

    private static void FailChain(Proposal proposal, Exception error)
    {
        for (Proposal? p = proposal; p is not null;)
        {
            var next = p.NextAtIndex;
            p.NextAtIndex = null;
            p.TrySetException(error);
            p = next;
        }
    }

    private const int RecentIdsPerFollower = 4096;

    // Reads forwarded by followers and waiting for a heartbeat round, at most: the core keeps them
    // until its leadership is confirmed or lost, which without CheckQuorum may take long.
    private const int MaxRemoteReads = 16_384;

    private sealed record RemoteRead(int From, long RequestId);

    // A bounded set of the most recent ids: the oldest is forgotten when a new one does not fit.
    private sealed class RecentIds(int capacity)
    {
        private readonly HashSet<long> _ids = new(capacity);
        private readonly Queue<long> _order = new(capacity);

        public bool Add(long id)
        {
            if (!_ids.Add(id))
                return false;
            _order.Enqueue(id);
            if (_order.Count > capacity)
                _ids.Remove(_order.Dequeue());
            return true;
        }
    }

    private sealed class PendingForward(int leader, long started, List<Proposal>? proposals, List<TaskCompletionSource>? reads)
    {
        public int Leader { get; } = leader;

        public long Started { get; } = started;

        public List<Proposal>? Proposals { get; } = proposals;

        public List<TaskCompletionSource>? Reads { get; } = reads;

        /// <summary>The forward span, ended by the answer or the failure; null when not traced.</summary>
        public System.Diagnostics.Activity? Span { get; set; }

        public void Fail(Exception error)
        {
            EndForwardSpan(Span, status: null, error);
            if (Proposals is not null)
            {
                foreach (var proposal in Proposals)
                    proposal.TrySetException(error);
            }
            if (Reads is not null)
                FailAll(Reads, error);
        }
    }

    // Reads (forwarded, or this leader's own) with their read index: released once this node has applied that far.
    private sealed class ReadRelease(long index, List<TaskCompletionSource> completions)
    {
        public long Index { get; } = index;

        public void Complete()
        {
            foreach (var completion in completions)
                completion.TrySetResult();
        }

        public void Fail(Exception error) => FailAll(completions, error);
    }
}
