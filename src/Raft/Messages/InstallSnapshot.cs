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
/// <param name="Configuration">The configuration in force as of <paramref name="SnapshotIndex"/>; the follower adopts it with the snapshot.</param>
/// <param name="Offset">The byte offset of <paramref name="Data"/> within the snapshot.</param>
/// <param name="Data">The chunk's bytes. Immutable, like <see cref="LogEntry.Data"/>.</param>
/// <param name="Done">True on the last chunk.</param>
public sealed record InstallSnapshot(int From, int To, long Term, long SnapshotIndex, long SnapshotTerm, ClusterConfiguration Configuration, long Offset, ReadOnlyMemory<byte> Data, bool Done)
    : RaftMessage(From, To, Term)
{
    /// <summary>A chunk whose configuration is <paramref name="Voters"/>, all voters without addresses (an empty list gives <see cref="ClusterConfiguration.Empty"/>, which a follower refuses).</summary>
    /// <param name="From">The leader.</param>
    /// <param name="To">The follower.</param>
    /// <param name="Term">The leader's term.</param>
    /// <param name="SnapshotIndex">The last log index the snapshot covers.</param>
    /// <param name="SnapshotTerm">The term of the entry at <paramref name="SnapshotIndex"/>.</param>
    /// <param name="Voters">The voters' ids.</param>
    /// <param name="Offset">The byte offset of <paramref name="Data"/> within the snapshot.</param>
    /// <param name="Data">The chunk's bytes.</param>
    /// <param name="Done">True on the last chunk.</param>
#pragma warning disable CA1725, IDE1006 // named like the record's positional parameters, so named arguments work with either constructor
    public InstallSnapshot(int From, int To, long Term, long SnapshotIndex, long SnapshotTerm, IReadOnlyList<int> Voters, long Offset, ReadOnlyMemory<byte> Data, bool Done)
        : this(From, To, Term, SnapshotIndex, SnapshotTerm, Voters is null ? null! : Voters.Count == 0 ? ClusterConfiguration.Empty : ClusterConfiguration.FromVoters(Voters), Offset, Data, Done)
#pragma warning restore CA1725, IDE1006
    {
    }
}

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
