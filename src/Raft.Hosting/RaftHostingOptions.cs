using System.Net;
using Microsoft.Extensions.Logging;

namespace Raft.Hosting;

/// <summary>
/// The settings of a Raft node run by the generic host (<see cref="RaftServiceCollectionExtensions.AddRaftNode{TStateMachine}(Microsoft.Extensions.DependencyInjection.IServiceCollection, Microsoft.Extensions.Configuration.IConfiguration)"/>):
/// settings only, bindable from configuration. Services (the clock, logging, metrics) come from
/// dependency injection. Checked when the host starts (<see cref="RaftHostingOptionsValidator"/>).
/// </summary>
/// <remarks>
/// The timing, batching and snapshot settings mirror <see cref="RaftNodeOptions"/> and have its
/// defaults. In configuration, write durations as "00:00:00.300" (TimeSpan format).
/// </remarks>
public sealed class RaftHostingOptions
{
    /// <summary>The section name the samples and docs use: "Raft".</summary>
    public const string DefaultSectionName = "Raft";

    /// <summary>The shortest cluster secret accepted, in bytes (decoded): 16.</summary>
    public const int MinClusterSecretBytes = 16;

    private static readonly RaftNodeOptions Defaults = new() { NodeId = 1, Members = [1] };

    /// <summary>This node's id: positive, and a key of <see cref="Members"/> (unless <see cref="Join"/> is set). Required.</summary>
    public int NodeId { get; set; }

    /// <summary>
    /// Every member of the cluster, this node included, by id: its Raft address as "host:port"
    /// (an IPv4 address, a bracketed IPv6 address such as "[::1]:7001", or a DNS name). The one
    /// place for members and their addresses: the node's own entry is where it listens (unless
    /// <see cref="ListenAddress"/> is set), the others are where it connects. Required.
    /// </summary>
    /// <remarks>In JSON: <c>"Members": { "1": "127.0.0.1:7001", "2": "127.0.0.1:7002" }</c>.</remarks>
    public Dictionary<int, string> Members { get; set; } = [];

    /// <summary>
    /// Whether this node joins a running cluster instead of bootstrapping one
    /// (<see cref="RaftNodeOptions.Join"/>): it starts with no configuration, never campaigns, and
    /// waits until the leader adds it (<see cref="RaftNode.ChangeMembershipAsync"/>, as a learner
    /// first); <see cref="Members"/> then lists the running cluster's members, where this node reaches
    /// them, and need not list this node (set <see cref="ListenAddress"/>). Keep it set on restarts:
    /// the configuration in the node's log wins. The default is false.
    /// </summary>
    public bool Join { get; set; }

    /// <inheritdoc cref="RaftNodeOptions.MaxPromotionLag"/>
    public long MaxPromotionLag { get; set; } = Defaults.MaxPromotionLag;

    /// <summary>
    /// Where this node accepts peers, as "ip:port" (an IP address, for example "0.0.0.0:7001"
    /// behind NAT or in a container). The default (null) listens on this node's own entry in
    /// <see cref="Members"/>, which must then be an IP address.
    /// </summary>
    public string? ListenAddress { get; set; }

    /// <summary>A name shared by every node of the cluster (1 to 255 UTF-8 bytes); a connection from another cluster is refused. Required.</summary>
    public string? ClusterId { get; set; }

    /// <summary>
    /// The cluster secret in base64 (at least <see cref="MinClusterSecretBytes"/> bytes decoded,
    /// the same on every node; make one with <c>head -c 32 /dev/urandom | base64</c>). Peers prove
    /// they hold it on every connection (<see cref="TcpTransportOptions.ClusterSecret"/>). Set this
    /// or <see cref="ClusterSecretFile"/>; one of them is required unless <see cref="Insecure"/>.
    /// </summary>
    public string? ClusterSecret { get; set; }

    /// <summary>The path of a file holding the cluster secret in base64 (surrounding white space ignored). An alternative to <see cref="ClusterSecret"/> that keeps the secret out of configuration files.</summary>
    public string? ClusterSecretFile { get; set; }

    /// <summary>
    /// Whether the node may run without a cluster secret: its Raft port then admits anyone who can
    /// reach it and knows the cluster id. For a laptop or a closed test network only. The default is false.
    /// </summary>
    public bool Insecure { get; set; }

    /// <summary>The directory of the node's durable state (the log in "log", snapshots in "snapshots"); created if missing. One directory per node. Required.</summary>
    public string? DataDirectory { get; set; }

    /// <inheritdoc cref="RaftNodeOptions.TickInterval"/>
    public TimeSpan TickInterval { get; set; } = Defaults.TickInterval;

    /// <inheritdoc cref="RaftNodeOptions.HeartbeatInterval"/>
    public TimeSpan HeartbeatInterval { get; set; } = Defaults.HeartbeatInterval;

    /// <inheritdoc cref="RaftNodeOptions.ElectionTimeoutMin"/>
    public TimeSpan ElectionTimeoutMin { get; set; } = Defaults.ElectionTimeoutMin;

    /// <inheritdoc cref="RaftNodeOptions.ElectionTimeoutMax"/>
    public TimeSpan ElectionTimeoutMax { get; set; } = Defaults.ElectionTimeoutMax;

    /// <inheritdoc cref="RaftNodeOptions.MaxInflightAppends"/>
    public int MaxInflightAppends { get; set; } = Defaults.MaxInflightAppends;

