using System.Buffers;
using System.Diagnostics.CodeAnalysis;

namespace Raft;

/// <summary>
/// Encodes <see cref="RaftMessage"/>s into frames of the library's wire format and decodes them
/// again: the same code <see cref="TcpTransport"/> uses, for custom transports (a datagram, a message
/// bus, an RPC stack) that carry bytes. The format is documented in docs/custom-transport.md.
/// </summary>
/// <remarks>
/// <para>A frame is self-delimiting: an 8-byte header (payload length, message type, flags) and the
/// payload, little-endian. One frame per datagram or bus message needs no extra framing; a stream
/// transport reads frames one after another with <see cref="TryReadFrame"/>.</para>
/// <para>Decoding is strict, as the TCP transport's is: a frame over the caller's size limit, an
/// unknown type or flag, a count or length that exceeds the bytes present, or trailing bytes are
/// refused with a reason, and nothing of a refused frame is ever returned. Decoded messages
/// reference nothing in the input: their payloads are copied out (one array per frame).</para>
/// <para>All members are thread-safe (stateless).</para>
/// </remarks>
public static class RaftMessageSerializer
{
    /// <summary>
    /// The version of the wire format these methods read and write; the TCP transport sends it in its
    /// connection preface. Nodes of different format versions cannot exchange messages: a transport
    /// that can meet older nodes should carry this value in its own handshake and refuse a mismatch.
    /// </summary>
    public const int Version = ConnectionPreface.CurrentVersion;

    /// <summary>The size of a frame's fixed header, in bytes (8).</summary>
    public const int HeaderSize = MessageCodec.HeaderSize;

    /// <summary>The frame size limit used when a caller gives none: 16 MiB, as <see cref="TcpTransportOptions.DefaultMaxFrameBytes"/>.</summary>
    public const int DefaultMaxFrameBytes = TcpTransportOptions.DefaultMaxFrameBytes;

    /// <summary>Computes how many bytes <paramref name="message"/> encodes to (header included), without encoding it.</summary>
    /// <param name="message">The message.</param>
    /// <returns>The frame's length in bytes.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// The message is of a type the format does not know (a subclass of <see cref="RaftMessage"/>
    /// outside the library), a list it carries is null, or it breaks a rule the decoder enforces (a
    /// read <see cref="ForwardRequest"/> with commands, an invalid <see cref="ForwardRequest.TraceParent"/>,
    /// a <see cref="ForwardResponse"/> with a negative count or an undefined status).
    /// </exception>
    public static long GetSerializedLength(RaftMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (!MessageCodec.TryGetPayloadLength(message, out var payload))
            throw new ArgumentException($"{message.GetType().Name} is not a message type of the Raft wire format.", nameof(message));
        return HeaderSize + payload;
    }

