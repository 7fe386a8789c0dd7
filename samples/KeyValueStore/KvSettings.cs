using System.Diagnostics;
using System.Globalization;
using System.Net;
using Microsoft.Extensions.Options;
using Raft.Hosting;

namespace Raft.Samples.KeyValueStore;

/// <summary>
/// The node's configuration: the sections "Raft" (<see cref="RaftHostingOptions"/>, bound by the
/// hosting package) and "KeyValueStore" (<see cref="KvServiceOptions"/>), checked together and
/// resolved into the <see cref="KvNodeOptions"/> the service runs with.
/// </summary>
public static class KvSettings
{
    /// <summary>The cluster id when none is configured: "raft-kv-sample".</summary>
    public const string DefaultClusterId = "raft-kv-sample";

    /// <summary>The largest secret file read, in bytes (a secret is tens of bytes; anything this big is the wrong file).</summary>
    public const int MaxSecretFileBytes = 4096;

    private const string Raft = RaftHostingOptions.DefaultSectionName + ":";
    private const string Service = KvServiceOptions.SectionName + ":";

    /// <summary>
    /// The sample's defaults, below every other source: its cluster id, forwarding on (with
    /// <see cref="ForwardMode.Http"/> the API forwards before it would ask a follower's node), and
    /// quiet framework logs.
    /// </summary>
    public static IReadOnlyDictionary<string, string?> Defaults { get; } = new Dictionary<string, string?>
    {
        [Raft + nameof(RaftHostingOptions.ClusterId)] = DefaultClusterId,
        [Raft + nameof(RaftHostingOptions.ForwardToLeader)] = "true",
        [Raft + nameof(RaftHostingOptions.MaxPromotionLag)] = "1000",
        ["Logging:LogLevel:Default"] = nameof(LogLevel.Information),
        ["Logging:LogLevel:Microsoft"] = nameof(LogLevel.Warning),
        ["Logging:LogLevel:System.Net.Http"] = nameof(LogLevel.Warning),
    };

