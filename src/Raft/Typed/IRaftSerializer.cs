using System.Buffers;

namespace Raft;

/// <summary>
/// Turns values of <typeparamref name="T"/> into bytes and back: how the typed API
/// (<see cref="RaftStateMachine{TCommand, TResult}"/>, <see cref="RaftClient{TCommand, TResult}"/>)
/// puts commands in the log. The host chooses it; <see cref="JsonRaftSerializer{T}"/> ships here.
/// </summary>
/// <remarks>
/// <para>Every node must read what every other node wrote, across versions during a rolling upgrade:
/// the format is part of the log, so change it only compatibly.</para>
/// <para><see cref="Deserialize"/> must be deterministic and must throw (any exception) on bytes it
/// cannot read: the leader then refuses such a command before it is appended
/// (<see cref="InvalidCommandException"/>) instead of stopping every node that applies it.</para>
/// <para>Implementations must be thread-safe: the node reads on its loops while clients write.</para>
/// </remarks>
/// <typeparam name="T">The type of the values.</typeparam>
public interface IRaftSerializer<T>
{
    /// <summary>Writes <paramref name="value"/> to <paramref name="destination"/>.</summary>
    /// <param name="value">The value.</param>
    /// <param name="destination">Where the bytes go.</param>
    void Serialize(T value, IBufferWriter<byte> destination);

    /// <summary>Reads a value written by <see cref="Serialize"/>.</summary>
    /// <param name="data">The bytes.</param>
    /// <returns>The value.</returns>
    /// <exception cref="Exception">Any exception when <paramref name="data"/> is not a valid value.</exception>
    T Deserialize(ReadOnlySpan<byte> data);
}
