using System.Globalization;
using System.Net;
using System.Net.Security;
using Microsoft.Extensions.Logging;

namespace Raft;

/// <summary>Settings of a <see cref="TcpTransport"/>.</summary>
/// <remarks>
/// Every node of a cluster should use the same <see cref="ClusterId"/>, <see cref="MaxFrameBytes"/>
/// and TLS choice. The options are read once, when the transport is created; <see cref="Validate"/>
/// runs then.
/// </remarks>
public sealed class TcpTransportOptions
{
    /// <summary>The default of <see cref="MaxFrameBytes"/>: 16 MiB.</summary>
    public const int DefaultMaxFrameBytes = 16 * 1024 * 1024;

    /// <summary>The smallest accepted <see cref="MaxFrameBytes"/>: 4 KiB.</summary>
    public const int MinMaxFrameBytes = 4 * 1024;

    /// <summary>The largest accepted <see cref="MaxFrameBytes"/>: 1 GiB.</summary>
    public const int MaxMaxFrameBytes = 1024 * 1024 * 1024;

    /// <summary>
    /// The address and port to accept peers on. Port 0 picks a free port; read the bound one back
    /// from <see cref="TcpTransport.LocalEndPoint"/>. Required.
    /// </summary>
    public required IPEndPoint ListenEndPoint { get; init; }

    /// <summary>
    /// The other nodes, by id: where to connect to reach them (an <see cref="IPEndPoint"/> or a
    /// <see cref="DnsEndPoint"/>; <see cref="ParseEndPoint"/> reads "host:port"). Only these ids may
    /// connect in. An entry for the local node's own id is allowed and ignored, so every node can
    /// share one map. Ids must be positive. The default is empty; peers can also be changed later
    /// with <see cref="TcpTransport.SetPeer"/> and <see cref="TcpTransport.RemovePeer"/>.
    /// </summary>
    public IReadOnlyDictionary<int, EndPoint> Peers { get; init; } = new Dictionary<int, EndPoint>();

    /// <summary>
    /// A name shared by every node of one cluster, sent in the connection preface; a connection
    /// from another cluster is refused. 1 to 255 UTF-8 bytes, compared ordinally. Required.
    /// </summary>
    public required string ClusterId { get; init; }

    /// <summary>
    /// A secret shared by every node of the cluster (at least 16 bytes; 32 random bytes are
    /// recommended). When set, both ends of every connection prove that they hold it with an
    /// HMAC-SHA256 challenge-response bound to the preface (cluster id and both node ids), so a
    /// peer without the secret cannot connect, nor claim another node's id. The secret itself never
    /// crosses the wire. The default (null) authenticates nothing: anyone who can reach the port and
    /// knows the cluster id can speak for any member. Use this, mutual TLS with
    /// the node id bound to the peer certificate, or both.
    /// </summary>
    public byte[]? ClusterSecret { get; init; }

    /// <summary>
    /// The largest frame payload sent or accepted, in bytes. A peer announcing a larger frame is
    /// disconnected before the payload is read; a local message that would encode larger is dropped
    /// (logged) rather than sent, so keep the node's append and snapshot chunk sizes well below it.
    /// Between <see cref="MinMaxFrameBytes"/> and <see cref="MaxMaxFrameBytes"/>. The default is
    /// <see cref="DefaultMaxFrameBytes"/> (16 MiB).
    /// </summary>
    public int MaxFrameBytes { get; init; } = DefaultMaxFrameBytes;

    /// <summary>
    /// How many messages may wait per peer and lane for its connection; <see cref="TcpTransport.Send"/>
    /// drops a message when its queue is full (the leader retries). The default is 1024.
    /// </summary>
    public int SendQueueCapacity { get; init; } = 1024;

