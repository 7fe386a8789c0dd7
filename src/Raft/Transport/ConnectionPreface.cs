using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
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
///   4     2    protocol version (uint16, currently 2)
///   6     1    lane (0 = messages, 1 = snapshot chunks)
///   7     1    flags: bit 0 = the sender authenticates with the cluster secret; other bits 0
///   8     4    sender node id (int32)
///  12     4    receiver node id (int32)
///  16     2    cluster id length n in bytes (uint16, 1..255)
///  18     n    cluster id, UTF-8
/// </code>
/// All integers are little-endian. With the authenticated flag, the handshake continues as
/// <see cref="PrefaceAuthentication"/> describes; then frames (see <see cref="MessageCodec"/>) follow.
/// </remarks>
internal readonly record struct ConnectionPreface(ushort Version, TransportLane Lane, int SenderId, int ReceiverId, string ClusterId, bool Authenticated = false)
{
    /// <summary>The protocol version this build speaks (2: flags byte and the secret handshake; 3: configurations in InstallSnapshot, session kinds and trace context in ForwardRequest).</summary>
    public const ushort CurrentVersion = 3;

    /// <summary>The flag bit (byte 7) saying the sender authenticates with the cluster secret.</summary>
    public const byte AuthenticatedFlag = 0x01;

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
        bytes[7] = Authenticated ? AuthenticatedFlag : (byte)0;
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
        if ((head[7] & ~AuthenticatedFlag) != 0)
            throw new RaftProtocolException($"Connection preface flags are 0x{head[7]:X2}; only 0x{AuthenticatedFlag:X2} (authenticated) is defined.");
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
        preface = new ConnectionPreface(version, (TransportLane)lane, sender, receiver, clusterId, (head[7] & AuthenticatedFlag) != 0);
        buffer = buffer.Slice(FixedSize + idLength);
        return true;
    }
}

/// <summary>
/// The shared-secret challenge-response that follows the prefaces when both ends have a
/// <see cref="TcpTransportOptions.ClusterSecret"/>.
/// </summary>
/// <remarks>
/// <code>
/// connector -> acceptor   preface C (authenticated flag) + nonce C (32 random bytes)
/// acceptor  -> connector  preface A (authenticated flag) + nonce A (32 random bytes)
///                         + HMAC-SHA256(secret, "RAFT/2 acceptor"  || C || nonce C || A || nonce A)
/// connector -> acceptor   HMAC-SHA256(secret, "RAFT/2 connector" || C || nonce C || A || nonce A)
/// </code>
/// C and A are the encoded prefaces, so each MAC binds the protocol version, the lane, the cluster
/// id, both node ids and both nonces. The role label keeps one side's proof from being reflected
/// back as the other's; the fresh nonces keep an old proof from being replayed. Each side checks
/// the other's MAC with <see cref="CryptographicOperations.FixedTimeEquals"/>; the connector checks
/// the acceptor's before it proves anything itself, so it never talks to an impostor listener.
/// </remarks>
internal static class PrefaceAuthentication
{
    /// <summary>The size of each side's nonce.</summary>
    public const int NonceSize = 32;

    /// <summary>The size of a proof (HMAC-SHA256).</summary>
    public const int MacSize = 32;

    /// <summary>The shortest secret accepted.</summary>
    public const int MinSecretBytes = 16;

    private static ReadOnlySpan<byte> AcceptorLabel => "RAFT/2 acceptor"u8;

    private static ReadOnlySpan<byte> ConnectorLabel => "RAFT/2 connector"u8;

    /// <summary>A fresh random nonce.</summary>
    public static byte[] NewNonce() => RandomNumberGenerator.GetBytes(NonceSize);

    /// <summary>The proof one side sends: an HMAC of the role label and the whole handshake so far.</summary>
    /// <param name="secret">The cluster secret.</param>
    /// <param name="byAcceptor">True for the accepting node's proof, false for the connecting node's.</param>
    /// <param name="connectorPreface">The connecting node's encoded preface.</param>
    /// <param name="connectorNonce">The connecting node's nonce.</param>
    /// <param name="acceptorPreface">The accepting node's encoded preface.</param>
    /// <param name="acceptorNonce">The accepting node's nonce.</param>
    public static byte[] ComputeProof(
        byte[] secret, bool byAcceptor, ReadOnlySpan<byte> connectorPreface, ReadOnlySpan<byte> connectorNonce,
        ReadOnlySpan<byte> acceptorPreface, ReadOnlySpan<byte> acceptorNonce)
    {
        var label = byAcceptor ? AcceptorLabel : ConnectorLabel;
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, secret);
        hmac.AppendData(label);
        hmac.AppendData(connectorPreface);
        hmac.AppendData(connectorNonce);
        hmac.AppendData(acceptorPreface);
        hmac.AppendData(acceptorNonce);
        return hmac.GetHashAndReset();
    }

    /// <summary>Checks a received proof in constant time.</summary>
    public static bool Verify(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> received) =>
        CryptographicOperations.FixedTimeEquals(expected, received);

    /// <summary>The log reason for a preface whose authentication flag differs from this node's setting.</summary>
    /// <param name="localHasSecret">Whether this node has a <see cref="TcpTransportOptions.ClusterSecret"/>.</param>
    /// <param name="peer">The peer's description, such as "node 2".</param>
    public static string Mismatch(bool localHasSecret, string peer) => localHasSecret
        ? $"{peer} does not authenticate (it has no ClusterSecret) but this node requires the cluster secret; configure the same ClusterSecret on every node"
        : $"{peer} authenticates with a ClusterSecret but this node has none; configure the same ClusterSecret on every node";
}
