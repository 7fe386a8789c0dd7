using System.Collections.Concurrent;
using System.Diagnostics;

namespace Raft;

// Telemetry (RaftTelemetry): proposal latencies, snapshot counts, the transport's and the store's
// instruments, and the spans of propose, read barrier, forward and append. Nothing here changes
// what the node does; with no listener, each hook is one check.
public sealed partial class RaftNode
{
    // Span names (docs/observability.md).
    internal const string ProposeSpan = "raft.propose";
    internal const string ReadBarrierSpan = "raft.read_barrier";
    internal const string ForwardSpan = "raft.forward";
    internal const string ForwardHandleSpan = "raft.forward.handle";
    internal const string AppendSpan = "raft.append";

    // Proposal latency: one mark per batch of proposals the leader accepted (their first index and
    // when), not one per entry. Event loop: marks waiting to commit, oldest first.
    private readonly Queue<ProposalMark> _commitMarks = new();
    // Committed marks waiting for the apply loop to apply their index.
    private readonly ConcurrentQueue<ProposalMark> _applyMarks = new();
    private long _lastMarkTime;
    // Event loop: the trace context of the first traced proposal or read queued for forwarding this
    // round; FlushForwards makes the forward spans its children, then clears it.
    private ActivityContext _forwardTrace;

    // Proposals accepted within this time of a mark belong to it (one measurement per batch).
    private static readonly TimeSpan MarkGranularity = TimeSpan.FromMilliseconds(1);

    private void AttachTelemetry(ITransport transport, ILogStore store)
    {
        // The transport and store the host gave this node report to its meter (the node id tags them).
        if (transport is TcpTransport tcp)
            tcp.Metrics = _metrics.Transport;
        if (store is FileLogStore file)
            file.FsyncObserved = _metrics.RecordFsync;
    }

    // Event loop: the leader appended a proposal at index (its own, or a forwarded batch's first).
    private void MarkProposed(long index)
    {
        if (!_metrics.ProposalLatencyEnabled)
            return;
        // At most one mark per MarkGranularity: the proposals accepted in between are its batch.
        var now = _time.GetTimestamp();
        if (_lastMarkTime != 0 && _time.GetElapsedTime(_lastMarkTime, now) < MarkGranularity)
            return;
        _lastMarkTime = now;
        _commitMarks.Enqueue(new ProposalMark(index, now));
    }

    // Event loop: entries up to committed are committed; their marks move to the apply loop.
    private void MarkCommitted(long committed)
    {
        if (_commitMarks.Count == 0)
            return;
        var now = _time.GetTimestamp();
        while (_commitMarks.TryPeek(out var mark) && mark.Index <= committed)
        {
            _commitMarks.Dequeue();
            _metrics.CommitLatency.Record(_time.GetElapsedTime(mark.Started, now).TotalSeconds);
            _applyMarks.Enqueue(mark);
        }
    }

    // Apply loop: entries up to applied are applied.
    private void MarkApplied(long applied)
    {
        if (_applyMarks.IsEmpty)
            return;
        var now = _time.GetTimestamp();
        while (_applyMarks.TryPeek(out var mark) && mark.Index <= applied && _applyMarks.TryDequeue(out _))
            _metrics.ApplyLatency.Record(_time.GetElapsedTime(mark.Started, now).TotalSeconds);
    }

    // Event loop, on a role change: a node that no longer leads measures nothing more (its
    // uncommitted entries may be replaced by another leader's).
    private void OnRoleChangedForTelemetry(SoftState soft)
    {
        _metrics.RoleChanges.Add(1, new KeyValuePair<string, object?>(RaftTelemetry.RoleTag, RoleName(soft.Role)));
        if (soft.Role == RaftRole.Candidate)
            _metrics.Elections.Add(1);
        if (soft.Role != RaftRole.Leader)
            _commitMarks.Clear();
    }

    // Constant strings: a role change allocates no name.
    private static string RoleName(RaftRole role) => role switch
    {
        RaftRole.Follower => nameof(RaftRole.Follower),
        RaftRole.PreCandidate => nameof(RaftRole.PreCandidate),
        RaftRole.Candidate => nameof(RaftRole.Candidate),
        RaftRole.Leader => nameof(RaftRole.Leader),
        _ => role.ToString(),
    };

    // Event loop: a message about to go out; a snapshot's first chunk counts as a snapshot sent.
    private void CountSend(RaftMessage message)
    {
        if (message is InstallSnapshot { Offset: 0 } chunk)
            _metrics.SnapshotSends.Add(1, _metrics.PeerTag(chunk.To));
    }

    // ------------------------------------------------------------------ tracing

    private int _listenerFailureLogged;

