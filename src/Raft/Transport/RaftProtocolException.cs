namespace Raft;

/// <summary>
/// The bytes a peer sent break the TCP transport's wire protocol: a frame over
/// <see cref="TcpTransportOptions.MaxFrameBytes"/>, an unknown message type or flag, a truncated or
/// inconsistent payload (a count or length that is negative or exceeds the bytes left, trailing
/// bytes), or a connection preface with the wrong magic, version, cluster id or node ids.
/// </summary>
/// <remarks>
/// This is the only exception the frame decoder throws for bad input. The transport answers it by
/// closing the one connection the bytes came from (and logging <see cref="Exception.Message"/> as
/// the reason); other connections are unaffected. Nothing from a frame that fails to decode is ever
/// delivered.
/// </remarks>
public sealed class RaftProtocolException : IOException
{
    /// <summary>Creates the exception with a generic message.</summary>
    public RaftProtocolException()
        : base("The peer violated the Raft wire protocol.")
    {
    }

    /// <summary>Creates the exception with a message that says what was wrong.</summary>
    /// <param name="message">What was wrong, phrased for a log line.</param>
    public RaftProtocolException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    /// <param name="message">What was wrong, phrased for a log line.</param>
    /// <param name="innerException">The underlying error.</param>
    public RaftProtocolException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
