using System.Net;

namespace Raft.Samples.KeyValueStore;

internal static partial class Log
{
    [LoggerMessage(EventId = 9000, Level = LogLevel.Information, Message = "Node {NodeId} started: HTTP {HttpUrl}, Raft {RaftEndPoint}")]
    public static partial void NodeStarted(ILogger logger, int nodeId, Uri httpUrl, IPEndPoint? raftEndPoint);

    [LoggerMessage(EventId = 9001, Level = LogLevel.Information, Message = "Node {NodeId} stopped")]
    public static partial void NodeStopped(ILogger logger, int nodeId);

    [LoggerMessage(EventId = 9002, Level = LogLevel.Warning, Message = "Node {NodeId} could not forward {Method} {Path} to leader {LeaderId} at {LeaderUrl}")]
    public static partial void ForwardFailed(ILogger logger, int nodeId, string method, string path, int leaderId, Uri leaderUrl, Exception exception);

    [LoggerMessage(EventId = 9003, Level = LogLevel.Warning, Message = "Node {NodeId}: a write failed after it was submitted; its outcome is unknown")]
    public static partial void WriteOutcomeUnknown(ILogger logger, int nodeId, Exception exception);

    [LoggerMessage(EventId = 9004, Level = LogLevel.Warning, Message = "Node {NodeId}: the leader refused a command before replicating it: {Reason}")]
    public static partial void CommandRefused(ILogger logger, int nodeId, string reason);

    [LoggerMessage(EventId = 9005, Level = LogLevel.Warning, Message = "Node {NodeId} refused {Method} {Path}: {Reason}")]
    public static partial void RequestRefused(ILogger logger, int nodeId, string method, string path, string reason);

    [LoggerMessage(EventId = 9006, Level = LogLevel.Warning, Message = "Node {NodeId}: INSECURE: no cluster secret, so the Raft port {RaftEndPoint} admits any peer that can reach it and knows the cluster id '{ClusterId}'. Use --secret-file or RAFT_CLUSTER_SECRET outside a trusted test setup.")]
    public static partial void InsecureTransport(ILogger logger, int nodeId, System.Net.IPEndPoint? raftEndPoint, string clusterId);
}
