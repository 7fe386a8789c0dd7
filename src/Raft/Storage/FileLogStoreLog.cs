using Microsoft.Extensions.Logging;

namespace Raft;

/// <summary>Log messages of <see cref="FileLogStore"/>. EventIds 2000–2099 are reserved for it.</summary>
internal static partial class FileLogStoreLog
{
    [LoggerMessage(EventId = 2000, Level = LogLevel.Information,
        Message = "Opened log store {Directory}: entries [{FirstIndex}, {LastIndex}] in {SegmentCount} segments, recovered in {ElapsedMilliseconds} ms")]
    public static partial void Opened(ILogger logger, string directory, long firstIndex, long lastIndex, int segmentCount, long elapsedMilliseconds);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Warning,
        Message = "Cut off a torn or corrupt tail of {Path} at byte offset {Offset} ({Bytes} bytes removed: {Reason}); the segment now ends at index {LastIndex}. This is expected after a crash during an unacknowledged write")]
    public static partial void TornTailCut(ILogger logger, string path, long offset, long bytes, string reason, long lastIndex);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Warning,
        Message = "Deleted segment {Path}: its header was never completely written (crash while creating it)")]
    public static partial void TornSegmentDeleted(ILogger logger, string path);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Warning,
        Message = "Deleted leftover temporary file {Path} from a write interrupted by a crash")]
    public static partial void TempFileDeleted(ILogger logger, string path);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Information,
        Message = "Deleted leftover segment {Path}: it lies entirely below the compaction point {CompactIndex} (a crash interrupted compaction)")]
    public static partial void LeftoverSegmentDeleted(ILogger logger, string path, long compactIndex);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Warning,
        Message = "Log store {Directory} runs with Durability=UnsafeNoFsync: acknowledged writes are lost on power loss")]
    public static partial void UnsafeNoFsync(ILogger logger, string directory);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Debug,
        Message = "Created segment {Path}")]
    public static partial void SegmentCreated(ILogger logger, string path);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Debug,
        Message = "Truncated the log after index {LastKept} (was {OldLastIndex}); deleted {DeletedSegments} segments")]
    public static partial void SuffixTruncated(ILogger logger, long lastKept, long oldLastIndex, int deletedSegments);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Debug,
        Message = "Compacted the log through index {Index} (term {Term}); deleted {DeletedSegments} segments")]
    public static partial void Compacted(ILogger logger, long index, long term, int deletedSegments);

    [LoggerMessage(EventId = 2009, Level = LogLevel.Information,
        Message = "Reset the log to index {Index} (term {Term}); deleted {DeletedSegments} segments")]
    public static partial void Reset(ILogger logger, long index, long term, int deletedSegments);

    [LoggerMessage(EventId = 2010, Level = LogLevel.Error,
        Message = "A write to log store {Directory} failed; the store is unusable until it is reopened")]
    public static partial void WriteFailed(ILogger logger, string directory, Exception exception);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Warning,
        Message = "Deleted segment {Path}: after recovery it ends at index {SegmentLastIndex}, below the compaction point {CompactIndex}. Entries the store had acknowledged were lost (was the store run with UnsafeNoFsync?)")]
    public static partial void SegmentBelowCompactionPointDeleted(ILogger logger, string path, long segmentLastIndex, long compactIndex);

    [LoggerMessage(EventId = 2012, Level = LogLevel.Warning,
        Message = "Ignored file {Path} in the log directory: its name is not a segment name")]
    public static partial void UnknownFileIgnored(ILogger logger, string path);

    [LoggerMessage(EventId = 2013, Level = LogLevel.Debug,
        Message = "Deleted segment {Path}, retired by a compaction (or left by one before a restart)")]
    public static partial void RetiredSegmentDeleted(ILogger logger, string path);

    [LoggerMessage(EventId = 2014, Level = LogLevel.Warning,
        Message = "Could not delete segment {Path}, retired by a compaction; it holds nothing the log needs and the next open deletes it")]
    public static partial void RetiredSegmentDeleteFailed(ILogger logger, string path, Exception exception);
}
