using Microsoft.Extensions.Logging;

namespace Raft;

/// <summary>The log messages of exactly-once sessions. EventIds 1400–1419.</summary>
internal static partial class SessionLog
{
    [LoggerMessage(EventId = 1400, Level = LogLevel.Warning, Message = "Node {NodeId}: the result of session command (client {ClientId}, sequence {Sequence}) at index {Index} is a {Type}, which sessions cannot save; a retry of it gets CommittedWithoutResult. Implement ISessionResultSerializer on the state machine to keep such results")]
    public static partial void ResultNotSaved(ILogger logger, int nodeId, long clientId, long sequence, long index, string? type);

    [LoggerMessage(EventId = 1401, Level = LogLevel.Warning, Message = "Node {NodeId} refused the committed session entry at index {Index} (the same on every replica): {Reason}")]
    public static partial void MalformedEntry(ILogger logger, int nodeId, long index, string reason);

    [LoggerMessage(EventId = 1402, Level = LogLevel.Debug, Message = "Node {NodeId} answered a retry of session command (client {ClientId}, sequence {Sequence}) at index {Index} with its first result, without applying it again")]
    public static partial void DuplicateAnswered(ILogger logger, int nodeId, long clientId, long sequence, long index);

    [LoggerMessage(EventId = 1403, Level = LogLevel.Information, Message = "Node {NodeId} evicted {Count} least recently active session(s) to register the one at index {Index} (MaxSessions {MaxSessions})")]
    public static partial void SessionsEvicted(ILogger logger, int nodeId, int count, int maxSessions, long index);
}
