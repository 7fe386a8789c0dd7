namespace Raft;

/// <summary>Receives the messages a transport delivers to the local node.</summary>
/// <param name="message">A message addressed to the local node.</param>
/// <param name="cancellationToken">Cancelled when the transport stops.</param>
/// <returns>A task that completes when the node has queued the message; transports may await it for back-pressure.</returns>
public delegate ValueTask RaftMessageHandler(RaftMessage message, CancellationToken cancellationToken);

/// <summary>
/// Carries <see cref="RaftMessage"/>s between nodes. Implement this to plug in your own network;
/// the library ships an in-memory transport (Raft.Testing) and a TCP transport.
/// </summary>
/// <remarks>
/// <para>The contract the node relies on is deliberately weak, the same as Raft's own network
/// model: a message may be lost, delayed, duplicated or reordered, and the protocol stays safe.
/// A transport must never corrupt or forge a message: a frame it cannot decode is dropped (and the
/// connection closed), never delivered half-parsed.</para>
/// <para>Threading: the node calls <see cref="Send"/> from its single event loop, so an
/// implementation must not block there: queue the message and send it in the background, and drop
/// it when the peer is unreachable or its queue is full (the leader retries). Inbound messages go to
/// the handler given to <see cref="StartAsync"/>, from any thread.</para>
/// <para>Ownership: messages are immutable; <see cref="LogEntry.Data"/> buffers may be referenced
/// until the message has been written out, and are never written to.</para>
/// </remarks>
public interface ITransport
{
    /// <summary>Starts listening and delivering inbound messages for <paramref name="localId"/> to <paramref name="handler"/>.</summary>
    /// <param name="localId">The local node's id; messages addressed to another id must not be delivered.</param>
    /// <param name="handler">Where inbound messages go.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <returns>A task that completes once the transport accepts and delivers messages.</returns>
    ValueTask StartAsync(int localId, RaftMessageHandler handler, CancellationToken cancellationToken = default);

    /// <summary>Queues <paramref name="message"/> for <see cref="RaftMessage.To"/> without blocking.</summary>
    /// <param name="message">The message to send.</param>
    /// <remarks>Best effort: never throws for an unreachable peer; it drops the message instead.</remarks>
    void Send(RaftMessage message);

    /// <summary>Stops delivering inbound messages and releases connections. Queued sends may be dropped.</summary>
    /// <param name="cancellationToken">Cancels a graceful stop; the transport then stops at once.</param>
    /// <returns>A task that completes when no more messages will be delivered.</returns>
    ValueTask StopAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Tells the transport which nodes the cluster configuration in force lists, and the address the
    /// configuration records for each, so that a transport can reach members added while it runs.
    /// </summary>
    /// <param name="peers">
    /// Every other member of the configuration (voters and learners, and during a joint change the
    /// members of both halves), by id, with the address the configuration records for it ("host:port"
    /// for the TCP transport), or null when it records none; the local node is not in the map. A
    /// member that an uncommitted configuration removes is still listed (the node still sends to it,
    /// so it learns of its removal) until that configuration commits.
    /// </param>
    /// <remarks>
    /// The node calls this from its event loop, so an implementation must not block: once after it
    /// has read its log at start, and again each time the members it sends to change (a
    /// configuration entry is appended, committed, rolled back by a conflicting leader, or replaced by
    /// a snapshot). A member joins the map before the first message to it is sent, and leaves it only
    /// after the last one (the leader's final append to a removed member) was handed to
    /// <see cref="Send"/>. The default implementation ignores it, which suits transports that reach every node
    /// by id (such as the in-memory network) or whose peers the host configures itself.
    /// </remarks>
    void UpdatePeers(IReadOnlyDictionary<int, string?> peers)
    {
    }
}