    /// <summary>Writes <paramref name="message"/> as one frame into <paramref name="writer"/>.</summary>
    /// <param name="message">The message; its buffers are only read.</param>
    /// <param name="writer">Where the frame goes (an <see cref="ArrayBufferWriter{T}"/>, a PipeWriter); flushing is the caller's.</param>
    /// <returns>The number of bytes written (header included).</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">The message cannot be encoded (see <see cref="GetSerializedLength"/>), or it is larger than a frame can be (2 GiB). Nothing was written.</exception>
    public static int Serialize(RaftMessage message, IBufferWriter<byte> writer)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(writer);
        return MessageCodec.Write(writer, message);
    }

    /// <summary>Encodes <paramref name="message"/> as one frame in a new array.</summary>
    /// <param name="message">The message; its buffers are only read.</param>
    /// <returns>The frame.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is null.</exception>
    /// <exception cref="ArgumentException">The message cannot be encoded (see <see cref="GetSerializedLength"/>), or it is larger than a frame can be (2 GiB).</exception>
    public static byte[] Serialize(RaftMessage message)
    {
        var length = GetSerializedLength(message);
        if (length > Array.MaxLength)
            throw new ArgumentException($"{message.GetType().Name} encodes to {length} bytes, more than an array can hold.", nameof(message));
        var writer = new ExactWriter(new byte[length]);
        MessageCodec.Write(writer, message);
        return writer.Array;
    }

    /// <summary>Decodes <paramref name="frame"/>, which must hold exactly one whole frame (a datagram, a bus message).</summary>
    /// <param name="frame">The bytes received.</param>
    /// <param name="maxFrameBytes">The largest payload accepted; a header announcing more is refused before anything is decoded.</param>
    /// <param name="message">The decoded message, referencing nothing in <paramref name="frame"/>; null on failure.</param>
    /// <param name="error">Why the bytes were refused (a sentence for a log line); null on success.</param>
    /// <returns>True when <paramref name="frame"/> is one valid frame.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxFrameBytes"/> is not positive.</exception>
    public static bool TryDeserialize(ReadOnlySequence<byte> frame, int maxFrameBytes, [NotNullWhen(true)] out RaftMessage? message, [NotNullWhen(false)] out string? error)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxFrameBytes);
        message = null;
        try
        {
            var rest = frame;
            if (!MessageCodec.TryReadFrame(ref rest, maxFrameBytes, out var decoded))
            {
                error = frame.Length < HeaderSize
                    ? $"The frame is truncated: {frame.Length} bytes, fewer than the {HeaderSize}-byte header."
                    : $"The frame is truncated: its header announces more payload than the {frame.Length - HeaderSize} bytes that follow it.";
                return false;
            }
            if (!rest.IsEmpty)
            {
                error = $"{rest.Length} bytes follow the {decoded.GetType().Name} frame; one frame was expected.";
                return false;
            }
            message = decoded;
            error = null;
            return true;
        }
        catch (RaftProtocolException ex)
        {
            error = ex.Message;
            return false;
        }
    }

    /// <summary>Decodes <paramref name="frame"/>, which must hold exactly one whole frame (a datagram, a bus message).</summary>
    /// <param name="frame">The bytes received.</param>
    /// <param name="maxFrameBytes">The largest payload accepted; a header announcing more is refused before anything is decoded.</param>
    /// <param name="message">The decoded message, referencing nothing in <paramref name="frame"/>; null on failure.</param>
    /// <param name="error">Why the bytes were refused (a sentence for a log line); null on success.</param>
    /// <returns>True when <paramref name="frame"/> is one valid frame.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxFrameBytes"/> is not positive.</exception>
    public static bool TryDeserialize(ReadOnlyMemory<byte> frame, int maxFrameBytes, [NotNullWhen(true)] out RaftMessage? message, [NotNullWhen(false)] out string? error) =>
        TryDeserialize(new ReadOnlySequence<byte>(frame), maxFrameBytes, out message, out error);

    /// <summary>Decodes <paramref name="frame"/>, which must hold exactly one whole frame, or throws saying why it cannot.</summary>
    /// <param name="frame">The bytes received.</param>
    /// <param name="maxFrameBytes">The largest payload accepted (<see cref="DefaultMaxFrameBytes"/> by default).</param>
    /// <returns>The decoded message, referencing nothing in <paramref name="frame"/>.</returns>
    /// <exception cref="RaftProtocolException">The bytes are not exactly one valid frame (the message says what is wrong).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxFrameBytes"/> is not positive.</exception>
    public static RaftMessage Deserialize(ReadOnlySequence<byte> frame, int maxFrameBytes = DefaultMaxFrameBytes) =>
        TryDeserialize(frame, maxFrameBytes, out var message, out var error) ? message : throw new RaftProtocolException(error);

    /// <summary>
    /// Reads one frame from the front of <paramref name="buffer"/> (a stream transport's receive
    /// buffer) and, when it is complete, decodes it and slices it off <paramref name="buffer"/>.
    /// </summary>
    /// <param name="buffer">The received bytes; on success, what follows the frame; otherwise unchanged.</param>
    /// <param name="maxFrameBytes">The largest payload accepted; a header announcing more is refused at once, before its payload arrives.</param>
    /// <param name="message">The decoded message, referencing nothing in <paramref name="buffer"/>; null when none.</param>
    /// <returns>True when a frame was decoded; false when <paramref name="buffer"/> holds only part of one (read more, call again).</returns>
    /// <exception cref="RaftProtocolException">The bytes are not a valid frame: the stream's framing is lost, so close the connection (and log the message).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxFrameBytes"/> is not positive.</exception>
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, int maxFrameBytes, [NotNullWhen(true)] out RaftMessage? message)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxFrameBytes);
        return MessageCodec.TryReadFrame(ref buffer, maxFrameBytes, out message);
    }

    // Writes into an array of exactly the frame's length (GetSerializedLength), so nothing is copied.
    private sealed class ExactWriter(byte[] array) : IBufferWriter<byte>
    {
        private int _written;

        public byte[] Array { get; } = array;

        public void Advance(int count) => _written += count;

        public Memory<byte> GetMemory(int sizeHint = 0) => Array.AsMemory(_written);

        public Span<byte> GetSpan(int sizeHint = 0) => Array.AsSpan(_written);
    }
}
