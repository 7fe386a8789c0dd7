using System.Globalization;
using System.Text;

namespace Raft.Testing.Linearizability;

/// <summary>What the checker concluded about one key's sub-history.</summary>
public enum KeyCheckOutcome
{
    /// <summary>A linearization was found.</summary>
    Linearizable,

    /// <summary>The search proved that no linearization exists.</summary>
    NotLinearizable,

    /// <summary>The search ran out of time (or memory) before reaching a conclusion.</summary>
    TimedOut,

    /// <summary>The key was not checked to the end because another key was already found not linearizable.</summary>
    Skipped,
}

/// <summary>The verdict on one key's sub-history.</summary>
public sealed class KeyCheckResult
{
    internal KeyCheckResult(string key, KeyCheckOutcome outcome, int operationCount, int unknownCount, long statesExplored, TimeSpan elapsed)
    {
        Key = key;
        Outcome = outcome;
        OperationCount = operationCount;
        UnknownCount = unknownCount;
        StatesExplored = statesExplored;
        Elapsed = elapsed;
    }

    /// <summary>The key.</summary>
    public string Key { get; }

    /// <summary>The verdict.</summary>
    public KeyCheckOutcome Outcome { get; }

    /// <summary>How many operations on the key were checked (failed operations and unknown gets excluded).</summary>
    public int OperationCount { get; }

    /// <summary>How many of <see cref="OperationCount"/> had an unknown outcome.</summary>
    public int UnknownCount { get; }

    /// <summary>How many distinct (linearized set, register value) configurations the search visited.</summary>
    public long StatesExplored { get; }

    /// <summary>How long the search for this key took.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>Formats the verdict on one line.</summary>
    /// <returns>A readable summary.</returns>
    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"{KvInput.Format(Key)}: {Outcome}, {OperationCount} operations ({UnknownCount} unknown), {StatesExplored} states, {Elapsed.TotalMilliseconds:0.#} ms");
}

/// <summary>
/// Why a key's sub-history is not linearizable: the longest linearization the search could build and
/// the operations none of which could come next.
/// </summary>
public sealed class LinearizabilityFailure
{
    internal LinearizabilityFailure(
        string key,
        IReadOnlyList<Operation> linearizedPrefix,
        string? valueAfterPrefix,
        IReadOnlyList<Operation> unplacedOperations,
        Operation overdueOperation,
        string description)
    {
        Key = key;
        LinearizedPrefix = linearizedPrefix;
        ValueAfterPrefix = valueAfterPrefix;
        UnplacedOperations = unplacedOperations;
        OverdueOperation = overdueOperation;
        Description = description;
    }

    /// <summary>The key whose sub-history is not linearizable.</summary>
    public string Key { get; }

    /// <summary>
    /// The longest sequence of operations the search managed to linearize, in linearization order.
    /// Every operation in it is consistent with a sequential register. Empty when the failure needed
    /// no search: an operation observed a value that no operation invoked before its response writes.
    /// </summary>
    public IReadOnlyList<Operation> LinearizedPrefix { get; }

    /// <summary>The register's value after <see cref="LinearizedPrefix"/> (<see langword="null"/>: absent).</summary>
    public string? ValueAfterPrefix { get; }

    /// <summary>
    /// The operations that were pending after <see cref="LinearizedPrefix"/> (invoked before the earliest
    /// pending response): none of them can be linearized next without failing later.
    /// </summary>
    public IReadOnlyList<Operation> UnplacedOperations { get; }

    /// <summary>
    /// The completed operation whose response arrived before it could be linearized; also in
    /// <see cref="UnplacedOperations"/>.
    /// </summary>
    public Operation OverdueOperation { get; }

    /// <summary>A multi-line explanation for test output.</summary>
    public string Description { get; }

    /// <inheritdoc />
    public override string ToString() => Description;
}

/// <summary>The verdict of <see cref="LinearizabilityChecker.Check"/> on a whole history.</summary>
public sealed class CheckResult
{
    internal CheckResult(
        bool isLinearizable,
        bool timedOut,
        int operationCount,
        int ignoredOperationCount,
        IReadOnlyList<KeyCheckResult> keys,
        LinearizabilityFailure? failure,
        TimeSpan elapsed)
    {
        IsLinearizable = isLinearizable;
        TimedOut = timedOut;
        OperationCount = operationCount;
        IgnoredOperationCount = ignoredOperationCount;
        Keys = keys;
        Failure = failure;
        Elapsed = elapsed;
    }

    /// <summary>
    /// <see langword="true"/> only when a linearization was found for every key. A search that timed
    /// out never counts as success.
    /// </summary>
    public bool IsLinearizable { get; }

    /// <summary>
    /// <see langword="true"/> when the search for at least one key ran out of time (or memory) before
    /// reaching a verdict; <see cref="IsLinearizable"/> is then <see langword="false"/>, although the history
    /// may well be linearizable.
    /// </summary>
    public bool TimedOut { get; }

    /// <summary>How many operations the history held.</summary>
    public int OperationCount { get; }

    /// <summary>
    /// How many operations the checker ignored: <see cref="OperationOutcome.Failed"/> ones, and gets
    /// with an <see cref="OperationOutcome.Unknown"/> outcome (they neither change nor reveal anything).
    /// </summary>
    public int IgnoredOperationCount { get; }

    /// <summary>The verdict for each key, in ordinal key order.</summary>
    public IReadOnlyList<KeyCheckResult> Keys { get; }

    /// <summary>Why the history is not linearizable; <see langword="null"/> unless a key was proved not linearizable.</summary>
    public LinearizabilityFailure? Failure { get; }

    /// <summary>How long the check took.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>A summary, followed by the failure description when there is one.</summary>
    /// <returns>A readable, possibly multi-line, report.</returns>
    public override string ToString()
    {
        var verdict = IsLinearizable ? "linearizable"
            : Failure is not null ? "NOT linearizable"
            : "UNKNOWN (the search timed out)";
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"History of {OperationCount} operations ({IgnoredOperationCount} ignored) over {Keys.Count} {(Keys.Count == 1 ? "key" : "keys")}: {verdict}, in {Elapsed.TotalMilliseconds:0.#} ms.");
        foreach (var key in Keys)
        {
            if (key.Outcome != KeyCheckOutcome.Linearizable)
                text.AppendLine().Append("  ").Append(key);
        }
        if (Failure is not null)
            text.AppendLine().Append(Failure.Description);
        return text.ToString();
    }
}
