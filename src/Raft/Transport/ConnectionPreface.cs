using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Raft;

/// <summary>Which of the two connections to a peer a connection is.</summary>
internal enum TransportLane : byte
{
    /// <summary>Every message except snapshot chunks: votes, appends, heartbeats and all responses.</summary>
    Messages = 0,

    /// <summary>InstallSnapshot chunks only, so a large chunk never delays a heartbeat.</summary>
    Snapshots = 1,
}

/// <summary>
/// The first bytes on every connection, sent by the connecting node and answered with the same
/// layout by the accepting node (its sender and receiver ids swapped) once it has checked them.
/// </summary>
/// <remarks>
/// <code>
/// offset size  field
///   0     4    magic "RAFT" (0x52 0x41 0x46 0x54)
///   4     2    protocol version (uint16, currently 1)
///   6     1    lane (0 = messages, 1 = snapshot chunks)
///   7     1    reserved, must be 0
///   8     4    sender node id (int32)
///  12     4    receiver node id (int32)
///  16     2    cluster id length n in bytes (uint16, 1..255)
///  18     n    cluster id, UTF-8
/// </code>
/// All integers are little-endian. Frames (see <see cref="MessageCodec"/>) follow the preface.
/// </remarks>
internal readonly record struct ConnectionPreface(ushort Version, TransportLane Lane, int SenderId, int ReceiverId, string ClusterId)
{
    /// <summary>The protocol version this build speaks.</summary>
    public const ushort CurrentVersion = 1;

    /// <summary>The size of the preface before the cluster id.</summary>
    public const int FixedSize = 18;

    /// <summary>The longest cluster id, in UTF-8 bytes.</summary>
    public const int MaxClusterIdBytes = 255;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The magic bytes that open every connection.</summary>
    public static ReadOnlySpan<byte> Magic => "RAFT"u8;

    /// <summary>Encodes the preface.</summary>
    public byte[] ToArray()
    {
        int idLength = StrictUtf8.GetByteCount(ClusterId);
        var bytes = new byte[FixedSize + idLength];
        Magic.CopyTo(bytes);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), Version);
        bytes[6] = (byte)Lane;
        bytes[7] = 0;
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), SenderId);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(12), ReceiverId);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(16), (ushort)idLength);
        StrictUtf8.GetBytes(ClusterId, bytes.AsSpan(FixedSize));
        return bytes;
    }

    /// <summary>The UTF-8 length of <paramref name="clusterId"/>, or -1 when it cannot be encoded.</summary>
    public static int GetClusterIdByteCount(string clusterId)
    {
        try
        {
            return StrictUtf8.GetByteCount(clusterId);
        }
        catch (EncoderFallbackException)
        {
            return -1;
        }
    }

    /// <summary>
    /// Parses a preface from the front of <paramref name="buffer"/>. Bad bytes are rejected as soon
    /// as they arrive (a wrong magic byte fails before the rest is read).
    /// </summary>
    /// <param name="buffer">The received bytes; on success, what follows the preface.</param>
    /// <param name="preface">The parsed preface.</param>
    /// <returns>False when more bytes are needed.</returns>
    /// <exception cref="RaftProtocolException">The bytes are not a preface this build can speak.</exception>
    public static bool TryParse(ref ReadOnlySequence<byte> buffer, out ConnectionPreface preface)
    {
        preface = default;
        Span<byte> head = stackalloc byte[FixedSize];
        int available = (int)Math.Min(buffer.Length, FixedSize);
        buffer.Slice(0, available).CopyTo(head);

        int magicBytes = Math.Min(available, Magic.Length);
        if (!head[..magicBytes].SequenceEqual(Magic[..magicBytes]))
            throw new RaftProtocolException("Connection preface has bad magic bytes (not a Raft peer).");
        if (available < FixedSize)
            return false;

        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(head[4..]);
        if (version != CurrentVersion)
            throw new RaftProtocolException($"Peer speaks protocol version {version}; this node speaks {CurrentVersion}.");
        byte lane = head[6];
        if (lane > (byte)TransportLane.Snapshots)
            throw new RaftProtocolException($"Connection preface names unknown lane {lane}.");
        if (head[7] != 0)
            throw new RaftProtocolException($"Connection preface reserved byte is {head[7]}, not 0.");
        int sender = BinaryPrimitives.ReadInt32LittleEndian(head[8..]);
        int receiver = BinaryPrimitives.ReadInt32LittleEndian(head[12..]);
        int idLength = BinaryPrimitives.ReadUInt16LittleEndian(head[16..]);
        if (idLength is 0 or > MaxClusterIdBytes)
            throw new RaftProtocolException($"Connection preface cluster id length is {idLength}; it must be 1..{MaxClusterIdBytes}.");
        if (buffer.Length < FixedSize + idLength)
            return false;

        Span<byte> id = stackalloc byte[idLength];
        buffer.Slice(FixedSize, idLength).CopyTo(id);
        string clusterId;
        try
        {
            clusterId = StrictUtf8.GetString(id);
        }
        catch (DecoderFallbackException ex)
        {
            throw new RaftProtocolException("Connection preface cluster id is not valid UTF-8.", ex);
        }
        preface = new ConnectionPreface(version, (TransportLane)lane, sender, receiver, clusterId);
        buffer = buffer.Slice(FixedSize + idLength);
        return true;
    }
}