    /// <inheritdoc cref="RaftNodeOptions.MaxAppendBytes"/>
    public long MaxAppendBytes { get; set; } = Defaults.MaxAppendBytes;

    /// <inheritdoc cref="RaftNodeOptions.MaxUncommittedEntries"/>
    public int MaxUncommittedEntries { get; set; } = Defaults.MaxUncommittedEntries;

    /// <inheritdoc cref="RaftNodeOptions.SnapshotInterval"/>
    public long SnapshotInterval { get; set; } = Defaults.SnapshotInterval;

    /// <inheritdoc cref="RaftNodeOptions.SnapshotTrailingEntries"/>
    public long SnapshotTrailingEntries { get; set; } = Defaults.SnapshotTrailingEntries;

    /// <inheritdoc cref="RaftNodeOptions.MaxSnapshotChunkBytes"/>
    public int MaxSnapshotChunkBytes { get; set; } = Defaults.MaxSnapshotChunkBytes;

    /// <inheritdoc cref="RaftNodeOptions.PreVote"/>
    public bool PreVote { get; set; } = Defaults.PreVote;

    /// <inheritdoc cref="RaftNodeOptions.CheckQuorum"/>
    public bool CheckQuorum { get; set; } = Defaults.CheckQuorum;

    /// <inheritdoc cref="RaftNodeOptions.ForwardToLeader"/>
    public bool ForwardToLeader { get; set; } = Defaults.ForwardToLeader;

    /// <inheritdoc cref="RaftNodeOptions.ForwardTimeout"/>
    public TimeSpan ForwardTimeout { get; set; } = Defaults.ForwardTimeout;

    /// <inheritdoc cref="RaftNodeOptions.ProposalTimeout"/>
    public TimeSpan ProposalTimeout { get; set; } = Defaults.ProposalTimeout;

    /// <inheritdoc cref="RaftNodeOptions.ReadTimeout"/>
    public TimeSpan ReadTimeout { get; set; } = Defaults.ReadTimeout;

    /// <inheritdoc cref="RaftNodeOptions.LeaseReads"/>
    public bool LeaseReads { get; set; } = Defaults.LeaseReads;

    /// <inheritdoc cref="RaftNodeOptions.LeaseClockDriftBound"/>
    public double LeaseClockDriftBound { get; set; } = Defaults.LeaseClockDriftBound;

    /// <summary>Builds the node's settings from these (the host's services go to the node's constructor).</summary>
    internal RaftNodeOptions ToNodeOptions() => new()
    {
        NodeId = NodeId,
        // The bootstrap configuration, with the addresses it records for the transport (a joining node has none).
        Members = Join ? [] : [.. Members.Keys.Order()],
        MemberAddresses = Join ? null : Members,
        Join = Join,
        MaxPromotionLag = MaxPromotionLag,
        TickInterval = TickInterval,
        HeartbeatInterval = HeartbeatInterval,
        ElectionTimeoutMin = ElectionTimeoutMin,
        ElectionTimeoutMax = ElectionTimeoutMax,
        MaxInflightAppends = MaxInflightAppends,
        MaxAppendBytes = MaxAppendBytes,
        MaxUncommittedEntries = MaxUncommittedEntries,
        SnapshotInterval = SnapshotInterval,
        SnapshotTrailingEntries = SnapshotTrailingEntries,
        MaxSnapshotChunkBytes = MaxSnapshotChunkBytes,
        PreVote = PreVote,
        CheckQuorum = CheckQuorum,
        ForwardToLeader = ForwardToLeader,
        ForwardTimeout = ForwardTimeout,
        ProposalTimeout = ProposalTimeout,
        ReadTimeout = ReadTimeout,
        LeaseReads = LeaseReads,
        LeaseClockDriftBound = LeaseClockDriftBound,
    };

    /// <summary>Builds the transport's settings; call only on validated options.</summary>
    internal TcpTransportOptions ToTransportOptions(byte[]? secret) => new()
    {
        ListenEndPoint = ResolveListenEndPoint() ?? throw new InvalidOperationException($"Node {NodeId} has no IP listen address."),
        Peers = Members.Where(m => m.Key != NodeId).ToDictionary(m => m.Key, m => TcpTransportOptions.ParseEndPoint(m.Value)),
        ClusterId = ClusterId!,
        ClusterSecret = secret,
    };

    /// <summary>The address to listen on: <see cref="ListenAddress"/>, else this node's entry in <see cref="Members"/>; null when that is not an IP address.</summary>
    internal IPEndPoint? ResolveListenEndPoint()
    {
        string? text = ListenAddress ?? (Members.TryGetValue(NodeId, out var own) ? own : null);
        if (text is null)
            return null;
        return TcpTransportOptions.ParseEndPoint(text) as IPEndPoint;
    }

    /// <summary>Reads the secret from <see cref="ClusterSecret"/> or <see cref="ClusterSecretFile"/>; null when neither is set.</summary>
    /// <exception cref="FormatException">The value is not base64.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    internal byte[]? ReadSecret()
    {
        if (!string.IsNullOrEmpty(ClusterSecret))
            return Convert.FromBase64String(ClusterSecret.Trim());
        if (!string.IsNullOrEmpty(ClusterSecretFile))
            return Convert.FromBase64String(File.ReadAllText(ClusterSecretFile).Trim());
        return null;
    }
}
