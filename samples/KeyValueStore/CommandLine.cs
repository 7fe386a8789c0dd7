using System.Globalization;
using System.Net;

namespace Raft.Samples.KeyValueStore;

/// <summary>What the command line asks for.</summary>
public enum RunMode
{
    /// <summary>No arguments: an embedded 3-node cluster in this process.</summary>
    Embedded,

    /// <summary>One node of a cluster, configured by the arguments.</summary>
    Node,

    /// <summary>--help: print the usage.</summary>
    Help,

    /// <summary>The arguments are wrong; see <see cref="CommandLine.Error"/>.</summary>
    Invalid,
}

/// <summary>
/// Parses the node's command line:
/// <c>--id N --listen HOST:PORT --http HOST:PORT --peers 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT --data DIR</c>
/// (<c>--secret-file PATH</c> | <c>--insecure</c>) [<c>--http-peers 1=HOST:PORT,...</c>] [<c>--cluster-id NAME</c>]
/// [<c>--forward raft|http</c>] [<c>--allowed-hosts NAME,...</c>] [<c>--allowed-origins ORIGIN,...</c>] [<c>--join</c>]. Options are
/// written <c>--name value</c> or <c>--name=value</c>; <c>--insecure</c> and <c>--join</c> take no value. The secret may also come from
/// the environment variable <see cref="SecretVariable"/>.
/// </summary>
public sealed class CommandLine
{
    public const string Usage = """
        Usage:
          KeyValueStore                      start an embedded 3-node cluster on loopback (data in a temp folder)
          KeyValueStore --id N --listen HOST:PORT --http HOST:PORT
                        --peers 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT --data DIR
                        (--secret-file PATH | --insecure) [--cluster-id NAME]
                        [--http-peers 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT] [--forward raft|http]
                        [--allowed-hosts NAME,...] [--allowed-origins ORIGIN,...] [--join]

          --id          this node's id (a positive integer, one of the ids in --peers unless --join)
          --listen      where this node's Raft transport listens (an IP address or localhost, and a port)
          --http        where this node's HTTP API listens (an IP address or localhost, and a port)
          --peers       every member's Raft address, this node included: id=host:port, comma-separated.
                        Used until the log holds a configuration (after the first membership change
                        the log wins). With --join: the running cluster's members, only to reach them.
          --join        start with no configuration, to be added to a running cluster: the node never
                        campaigns until the leader adds it (POST /cluster/members on the leader with
                        {"action":"add","id":N,"address":"HOST:PORT"}, the --listen address), then
                        follows its log. Keep --join on restarts: the log holds the configuration.
          --data        this node's data directory (log and snapshots); created if missing
          --http-peers  every other member's HTTP address, used to forward requests to the leader.
                        Default: each member's Raft host, at its Raft port plus this node's offset
                        (--http port minus --listen port), e.g. Raft :7001..7003 and --http :8001
                        give HTTP :8001..8003. Without --http-peers, a member added later gets
                        its HTTP address the same way from its Raft address in the configuration;
                        with --http-peers, list it there (restart) or send requests to the leader.
          --secret-file a file holding the cluster secret, base64 (at least 16 bytes decoded; make one
                        with: head -c 32 /dev/urandom | base64 > cluster.secret), the same on every node.
                        Peers must prove they hold it to use the Raft port. Instead of the file, the
                        secret may be given in base64 in the environment variable RAFT_CLUSTER_SECRET.
          --insecure    run the Raft port without a secret: anyone who can reach it and knows the
                        cluster id can join or disrupt the cluster (a warning is logged)
          --cluster-id  a name every node of the cluster shares (default raft-kv-sample)
          --forward     how a follower hands requests to the leader: raft (default; over the Raft
                        transport, batched, answered from the follower's own copy once applied)
                        or http (the request is sent to the leader's HTTP address and relayed)
          --allowed-hosts  host names the HTTP API answers to besides loopback and this node's own
                        --http, --peers and --http-peers hosts (others get 421); * allows any
          --allowed-origins  web origins (http://host:port) allowed to change data besides the
                        node's own pages (others get 403); * allows any

        Misconfiguration exits with code 2.
        """;

    /// <summary>The environment variable that may hold the cluster secret, in base64.</summary>
    public const string SecretVariable = "RAFT_CLUSTER_SECRET";