    /// <summary>The longest a TCP connect to a peer may take. The default is 5 seconds.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The delay before the first reconnect after a failed connect or a lost connection. Each
    /// consecutive failure doubles it (d), up to <see cref="ReconnectBackoffMax"/>; the actual delay
    /// is drawn uniformly from [max(ReconnectBackoffMin, d/2), d] (jitter), so nodes do not reconnect
    /// in lockstep. The default is 50 milliseconds.
    /// </summary>
    public TimeSpan ReconnectBackoffMin { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>The cap of the reconnect backoff. At least <see cref="ReconnectBackoffMin"/>. The default is 5 seconds.</summary>
    public TimeSpan ReconnectBackoffMax { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The source of the reconnect jitter. The default (null) is <see cref="System.Random.Shared"/>;
    /// pass a seeded instance for reproducible delays. The transport serializes its calls to it.
    /// </summary>
    public Random? Random { get; init; }

    /// <summary>
    /// The longest the opening of a connection may take once TCP is connected: the TLS handshake
    /// (if any), the preface and its answer. An inbound connection that has not completed them in
    /// time is closed. The default is 5 seconds.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The longest an inbound connection may stall in the middle of a frame: once part of a frame
    /// has arrived, more bytes must follow within this time or the connection is cut. A connection
    /// idle between frames is left open (the sender may have nothing to say). The default is
    /// 30 seconds.
    /// </summary>
    public TimeSpan IdleReadTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The longest <see cref="TcpTransport.StopAsync"/> and <see cref="TcpTransport.DisposeAsync"/>
    /// spend flushing messages already queued before they close connections at once. The default is
    /// 5 seconds.
    /// </summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// TLS settings for inbound connections, or null (the default) for plain TCP. Set
    /// <see cref="SslServerAuthenticationOptions.ClientCertificateRequired"/> (and validate the
    /// certificate in <see cref="SslServerAuthenticationOptions.RemoteCertificateValidationCallback"/>)
    /// for mutual authentication. Must be set together with <see cref="ClientTls"/>.
    /// </summary>
    public SslServerAuthenticationOptions? ServerTls { get; init; }

    /// <summary>
    /// TLS settings for outbound connections, or null (the default) for plain TCP. The same instance
    /// is used for every peer: set <see cref="SslClientAuthenticationOptions.TargetHost"/> to a name
    /// every node's certificate carries, or check names in
    /// <see cref="SslClientAuthenticationOptions.RemoteCertificateValidationCallback"/>. Add the
    /// node's certificate to <see cref="SslClientAuthenticationOptions.ClientCertificates"/> (or
    /// use <see cref="SslClientAuthenticationOptions.ClientCertificateContext"/>) for mutual
    /// authentication. Must be set together with <see cref="ServerTls"/>.
    /// </summary>
    public SslClientAuthenticationOptions? ClientTls { get; init; }

    /// <summary>Where the transport logs (event ids 3000-3099). The default (null) logs nothing.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>Checks the settings and throws, naming the values, when they cannot work.</summary>
    /// <exception cref="ArgumentException">A setting is invalid.</exception>
    public void Validate()
    {
        if (ListenEndPoint is null)
            throw new ArgumentException("ListenEndPoint is required.", nameof(ListenEndPoint));
        if (Peers is null)
            throw new ArgumentException("Peers must not be null; use an empty map for a single node.", nameof(Peers));
        foreach (var (id, endPoint) in Peers)
            ValidatePeer(id, endPoint, nameof(Peers));
        if (string.IsNullOrEmpty(ClusterId))
            throw new ArgumentException("ClusterId is required: every node of one cluster sets the same non-empty name.", nameof(ClusterId));
        int idBytes = ConnectionPreface.GetClusterIdByteCount(ClusterId);
        if (idBytes is < 1 or > ConnectionPreface.MaxClusterIdBytes)
        {
            throw new ArgumentException(
                idBytes < 0
                    ? "ClusterId is not valid UTF-16 text and cannot be encoded as UTF-8."
                    : $"ClusterId '{ClusterId}' is {idBytes} UTF-8 bytes; at most {ConnectionPreface.MaxClusterIdBytes} are allowed.",
                nameof(ClusterId));
        }
        if (MaxFrameBytes is < MinMaxFrameBytes or > MaxMaxFrameBytes)
            throw new ArgumentOutOfRangeException(nameof(MaxFrameBytes), MaxFrameBytes, $"MaxFrameBytes ({MaxFrameBytes}) must be between {MinMaxFrameBytes} and {MaxMaxFrameBytes}.");
        if (SendQueueCapacity <= 0)
            throw new ArgumentOutOfRangeException(nameof(SendQueueCapacity), SendQueueCapacity, $"SendQueueCapacity ({SendQueueCapacity}) must be positive.");
        RequirePositive(ConnectTimeout, nameof(ConnectTimeout));
        RequirePositive(ReconnectBackoffMin, nameof(ReconnectBackoffMin));
        RequirePositive(ReconnectBackoffMax, nameof(ReconnectBackoffMax));
        if (ReconnectBackoffMax < ReconnectBackoffMin)
            throw new ArgumentException($"ReconnectBackoffMax ({ReconnectBackoffMax}) must be at least ReconnectBackoffMin ({ReconnectBackoffMin}).", nameof(ReconnectBackoffMax));
        RequirePositive(HandshakeTimeout, nameof(HandshakeTimeout));
        RequirePositive(IdleReadTimeout, nameof(IdleReadTimeout));
        RequirePositive(ShutdownTimeout, nameof(ShutdownTimeout));
        if ((ServerTls is null) != (ClientTls is null))
        {
            throw new ArgumentException(
                $"ServerTls ({(ServerTls is null ? "null" : "set")}) and ClientTls ({(ClientTls is null ? "null" : "set")}) must be set together: every node both accepts and opens connections.",
                ServerTls is null ? nameof(ServerTls) : nameof(ClientTls));
        }
        if (ServerTls is not null && ServerTls.ServerCertificate is null && ServerTls.ServerCertificateContext is null && ServerTls.ServerCertificateSelectionCallback is null)
            throw new ArgumentException("ServerTls has no server certificate: set ServerCertificate, ServerCertificateContext or ServerCertificateSelectionCallback.", nameof(ServerTls));
    }

    /// <summary>
    /// Reads "host:port" (an IPv4 address, a bracketed IPv6 address such as "[::1]:7000", or a DNS
    /// name) into an <see cref="EndPoint"/> for <see cref="Peers"/>.
    /// </summary>
    /// <param name="hostAndPort">The address, such as "10.0.0.5:7000" or "node-2.raft.internal:7000".</param>
    /// <returns>An <see cref="IPEndPoint"/> for an address, otherwise a <see cref="DnsEndPoint"/>.</returns>
    /// <exception cref="FormatException"><paramref name="hostAndPort"/> is not host:port with a port in 1..65535.</exception>
    public static EndPoint ParseEndPoint(string hostAndPort)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(hostAndPort);
        if (IPEndPoint.TryParse(hostAndPort, out var ip) && ip.Port != 0 && (hostAndPort.Contains(']', StringComparison.Ordinal) || hostAndPort.Count(c => c == ':') == 1))
            return ip;
        int colon = hostAndPort.LastIndexOf(':');
        if (colon <= 0 || colon == hostAndPort.Length - 1
            || !int.TryParse(hostAndPort.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port)
            || port is < 1 or > IPEndPoint.MaxPort)
        {
            throw new FormatException($"'{hostAndPort}' is not host:port with a port between 1 and {IPEndPoint.MaxPort}.");
        }
        string host = hostAndPort[..colon];
        if (host.Contains(':', StringComparison.Ordinal) || host.Contains('[', StringComparison.Ordinal))
            throw new FormatException($"'{hostAndPort}' is not host:port; write IPv6 addresses in brackets, as in [::1]:7000.");
        return new DnsEndPoint(host, port);
    }

    internal static void ValidatePeer(int id, EndPoint? endPoint, string paramName)
    {
        if (id <= 0)
            throw new ArgumentException($"Peer id {id} is not positive; node ids must be positive.", paramName);
        switch (endPoint)
        {
            case IPEndPoint { Port: > 0 }:
            case DnsEndPoint { Port: > 0 }:
                break;
            case null:
                throw new ArgumentException($"Peer {id} has no endpoint.", paramName);
            default:
                throw new ArgumentException($"Peer {id} has endpoint {endPoint}; it must be an IPEndPoint or DnsEndPoint with a port between 1 and {IPEndPoint.MaxPort}.", paramName);
        }
    }

    private static void RequirePositive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero || value.TotalMilliseconds > int.MaxValue)
            throw new ArgumentOutOfRangeException(name, value, $"{name} ({value}) must be positive and at most {TimeSpan.FromMilliseconds(int.MaxValue)}.");
    }
}
