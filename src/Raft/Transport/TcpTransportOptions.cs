using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Raft;

/// <summary>Settings of a <see cref="TcpTransport"/>.</summary>
/// <remarks>
/// Every node of a cluster should use the same <see cref="ClusterId"/>, <see cref="ClusterSecret"/>,
/// <see cref="MaxFrameBytes"/> and TLS choice. With neither <see cref="ClusterSecret"/> nor
/// <see cref="NodeIdFromCertificate"/>, peers are not authenticated (see docs/security.md). The transport copies the options when it is created (<see cref="Peers"/> and
/// <see cref="ClusterSecret"/> included; the TLS option objects and callbacks are used as given) and
/// validates the copy (<see cref="Validate"/>): changing them afterwards has no effect. A record with
/// settable properties, so <c>with</c> copies it and configuration binding can set it.
/// </remarks>
public sealed record TcpTransportOptions
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
    public required IPEndPoint ListenEndPoint { get; set; }

    /// <summary>
    /// The other nodes, by id: where to connect to reach them (an <see cref="IPEndPoint"/> or a
    /// <see cref="DnsEndPoint"/>; <see cref="ParseEndPoint"/> reads "host:port"). Only these ids may
    /// connect in. An entry for the local node's own id is allowed and ignored, so every node can
    /// share one map. Ids must be positive. The default is empty; peers can also be changed later
    /// with <see cref="TcpTransport.SetPeer"/> and <see cref="TcpTransport.RemovePeer"/>.
    /// </summary>
    public IReadOnlyDictionary<int, EndPoint> Peers { get; set; } = new Dictionary<int, EndPoint>();

    /// <summary>
    /// A name shared by every node of one cluster, sent in the connection preface; a connection
    /// from another cluster is refused. 1 to 255 UTF-8 bytes, compared ordinally. Required.
    /// </summary>
    public required string ClusterId { get; set; }

    /// <summary>
    /// A secret shared by every node of the cluster: at least 16 bytes, 32 random bytes recommended
    /// (<c>RandomNumberGenerator.GetBytes(32)</c>, kept like a password). When set, both ends of
    /// every connection prove that they hold it with an HMAC-SHA256 challenge-response over the
    /// prefaces (cluster id, both node ids, the lane) and a fresh random nonce from each side, so a
    /// peer without the secret cannot connect and a listener without it cannot pose as a peer. The
    /// secret never crosses the wire; the transport copies it when it is created.
    /// </summary>
    /// <remarks>
    /// <para>Every node must be configured alike: a node with a secret refuses a node without one
    /// (and the other way round), and both log why. The default (null) authenticates nothing:
    /// anyone who can reach the port and knows the cluster id (sent in clear) can speak for any
    /// member.</para>
    /// <para>What it does not do: the secret is shared, so a member can still claim another member's
    /// id (bind ids to certificates with <see cref="NodeIdFromCertificate"/> for that), and it
    /// authenticates the handshake only: without TLS, frames after it are neither encrypted nor
    /// integrity-protected, so an attacker on the network path who can inject into an established
    /// TCP stream can still forge them. Use TLS on networks you do not control (see docs/security.md).</para>
    /// </remarks>
    public byte[]? ClusterSecret { get; set; }

    /// <summary>
    /// The largest frame payload sent or accepted, in bytes. A peer announcing a larger frame is
    /// disconnected before the payload is read; a local message that would encode larger is dropped
    /// (logged) rather than sent, so keep the node's append and snapshot chunk sizes well below it.
    /// Between <see cref="MinMaxFrameBytes"/> and <see cref="MaxMaxFrameBytes"/>. The default is
    /// <see cref="DefaultMaxFrameBytes"/> (16 MiB).
    /// </summary>
    public int MaxFrameBytes { get; set; } = DefaultMaxFrameBytes;

    /// <summary>
    /// How many messages may wait per peer and lane for its connection; <see cref="TcpTransport.Send"/>
    /// drops a message when its queue is full (the leader retries). The default is 1024.
    /// </summary>
    public int SendQueueCapacity { get; set; } = 1024;

    /// <summary>The longest a TCP connect to a peer may take. The default is 5 seconds.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The delay before the first reconnect after a failed connect or a lost connection. Each
    /// consecutive failure doubles it (d), up to <see cref="ReconnectBackoffMax"/>; the actual delay
    /// is drawn uniformly from [max(ReconnectBackoffMin, d/2), d] (jitter), so nodes do not reconnect
    /// in lockstep. The default is 50 milliseconds.
    /// </summary>
    public TimeSpan ReconnectBackoffMin { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <summary>The cap of the reconnect backoff. At least <see cref="ReconnectBackoffMin"/>. The default is 5 seconds.</summary>
    public TimeSpan ReconnectBackoffMax { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The longest the opening of a connection may take once TCP is connected: the TLS handshake
    /// (if any), the preface and its answer. An inbound connection that has not completed them in
    /// time is closed. The default is 5 seconds.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The longest an inbound connection may stall in the middle of a frame: once part of a frame
    /// has arrived, more bytes must follow within this time or the connection is cut. A connection
    /// idle between frames is left open (the sender may have nothing to say). The default is
    /// 30 seconds.
    /// </summary>
    public TimeSpan IdleReadTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The longest <see cref="TcpTransport.StopAsync"/> and <see cref="TcpTransport.DisposeAsync"/>
    /// spend flushing messages already queued before they close connections at once. The default is
    /// 5 seconds.
    /// </summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// TLS settings for inbound connections, or null (the default) for plain TCP. Must be set
    /// together with <see cref="ClientTls"/>; <see cref="CreateMutualTlsPinnedToCa"/> makes both.
    /// </summary>
    /// <remarks>
    /// For mutual authentication set <see cref="SslServerAuthenticationOptions.ClientCertificateRequired"/>
    /// and validate peers against the cluster CA only, with
    /// <see cref="CreatePinnedCaValidationCallback"/>: a callback that accepts
    /// <see cref="SslPolicyErrors.None"/> trusts every certificate the OS trust store trusts. Add
    /// <see cref="NodeIdFromCertificate"/> so a certificate can speak only for its own node.
    /// </remarks>
    public SslServerAuthenticationOptions? ServerTls { get; set; }

    /// <summary>
    /// TLS settings for outbound connections, or null (the default) for plain TCP. Must be set
    /// together with <see cref="ServerTls"/>; <see cref="CreateMutualTlsPinnedToCa"/> makes both.
    /// </summary>
    /// <remarks>
    /// The same instance is used for every peer: set <see cref="SslClientAuthenticationOptions.TargetHost"/>
    /// to a name every node's certificate carries. Add the node's certificate to
    /// <see cref="SslClientAuthenticationOptions.ClientCertificates"/> (or use
    /// <see cref="SslClientAuthenticationOptions.ClientCertificateContext"/>) for mutual
    /// authentication, and validate the listener with <see cref="CreatePinnedCaValidationCallback"/>,
    /// not the OS trust store.
    /// </remarks>
    public SslClientAuthenticationOptions? ClientTls { get; set; }

    /// <summary>
    /// Maps a peer's TLS certificate to the node id it may speak for, or null when it names no
    /// node; requires mutual TLS (<see cref="ServerTls"/> with
    /// <see cref="SslServerAuthenticationOptions.ClientCertificateRequired"/>). The default (null)
    /// binds nothing: any certificate the TLS validation accepts may claim any id.
    /// </summary>
    /// <remarks>
    /// <para>When set, the accepting node checks, after TLS and before it answers the preface, that
    /// the id the connecting node claims is the one its certificate maps to; the connecting node
    /// checks that the listener's certificate maps to the peer it meant to reach. A mismatch (or
    /// null) closes the connection with a logged reason before any frame is read.</para>
    /// <para>A function rather than a thumbprint map, so certificates can be renewed without
    /// reconfiguring every node: derive the id from a name your CA signs, such as
    /// <see cref="NodeIdFromCommonName"/> (CN=node-3 is node 3). The certificate has already passed
    /// TLS validation when this runs; validate against your cluster CA, not the OS trust store
    /// (<see cref="CreatePinnedCaValidationCallback"/>), or anyone with a public certificate named
    /// node-3 could claim node 3. Called on transport threads; it must be thread-safe and must not
    /// throw (an exception refuses the connection).</para>
    /// </remarks>
    public Func<X509Certificate2, int?>? NodeIdFromCertificate { get; set; }

    /// <summary>
    /// The most inbound connections that may be in the handshake (TCP accepted, TLS, prefaces and
    /// proofs not yet complete) at once. Further connections are closed at once, without reading
    /// from them; refusals are logged at most once per 10 seconds. The default is 64.
    /// </summary>
    public int MaxPendingHandshakes { get; set; } = 64;

    /// <summary>
    /// The most inbound connections open at once, in the handshake or established. Further
    /// connections are closed at once (logged at most once per 10 seconds). Each peer keeps at most
    /// one established connection per lane (a newer one replaces it), so a cluster of n nodes needs
    /// 2(n-1). The default is 256.
    /// </summary>
    public int MaxInboundConnections { get; set; } = 256;

    /// <summary>
    /// The most bytes (encoded frame sizes) that may wait per peer and lane for its connection, in
    /// addition to <see cref="SendQueueCapacity"/>: <see cref="TcpTransport.Send"/> drops (and
    /// counts in <see cref="TcpTransport.QueueFullDropCount"/>) a message that would go over it.
    /// At least <see cref="MaxFrameBytes"/> + 8, so any message fits in an empty queue. The default
    /// is 32 MiB.
    /// </summary>
    public long SendQueueMaxBytes { get; set; } = 32L * 1024 * 1024;

    /// <summary>
    /// The longest one flush to a peer may take. A peer that stops reading fills its socket
    /// buffers; after this time the connection is reset (its buffered bytes are discarded), what
    /// was queued is dropped, and the lane reconnects. Allow for a whole <see cref="MaxFrameBytes"/>
    /// frame at the slowest link speed you support. The default is 10 seconds.
    /// </summary>
    public TimeSpan WriteTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The longest an inbound frame may take from its first byte to its last, however steadily the
    /// bytes trickle in (<see cref="IdleReadTimeout"/> only bounds each pause). A frame that takes
    /// longer closes the connection. Allow for a whole <see cref="MaxFrameBytes"/> frame at the
    /// slowest link speed you support. The default is 60 seconds.
    /// </summary>
    public TimeSpan FrameTimeout { get; set; } = TimeSpan.FromSeconds(60);

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
        RequirePositive(WriteTimeout, nameof(WriteTimeout));
        RequirePositive(FrameTimeout, nameof(FrameTimeout));
        if (ClusterSecret is { Length: < PrefaceAuthentication.MinSecretBytes })
            throw new ArgumentException($"ClusterSecret is {ClusterSecret.Length} bytes; at least {PrefaceAuthentication.MinSecretBytes} are required (32 random bytes are recommended).", nameof(ClusterSecret));
        if (MaxPendingHandshakes <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxPendingHandshakes), MaxPendingHandshakes, $"MaxPendingHandshakes ({MaxPendingHandshakes}) must be positive.");
        if (MaxInboundConnections <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaxInboundConnections), MaxInboundConnections, $"MaxInboundConnections ({MaxInboundConnections}) must be positive.");
        if (SendQueueMaxBytes < (long)MaxFrameBytes + MessageCodec.HeaderSize)
            throw new ArgumentOutOfRangeException(nameof(SendQueueMaxBytes), SendQueueMaxBytes, $"SendQueueMaxBytes ({SendQueueMaxBytes}) must be at least MaxFrameBytes ({MaxFrameBytes}) + {MessageCodec.HeaderSize}, so any message fits in an empty queue.");
        if ((ServerTls is null) != (ClientTls is null))
        {
            throw new ArgumentException(
                $"ServerTls ({(ServerTls is null ? "null" : "set")}) and ClientTls ({(ClientTls is null ? "null" : "set")}) must be set together: every node both accepts and opens connections.",
                ServerTls is null ? nameof(ServerTls) : nameof(ClientTls));
        }
        if (ServerTls is not null && ServerTls.ServerCertificate is null && ServerTls.ServerCertificateContext is null && ServerTls.ServerCertificateSelectionCallback is null)
            throw new ArgumentException("ServerTls has no server certificate: set ServerCertificate, ServerCertificateContext or ServerCertificateSelectionCallback.", nameof(ServerTls));
        if (NodeIdFromCertificate is not null && ServerTls is not { ClientCertificateRequired: true })
            throw new ArgumentException("NodeIdFromCertificate needs mutual TLS: set ServerTls and ClientTls, with ServerTls.ClientCertificateRequired = true.", nameof(NodeIdFromCertificate));
    }

    /// <summary>
    /// A <see cref="NodeIdFromCertificate"/> that reads the id from the certificate's subject common
    /// name: "CN=" + <paramref name="prefix"/> + a positive decimal id (with the default prefix,
    /// CN=node-3 is node 3). Any other name maps to no node.
    /// </summary>
    /// <param name="prefix">The text before the id; compared ordinally.</param>
    /// <returns>The mapping function.</returns>
    public static Func<X509Certificate2, int?> NodeIdFromCommonName(string prefix = "node-")
    {
        ArgumentNullException.ThrowIfNull(prefix);
        return certificate =>
        {
            string name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
            return name.StartsWith(prefix, StringComparison.Ordinal)
                && name.Length > prefix.Length
                && name.AsSpan(prefix.Length).IndexOfAnyExceptInRange('0', '9') < 0
                && int.TryParse(name.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int id)
                && id > 0
                    ? id
                    : null;
        };
    }

    /// <summary>
    /// A certificate validation callback that accepts only a certificate chaining to
    /// <paramref name="clusterCa"/>: the OS trust store is ignored (a certificate from a public or
    /// corporate CA is refused), and so is any host name or chain error other than those the custom
    /// chain build reports. Use it for both <see cref="ServerTls"/> and <see cref="ClientTls"/>.
    /// </summary>
    /// <remarks>
    /// The chain is built with <see cref="X509ChainTrustMode.CustomRootTrust"/> and
    /// <paramref name="clusterCa"/> as the only root; intermediates the peer sent are used to build
    /// it. Revocation is not checked (a private cluster CA rarely publishes revocation lists);
    /// to retire a node certificate, issue short-lived ones or rotate the CA. On the connecting side,
    /// a certificate that does not carry <see cref="SslClientAuthenticationOptions.TargetHost"/> is
    /// refused too.
    /// </remarks>
    /// <param name="clusterCa">The cluster's CA certificate (its public part is enough).</param>
    /// <returns>The callback.</returns>
    public static RemoteCertificateValidationCallback CreatePinnedCaValidationCallback(X509Certificate2 clusterCa)
    {
        ArgumentNullException.ThrowIfNull(clusterCa);
        var root = X509CertificateLoader.LoadCertificate(clusterCa.RawData); // Our own copy, public part only.
        return (_, certificate, presented, errors) =>
        {
            if (certificate is null || (errors & (SslPolicyErrors.RemoteCertificateNotAvailable | SslPolicyErrors.RemoteCertificateNameMismatch)) != 0)
                return false;
            using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(root);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            if (presented is not null)
            {
                foreach (var element in presented.ChainElements)
                    chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
            try
            {
                return chain.Build(leaf);
            }
            finally
            {
                foreach (var element in chain.ChainElements)
                    element.Certificate.Dispose();
            }
        };
    }

    /// <summary>
    /// Mutual-TLS settings for <see cref="ServerTls"/> and <see cref="ClientTls"/> that present
    /// <paramref name="nodeCertificate"/> in both roles, require the peer's certificate, and trust
    /// only certificates issued by <paramref name="clusterCa"/> (see <see cref="CreatePinnedCaValidationCallback"/>).
    /// Combine with <see cref="NodeIdFromCertificate"/> so a certificate can speak only for its own node.
    /// </summary>
    /// <param name="clusterCa">The cluster's CA certificate.</param>
    /// <param name="nodeCertificate">This node's certificate, with its private key, issued by the CA for both server and client authentication.</param>
    /// <param name="targetHost">A DNS name every node's certificate carries (checked on the connecting side).</param>
    /// <returns>The server and client settings.</returns>
    public static (SslServerAuthenticationOptions Server, SslClientAuthenticationOptions Client) CreateMutualTlsPinnedToCa(
        X509Certificate2 clusterCa, X509Certificate2 nodeCertificate, string targetHost)
    {
        ArgumentNullException.ThrowIfNull(clusterCa);
        ArgumentNullException.ThrowIfNull(nodeCertificate);
        ArgumentException.ThrowIfNullOrWhiteSpace(targetHost);
        if (!nodeCertificate.HasPrivateKey)
            throw new ArgumentException("The node certificate has no private key; load it from a PFX (or with its key) so it can be presented.", nameof(nodeCertificate));
        var validate = CreatePinnedCaValidationCallback(clusterCa);
        return (
            new SslServerAuthenticationOptions
            {
                ServerCertificate = nodeCertificate,
                ClientCertificateRequired = true,
                RemoteCertificateValidationCallback = validate,
            },
            new SslClientAuthenticationOptions
            {
                TargetHost = targetHost,
                ClientCertificates = new X509CertificateCollection { nodeCertificate },
                RemoteCertificateValidationCallback = validate,
            });
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
