namespace Raft;

/// <summary>How the leader replicates to one follower.</summary>
internal enum ProgressState
{
    /// <summary>The leader does not know where the follower's log matches: one AppendEntries at a time, backing off on rejection.</summary>
    Probe,

    /// <summary>The follower's log matches: the leader streams entries optimistically, up to the inflight window.</summary>
    Replicate,

    /// <summary>The follower needs a snapshot; appends are paused until it is installed.</summary>
    Snapshot,
}

/// <summary>The leader's view of one follower.</summary>
internal sealed class Progress
{
    public Progress(int id, long next, int maxInflight)
    {
        Id = id;
        Next = next;
        Inflights = new Inflights(maxInflight);
    }

    public int Id { get; }

    // Invariant: 0 <= Match < Next. Match is the highest index known replicated on the follower.
    public long Match { get; set; }

    // The next index to send.
    public long Next { get; set; }

    public ProgressState State { get; private set; } = ProgressState.Probe;

    // In Probe state: an AppendEntries is outstanding; send no other until a response or heartbeat response.
    public bool ProbeSent { get; set; }

    // Match as of the previous heartbeat tick, to notice a replication window that stopped moving.
    public long MatchAtLastCheck { get; set; }

    // The commit index carried by the last AppendEntries sent to the follower (entries or heartbeat).
    public long CommitSent { get; set; }

    // Whether the follower answered anything since the last CheckQuorum round.
    public bool RecentActive { get; set; }

    // The highest read sequence the follower echoed in the leader's current term.
    public long AckedReadSequence { get; set; }

    // In Snapshot state: the snapshot index being sent, and the offset of the next chunk the follower expects.
    public long PendingSnapshot { get; set; }

    public long SnapshotOffset { get; set; }

    // In Snapshot state: a chunk was sent and not answered yet. One chunk at a time: the next goes
    // out on its answer, or, presumed lost, once it has gone unanswered for SnapshotSilentTicks while
    // the follower answered something else since it was sent (HeardSinceChunk). A follower that
    // answers nothing gets nothing more than the one chunk.
    public bool SnapshotChunkInFlight { get; set; }

    public int SnapshotSilentTicks { get; set; }

    public bool HeardSinceChunk { get; set; }

    public Inflights Inflights { get; }

    /// <summary>Whether the leader should hold back further appends to this follower.</summary>
    public bool IsPaused => State switch
    {
        ProgressState.Probe => ProbeSent,
        ProgressState.Replicate => Inflights.Full,
        _ => true,
    };

    public void BecomeProbe()
    {
        if (State == ProgressState.Snapshot)
        {
            var pending = PendingSnapshot;
            State = ProgressState.Probe;
            Next = Math.Max(Match + 1, pending + 1);
        }
        else
        {
            State = ProgressState.Probe;
            Next = Match + 1;
        }
        ProbeSent = false;
        PendingSnapshot = 0;
        Inflights.Reset();
    }

    public void BecomeReplicate()
    {
        State = ProgressState.Replicate;
        Next = Match + 1;
        ProbeSent = false;
        PendingSnapshot = 0;
        Inflights.Reset();
    }

    public void BecomeSnapshot(long snapshotIndex)
    {
        State = ProgressState.Snapshot;
        PendingSnapshot = snapshotIndex;
        SnapshotOffset = 0;
        SnapshotChunkInFlight = false;
        ProbeSent = false;
        Inflights.Reset();
    }

    /// <summary>Records a successful acknowledgement up to <paramref name="index"/>; returns whether Match moved.</summary>
    public bool MaybeUpdate(long index)
    {
        var updated = false;
        if (Match < index)
        {
            Match = index;
            updated = true;
            ProbeSent = false;
        }
        Next = Math.Max(Next, index + 1);
        return updated;
    }

    /// <summary>
    /// Handles a rejection of the AppendEntries whose PrevLogIndex was <paramref name="rejected"/>,
    /// moving Next back to <paramref name="retryAt"/>. Returns false when the rejection is stale.
    /// </summary>
    public bool MaybeDecrementTo(long rejected, long retryAt)
    {
        if (State == ProgressState.Snapshot)
            return false;
        if (State == ProgressState.Replicate)
        {
            // A rejection at or below Match answers an old message: ignore it.
            if (rejected <= Match)
                return false;
            Next = Match + 1;
            return true;
        }
        // Probe: only the rejection of the outstanding probe (Next - 1) counts.
        if (Next - 1 != rejected)
            return false;
        Next = Math.Max(Math.Min(rejected, retryAt), Match + 1);
        ProbeSent = false;
        return true;
    }
}
