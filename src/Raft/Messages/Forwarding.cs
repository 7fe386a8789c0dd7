namespace Raft;

/// <summary>
/// A follower hands work from its own callers to the leader it knows
/// (<see cref="RaftNodeOptions.ForwardToLeader"/>): commands to append, or a request for a read
/// index. The leader answers with a <see cref="ForwardResponse"/> carrying the same
/// <paramref name="RequestId"/>. Forwarding changes nothing in the Raft state of either node: the
/// leader appends the commands exactly as if they had been proposed to it.
/// </summary>
/// <param name="From">The follower.</param>
/// <param name="To">The leader, as far as the follower knows.</param>
/// <param name="Term">The follower's current term.</param>
/// <param name="RequestId">The follower's id for this request, unique among its requests since it started.</param>
/// <param name="IsRead">True to ask for a read index (then <paramref name="Commands"/> is empty); false to append <paramref name="Commands"/>.</param>
/// <param name="Commands">The commands, in order; the leader appends them at consecutive indexes.</param>
public sealed record ForwardRequest(int From, int To, long Term, long RequestId, bool IsRead, IReadOnlyList<ReadOnlyMemory<byte>> Commands)
    : RaftMessage(From, To, Term)
{
    /// <summary>
    /// The W3C trace context (a <c>traceparent</c> value: <c>00-{trace id}-{span id}-{flags}</c>) of the
    /// follower's forward span, or null when the follower does not trace. The leader's span for the
    /// request becomes its child, so one trace covers a forwarded proposal or read end to end.
    /// </summary>
    /// <remarks>Set by the node only while a listener samples <see cref="RaftTelemetry.ActivitySourceName"/>;
    /// a serializer rejects a value that is not a valid version-00 <c>traceparent</c>.</remarks>
    public string? TraceParent { get; init; }

    /// <summary>
    /// The kind of each command, when not all are <see cref="EntryKind.Command"/>: one per command,
    /// each <see cref="EntryKind.Command"/> or <see cref="EntryKind.Session"/> (an exactly-once
    /// session entry, which the leader stamps with its clock as it appends it). Null means all are
    /// plain commands. The default is null.
    /// </summary>
    public IReadOnlyList<EntryKind>? Kinds { get; init; }
}

/// <summary>The leader's answer to a <see cref="ForwardRequest"/>.</summary>
/// <param name="From">The node that answers (the leader, or a node that is no longer one).</param>
/// <param name="To">The follower that asked.</param>
/// <param name="Term">The answering node's current term: for appended commands, the term of their entries.</param>
/// <param name="RequestId">The <see cref="ForwardRequest.RequestId"/> this answers.</param>
/// <param name="Status">What became of the request.</param>
/// <param name="Index">
/// For <see cref="ForwardStatus.Accepted"/> commands, the index of the first one (the others follow
/// it); for an accepted read, the read index: once the follower has applied it, a read of its state
/// machine is linearizable. Otherwise 0.
/// </param>
/// <param name="Count">For commands: how many of them, from the first, were appended (see remarks). For a read, 0.</param>
/// <param name="LeaderId">The leader as far as the answering node knows (0 when none), so a refused follower can look elsewhere.</param>
/// <remarks>
/// When the leader appends only a prefix of the commands (its limit on uncommitted entries was
/// reached part way), <paramref name="Status"/> is <see cref="ForwardStatus.Accepted"/>,
/// <paramref name="Count"/> says how many were appended, and the rest failed with
/// <see cref="ForwardStatus.Busy"/>.
/// </remarks>
public sealed record ForwardResponse(int From, int To, long Term, long RequestId, ForwardStatus Status, long Index, int Count, int LeaderId)
    : RaftMessage(From, To, Term);

/// <summary>What became of a <see cref="ForwardRequest"/>.</summary>
public enum ForwardStatus : byte
{
    /// <summary>The commands (or the first <see cref="ForwardResponse.Count"/> of them) were appended, or the read index is confirmed.</summary>
    Accepted = 1,

    /// <summary>The node is not the leader, or lost leadership before confirming the read; nothing was appended.</summary>
    NotLeader = 2,

    /// <summary>Too many entries are waiting to commit; nothing was appended.</summary>
    Busy = 3,

    /// <summary>A leadership transfer is under way; nothing was appended.</summary>
    Transferring = 4,

    /// <summary>The leader's state machine refused the command at <see cref="ForwardResponse.Count"/> (its <see cref="ICommandValidator"/>): the commands before it were appended, it and those after it were not.</summary>
    Invalid = 5,
}