    /// <summary>Starts a span of this node, or returns null when nobody listens. The caller's <see cref="Activity.Current"/> is left as it was.</summary>
    private Activity? StartSpan(string name, ActivityKind kind = ActivityKind.Internal, ActivityContext parent = default)
    {
        var source = RaftTelemetry.Source;
        if (!source.HasListeners())
            return null;
        var previous = Activity.Current;
        Activity? activity;
        try
        {
            activity = parent == default ? source.StartActivity(name, kind) : source.StartActivity(name, kind, parent);
        }
#pragma warning disable CA1031 // A host's ActivityListener callback that throws must not stop the node: the span is skipped.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Activity.Current = previous;
            if (Interlocked.Exchange(ref _listenerFailureLogged, 1) == 0)
                Log.ListenerFailed(_logger, Id, ex);
            return null;
        }
        if (activity is null)
            return null;
        // Started outside an async method (or on the loop): do not leave it as the caller's current span.
        Activity.Current = previous;
        activity.SetTag(RaftTelemetry.NodeIdTag, Id);
        return activity;
    }

    // Queues a caller's proposal or read, wrapped with the span started for it when someone listens.
    private Activity? EnqueueTraced(object item, string spanName)
    {
        var span = StartSpan(spanName);
        try
        {
            Enqueue(span is null ? item : new TracedItem(item, span.Context));
        }
        catch (Exception ex) when (span is not null)
        {
            span.SetStatus(ActivityStatusCode.Error, ex.GetType().Name + ": " + ex.Message);
            EndSpan(span);
            throw;
        }
        return span;
    }

    private static async ValueTask<object?> TraceProposeAsync(ValueTask<object?> result, Activity activity)
    {
        try
        {
            return await result.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            activity.SetStatus(ActivityStatusCode.Error, ex.GetType().Name + ": " + ex.Message);
            throw;
        }
        finally
        {
            EndSpan(activity);
        }
    }

    private static async Task TraceAsync(Task result, Activity activity)
    {
        try
        {
            await result.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            activity.SetStatus(ActivityStatusCode.Error, ex.GetType().Name + ": " + ex.Message);
            throw;
        }
        finally
        {
            EndSpan(activity);
        }
    }

    // Event loop: a proposal or read whose caller was traced. When it is queued for forwarding, the
    // forward span of this round becomes a child of the caller's span.
    private void HandleTraced(TracedItem traced)
    {
        var before = _forwardProposals.Count + _forwardReads.Count;
        Handle(traced.Item);
        if (_forwardTrace == default && _forwardProposals.Count + _forwardReads.Count > before)
            _forwardTrace = traced.Context;
    }


    // Event loop, follower: the span of one ForwardRequest, carried in it as a W3C traceparent.
    private Activity? StartForwardSpan(int leader, bool isRead, int commands)
    {
        var activity = StartSpan(ForwardSpan, ActivityKind.Client, _forwardTrace);
        if (activity is null)
            return null;
        activity.SetTag(RaftTelemetry.PeerIdTag, leader);
        activity.SetTag("raft.forward.kind", isRead ? "read" : "commands");
        activity.SetTag("raft.forward.commands", commands);
        return activity;
    }

    // Event loop, leader: the span of handling a forwarded request, a child of the follower's.
    private Activity? StartForwardHandleSpan(ForwardRequest request)
    {
        if (request.TraceParent is null || !RaftTelemetry.Source.HasListeners())
            return null;
        if (!ActivityContext.TryParse(request.TraceParent, null, isRemote: true, out var parent))
            parent = default; // a custom transport's malformed value: a root span rather than none
        var activity = StartSpan(ForwardHandleSpan, ActivityKind.Server, parent);
        activity?.SetTag(RaftTelemetry.PeerIdTag, request.From);
        return activity;
    }

    private static void EndForwardSpan(Activity? activity, ForwardStatus? status, Exception? error = null)
    {
        if (activity is null)
            return;
        if (status is { } s)
        {
            activity.SetTag("raft.forward.status", s.ToString());
            if (s is not ForwardStatus.Accepted)
                activity.SetStatus(ActivityStatusCode.Error, s.ToString());
        }
        if (error is not null)
            activity.SetStatus(ActivityStatusCode.Error, error.GetType().Name + ": " + error.Message);
        EndSpan(activity);
    }

    /// <summary>
    /// Ends a span. A host's <see cref="ActivityListener"/> whose ActivityStopped callback throws must
    /// not stop the node's loops (or fail a caller whose command succeeded): the exception is dropped
    /// (a failing listener is logged once, when it fails at a span's start).
    /// </summary>
    internal static void EndSpan(Activity? activity)
    {
        if (activity is null)
            return;
        try
        {
            activity.Dispose();
        }
#pragma warning disable CA1031 // See above: the listener's bug, not the node's.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    // The span of persisting entries (the log append, with its fsync).
    private Activity? StartAppendSpan(IReadOnlyList<LogEntry> entries)
    {
        if (entries.Count == 0)
            return null;
        var activity = StartSpan(AppendSpan);
        if (activity is null)
            return null;
        activity.SetTag("raft.log.entries", entries.Count);
        activity.SetTag("raft.log.first_index", entries[0].Index);
        activity.SetTag("raft.log.last_index", entries[^1].Index);
        return activity;
    }

    private readonly record struct ProposalMark(long Index, long Started);

    // A proposal or read wrapped with its caller's span, on its way through the inbox.
    private sealed record TracedItem(object Item, ActivityContext Context);
}
