using System.Globalization;

namespace Raft.Testing.Linearizability;

/// <summary>The kind of a key-value operation in a recorded history.</summary>
public enum KvOperationKind
{
    /// <summary>Writes a value under a key; returns nothing.</summary>
    Put,

    /// <summary>Reads a key; returns its value, or <see langword="null"/> when the key is absent.</summary>
    Get,

    /// <summary>Removes a key (absent keys stay absent); returns nothing.</summary>
    Delete,

    /// <summary>
    /// Compare-and-swap: writes the new value only when the key currently holds the expected value
    /// (<see langword="null"/> expects the key to be absent); returns whether it swapped.
    /// </summary>
    Cas,
}

/// <summary>
/// The input of one key-value operation: what the client asked for. Create instances with
/// <see cref="Put"/>, <see cref="Get"/>, <see cref="Delete"/> and <see cref="Cas"/>.
/// </summary>
public sealed record KvInput
{
    private KvInput(KvOperationKind kind, string key, string? value, string? expected)
    {
        Kind = kind;
        Key = key;
        Value = value;
        Expected = expected;
    }

    /// <summary>What the operation does.</summary>
    public KvOperationKind Kind { get; }

    /// <summary>The key the operation acts on. Operations on different keys are checked independently.</summary>
    public string Key { get; }

    /// <summary>
    /// For <see cref="KvOperationKind.Put"/> the value written; for <see cref="KvOperationKind.Cas"/>
    /// the new value; otherwise <see langword="null"/>.
    /// </summary>
    public string? Value { get; }

    /// <summary>
    /// For <see cref="KvOperationKind.Cas"/> the value the key must hold for the swap to happen
    /// (<see langword="null"/>: the key must be absent); otherwise <see langword="null"/>.
    /// </summary>
    public string? Expected { get; }

    /// <summary>Creates a put of <paramref name="value"/> under <paramref name="key"/>.</summary>
    /// <param name="key">The key.</param>
    /// <param name="value">The value to write.</param>
    /// <returns>The input.</returns>
    public static KvInput Put(string key, string value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        return new KvInput(KvOperationKind.Put, key, value, null);
    }

    /// <summary>Creates a read of <paramref name="key"/>.</summary>
    /// <param name="key">The key.</param>
    /// <returns>The input.</returns>
    public static KvInput Get(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return new KvInput(KvOperationKind.Get, key, null, null);
    }

    /// <summary>Creates a delete of <paramref name="key"/>.</summary>
    /// <param name="key">The key.</param>
    /// <returns>The input.</returns>
    public static KvInput Delete(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return new KvInput(KvOperationKind.Delete, key, null, null);
    }

    /// <summary>Creates a compare-and-swap on <paramref name="key"/>.</summary>
    /// <param name="key">The key.</param>
    /// <param name="expected">The value the key must hold; <see langword="null"/> means the key must be absent.</param>
    /// <param name="newValue">The value written when the comparison holds.</param>
    /// <returns>The input.</returns>
    public static KvInput Cas(string key, string? expected, string newValue)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(newValue);
        return new KvInput(KvOperationKind.Cas, key, newValue, expected);
    }

    /// <summary>Formats the input, for example <c>Cas("k", absent -&gt; "v1")</c>.</summary>
    /// <returns>A readable form of the input.</returns>
    public override string ToString() => Kind switch
    {
        KvOperationKind.Put => string.Create(CultureInfo.InvariantCulture, $"Put({Format(Key)}, {Format(Value)})"),
        KvOperationKind.Get => string.Create(CultureInfo.InvariantCulture, $"Get({Format(Key)})"),
        KvOperationKind.Delete => string.Create(CultureInfo.InvariantCulture, $"Delete({Format(Key)})"),
        _ => string.Create(CultureInfo.InvariantCulture, $"Cas({Format(Key)}, {Format(Expected)} -> {Format(Value)})"),
    };

    /// <summary>Quotes a value for messages; <see langword="null"/> reads as <c>absent</c>.</summary>
    internal static string Format(string? value) => value is null ? "absent" : "\"" + value + "\"";
}
