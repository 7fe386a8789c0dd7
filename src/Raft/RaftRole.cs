namespace Raft;

/// <summary>The role a node plays in its current term.</summary>
public enum RaftRole
{
    /// <summary>Follows a leader (or waits for one), and answers votes and appends.</summary>
    Follower = 0,

    /// <summary>Asks the other members whether they would vote for it, without bumping its term (PreVote, dissertation §9.6).</summary>
    PreCandidate = 1,

    /// <summary>Has bumped its term and asks for votes.</summary>
    Candidate = 2,

    /// <summary>Won an election: takes proposals and replicates the log.</summary>
    Leader = 3,
}
