namespace Raft;

/// <summary>
/// The state a node must persist before it answers anything that depends on it: its current term,
/// the vote it cast in that term, and (as a hint only) the commit index it knew.
/// </summary>
/// <param name="Term">The latest term the node has seen. Terms only grow.</param>
/// <param name="VotedFor">The candidate the node voted for in <paramref name="Term"/>, or 0 for none.</param>
/// <param name="Commit">
/// The commit index known when the state was saved. It is a lower bound only: a restarted node
/// may learn a higher one from the leader, and it never needs the stored value for safety.
/// </param>
public readonly record struct HardState(long Term, int VotedFor, long Commit);
