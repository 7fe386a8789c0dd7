using Microsoft.Extensions.Logging;

namespace Raft;

/// <summary>The node's log messages. EventIds 1000–1099 are reserved for <see cref="RaftNode"/>.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1000, Level = LogLevel.Information, Message = "Node {NodeId} started at term {Term} with members {Members}")]
    public static partial void Started(ILogger logger, int nodeId, long term, IReadOnlyList<int> members);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Information, Message = "Node {NodeId} became {Role} at term {Term}, leader {LeaderId}")]
    public static partial void RoleChanged(ILogger logger, int nodeId, RaftRole role, long term, int leaderId);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Debug, Message = "Node {NodeId} persisted {Count} entries up to index {Index}")]
    public static partial void Persisted(ILogger logger, int nodeId, int count, long index);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Warning, Message = "Node {NodeId} dropped a proposal: {Reason}")]
    public static partial void ProposalRefused(ILogger logger, int nodeId, ProposeResult reason);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Critical, Message = "Node {NodeId} stopped because of an error (attached) and does nothing more; every call now throws RaftNodeFaultedException. Dispose the node and restart the process once the cause is fixed")]
    public static partial void NodeFaulted(ILogger logger, int nodeId, Exception exception);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Error, Message = "Node {NodeId}: the state machine failed to apply index {Index}; the node stops (it cannot skip a committed command)")]
    public static partial void ApplyFailed(ILogger logger, int nodeId, long index, Exception exception);

    [LoggerMessage(EventId = 1006, Level = LogLevel.Information, Message = "Node {NodeId} stopped")]
    public static partial void Stopped(ILogger logger, int nodeId);

    [LoggerMessage(EventId = 1007, Level = LogLevel.Warning, Message = "Node {NodeId} saw an error while shutting down")]
    public static partial void ShutdownError(ILogger logger, int nodeId, Exception exception);

    [LoggerMessage(EventId = 1009, Level = LogLevel.Information, Message = "Node {NodeId} took a snapshot at index {Index}")]
    public static partial void SnapshotTaken(ILogger logger, int nodeId, long index);

    [LoggerMessage(EventId = 1008, Level = LogLevel.Debug, Message = "Node {NodeId} ignored a message for node {To} from node {From}")]
    public static partial void Misaddressed(ILogger logger, int nodeId, int to, int from);

    [LoggerMessage(EventId = 1010, Level = LogLevel.Warning, Message = "Node {NodeId} refused a command proposed through node {Origin} before replicating it: {Reason}")]
    public static partial void CommandRefused(ILogger logger, int nodeId, int origin, string reason);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Warning, Message = "Node {NodeId} refused a message from node {From} that no correct member sends (a buggy or hostile peer; further ones from it are logged at Debug for a minute): {Reason}")]
    public static partial void MessageRejected(ILogger logger, int nodeId, int from, string reason);

    [LoggerMessage(EventId = 1012, Level = LogLevel.Debug, Message = "Node {NodeId} refused a message from node {From}: {Reason}")]
    public static partial void MessageRejectedAgain(ILogger logger, int nodeId, int from, string reason);

    [LoggerMessage(EventId = 1013, Level = LogLevel.Information, Message = "Node {NodeId} handed leadership to node {Target} before stopping")]
    public static partial void LeadershipHandedOver(ILogger logger, int nodeId, int target);

    [LoggerMessage(EventId = 1014, Level = LogLevel.Warning, Message = "Node {NodeId} could not hand leadership to node {Target} before stopping ({Reason}); the others will elect a leader after an election timeout")]
    public static partial void LeadershipHandOverFailed(ILogger logger, int nodeId, int target, string reason);

    [LoggerMessage(EventId = 1015, Level = LogLevel.Warning, Message = "Node {NodeId}: an ActivityListener of the Raft.Node activity source threw; the span is skipped and the node goes on (logged once per node)")]
    public static partial void ListenerFailed(ILogger logger, int nodeId, Exception exception);
}
