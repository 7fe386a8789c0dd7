namespace Raft;

/// <summary>
/// One chunk of a snapshot the leader streams to a follower whose next entry it has already
/// compacted away (Raft §7). Chunks are sent in order; a follower that sees an unexpected offset
/// answers with the offset it wants, and the transfer resumes (or restarts at 0) from there.
/// </summary>
/// <param name="From">The leader.</param>
/// <param name="To">The follower.</param>
/// <param name="Term">The leader's term.</param>
/// <param name="SnapshotIndex">The last log index the snapshot covers.</param>
/// <param name="SnapshotTerm">The term of the entry at <paramref name="SnapshotIndex"/>.</param>
/// <param name="Members">The cluster members as of <paramref name="SnapshotIndex"/>.</param>
/// <param name="Offset">The byte offset of <paramref name="Data"/> within the snapshot.</param>
/// <param name="Data">The chunk's bytes. Immutable, like <see cref="LogEntry.Data"/>.</param>
/// <param name="Done">True on the last chunk.</param>
public sealed record InstallSnapshot(int From, int To, long Term, long SnapshotIndex, long SnapshotTerm, IReadOnlyList<int> Members, long Offset, ReadOnlyMemory<byte> Data, bool Done)
    : RaftMessage(From, To, Term);

/// <summary>The answer to an <see cref="InstallSnapshot"/> chunk.</summary>
/// <param name="From">The follower.</param>
/// <param name="To">The leader.</param>
/// <param name="Term">The follower's current term.</param>
/// <param name="SnapshotIndex">The <see cref="InstallSnapshot.SnapshotIndex"/> this answers.</param>
/// <param name="NextOffset">The offset of the next chunk the follower expects; after the last chunk, the snapshot's length.</param>
/// <param name="Success">False when the follower wants the transfer restarted from <paramref name="NextOffset"/>.</param>
/// <param name="Done">True once the follower has restored the whole snapshot.</param>
public sealed record InstallSnapshotResponse(int From, int To, long Term, long SnapshotIndex, long NextOffset, bool Success, bool Done)
    : RaftMessage(From, To, Term);
