namespace Raft;

/// <summary>The kind of a <see cref="LogEntry"/>.</summary>
public enum EntryKind : byte
{
    /// <summary>A host command, handed to <see cref="IStateMachine.ApplyAsync"/> once committed.</summary>
    Command = 0,

    /// <summary>
    /// An empty entry a new leader appends at once in its term, so that it can commit everything
    /// before it (Raft §5.4.2, dissertation §3.6.2). Never handed to the state machine.
    /// </summary>
    NoOp = 1,

    /// <summary>
    /// A cluster membership configuration (<see cref="ClusterConfiguration.Encode"/>), appended by
    /// the leader for a membership change. In force on a node as soon as it is in its log; never
    /// handed to the state machine. A follower refuses an AppendEntries carrying one it cannot decode.
    /// </summary>
    Configuration = 2,

    /// <summary>
    /// An exactly-once client session entry (<see cref="RaftSession"/>): a session registration, or
    /// a command carrying its session's client id and sequence number. The node applies it itself;
    /// the command inside reaches <see cref="IStateMachine.ApplyAsync"/> as a
    /// <see cref="Command"/> entry at most once per (client id, sequence number).
    /// </summary>
    Session = 3,
}

/// <summary>One entry of the replicated log.</summary>
/// <param name="Index">The position of the entry in the log; the first entry has index 1.</param>
/// <param name="Term">The leader term in which the entry was created.</param>
/// <param name="Kind">What the entry carries.</param>
/// <param name="Data">
/// The payload. Entries are immutable once proposed: every component (log store, transport, state
/// machine) may keep a reference to <paramref name="Data"/> and must never write to it.
/// </param>
public readonly record struct LogEntry(long Index, long Term, EntryKind Kind, ReadOnlyMemory<byte> Data)
{
    /// <summary>The number of bytes this entry accounts for in size limits (payload plus a fixed header).</summary>
    public long Size => Data.Length + 24;
}
