using System.Buffers;

namespace Raft;

/// <summary>
/// Optional: implemented by an <see cref="IStateMachine"/> whose command results are not one of the
/// types sessions save by themselves, so that a retried session command gets its first result back
/// even after a snapshot or on another node.
/// </summary>
/// <remarks>
/// <para>A session keeps the result of each command for retries (<see cref="RaftSession"/>), on
/// every replica and in snapshots, so results are kept as bytes. Without this interface the node
/// saves <see langword="null"/>, byte arrays, <see cref="ReadOnlyMemory{T}"/> of bytes
/// (returned as a byte array), <see cref="string"/>, <see cref="bool"/>,
/// <see cref="int"/>, <see cref="long"/>, <see cref="double"/>, <see cref="Guid"/> and
/// <see cref="CommittedWithoutResult"/>. A result of another type is kept as "no result": the first
/// caller still gets the object, a retry of the same command gets
/// <see cref="CommittedWithoutResult.Instance"/> (it took effect once; the node logs a warning).</para>
/// <para>When implemented, <see cref="TryWriteResult"/> is asked first for every result. It runs on
/// the apply loop for every session command, on every replica: it must be deterministic (the same
/// result gives the same bytes everywhere) and quick.</para>
/// </remarks>
public interface ISessionResultSerializer
{
    /// <summary>Writes <paramref name="result"/> as bytes.</summary>
    /// <param name="result">A result <see cref="IStateMachine.ApplyAsync"/> returned.</param>
    /// <param name="destination">Where the bytes go.</param>
    /// <returns><see langword="false"/> to leave the result to the node's built-in encodings (then nothing may have been written).</returns>
    bool TryWriteResult(object? result, IBufferWriter<byte> destination);

    /// <summary>Reads a result written by <see cref="TryWriteResult"/>.</summary>
    /// <param name="data">The bytes <see cref="TryWriteResult"/> wrote.</param>
    /// <returns>The result handed to a retried command.</returns>
    object? ReadResult(ReadOnlySpan<byte> data);
}
