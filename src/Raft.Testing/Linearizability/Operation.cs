using System.Globalization;

namespace Raft.Testing.Linearizability;

/// <summary>How a recorded operation ended, as far as the client knows.</summary>
public enum OperationOutcome
{
    /// <summary>The operation completed and the client saw its <see cref="Operation.Output"/>.</summary>
    Ok,

    /// <summary>
    /// The client does not know whether the operation took effect (a timeout, a 5xx, a lost
    /// connection, or an operation still in flight). The checker lets it take effect at any moment
    /// after its invocation, even after the client gave up, or never: its response time is treated
    /// as +infinity and its output as unobserved.
    /// </summary>
    Unknown,

    /// <summary>
    /// The operation definitely did not take effect (for example "no leader, not submitted"). The
    /// checker ignores it.
    /// </summary>
    Failed,
}

/// <summary>
/// One operation of a concurrent history: who issued it, what it asked for, when it was invoked and
/// when the response arrived, and what the client observed.
/// </summary>
/// <remarks>
/// Timestamps are ticks of any one monotonic clock shared by the whole history (for example
/// <see cref="TimeProvider.GetTimestamp"/>). Take the invocation timestamp before the request leaves
/// and the response timestamp after the answer arrives. Equal timestamps count as overlapping.
/// </remarks>
public sealed record Operation
{
    /// <summary>Creates an operation.</summary>
    /// <param name="clientId">The client that issued it (only used in reports).</param>
    /// <param name="input">What the client asked for.</param>
    /// <param name="invokeTimestamp">When the client invoked it.</param>
    /// <param name="responseTimestamp">
    /// When the response (or the failure) arrived. Ignored for <see cref="OperationOutcome.Unknown"/>
    /// operations, which may take effect at any time after <paramref name="invokeTimestamp"/>.
    /// </param>
    /// <param name="outcome">How the operation ended.</param>
    /// <param name="output">What the client observed; only meaningful for <see cref="OperationOutcome.Ok"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">
    /// The outcome is not a defined value, or the response precedes the invocation.
    /// </exception>
    public Operation(int clientId, KvInput input, long invokeTimestamp, long responseTimestamp, OperationOutcome outcome, KvOutput output)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (outcome is not (OperationOutcome.Ok or OperationOutcome.Unknown or OperationOutcome.Failed))
            throw new ArgumentOutOfRangeException(nameof(outcome), outcome, "Unknown outcome.");
        if (responseTimestamp < invokeTimestamp)
            throw new ArgumentOutOfRangeException(nameof(responseTimestamp), responseTimestamp, $"The response ({responseTimestamp}) precedes the invocation ({invokeTimestamp}).");
        ClientId = clientId;
        Input = input;
        InvokeTimestamp = invokeTimestamp;
        ResponseTimestamp = responseTimestamp;
        Outcome = outcome;
        Output = outcome == OperationOutcome.Ok ? output : KvOutput.None;
    }

    /// <summary>The client that issued the operation.</summary>
    public int ClientId { get; }

    /// <summary>What the client asked for.</summary>
    public KvInput Input { get; }

    /// <summary>The key the operation acts on.</summary>
    public string Key => Input.Key;

    /// <summary>When the client invoked the operation.</summary>
    public long InvokeTimestamp { get; }

    /// <summary>
    /// When the response arrived; <see cref="long.MaxValue"/> for operations still in flight. The
    /// checker treats the response of an <see cref="OperationOutcome.Unknown"/> operation as +infinity
    /// whatever this says.
    /// </summary>
    public long ResponseTimestamp { get; }

    /// <summary>How the operation ended.</summary>
    public OperationOutcome Outcome { get; }

    /// <summary>What the client observed; <see cref="KvOutput.None"/> unless <see cref="Outcome"/> is <see cref="OperationOutcome.Ok"/>.</summary>
    public KvOutput Output { get; }

    /// <summary>Creates an operation that completed with <paramref name="output"/>.</summary>
    /// <param name="clientId">The client that issued it.</param>
    /// <param name="input">What the client asked for.</param>
    /// <param name="output">What the client observed.</param>
    /// <param name="invokeTimestamp">When it was invoked.</param>
    /// <param name="responseTimestamp">When the response arrived.</param>
    /// <returns>The operation.</returns>
    public static Operation Ok(int clientId, KvInput input, KvOutput output, long invokeTimestamp, long responseTimestamp) =>
        new(clientId, input, invokeTimestamp, responseTimestamp, OperationOutcome.Ok, output);

    /// <summary>Creates an operation whose effect is unknown (it may take effect at any time after its invocation, or never).</summary>
    /// <param name="clientId">The client that issued it.</param>
    /// <param name="input">What the client asked for.</param>
    /// <param name="invokeTimestamp">When it was invoked.</param>
    /// <param name="responseTimestamp">When the client gave up (informational only).</param>
    /// <returns>The operation.</returns>
    public static Operation Unknown(int clientId, KvInput input, long invokeTimestamp, long responseTimestamp = long.MaxValue) =>
        new(clientId, input, invokeTimestamp, responseTimestamp, OperationOutcome.Unknown, KvOutput.None);

    /// <summary>Creates an operation that definitely did not take effect; the checker ignores it.</summary>
    /// <param name="clientId">The client that issued it.</param>
    /// <param name="input">What the client asked for.</param>
    /// <param name="invokeTimestamp">When it was invoked.</param>
    /// <param name="responseTimestamp">When the failure arrived.</param>
    /// <returns>The operation.</returns>
    public static Operation Failed(int clientId, KvInput input, long invokeTimestamp, long responseTimestamp) =>
        new(clientId, input, invokeTimestamp, responseTimestamp, OperationOutcome.Failed, KvOutput.None);

    /// <summary>Formats the operation, for example <c>client 2: Get("k") -&gt; "v1" [1200, 1350]</c>.</summary>
    /// <returns>A readable form of the operation.</returns>
    public override string ToString()
    {
        var result = Outcome switch
        {
            OperationOutcome.Unknown => "unknown",
            OperationOutcome.Failed => "failed",
            _ => Input.Kind switch
            {
                KvOperationKind.Get => KvInput.Format(Output.Value),
                KvOperationKind.Cas => Output.Swapped ? "swapped" : "not swapped",
                _ => "ok",
            },
        };
        var response = ResponseTimestamp == long.MaxValue ? "inf"
            : Outcome == OperationOutcome.Unknown ? string.Create(CultureInfo.InvariantCulture, $"inf, gave up at {ResponseTimestamp}")
            : ResponseTimestamp.ToString(CultureInfo.InvariantCulture);
        return string.Create(CultureInfo.InvariantCulture, $"client {ClientId}: {Input} -> {result} [{InvokeTimestamp}, {response}]");
    }
}
