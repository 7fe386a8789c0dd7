using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;

namespace Raft.Samples.KeyValueStore;

/// <summary>
/// How one node of the key-value service is set up: resolved from configuration (<see cref="KvSettings"/>;
/// the command line, appsettings.json, environment variables), or given to <see cref="KvNode.CreateAsync(KvNodeOptions, CancellationToken)"/>
/// (<see cref="EmbeddedCluster"/>, tests), which writes it as configuration (<see cref="KvSettings.ToConfiguration"/>).
/// </summary>
public sealed class KvNodeOptions
{
    /// <summary>The default <see cref="MaxBodyBytes"/>: 1 MiB.</summary>
    public const int DefaultMaxBodyBytes = 1024 * 1024;

    /// <summary>This node's id; one of <see cref="Members"/> (unless <see cref="Join"/>).</summary>
    public required int Id { get; init; }

    /// <summary>
    /// The bootstrap members' ids, this node included. With <see cref="Join"/>, the members of the
    /// running cluster this node will be added to (only to reach them; the node starts with no
    /// configuration). Once the log holds a configuration, the log wins (docs/membership.md).
    /// </summary>
    public required IReadOnlyList<int> Members { get; init; }

    /// <summary>
    /// Whether the node starts without a configuration, to be added to a running cluster with
    /// <c>POST /cluster/members</c> (<see cref="RaftNodeOptions.Join"/>): it never campaigns until a
    /// configuration lists it, and then follows its log. Keep it set on restarts (the log then holds
    /// the configuration). The default is false.
    /// </summary>
    public bool Join { get; init; }

    /// <summary>
    /// When set, the HTTP address of a member whose address is not in <see cref="HttpPeers"/> is
    /// derived from its Raft address in the cluster configuration: the same host, at its Raft port
    /// plus this offset (the command line's convention when <c>--http-peers</c> is not given). This
    /// is how a node finds the HTTP address of a member added later. The default is null (no derivation).
    /// </summary>
    public int? HttpPortOffset { get; init; }

    /// <summary>Where the Raft transport listens. It needs a port: the other members list it from the start (<see cref="EmbeddedCluster.FreeEndPoints"/> picks free ones).</summary>
    public required IPEndPoint RaftListen { get; init; }

    /// <summary>Where the HTTP API listens: an <see cref="IPEndPoint"/>, or a <see cref="DnsEndPoint"/> named localhost. Port 0 picks a free port (see <see cref="KvNode.HttpUrl"/>).</summary>
    public required EndPoint HttpListen { get; init; }

    /// <summary>The members' Raft addresses (Raft:Members). An entry for this node is the address the bootstrap configuration records for it (the default is <see cref="RaftListen"/>). A peer may be moved after start with <see cref="KvNode.SetPeer"/>.</summary>
    public IReadOnlyDictionary<int, EndPoint> RaftPeers { get; init; } = new Dictionary<int, EndPoint>();

    /// <summary>Every member's HTTP base address, used to forward requests to the leader and to gather the cluster's status. May be completed after start with <see cref="KvNode.SetPeer"/>.</summary>
    public IReadOnlyDictionary<int, Uri> HttpPeers { get; init; } = new Dictionary<int, Uri>();

    /// <summary>The node's directory: the log goes to <c>log/</c>, snapshots to <c>snapshots/</c>.</summary>
    public required string DataDirectory { get; init; }

    /// <summary>The name every node of the cluster shares (checked when nodes connect). The default is "raft-kv-sample".</summary>
    public string ClusterId { get; init; } = "raft-kv-sample";

    /// <summary>How many applied commands between snapshots. The default is the library's, <see cref="Raft.RaftNodeOptions.SnapshotInterval"/> (16,384).</summary>
    public long SnapshotInterval { get; init; } = 16_384;

    /// <summary>
    /// How many entries before a snapshot stay in the log. The default is the library's,
    /// <see cref="Raft.RaftNodeOptions.SnapshotTrailingEntries"/> (10,240): a follower that lags under
    /// load catches up from the log, never through a snapshot (which would leave its forwarded writes
    /// without results).
    /// </summary>
    public long SnapshotTrailingEntries { get; init; } = 10_240;

