using Microsoft.Extensions.Logging;

namespace Raft;

// The log messages of RaftNode.Reads.cs (EventIds 1090-1094, within RaftNode's block).
internal static partial class Log
{
    [LoggerMessage(EventId = 1090, Level = LogLevel.Warning, Message = "Node {NodeId} gave up on a proposal at index {Index} after ProposalTimeout: {Stage}")]
    public static partial void ProposalTimedOut(ILogger logger, int nodeId, long index, string stage);

    [LoggerMessage(EventId = 1091, Level = LogLevel.Warning, Message = "Node {NodeId} gave up on a read after ReadTimeout (leader known: {LeaderId})")]
    public static partial void ReadTimedOut(ILogger logger, int nodeId, int leaderId);
}