    /// <summary>The largest secret file read, in bytes (a secret is tens of bytes; anything this big is the wrong file).</summary>
    public const int MaxSecretFileBytes = 4096;

    private static readonly string[] Known = ["id", "listen", "http", "peers", "data", "http-peers", "cluster-id", "forward", "secret-file", "insecure", "allowed-hosts", "allowed-origins", "join"];

    // Options that take no value.
    private static readonly string[] Flags = ["insecure", "join"];

    private CommandLine(RunMode mode, KvNodeOptions? options, string? error)
    {
        Mode = mode;
        Options = options;
        Error = error;
    }

    /// <summary>What to run.</summary>
    public RunMode Mode { get; }

    /// <summary>The node's settings when <see cref="Mode"/> is <see cref="RunMode.Node"/>.</summary>
    public KvNodeOptions? Options { get; }

    /// <summary>Why the arguments are wrong when <see cref="Mode"/> is <see cref="RunMode.Invalid"/>.</summary>
    public string? Error { get; }

    /// <summary>Parses the arguments; never throws for bad input.</summary>
    /// <param name="args">The command line.</param>
    /// <param name="environment">Reads an environment variable (<see cref="SecretVariable"/>); the default is the process environment.</param>
    public static CommandLine Parse(IReadOnlyList<string> args, Func<string, string?>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        environment ??= Environment.GetEnvironmentVariable;
        if (args.Count == 0)
            return new CommandLine(RunMode.Embedded, null, null);
        if (args.Any(a => a is "--help" or "-h" or "-?" or "/?"))
            return new CommandLine(RunMode.Help, null, null);
        try
        {
            return new CommandLine(RunMode.Node, Build(ReadPairs(args), environment), null);
        }
        catch (ConfigurationException ex)
        {
            return new CommandLine(RunMode.Invalid, null, ex.Message);
        }
    }

