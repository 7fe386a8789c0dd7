namespace Raft.Samples.KeyValueStore;

/// <summary>
/// The key-value service's own settings, bound from the configuration section
/// <see cref="SectionName"/> ("KeyValueStore"): where the HTTP API listens and how a follower reaches
/// the leader. The Raft node's settings are in the section "Raft" (<see cref="Raft.Hosting.RaftHostingOptions"/>).
/// The command line writes both sections (see <see cref="CommandLine"/>); appsettings.json and
/// environment variables (<c>KeyValueStore__Http=127.0.0.1:8001</c>) may too.
/// </summary>
public sealed class KvServiceOptions
{
    /// <summary>The configuration section: "KeyValueStore".</summary>
    public const string SectionName = "KeyValueStore";

    /// <summary>Where the HTTP API listens, "ip:port" or "localhost:port" (<c>--http</c>); port 0 picks a free port. Required.</summary>
    public string? Http { get; set; }

    /// <summary>
    /// The other members' HTTP addresses by node id, "host:port" (<c>--http-peers</c>). When empty, each
    /// member's HTTP port is its Raft port plus this node's offset (HTTP port minus Raft listen port).
    /// </summary>
    public Dictionary<int, string> HttpPeers { get; set; } = [];

    /// <summary>How a follower hands requests to the leader (<c>--forward</c>). The default is <see cref="ForwardMode.Raft"/>.</summary>
    public ForwardMode Forward { get; set; } = ForwardMode.Raft;

    /// <summary>Host names the API answers to besides the defaults (<c>--allowed-hosts</c>; see <see cref="KvNodeOptions.AllowedHosts"/>).</summary>
    public List<string> AllowedHosts { get; set; } = [];

    /// <summary>Origins allowed to change data besides the node's own (<c>--allowed-origins</c>; see <see cref="KvNodeOptions.AllowedOrigins"/>).</summary>
    public List<string> AllowedOrigins { get; set; } = [];

    /// <summary>See <see cref="KvNodeOptions.RequestTimeout"/>. The default is 5 s.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>See <see cref="KvNodeOptions.MaxBodyBytes"/>. The default is 1 MiB.</summary>
    public int MaxBodyBytes { get; set; } = KvNodeOptions.DefaultMaxBodyBytes;
}
