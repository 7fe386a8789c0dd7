namespace Raft;

/// <summary>
/// Proposes typed commands to a <see cref="RaftNode"/> whose state machine is a
/// <see cref="RaftStateMachine{TCommand, TResult}"/>, and returns their typed results.
/// </summary>
/// <remarks>Thread-safe; cheap to create (one per node is enough).</remarks>
/// <typeparam name="TCommand">The commands.</typeparam>
/// <typeparam name="TResult">The results.</typeparam>
public sealed class RaftClient<TCommand, TResult>
{
    private readonly RaftStateMachine<TCommand, TResult> _adapter;

    /// <summary>Creates a client for <paramref name="node"/>.</summary>
    /// <param name="node">A node created with a <see cref="RaftStateMachine{TCommand, TResult}"/>.</param>
    /// <exception cref="ArgumentException">The node's state machine is not a <see cref="RaftStateMachine{TCommand, TResult}"/> of these types.</exception>
    public RaftClient(RaftNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        _adapter = node.StateMachine as RaftStateMachine<TCommand, TResult>
            ?? throw new ArgumentException(
                $"Node {node.Id}'s state machine is a {node.StateMachine.GetType().Name}, not a RaftStateMachine<{typeof(TCommand).Name}, {typeof(TResult).Name}>: create the node with one.",
                nameof(node));
        Node = node;
    }

    /// <summary>The node proposals go through.</summary>
    public RaftNode Node { get; }

    /// <summary>
    /// Serializes <paramref name="command"/>, proposes it (<see cref="RaftNode.ProposeAsync"/>) and
    /// returns what <see cref="IStateMachine{TCommand, TResult}.Apply"/> returned for it on this node.
    /// </summary>
    /// <param name="command">The command.</param>
    /// <param name="cancellationToken">Stops waiting; the command may still commit.</param>
    /// <returns>The command's result.</returns>
    /// <exception cref="CommittedWithoutResultException">The command took effect, but this node got it through the leader's snapshot, so no result exists here.</exception>
    /// <exception cref="RaftException">As <see cref="RaftNode.ProposeAsync"/>: <see cref="NotLeaderException"/>, <see cref="RaftTimeoutException"/>, <see cref="ProposalDroppedException"/>, <see cref="ProposalOutcomeUnknownException"/>, <see cref="InvalidCommandException"/>, <see cref="RaftBusyException"/>, <see cref="RaftNodeFaultedException"/>.</exception>
    public async Task<TResult> ProposeAsync(TCommand command, CancellationToken cancellationToken = default)
    {
        var bytes = _adapter.Serialize(command);
        var result = await Node.ProposeAsync(bytes, cancellationToken).ConfigureAwait(false);
        return Typed(result);
    }

    /// <summary>
    /// Proposes <paramref name="command"/> through an exactly-once <paramref name="session"/>
    /// (<see cref="RaftSession.ProposeAsync(ReadOnlyMemory{byte}, CancellationToken)"/>): retried on
    /// unclear outcomes with the same sequence number, applied once.
    /// </summary>
    /// <param name="session">A session of <see cref="Node"/> (<see cref="RaftNode.OpenSessionAsync"/>).</param>
    /// <param name="command">The command.</param>
    /// <param name="cancellationToken">Stops waiting (and retrying); the command may still be applied, once.</param>
    /// <returns>The command's result; a retry gets the first result when the adapter has a result serializer.</returns>
    /// <exception cref="CommittedWithoutResultException">The command took effect once, but its result was not kept for a retry (no result serializer) or this node restored past it.</exception>
    /// <exception cref="SessionExpiredException">The session expired; nothing was applied.</exception>
    public async Task<TResult> ProposeAsync(RaftSession session, TCommand command, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(session);
        if (session.Node != Node)
            throw new ArgumentException($"The session belongs to node {session.Node.Id}, not to this client's node {Node.Id}.", nameof(session));
        var bytes = _adapter.Serialize(command);
        var result = await session.ProposeAsync(bytes, cancellationToken).ConfigureAwait(false);
        return Typed(result);
    }

    private TResult Typed(object? result)
    {
        return result switch
        {
            TResult typed => typed,
            null when default(TResult) is null => default!,
            CommittedWithoutResult => throw new CommittedWithoutResultException(
                $"Node {Node.Id}: the command committed and took effect once, but this node installed the leader's snapshot covering it, so its {typeof(TResult).Name} result exists only on the nodes that applied it."),
            _ => throw new InvalidOperationException(
                $"Node {Node.Id}: applying the command returned a {result?.GetType().Name ?? "null"}, not a {typeof(TResult).Name}."),
        };
    }
}

/// <summary>
/// A command committed and took effect exactly once, but the node that proposed it has no result for
/// it: it received the leader's snapshot covering the command instead of applying it (see
/// <see cref="CommittedWithoutResult"/>). Do not retry it; read the state if the result matters.
/// </summary>
public sealed class CommittedWithoutResultException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public CommittedWithoutResultException() : base("The command committed, but its result is not available on this node.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public CommittedWithoutResultException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public CommittedWithoutResultException(string message, Exception innerException) : base(message, innerException) { }
}
