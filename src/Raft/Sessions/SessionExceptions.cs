namespace Raft;

/// <summary>
/// The client session is unknown to the cluster: it expired (no command within
/// <see cref="SessionOptions.Timeout"/> of log time), was evicted to make room for a new one
/// (<see cref="SessionOptions.MaxSessions"/>), or never existed. The command was not applied.
/// Open a new session; whether earlier commands of the old one that had no answer took effect can
/// only be found out by reading the state.
/// </summary>
public sealed class SessionExpiredException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public SessionExpiredException() : base("The client session expired or is unknown; the command was not applied.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public SessionExpiredException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public SessionExpiredException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception for a client session.</summary>
    /// <param name="clientId">The session's client id.</param>
    public SessionExpiredException(long clientId)
        : base($"Client session {clientId} expired, was evicted, or never existed; the command was not applied. Open a new session.")
    {
        ClientId = clientId;
    }

    /// <summary>The session's client id, or 0 when not given.</summary>
    public long ClientId { get; }
}

/// <summary>
/// A session command's sequence number is below the oldest result its session still keeps: the
/// client said it no longer waits for it (a later command carried a higher lowest pending
/// sequence), or its result was dropped to stay within
/// <see cref="SessionOptions.MaxResultBytesPerSession"/>. It is not applied (again): if it took
/// effect, it did so once; its result is gone.
/// </summary>
public sealed class SessionSequenceException : RaftException
{
    /// <summary>Creates the exception.</summary>
    public SessionSequenceException() : base("The session command's sequence number is below the oldest result the session keeps; it was not applied again.") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What happened.</param>
    public SessionSequenceException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What happened.</param>
    /// <param name="innerException">The cause.</param>
    public SessionSequenceException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception for a session command.</summary>
    /// <param name="clientId">The session's client id.</param>
    /// <param name="sequence">The command's sequence number.</param>
    /// <param name="lowestKept">The lowest sequence number whose result the session may still hold.</param>
    public SessionSequenceException(long clientId, long sequence, long lowestKept)
        : base($"Sequence {sequence} of client session {clientId} is below {lowestKept}, the oldest result the session keeps (acknowledged by the client, or dropped for MaxResultBytesPerSession): it is not applied again, and its result is gone.")
    {
        ClientId = clientId;
        Sequence = sequence;
        LowestKept = lowestKept;
    }

    /// <summary>The session's client id, or 0 when not given.</summary>
    public long ClientId { get; }

    /// <summary>The refused sequence number, or 0 when not given.</summary>
    public long Sequence { get; }

    /// <summary>The lowest sequence number whose result the session may still hold, or 0 when not given.</summary>
    public long LowestKept { get; }
}

// What the apply path hands a proposal for a session entry that was refused deterministically (the
// same on every replica): Resolve turns it into the exception.
internal sealed class SessionRefusal(Func<Exception> create)
{
    public Exception CreateException() => create();
}
