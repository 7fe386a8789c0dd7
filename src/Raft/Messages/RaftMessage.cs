namespace Raft;

/// <summary>
/// The base of every message Raft nodes exchange. Messages are immutable values; transports may
/// deliver them late, twice, out of order or not at all, and the protocol stays safe.
/// </summary>
/// <param name="From">The sender's node id.</param>
/// <param name="To">The receiver's node id.</param>
/// <param name="Term">The sender's current term (or, for a pre-vote request, the term it would campaign in).</param>
public abstract record RaftMessage(int From, int To, long Term);

/// <summary>A candidate asks for a vote (Raft §5.2), or a pre-candidate asks whether it would get one (dissertation §9.6).</summary>
/// <param name="From">The candidate.</param>
/// <param name="To">The voter.</param>
/// <param name="Term">The candidate's term (for a pre-vote: its current term plus one, not adopted by anyone).</param>
/// <param name="LastLogIndex">The index of the candidate's last log entry.</param>
/// <param name="LastLogTerm">The term of the candidate's last log entry.</param>
/// <param name="PreVote">True for a pre-vote probe, which changes no state on the voter.</param>
/// <param name="LeadershipTransfer">True when the current leader asked for this election; voters then ignore their leader lease.</param>
public sealed record RequestVote(int From, int To, long Term, long LastLogIndex, long LastLogTerm, bool PreVote = false, bool LeadershipTransfer = false)
    : RaftMessage(From, To, Term);

/// <summary>The answer to a <see cref="RequestVote"/>.</summary>
/// <param name="From">The voter.</param>
/// <param name="To">The candidate.</param>
/// <param name="Term">The voter's current term (for a granted pre-vote: the term of the request).</param>
/// <param name="Granted">Whether the vote (or pre-vote) is granted.</param>
/// <param name="PreVote">True when this answers a pre-vote probe.</param>
public sealed record RequestVoteResponse(int From, int To, long Term, bool Granted, bool PreVote = false)
    : RaftMessage(From, To, Term);

/// <summary>The leader replicates entries (or sends a heartbeat, with none) (Raft §5.3).</summary>
/// <param name="From">The leader.</param>
/// <param name="To">The follower.</param>
/// <param name="Term">The leader's term.</param>
/// <param name="PrevLogIndex">The index of the entry just before <paramref name="Entries"/>.</param>
/// <param name="PrevLogTerm">The term of the entry at <paramref name="PrevLogIndex"/>.</param>
/// <param name="Entries">The entries to append, contiguous from <paramref name="PrevLogIndex"/> + 1; empty for a heartbeat.</param>
/// <param name="LeaderCommit">The leader's commit index.</param>
/// <param name="ReadSequence">A leader-local counter echoed back by the follower, used to confirm leadership for linearizable reads.</param>
public sealed record AppendEntries(int From, int To, long Term, long PrevLogIndex, long PrevLogTerm, IReadOnlyList<LogEntry> Entries, long LeaderCommit, long ReadSequence = 0)
    : RaftMessage(From, To, Term);

/// <summary>The answer to an <see cref="AppendEntries"/>.</summary>
/// <param name="From">The follower.</param>
/// <param name="To">The leader.</param>
/// <param name="Term">The follower's current term.</param>
/// <param name="Success">True when the follower's log now matches the leader's up to <paramref name="MatchIndex"/>.</param>
/// <param name="MatchIndex">On success, the index of the last entry the request made durable on the follower; on rejection, the request's PrevLogIndex.</param>
/// <param name="HintIndex">
/// On rejection, where the leader should retry: either the first index the follower holds of
/// <paramref name="HintTerm"/>, or the follower's last index + 1 when its log is too short.
/// </param>
/// <param name="HintTerm">On rejection, the term of the follower's conflicting entry, or 0 when its log is too short.</param>
/// <param name="ReadSequence">The <see cref="AppendEntries.ReadSequence"/> of the request, echoed.</param>
public sealed record AppendEntriesResponse(int From, int To, long Term, bool Success, long MatchIndex, long HintIndex = 0, long HintTerm = 0, long ReadSequence = 0)
    : RaftMessage(From, To, Term);

/// <summary>The leader tells a caught-up follower to start an election now (leadership transfer, dissertation §3.10).</summary>
/// <param name="From">The leader.</param>
/// <param name="To">The transferee.</param>
/// <param name="Term">The leader's term.</param>
public sealed record TimeoutNow(int From, int To, long Term) : RaftMessage(From, To, Term);