    private static Dictionary<string, string> ReadPairs(IReadOnlyList<string> args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
                throw new ConfigurationException($"Unexpected argument '{arg}': options are written --name value.");
            var name = arg[2..];
            string value;
            var equals = name.IndexOf('=', StringComparison.Ordinal);
            if (Flags.Contains(equals >= 0 ? name[..equals] : name))
            {
                if (equals >= 0)
                    throw new ConfigurationException($"Option --{name[..equals]} takes no value.");
                value = "";
            }
            else if (equals >= 0)
            {
                value = name[(equals + 1)..];
                name = name[..equals];
            }
            else
            {
                if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    throw new ConfigurationException($"Option --{name} needs a value.");
                value = args[++i];
            }
            if (!Known.Contains(name))
                throw new ConfigurationException($"Unknown option --{name}. Known options: {string.Join(", ", Known.Select(k => "--" + k))}.");
            if (!values.TryAdd(name, value))
                throw new ConfigurationException($"Option --{name} is given twice.");
        }
        return values;
    }

    private static KvNodeOptions Build(Dictionary<string, string> values, Func<string, string?> environment)
    {
        foreach (var required in (string[])["id", "listen", "http", "peers", "data"])
        {
            if (!values.ContainsKey(required))
                throw new ConfigurationException($"Option --{required} is required.");
        }
        var id = ParseId(values["id"], "--id");
        var peers = ParseMap(values["peers"], "--peers");
        var join = values.ContainsKey("join");
        if (join && peers.Keys.All(k => k == id))
            throw new ConfigurationException($"--join: --peers must list at least one member of the running cluster (besides node {id}) to reach.");
        if (!join && !peers.ContainsKey(id))
            throw new ConfigurationException($"--id {id} is not one of the members in --peers ({string.Join(",", peers.Keys.Order())}); --peers lists every member, this node included.");
        var duplicate = peers.GroupBy(p => p.Value.ToString(), StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new ConfigurationException($"--peers gives nodes {string.Join(" and ", duplicate.Select(p => p.Key))} the same address {duplicate.Key}.");
        var listen = ToListenEndPoint(ParseEndPoint(values["listen"], "--listen"), "--listen");
        var http = ParseEndPoint(values["http"], "--http");
        if (http is DnsEndPoint { Host: var httpHost } && !IsLocalhost(httpHost))
            throw new ConfigurationException($"--http {values["http"]}: the host must be an IP address or localhost.");
        var data = values["data"];
        if (string.IsNullOrWhiteSpace(data))
            throw new ConfigurationException("--data must name a directory.");
        if (values.TryGetValue("cluster-id", out var clusterId) && string.IsNullOrEmpty(clusterId))
            throw new ConfigurationException("--cluster-id must not be empty.");

        Dictionary<int, Uri> httpPeers;
        int? httpPortOffset = null;
        if (values.TryGetValue("http-peers", out var httpPeersText))
        {
            var given = ParseMap(httpPeersText, "--http-peers");
            var unknown = given.Keys.Where(k => !peers.ContainsKey(k)).Order().ToList();
            if (unknown.Count > 0)
                throw new ConfigurationException($"--http-peers names node(s) {string.Join(",", unknown)}, which are not in --peers.");
            var missing = peers.Keys.Where(k => k != id && !given.ContainsKey(k)).Order().ToList();
            if (missing.Count > 0)
                throw new ConfigurationException($"--http-peers has no address for node(s) {string.Join(",", missing)}; give every other member's HTTP address.");
            httpPeers = given.ToDictionary(p => p.Key, p => ClusterDirectory.ToHttpUrl(p.Value));
        }
        else
        {
            // Documented convention: every member's HTTP port is its Raft port plus this node's offset.
            var offset = PortOf(http) - listen.Port;
            httpPortOffset = offset;
            httpPeers = [];
            foreach (var (peerId, raft) in peers)
            {
                if (peerId == id)
                    continue;
                var port = PortOf(raft) + offset;
                if (port is < 1 or > IPEndPoint.MaxPort)
                    throw new ConfigurationException($"Cannot derive node {peerId}'s HTTP port ({PortOf(raft)} + {offset} = {port}); give --http-peers.");
                httpPeers[peerId] = ClusterDirectory.ToHttpUrl(raft switch
                {
                    IPEndPoint ip => new IPEndPoint(ip.Address, port),
                    DnsEndPoint dns => new DnsEndPoint(dns.Host, port),
                    _ => throw new ConfigurationException($"Node {peerId} has an unsupported address {raft}."),
                });
            }
        }
        return new KvNodeOptions
        {
            Id = id,
            Members = join ? [.. peers.Keys.Where(k => k != id).Order()] : [.. peers.Keys.Order()],
            Join = join,
            HttpPortOffset = httpPortOffset,
            RaftListen = listen,
            HttpListen = http,
            RaftPeers = peers,
            HttpPeers = httpPeers,
            DataDirectory = Path.GetFullPath(data),
            ClusterId = clusterId ?? "raft-kv-sample",
            Forward = ParseForward(values),
            ClusterSecret = ReadSecret(values, environment),
            Insecure = values.ContainsKey("insecure"),
            AllowedHosts = ParseList(values, "allowed-hosts"),
            AllowedOrigins = ParseOrigins(values),
        };
    }

    // The secret from --secret-file or RAFT_CLUSTER_SECRET (exactly one of them), or none with --insecure.
    private static byte[]? ReadSecret(Dictionary<string, string> values, Func<string, string?> environment)
    {
        var insecure = values.ContainsKey("insecure");
        var hasFile = values.TryGetValue("secret-file", out var path);
        var variable = environment(SecretVariable);
        if (hasFile && variable is not null)
            throw new ConfigurationException($"Both --secret-file and {SecretVariable} give a cluster secret; use one.");
        if (insecure && (hasFile || variable is not null))
            throw new ConfigurationException($"--insecure runs without a cluster secret, but {(hasFile ? "--secret-file" : SecretVariable)} gives one; use one or the other.");
        if (insecure)
            return null;
        if (hasFile)
            return DecodeSecret(ReadSecretFile(path!), $"--secret-file {path}");
        if (variable is not null)
            return DecodeSecret(variable, SecretVariable);
        throw new ConfigurationException(
            $"No cluster secret: give --secret-file PATH (base64, e.g. made with: head -c 32 /dev/urandom | base64 > cluster.secret) " +
            $"or set {SecretVariable} (base64), the same on every node; or pass --insecure to run the Raft port unauthenticated (only on a trusted network).");
    }

    private static string ReadSecretFile(string path)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw new ConfigurationException("--secret-file must name a file.");
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
                throw new ConfigurationException($"--secret-file {path}: no such file.");
            if (info.Length > MaxSecretFileBytes)
                throw new ConfigurationException($"--secret-file {path}: the file is {info.Length} bytes; a secret file holds a short base64 line (at most {MaxSecretFileBytes} bytes).");
            return File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ConfigurationException($"--secret-file {path}: cannot be read: {ex.Message}");
        }
    }

    private static byte[] DecodeSecret(string base64, string source)
    {
        var text = base64.Trim();
        if (text.Length == 0)
            throw new ConfigurationException($"{source}: the secret is empty.");
        var buffer = new byte[text.Length];
        if (!Convert.TryFromBase64String(text, buffer, out var length))
            throw new ConfigurationException($"{source}: the secret is not valid base64.");
        if (length < KvNodeOptions.MinClusterSecretBytes)
            throw new ConfigurationException($"{source}: the secret is {length} bytes; at least {KvNodeOptions.MinClusterSecretBytes} are needed ({KvNodeOptions.GeneratedClusterSecretBytes} random bytes are recommended).");
        return buffer[..length];
    }

    private static string[] ParseList(Dictionary<string, string> values, string name)
    {
        if (!values.TryGetValue(name, out var text))
            return [];
        var items = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (items.Length == 0)
            throw new ConfigurationException($"--{name} is empty.");
        return items;
    }

    private static string[] ParseOrigins(Dictionary<string, string> values)
    {
        var origins = ParseList(values, "allowed-origins");
        foreach (var origin in origins)
        {
            if (origin != "*" && !(Uri.TryCreate(origin, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.AbsolutePath == "/" && !origin.EndsWith('/')))
                throw new ConfigurationException($"--allowed-origins: '{origin}' is not an origin (scheme://host[:port], e.g. http://127.0.0.1:3000).");
        }
        return origins;
    }

    private static ForwardMode ParseForward(Dictionary<string, string> values)
    {
        if (!values.TryGetValue("forward", out var text))
            return ForwardMode.Raft;
        return text.Trim() switch
        {
            "raft" => ForwardMode.Raft,
            "http" => ForwardMode.Http,
            _ => throw new ConfigurationException($"--forward '{text}': use raft or http."),
        };
    }

    private static int ParseId(string text, string option)
    {
        if (!int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var id) || id <= 0)
            throw new ConfigurationException($"{option}: '{text}' is not a node id (a positive integer).");
        return id;
    }

    private static Dictionary<int, EndPoint> ParseMap(string text, string option)
    {
        var map = new Dictionary<int, EndPoint>();
        foreach (var item in text.Split(',', StringSplitOptions.TrimEntries))
        {
            var equals = item.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
                throw new ConfigurationException($"{option}: '{item}' is not id=host:port (for example 1=127.0.0.1:7001).");
            var id = ParseId(item[..equals], option);
            var endPoint = ParseEndPoint(item[(equals + 1)..], $"{option} (node {id})");
            if (!map.TryAdd(id, endPoint))
                throw new ConfigurationException($"{option}: node id {id} appears twice.");
        }
        return map;
    }

    private static EndPoint ParseEndPoint(string text, string option)
    {
        try
        {
            return TcpTransportOptions.ParseEndPoint(text.Trim());
        }
        catch (Exception ex) when (ex is FormatException or ArgumentException)
        {
            throw new ConfigurationException($"{option}: {ex.Message}");
        }
    }

    private static IPEndPoint ToListenEndPoint(EndPoint endPoint, string option) => endPoint switch
    {
        IPEndPoint ip => ip,
        DnsEndPoint dns when IsLocalhost(dns.Host) => new IPEndPoint(IPAddress.Loopback, dns.Port),
        _ => throw new ConfigurationException($"{option} {endPoint}: the host must be an IP address or localhost."),
    };

    private static int PortOf(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ip.Port,
        DnsEndPoint dns => dns.Port,
        _ => 0,
    };

    private static bool IsLocalhost(string host) => string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase);

    private sealed class ConfigurationException(string message) : Exception(message);
}
