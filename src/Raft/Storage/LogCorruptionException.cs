namespace Raft;

/// <summary>
/// Thrown when a <see cref="FileLogStore"/> finds data on disk that it cannot trust and will not
/// guess about: a corrupt record in the middle of the log, a gap between segments, a bad magic
/// number, an unknown format version, or a corrupt hard-state or metadata file.
/// </summary>
/// <remarks>
/// A torn or corrupt record at the very end of the log is not reported this way: it is the
/// expected result of a crash during a write that was never acknowledged, and recovery cuts it off
/// with a logged warning. Everything reported by this exception needs an operator (restore the node
/// from a peer or a backup); <see cref="FilePath"/> and <see cref="Offset"/> say where to look.
/// </remarks>
public sealed class LogCorruptionException : IOException
{
    /// <summary>Initializes a new instance with a generic message.</summary>
    public LogCorruptionException()
        : base("The log store is corrupt.")
    {
        FilePath = string.Empty;
    }

    /// <summary>Initializes a new instance with the given message.</summary>
    /// <param name="message">The message.</param>
    public LogCorruptionException(string message)
        : base(message)
    {
        FilePath = string.Empty;
    }

    /// <summary>Initializes a new instance with the given message and inner exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The exception that caused this one.</param>
    public LogCorruptionException(string message, Exception? innerException)
        : base(message, innerException)
    {
        FilePath = string.Empty;
    }

    /// <summary>Initializes a new instance that names the corrupt file and the byte offset of the problem.</summary>
    /// <param name="filePath">The full path of the corrupt file.</param>
    /// <param name="offset">The byte offset in <paramref name="filePath"/> where the problem starts.</param>
    /// <param name="detail">What is wrong there.</param>
    /// <param name="innerException">The exception that caused this one, if any.</param>
    public LogCorruptionException(string filePath, long offset, string detail, Exception? innerException = null)
        : base($"Log corruption in '{filePath}' at byte offset {offset}: {detail}. The store refuses to start rather than guess; restore this node's data from a peer or a backup.", innerException)
    {
        FilePath = filePath;
        Offset = offset;
    }

    /// <summary>The full path of the corrupt file, or an empty string when not known.</summary>
    public string FilePath { get; }

    /// <summary>The byte offset in <see cref="FilePath"/> where the problem starts.</summary>
    public long Offset { get; }
}