    /// <summary>Writes typed settings as configuration keys (what <see cref="KvNode.CreateAsync"/> and <see cref="EmbeddedCluster"/> use; the command line writes the same keys).</summary>
    /// <param name="options">The settings. <see cref="KvNodeOptions.RaftListen"/> needs a real port: the Raft transport does not listen on port 0.</param>
    public static Dictionary<string, string?> ToConfiguration(KvNodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var settings = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase)
        {
            [Raft + nameof(RaftHostingOptions.NodeId)] = Invariant(options.Id),
            [Raft + nameof(RaftHostingOptions.ListenAddress)] = options.RaftListen.ToString(),
            [Raft + nameof(RaftHostingOptions.Join)] = options.Join ? "true" : "false",
            [Raft + nameof(RaftHostingOptions.DataDirectory)] = options.DataDirectory,
            [Raft + nameof(RaftHostingOptions.ClusterId)] = options.ClusterId,
            [Raft + nameof(RaftHostingOptions.Insecure)] = options.Insecure ? "true" : "false",
            [Raft + nameof(RaftHostingOptions.SnapshotInterval)] = Invariant(options.SnapshotInterval),
            [Raft + nameof(RaftHostingOptions.SnapshotTrailingEntries)] = Invariant(options.SnapshotTrailingEntries),
            [Raft + nameof(RaftHostingOptions.MaxPromotionLag)] = Invariant(options.MaxPromotionLag),
            [Service + nameof(KvServiceOptions.Http)] = HostAndPort(options.HttpListen),
            [Service + nameof(KvServiceOptions.Forward)] = options.Forward.ToString(),
            [Service + nameof(KvServiceOptions.RequestTimeout)] = options.RequestTimeout.ToString("c", CultureInfo.InvariantCulture),
            [Service + nameof(KvServiceOptions.MaxBodyBytes)] = Invariant(options.MaxBodyBytes),
            ["Logging:LogLevel:Default"] = options.MinimumLogLevel.ToString(),
        };
        if (options.ClusterSecret is { } secret)
            settings[Raft + nameof(RaftHostingOptions.ClusterSecret)] = Convert.ToBase64String(secret);
        foreach (var (id, endPoint) in options.RaftPeers)
            settings[Raft + "Members:" + Invariant(id)] = HostAndPort(endPoint);
        if (!options.Join && !options.RaftPeers.ContainsKey(options.Id))
            settings[Raft + "Members:" + Invariant(options.Id)] = options.RaftListen.ToString();
        // A derived address is derived again; only given ones are written.
        if (options.HttpPortOffset is null)
        {
            foreach (var (id, url) in options.HttpPeers)
                settings[Service + "HttpPeers:" + Invariant(id)] = url.Authority;
        }
        for (var i = 0; i < options.AllowedHosts.Count; i++)
            settings[Service + "AllowedHosts:" + Invariant(i)] = options.AllowedHosts[i];
        for (var i = 0; i < options.AllowedOrigins.Count; i++)
            settings[Service + "AllowedOrigins:" + Invariant(i)] = options.AllowedOrigins[i];
        return settings;
    }

    /// <summary>
    /// Checks a whole configuration as the host will run it (the hosting package's rules for "Raft",
    /// the sample's for both sections) and resolves it; never throws for bad input.
    /// </summary>
    /// <param name="configuration">The configuration (the sections "Raft" and "KeyValueStore").</param>
    /// <param name="options">The resolved settings, when there are no failures.</param>
    /// <returns>Every problem found, each naming the setting (and its flag); empty when the configuration is usable.</returns>
    public static IReadOnlyList<string> Check(IConfiguration configuration, out KvNodeOptions? options)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        options = null;
        RaftHostingOptions raft;
        KvServiceOptions service;
        try
        {
            raft = configuration.GetSection(RaftHostingOptions.DefaultSectionName).Get<RaftHostingOptions>() ?? new RaftHostingOptions();
            service = configuration.GetSection(KvServiceOptions.SectionName).Get<KvServiceOptions>() ?? new KvServiceOptions();
        }
        catch (InvalidOperationException ex)
        {
            // A value of the wrong type (for example Raft:NodeId=two): the binder's message names the key.
            return [ex.InnerException is { } inner ? $"{ex.Message} {inner.Message}" : ex.Message];
        }
        var failures = new List<string>();
        var hosting = new RaftHostingOptionsValidator().Validate(null, raft);
        if (hosting.Failed)
            failures.AddRange(hosting.Failures);
        var resolved = Resolve(raft, service, failures);
        if (failures.Count == 0)
            options = resolved;
        return failures;
    }

    /// <summary>Resolves bound settings the hosting package has validated; throws when the sample's own rules fail.</summary>
    /// <exception cref="OptionsValidationException">The settings break one of the sample's rules; the failures say which.</exception>
    internal static KvNodeOptions Resolve(RaftHostingOptions raft, KvServiceOptions service)
    {
        var failures = new List<string>();
        var options = Resolve(raft, service, failures);
        return failures.Count == 0 && options is not null
            ? options
            : throw new OptionsValidationException(KvServiceOptions.SectionName, typeof(KvServiceOptions), failures);
    }

    // The sample's rules on top of the hosting package's (which reports its own failures; where one of
    // them makes a value unusable here, it is skipped rather than reported twice).
    private static KvNodeOptions? Resolve(RaftHostingOptions raft, KvServiceOptions service, List<string> failures)
    {
        var id = raft.NodeId;
        var peers = new Dictionary<int, EndPoint>();
        foreach (var (peerId, address) in raft.Members)
        {
            if (TryParse(address) is { } endPoint)
                peers[peerId] = endPoint;
        }
        if (raft.Join && raft.Members.Count > 0 && raft.Members.Keys.All(k => k == id))
            failures.Add($"Raft:Join (--join) is set: Raft:Members (--peers) must list at least one member of the running cluster besides node {id}, to reach it.");
        var duplicate = peers.GroupBy(p => p.Value.ToString(), StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            failures.Add($"Raft:Members (--peers) gives nodes {string.Join(" and ", duplicate.Select(p => p.Key))} the same address {duplicate.Key}.");

        var listenText = raft.ListenAddress ?? (raft.Members.TryGetValue(id, out var own) ? own : null);
        var listen = listenText is null ? null : TryParse(listenText) as IPEndPoint;

        EndPoint? http = null;
        if (string.IsNullOrWhiteSpace(service.Http))
        {
            failures.Add("KeyValueStore:Http (--http) is missing: set where the HTTP API listens, as ip:port or localhost:port.");
        }
        else
        {
            http = ParseHttp(service.Http, failures);
        }

        var secret = ReadSecret(raft, failures);

        var origins = service.AllowedOrigins;
        foreach (var origin in origins)
        {
            if (origin != "*" && !(Uri.TryCreate(origin, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.AbsolutePath == "/" && !origin.EndsWith('/')))
                failures.Add($"KeyValueStore:AllowedOrigins (--allowed-origins): '{origin}' is not an origin (scheme://host[:port], e.g. http://127.0.0.1:3000).");
        }
        if (service.RequestTimeout <= TimeSpan.Zero)
            failures.Add($"KeyValueStore:RequestTimeout is {service.RequestTimeout}; it must be positive.");
        if (service.MaxBodyBytes <= 0)
            failures.Add(string.Create(CultureInfo.InvariantCulture, $"KeyValueStore:MaxBodyBytes is {service.MaxBodyBytes}; it must be positive."));

        Dictionary<int, Uri> httpPeers = [];
        int? httpPortOffset = null;
        if (service.HttpPeers.Count > 0)
        {
            var unknown = service.HttpPeers.Keys.Where(k => !raft.Members.ContainsKey(k)).Order().ToList();
            if (unknown.Count > 0)
                failures.Add($"KeyValueStore:HttpPeers (--http-peers) names node(s) {string.Join(",", unknown)}, which are not in Raft:Members (--peers).");
            var missing = raft.Members.Keys.Where(k => k != id && !service.HttpPeers.ContainsKey(k)).Order().ToList();
            if (missing.Count > 0)
                failures.Add($"KeyValueStore:HttpPeers (--http-peers) has no address for node(s) {string.Join(",", missing)}; give every other member's HTTP address.");
            foreach (var (peerId, address) in service.HttpPeers)
            {
                if (TryParse(address) is { } endPoint)
                    httpPeers[peerId] = ClusterDirectory.ToHttpUrl(endPoint);
                else
                    failures.Add($"KeyValueStore:HttpPeers:{peerId} (--http-peers) is '{address}', not host:port.");
            }
        }
        else if (http is not null && PortOf(http) != 0 && listen is not null)
        {
            // Documented convention: every member's HTTP port is its Raft port plus this node's offset.
            var offset = PortOf(http) - listen.Port;
            httpPortOffset = offset;
            foreach (var (peerId, endPoint) in peers)
            {
                if (peerId == id)
                    continue;
                var port = PortOf(endPoint) + offset;
                if (port is < 1 or > IPEndPoint.MaxPort)
                {
                    failures.Add($"Cannot derive node {peerId}'s HTTP port ({PortOf(endPoint)} + {offset} = {port}); give KeyValueStore:HttpPeers (--http-peers).");
                    continue;
                }
                httpPeers[peerId] = ClusterDirectory.ToHttpUrl(endPoint switch
                {
                    IPEndPoint ip => new IPEndPoint(ip.Address, port),
                    DnsEndPoint dns => new DnsEndPoint(dns.Host, port),
                    _ => throw new UnreachableException(),
                });
            }
        }

        if (failures.Count > 0 || listen is null || http is null || string.IsNullOrWhiteSpace(raft.DataDirectory))
            return null;
        return new KvNodeOptions
        {
            Id = id,
            Members = raft.Join ? [.. raft.Members.Keys.Where(k => k != id).Order()] : [.. raft.Members.Keys.Order()],
            Join = raft.Join,
            HttpPortOffset = httpPortOffset,
            RaftListen = listen,
            HttpListen = http,
            RaftPeers = peers,
            HttpPeers = httpPeers,
            DataDirectory = Path.GetFullPath(raft.DataDirectory),
            ClusterId = raft.ClusterId ?? DefaultClusterId,
            SnapshotInterval = raft.SnapshotInterval,
            SnapshotTrailingEntries = raft.SnapshotTrailingEntries,
            MaxPromotionLag = raft.MaxPromotionLag,
            RequestTimeout = service.RequestTimeout,
            MaxBodyBytes = service.MaxBodyBytes,
            Forward = service.Forward,
            ClusterSecret = secret,
            Insecure = raft.Insecure,
            AllowedHosts = [.. service.AllowedHosts],
            AllowedOrigins = [.. origins],
        };
    }

    private static EndPoint? ParseHttp(string text, List<string> failures)
    {
        text = text.Trim();
        // Port 0 (a free port) is fine for HTTP, unlike for a Raft peer.
        if (IPEndPoint.TryParse(text, out var ip) && (text.Contains(']', StringComparison.Ordinal) || text.Count(c => c == ':') == 1))
            return ip;
        var colon = text.LastIndexOf(':');
        if (colon > 0 && IsLocalhost(text[..colon]) && int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port <= IPEndPoint.MaxPort)
            return new DnsEndPoint("localhost", port);
        failures.Add(TryParse(text) is DnsEndPoint
            ? $"KeyValueStore:Http (--http) is '{text}': the host must be an IP address or localhost."
            : $"KeyValueStore:Http (--http) is '{text}', not ip:port or localhost:port.");
        return null;
    }

    // The secret the hosting package will hand to the transport (it checks the value itself); the
    // sample adds: not with Insecure, and a secret file is small.
    private static byte[]? ReadSecret(RaftHostingOptions raft, List<string> failures)
    {
        var inline = !string.IsNullOrEmpty(raft.ClusterSecret);
        var file = !string.IsNullOrEmpty(raft.ClusterSecretFile);
        if (raft.Insecure && (inline || file))
        {
            failures.Add($"Raft:Insecure (--insecure) runs without a cluster secret, but {(file ? "Raft:ClusterSecretFile (--secret-file)" : $"Raft:ClusterSecret ({CommandLine.SecretVariable})")} gives one; use one or the other.");
            return null;
        }
        try
        {
            if (inline && !file)
                return Convert.FromBase64String(raft.ClusterSecret!.Trim());
            if (file && !inline)
            {
                var info = new FileInfo(raft.ClusterSecretFile!);
                if (info.Exists && info.Length > MaxSecretFileBytes)
                {
                    failures.Add(string.Create(CultureInfo.InvariantCulture, $"Raft:ClusterSecretFile (--secret-file) {raft.ClusterSecretFile}: the file is {info.Length} bytes; a secret file holds a short base64 line (at most {MaxSecretFileBytes} bytes)."));
                    return null;
                }
                return Convert.FromBase64String(File.ReadAllText(raft.ClusterSecretFile!).Trim());
            }
        }
        catch (Exception ex) when (ex is FormatException or IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            // The hosting package's validator reports it, in its words.
        }
        return null;
    }

    private static EndPoint? TryParse(string address)
    {
        try
        {
            return TcpTransportOptions.ParseEndPoint(address.Trim());
        }
        catch (Exception ex) when (ex is FormatException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Formats an endpoint as "host:port" (IPv6 in brackets).</summary>
    internal static string HostAndPort(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ip.ToString(),
        DnsEndPoint dns => string.Create(CultureInfo.InvariantCulture, $"{dns.Host}:{dns.Port}"),
        _ => throw new ArgumentException($"Cannot format {endPoint}.", nameof(endPoint)),
    };

    private static int PortOf(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ip.Port,
        DnsEndPoint dns => dns.Port,
        _ => 0,
    };

    internal static bool IsLocalhost(string host) => string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase);

    private static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);
}
