using System.Net;
using Microsoft.Extensions.Logging;

namespace Raft;

/// <summary>
/// The TCP transport's log messages. Event ids 3000-3099 are reserved for the transport and stable:
/// connection lifecycle at Information, refusals and protocol violations at Warning, per-message
/// traffic at Debug.
/// </summary>
internal static partial class TcpTransportLog
{
    [LoggerMessage(EventId = 3000, Level = LogLevel.Information, Message = "Node {NodeId} accepts Raft peers on {EndPoint}")]
    public static partial void Listening(ILogger logger, int nodeId, EndPoint? endPoint);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Node {NodeId} transport stopped")]
    public static partial void Stopped(ILogger logger, int nodeId);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Debug, Message = "Accepted a TCP connection from {RemoteEndPoint}")]
    public static partial void InboundAccepted(ILogger logger, EndPoint? remoteEndPoint);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Warning, Message = "Refused the connection from {RemoteEndPoint}: {Reason}")]
    public static partial void InboundRefused(ILogger logger, EndPoint? remoteEndPoint, string reason);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Information, Message = "Node {PeerId} connected in on the {Lane} lane from {RemoteEndPoint}")]
    public static partial void InboundEstablished(ILogger logger, int peerId, TransportLane lane, EndPoint? remoteEndPoint);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Information, Message = "The connection from node {PeerId} ({Lane} lane, {RemoteEndPoint}) closed: {Reason}")]
    public static partial void InboundClosed(ILogger logger, int peerId, TransportLane lane, EndPoint? remoteEndPoint, string reason);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Warning, Message = "Closing the connection from node {PeerId} ({Lane} lane, {RemoteEndPoint}): protocol violation: {Reason}")]
    public static partial void InboundProtocolViolation(ILogger logger, int peerId, TransportLane lane, EndPoint? remoteEndPoint, string reason);

    [LoggerMessage(EventId = 3007, Level = LogLevel.Warning, Message = "Closing the connection from node {PeerId} ({Lane} lane, {RemoteEndPoint}): a frame stalled for more than {Timeout}")]
    public static partial void InboundStalled(ILogger logger, int peerId, TransportLane lane, EndPoint? remoteEndPoint, TimeSpan timeout);

    [LoggerMessage(EventId = 3008, Level = LogLevel.Information, Message = "Closing the older connection from node {PeerId} ({Lane} lane, {RemoteEndPoint}): the peer opened a new one")]
    public static partial void InboundSuperseded(ILogger logger, int peerId, TransportLane lane, EndPoint? remoteEndPoint);

    [LoggerMessage(EventId = 3009, Level = LogLevel.Warning, Message = "Accepting a connection failed")]
    public static partial void AcceptFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 3010, Level = LogLevel.Information, Message = "Connected to node {PeerId} at {EndPoint} ({Lane} lane)")]
    public static partial void OutboundConnected(ILogger logger, int peerId, EndPoint endPoint, TransportLane lane);

    [LoggerMessage(EventId = 3011, Level = LogLevel.Warning, Message = "Cannot connect to node {PeerId} at {EndPoint} ({Lane} lane): {Reason}; retrying in {Delay}")]
    public static partial void OutboundConnectFailed(ILogger logger, int peerId, EndPoint endPoint, TransportLane lane, string reason, TimeSpan delay);

    [LoggerMessage(EventId = 3012, Level = LogLevel.Debug, Message = "Still cannot connect to node {PeerId} at {EndPoint} ({Lane} lane), attempt {Attempt}: {Reason}; retrying in {Delay}")]
    public static partial void OutboundConnectFailedAgain(ILogger logger, int peerId, EndPoint endPoint, TransportLane lane, int attempt, string reason, TimeSpan delay);

    [LoggerMessage(EventId = 3013, Level = LogLevel.Information, Message = "The connection to node {PeerId} at {EndPoint} ({Lane} lane) closed: {Reason}")]
    public static partial void OutboundClosed(ILogger logger, int peerId, EndPoint endPoint, TransportLane lane, string reason);

    [LoggerMessage(EventId = 3014, Level = LogLevel.Debug, Message = "Dropped {Count} queued messages for node {PeerId} ({Lane} lane): {Reason}")]
    public static partial void DroppedQueued(ILogger logger, int count, int peerId, TransportLane lane, string reason);

    [LoggerMessage(EventId = 3020, Level = LogLevel.Debug, Message = "Sent {MessageType} to node {PeerId} in term {Term}")]
    public static partial void MessageSent(ILogger logger, string messageType, int peerId, long term);

    [LoggerMessage(EventId = 3021, Level = LogLevel.Debug, Message = "Received {MessageType} from node {PeerId} in term {Term}")]
    public static partial void MessageReceived(ILogger logger, string messageType, int peerId, long term);

    [LoggerMessage(EventId = 3022, Level = LogLevel.Debug, Message = "Dropped {MessageType} for node {PeerId}: its send queue is full ({Limit} {Unit})")]
    public static partial void DroppedQueueFull(ILogger logger, string messageType, int peerId, long limit, string unit);

    [LoggerMessage(EventId = 3023, Level = LogLevel.Warning, Message = "Dropped {MessageType} for node {PeerId}: it encodes to {Bytes} bytes, more than MaxFrameBytes ({MaxFrameBytes})")]
    public static partial void DroppedTooLarge(ILogger logger, string messageType, int peerId, long bytes, int maxFrameBytes);

    [LoggerMessage(EventId = 3024, Level = LogLevel.Warning, Message = "Dropped {MessageType} for node {PeerId}: no such peer is configured")]
    public static partial void DroppedUnknownPeer(ILogger logger, string messageType, int peerId);

    [LoggerMessage(EventId = 3028, Level = LogLevel.Debug, Message = "Dropped {MessageType} for node {PeerId}: no such peer is configured")]
    public static partial void DroppedUnknownPeerAgain(ILogger logger, string messageType, int peerId);

    [LoggerMessage(EventId = 3025, Level = LogLevel.Debug, Message = "Dropped {MessageType} for node {PeerId}: the transport is not running")]
    public static partial void DroppedNotRunning(ILogger logger, string messageType, int peerId);

    [LoggerMessage(EventId = 3026, Level = LogLevel.Warning, Message = "Dropped {MessageType} for node {PeerId}: its sender is {From}, not the local node {NodeId}")]
    public static partial void DroppedWrongSender(ILogger logger, string messageType, int peerId, int from, int nodeId);

    [LoggerMessage(EventId = 3027, Level = LogLevel.Error, Message = "Dropped {MessageType} for node {PeerId}: the TCP transport has no wire encoding for it")]
    public static partial void DroppedNoEncoding(ILogger logger, string messageType, int peerId);

    [LoggerMessage(EventId = 3030, Level = LogLevel.Error, Message = "The message handler failed on {MessageType} from node {PeerId}")]
    public static partial void HandlerFailed(ILogger logger, Exception exception, string messageType, int peerId);

    [LoggerMessage(EventId = 3031, Level = LogLevel.Error, Message = "Sending to node {PeerId} ({Lane} lane) failed unexpectedly")]
    public static partial void SendLoopFailed(ILogger logger, Exception exception, int peerId, TransportLane lane);

    [LoggerMessage(EventId = 3015, Level = LogLevel.Warning, Message = "Closing the connection to node {PeerId} at {EndPoint} ({Lane} lane): {Reason}")]
    public static partial void OutboundReset(ILogger logger, int peerId, EndPoint endPoint, TransportLane lane, string reason);

    [LoggerMessage(EventId = 3016, Level = LogLevel.Warning, Message = "Closing the connection from node {PeerId} ({Lane} lane, {RemoteEndPoint}): a frame did not complete within FrameTimeout ({Timeout}) of its first byte")]
    public static partial void InboundFrameTooSlow(ILogger logger, int peerId, TransportLane lane, EndPoint? remoteEndPoint, TimeSpan timeout);

    [LoggerMessage(EventId = 3017, Level = LogLevel.Warning, Message = "Refused {Count} inbound connection(s) at once: {Reason}. Logged at most once per {Interval}")]
    public static partial void InboundOverCapacity(ILogger logger, int count, string reason, TimeSpan interval);

    [LoggerMessage(EventId = 3018, Level = LogLevel.Warning, Message = "Node {NodeId} accepts Raft peers on {EndPoint} without peer authentication: anyone who can reach this port and knows the cluster id (sent in clear) can send votes, appends and commands as any member. Set TcpTransportOptions.ClusterSecret (and TLS on untrusted networks), or mutual TLS with NodeIdFromCertificate, or listen on a loopback address only. See docs/security.md")]
    public static partial void Unauthenticated(ILogger logger, int nodeId, EndPoint? endPoint);

    [LoggerMessage(EventId = 3032, Level = LogLevel.Information, Message = "Peer {PeerId} is now at {EndPoint}")]
    public static partial void PeerSet(ILogger logger, int peerId, EndPoint endPoint);

    [LoggerMessage(EventId = 3033, Level = LogLevel.Information, Message = "Peer {PeerId} removed")]
    public static partial void PeerRemoved(ILogger logger, int peerId);

    [LoggerMessage(EventId = 3034, Level = LogLevel.Debug, Message = "The cluster configuration lists node {PeerId} without an address, and none is set yet: messages to it are dropped until one is (SetPeer, or a configuration that records it; a drop is logged as 3024)")]
    public static partial void PeerWithoutAddress(ILogger logger, int peerId);

    [LoggerMessage(EventId = 3035, Level = LogLevel.Warning, Message = "The cluster configuration gives node {PeerId} the address '{Address}', which is not host:port ({Reason}); the peer is left as it was")]
    public static partial void PeerAddressInvalid(ILogger logger, int peerId, string address, string reason);
}
