using System.Buffers.Binary;

namespace Raft;

// The library's wrapping of state machine snapshots: when sessions are in use, a snapshot is
//   magic (16 bytes) | table length i32 | session table | the state machine's own data
// and a snapshot without the magic (written before sessions existed, or by a node that never applied
// a session entry) is the state machine's data alone, restored with an empty table. The magic starts
// with 0x89, which no UTF-8 text and no BinaryWriter-written count of a small state starts with, and
// is 16 bytes long, so a state machine's own data is not mistaken for it.
internal static class SessionSnapshot
{
    private static ReadOnlySpan<byte> Magic => [0x89, (byte)'R', (byte)'a', (byte)'f', (byte)'t', (byte)'S', (byte)'e', (byte)'s', (byte)'s', (byte)'i', (byte)'o', (byte)'n', (byte)'s', (byte)'\r', (byte)'\n', 0x1A];

    public const int MagicLength = 16;

    // A session table larger than this is refused as corrupt (the limits keep real tables far smaller).
    private const int MaxTableBytes = int.MaxValue - 64;

    public static async ValueTask WriteAsync(Stream destination, SessionTable table, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        table.WriteTo(buffer);
        var header = new byte[MagicLength + 4];
        Magic.CopyTo(header);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(MagicLength), checked((int)buffer.Length));
        await destination.WriteAsync(header, cancellationToken).ConfigureAwait(false);
        await destination.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads the session section, if any, into <paramref name="table"/> (cleared otherwise) and returns the stream of the state machine's data.</summary>
    /// <exception cref="InvalidDataException">The session section is truncated or malformed.</exception>
    public static async ValueTask<Stream> ReadAsync(Stream source, SessionTable table, CancellationToken cancellationToken)
    {
        var head = new byte[MagicLength];
        var read = await ReadFullyAsync(source, head, cancellationToken).ConfigureAwait(false);
        if (read < MagicLength || !head.AsSpan().SequenceEqual(Magic))
        {
            table.Clear();
            return new PrefixedStream(head.AsMemory(0, read), source);
        }
        var lengthBytes = new byte[4];
        if (await ReadFullyAsync(source, lengthBytes, cancellationToken).ConfigureAwait(false) < 4)
            throw new InvalidDataException("The snapshot's session section is truncated (no length).");
        var length = BinaryPrimitives.ReadInt32LittleEndian(lengthBytes);
        if (length < 0 || length > MaxTableBytes)
            throw new InvalidDataException($"The snapshot's session section claims {length} bytes.");
        var data = new byte[length];
        if (await ReadFullyAsync(source, data, cancellationToken).ConfigureAwait(false) < length)
            throw new InvalidDataException($"The snapshot's session section is truncated (fewer than the {length} bytes it claims).");
        table.ReadFrom(data);
        return source;
    }

    private static async ValueTask<int> ReadFullyAsync(Stream source, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = await source.ReadAsync(buffer[total..], cancellationToken).ConfigureAwait(false);
            if (n == 0)
                break;
            total += n;
        }
        return total;
    }

    // The bytes read while looking for the magic, then the rest of the source: what a snapshot
    // without a session section hands the state machine. Read-only; does not own the source.
    private sealed class PrefixedStream(ReadOnlyMemory<byte> prefix, Stream source) : Stream
    {
        private ReadOnlyMemory<byte> _prefix = prefix;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_prefix.IsEmpty)
                return source.Read(buffer);
            var n = Math.Min(buffer.Length, _prefix.Length);
            _prefix.Span[..n].CopyTo(buffer);
            _prefix = _prefix[n..];
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_prefix.IsEmpty)
                return source.ReadAsync(buffer, cancellationToken);
            return ValueTask.FromResult(Read(buffer.Span));
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
