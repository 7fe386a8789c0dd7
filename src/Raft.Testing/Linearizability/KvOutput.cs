namespace Raft.Testing.Linearizability;

/// <summary>
/// The result a client observed for a completed operation: the value a
/// <see cref="KvOperationKind.Get"/> read, or whether a <see cref="KvOperationKind.Cas"/> swapped.
/// Puts and deletes return <see cref="None"/>.
/// </summary>
public readonly record struct KvOutput
{
    private KvOutput(string? value, bool swapped)
    {
        Value = value;
        Swapped = swapped;
    }

    /// <summary>The output of a put or a delete, which return nothing.</summary>
    public static KvOutput None => default;

    /// <summary>For a get: the value read, or <see langword="null"/> when the key was absent.</summary>
    public string? Value { get; }

    /// <summary>For a compare-and-swap: whether the new value was written.</summary>
    public bool Swapped { get; }

    /// <summary>The output of a get that read <paramref name="value"/>.</summary>
    /// <param name="value">The value read; <see langword="null"/> when the key was absent.</param>
    /// <returns>The output.</returns>
    public static KvOutput ForGet(string? value) => new(value, false);

    /// <summary>The output of a compare-and-swap.</summary>
    /// <param name="swapped">Whether the new value was written.</param>
    /// <returns>The output.</returns>
    public static KvOutput ForCas(bool swapped) => new(null, swapped);
}