    /// <summary>The longest a write waits to be committed and applied (then 504, outcome unknown), or a read waits for its barrier (then 503). The default is 5 s.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How many entries a learner may lag behind the leader's last index and still be promoted to voter (<see cref="RaftNodeOptions.MaxPromotionLag"/>; a promotion of one further behind is 409). The default is 1,000.</summary>
    public long MaxPromotionLag { get; init; } = 1000;

    /// <summary>The largest request body accepted (413 above). The default is <see cref="DefaultMaxBodyBytes"/>.</summary>
    public int MaxBodyBytes { get; init; } = DefaultMaxBodyBytes;

    /// <summary>How a follower hands requests to the leader. The default is <see cref="ForwardMode.Raft"/>.</summary>
    public ForwardMode Forward { get; init; } = ForwardMode.Raft;

    /// <summary>The least severe log level written to the console. The default is Information.</summary>
    public LogLevel MinimumLogLevel { get; init; } = LogLevel.Information;

    /// <summary>The shortest <see cref="ClusterSecret"/> accepted, in bytes: 16.</summary>
    public const int MinClusterSecretBytes = 16;

    /// <summary>The length of a generated secret (<see cref="EmbeddedCluster"/>), in bytes: 32.</summary>
    public const int GeneratedClusterSecretBytes = 32;

    /// <summary>
    /// The secret every node of the cluster shares; the Raft transport admits only peers that prove
    /// they hold it (<see cref="TcpTransportOptions.ClusterSecret"/>). At least
    /// <see cref="MinClusterSecretBytes"/> bytes. Required unless <see cref="Insecure"/>.
    /// </summary>
    public byte[]? ClusterSecret { get; init; }

    /// <summary>
    /// Whether the node may run without <see cref="ClusterSecret"/>: its Raft port then admits anyone
    /// who can reach it and knows the cluster id (a loud warning is logged). The default is false.
    /// </summary>
    public bool Insecure { get; init; }

    /// <summary>
    /// Host names (the <c>Host</c> header, without the port) the HTTP API answers to besides the
    /// defaults: the loopback names (<c>localhost</c>, <c>127.0.0.1</c>, <c>[::1]</c>), the host of
    /// <see cref="HttpListen"/> (unless a wildcard address), and this node's host in
    /// <see cref="RaftPeers"/> and <see cref="HttpPeers"/> (the addresses the other members use).
    /// Any other host is refused with 421, which stops DNS-rebinding pages. <c>*</c> allows any host.
    /// The default is empty.
    /// </summary>
    public IReadOnlyList<string> AllowedHosts { get; init; } = [];

    /// <summary>
    /// Origins (<c>scheme://host[:port]</c>) allowed to send state-changing requests (PUT, POST,
    /// DELETE...) besides the node's own origin; a request whose <c>Origin</c> header names another
    /// origin is refused with 403 (cross-site request forgery). Requests without <c>Origin</c> (curl,
    /// other programs) are not affected. <c>*</c> allows any origin. The default is empty.
    /// </summary>
    public IReadOnlyList<string> AllowedOrigins { get; init; } = [];
}

/// <summary>How a follower hands a request to the leader.</summary>
public enum ForwardMode
{
    /// <summary>
    /// Through the Raft library (<see cref="RaftNodeOptions.ForwardToLeader"/>): the follower's
    /// <see cref="RaftNode"/> sends the command, or asks for a read index, over the Raft transport,
    /// batched with its other requests; the follower answers the client from its own state machine
    /// once it has applied the command (or the read index).
    /// </summary>
    Raft,

    /// <summary>Over HTTP: the follower sends the request to the leader's HTTP address and relays the answer.</summary>
    Http,
}

/// <summary>
/// The members' HTTP addresses, as one node knows them: given (<see cref="KvNodeOptions.HttpPeers"/>,
/// <see cref="KvNode.SetPeer"/>) or, for a member added later, derived from its Raft address in the
/// configuration with <see cref="KvNodeOptions.HttpPortOffset"/>. Thread-safe.
/// </summary>
public sealed class ClusterDirectory
{
    private readonly ConcurrentDictionary<int, Uri> _httpUrls = new();
    private readonly int? _httpPortOffset;
    private Func<ClusterConfiguration> _configuration = static () => ClusterConfiguration.Empty;

