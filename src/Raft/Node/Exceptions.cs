namespace Raft;

/// <summary>The base of the exceptions the Raft library throws for outcomes a caller may branch on.</summary>
public class RaftException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RaftException() { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public RaftException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public RaftException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>
/// The operation needs the leader and this node is not it. Nothing was submitted; retry on
/// <see cref="LeaderId"/> when it is known.
/// </summary>
public sealed class NotLeaderException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public NotLeaderException() : this(0) { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public NotLeaderException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public NotLeaderException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception naming the leader this node knows.</summary>
    /// <param name="leaderId">The leader's id, or 0 when none is known.</param>
    public NotLeaderException(int leaderId)
        : base(leaderId == 0 ? "This node is not the leader and knows no leader." : $"This node is not the leader; the leader is node {leaderId}.")
    {
        LeaderId = leaderId;
    }

    /// <summary>The leader this node knew when it refused, or 0 when it knew none.</summary>
    public int LeaderId { get; }
}

/// <summary>
/// A proposal was appended to the leader's log but will never commit: another entry was committed
/// at its index (the leader lost its leadership before the proposal reached a majority). It is
/// safe to retry.
/// </summary>
public sealed class ProposalDroppedException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public ProposalDroppedException() : base("The proposal was dropped: another entry was committed at its index.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public ProposalDroppedException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public ProposalDroppedException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>The leader refused the proposal because too many entries are waiting to commit, or a leadership transfer is under way. Nothing was submitted; retry later.</summary>
public sealed class RaftBusyException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public RaftBusyException() : base("The leader is busy; retry later.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public RaftBusyException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public RaftBusyException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>
/// The node cannot tell whether a proposal took effect: it installed a snapshot from the leader that
/// covers the proposal's index, so the entry itself was never seen; or the proposal was forwarded to
/// the leader (<see cref="RaftNodeOptions.ForwardToLeader"/>), which did not say at which index it
/// appended it before it stopped being the leader or <see cref="RaftNodeOptions.ForwardTimeout"/>
/// passed. Read the state to find out.
/// </summary>
public sealed class ProposalOutcomeUnknownException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public ProposalOutcomeUnknownException() : base("The outcome of the proposal is unknown: a snapshot from the leader replaced the log at its index.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public ProposalOutcomeUnknownException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public ProposalOutcomeUnknownException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>
/// The leader's state machine refused the command before it was replicated
/// (<see cref="ICommandValidator"/>). Nothing was appended; retrying the same bytes fails the same way.
/// </summary>
public sealed class InvalidCommandException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public InvalidCommandException() : base("The state machine refused the command.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public InvalidCommandException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public InvalidCommandException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>
/// The node stopped because of an error (a store, transport or state machine failure: the
/// <see cref="Exception.InnerException"/>) and does nothing more. Dispose it and restart the process
/// once the cause is fixed. Whether a pending proposal took effect is unknown.
/// </summary>
public sealed class RaftNodeFaultedException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public RaftNodeFaultedException() : base("The Raft node stopped because of an error.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public RaftNodeFaultedException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public RaftNodeFaultedException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception for a node and the error that stopped it.</summary>
    /// <param name="nodeId">The node that stopped.</param>
    /// <param name="cause">The error that stopped it.</param>
    public RaftNodeFaultedException(int nodeId, Exception cause)
        : base($"Node {nodeId} stopped because of an error: {cause?.GetType().Name}: {cause?.Message}", cause!)
    {
        NodeId = nodeId;
    }

    /// <summary>The node that stopped, or 0 when not given.</summary>
    public int NodeId { get; }
}

/// <summary>
/// An operation did not finish within its timeout (<see cref="RaftNodeOptions.ProposalTimeout"/>,
/// <see cref="RaftNodeOptions.ReadTimeout"/>): typically the leader lost its majority, or this node is
/// cut off. <see cref="OutcomeKnown"/> says whether a timed-out command can still take effect.
/// </summary>
public sealed class RaftTimeoutException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public RaftTimeoutException() : base("The operation timed out.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public RaftTimeoutException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public RaftTimeoutException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception saying whether the outcome is known.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="outcomeKnown">See <see cref="OutcomeKnown"/>.</param>
    public RaftTimeoutException(string message, bool outcomeKnown) : base(message)
    {
        OutcomeKnown = outcomeKnown;
    }

    /// <summary>
    /// True when the operation did not and will not take effect: a command that was never appended
    /// to the log, or a read (reads change nothing); retrying is safe. False when a command was
    /// appended and may still commit and be applied later: read the state to find out before retrying.
    /// </summary>
    public bool OutcomeKnown { get; }
}

/// <summary>
/// The leader refused a membership change for now (<see cref="RaftNode.ChangeMembershipAsync"/>):
/// an earlier change is not committed yet, the leader has not committed an entry of its own term
/// yet, or a learner to promote has not caught up. Nothing was proposed; retry later.
/// </summary>
public sealed class MembershipChangeException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public MembershipChangeException() : base("The membership change was refused; retry later.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public MembershipChangeException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public MembershipChangeException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception for a refusal of the core.</summary>
    /// <param name="result">Why: <see cref="ProposeResult.MembershipChangePending"/> or <see cref="ProposeResult.LearnerNotCaughtUp"/>.</param>
    /// <param name="message">What happened, with the reason.</param>
    public MembershipChangeException(ProposeResult result, string message) : base(message) => Result = result;

    /// <summary>Why the change was refused: <see cref="ProposeResult.MembershipChangePending"/> or <see cref="ProposeResult.LearnerNotCaughtUp"/>.</summary>
    public ProposeResult Result { get; } = ProposeResult.MembershipChangePending;
}
