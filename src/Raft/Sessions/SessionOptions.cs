namespace Raft;

/// <summary>
/// The limits of exactly-once client sessions (<see cref="RaftNode.OpenSessionAsync"/>), set on
/// <see cref="RaftNodeOptions.Sessions"/>.
/// </summary>
/// <remarks>
/// <para>The leader writes its limits into every session registration it appends, and every
/// replica applies the limits of the latest registration in the log: replicas never diverge
/// because their own settings differ, and a change takes effect cluster-wide with the next
/// registration after the new leader (or the restarted nodes) use it.</para>
/// <para>Settings only, bindable from configuration (the <c>Sessions</c> section of the node's
/// options) and copied with <c>with</c>; the node keeps its own copy, made when it is constructed.</para>
/// </remarks>
public sealed record SessionOptions
{
    /// <summary>The default of <see cref="Timeout"/>: one hour.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromHours(1);

    /// <summary>The default of <see cref="MaxSessions"/>: 10,000.</summary>
    public const int DefaultMaxSessions = 10_000;

    /// <summary>The default of <see cref="MaxResultBytesPerSession"/>: 64 KiB.</summary>
    public const int DefaultMaxResultBytesPerSession = 64 * 1024;

    /// <summary>
    /// How long a session lives without a command, measured in log time (the timestamps leaders
    /// write into session entries), so that every replica expires the same sessions at the same
    /// entry. A command of an expired session fails with <see cref="SessionExpiredException"/>. At
    /// least one second. The default is <see cref="DefaultTimeout"/> (one hour).
    /// </summary>
    public TimeSpan Timeout { get; set; } = DefaultTimeout;

    /// <summary>
    /// The most sessions the cluster keeps. A registration beyond it first drops expired sessions,
    /// then the least recently active one (whose client then gets <see cref="SessionExpiredException"/>).
    /// At least 1. The default is <see cref="DefaultMaxSessions"/>.
    /// </summary>
    public int MaxSessions { get; set; } = DefaultMaxSessions;

    /// <summary>
    /// The most bytes of results one session keeps for retries (each result counts its encoded
    /// size plus 16 bytes). Beyond it the oldest results are dropped: a retry of one of those
    /// commands fails with <see cref="SessionSequenceException"/> instead of applying it again. At
    /// least 0. The default is <see cref="DefaultMaxResultBytesPerSession"/> (64 KiB).
    /// </summary>
    public int MaxResultBytesPerSession { get; set; } = DefaultMaxResultBytesPerSession;

    /// <summary>Checks the limits.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A limit is out of range (the message names it).</exception>
    public void Validate()
    {
        if (Timeout < TimeSpan.FromSeconds(1))
            throw new ArgumentOutOfRangeException(nameof(Timeout), Timeout, "SessionOptions.Timeout must be at least one second.");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxSessions, nameof(MaxSessions));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxResultBytesPerSession, nameof(MaxResultBytesPerSession));
    }
}