    /// <summary>Creates the directory.</summary>
    /// <param name="members">The bootstrap members (listed until the node knows a configuration).</param>
    /// <param name="httpUrls">The HTTP addresses given.</param>
    /// <param name="httpPortOffset">See <see cref="KvNodeOptions.HttpPortOffset"/>.</param>
    public ClusterDirectory(IEnumerable<int> members, IEnumerable<KeyValuePair<int, Uri>> httpUrls, int? httpPortOffset = null)
    {
        BootstrapMembers = [.. members.Order()];
        _httpPortOffset = httpPortOffset;
        foreach (var (id, url) in httpUrls)
            Set(id, url);
    }

    /// <summary>The members given at start, ascending.</summary>
    public IReadOnlyList<int> BootstrapMembers { get; }

    /// <summary>Every member's id, ascending: those of the configuration in force (both halves of a joint one), or, while the node knows none, the bootstrap members.</summary>
    public IReadOnlyList<int> Members
    {
        get
        {
            var configuration = _configuration();
            return configuration.IsEmpty ? BootstrapMembers : [.. configuration.AllIds.Order()];
        }
    }

    /// <summary>Where the configuration in force comes from (the node's <see cref="RaftNode.Configuration"/>).</summary>
    internal void Follow(Func<ClusterConfiguration> configuration) => _configuration = configuration;

    /// <summary>Sets a node's HTTP base address.</summary>
    public void Set(int id, Uri httpUrl)
    {
        ArgumentNullException.ThrowIfNull(httpUrl);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(id);
        _httpUrls[id] = httpUrl;
    }

    /// <summary>Gets a node's HTTP base address only when it was given (not derived).</summary>
    internal bool TryGetGiven(int id, out Uri? httpUrl) => _httpUrls.TryGetValue(id, out httpUrl);

    /// <summary>Gets a node's HTTP base address: the one given, else one derived from its Raft address in the configuration (when <see cref="KvNodeOptions.HttpPortOffset"/> is set).</summary>
    public bool TryGet(int id, out Uri? httpUrl)
    {
        if (_httpUrls.TryGetValue(id, out httpUrl))
            return true;
        httpUrl = Derive(_configuration().Find(id)?.Address);
        return httpUrl is not null;
    }

    private Uri? Derive(string? raftAddress)
    {
        if (_httpPortOffset is not { } offset || raftAddress is null)
            return null;
        EndPoint endPoint;
        try
        {
            endPoint = TcpTransportOptions.ParseEndPoint(raftAddress);
        }
        catch (Exception ex) when (ex is FormatException or ArgumentException)
        {
            return null;
        }
        return endPoint switch
        {
            IPEndPoint ip when ip.Port + offset is >= 1 and <= IPEndPoint.MaxPort => ToHttpUrl(new IPEndPoint(ip.Address, ip.Port + offset)),
            DnsEndPoint dns when dns.Port + offset is >= 1 and <= IPEndPoint.MaxPort => ToHttpUrl(new DnsEndPoint(dns.Host, dns.Port + offset)),
            _ => null,
        };
    }

    /// <summary>Formats an endpoint as the "host:port" address the Raft transport and the cluster configuration use.</summary>
    public static string ToRaftAddress(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ip.ToString(),
        DnsEndPoint dns => string.Create(CultureInfo.InvariantCulture, $"{dns.Host}:{dns.Port}"),
        _ => throw new ArgumentException($"Cannot make a Raft address of {endPoint}.", nameof(endPoint)),
    };

    /// <summary>Formats a base address for an endpoint: <c>http://host:port/</c>, with IPv6 in brackets and "any" addresses shown as loopback.</summary>
    public static Uri ToHttpUrl(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => new Uri(string.Create(CultureInfo.InvariantCulture, $"http://{new IPEndPoint(Displayable(ip.Address), ip.Port)}/")),
        DnsEndPoint dns => new Uri(string.Create(CultureInfo.InvariantCulture, $"http://{dns.Host}:{dns.Port}/")),
        _ => throw new ArgumentException($"Cannot make an HTTP address of {endPoint}.", nameof(endPoint)),
    };

    private static IPAddress Displayable(IPAddress address) =>
        address.Equals(IPAddress.Any) ? IPAddress.Loopback : address.Equals(IPAddress.IPv6Any) ? IPAddress.IPv6Loopback : address;
}
