using System.CommandLine;
using System.CommandLine.Help;
using System.Globalization;
using System.Net;
using Raft.Hosting;

namespace Raft.Samples.KeyValueStore;

/// <summary>What the command line asks for.</summary>
public enum RunMode
{
    /// <summary>No arguments (and no node configured elsewhere): an embedded 3-node cluster in this process.</summary>
    Embedded,

    /// <summary>One node of a cluster, configured by the arguments (and configuration).</summary>
    Node,

    /// <summary>--help: print the usage.</summary>
    Help,

    /// <summary>The arguments are wrong; see <see cref="CommandLine.Error"/>.</summary>
    Invalid,
}

/// <summary>
/// The node's command line (System.CommandLine):
/// <c>--id N --listen HOST:PORT --http HOST:PORT --peers 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT --data DIR</c>
/// (<c>--secret-file PATH</c> | <c>--insecure</c>) [<c>--http-peers 1=HOST:PORT,...</c>] [<c>--cluster-id NAME</c>]
/// [<c>--forward raft|http</c>] [<c>--allowed-hosts NAME,...</c>] [<c>--allowed-origins ORIGIN,...</c>] [<c>--join</c>].
/// </summary>
/// <remarks>
/// The flags are only a way to write configuration: <see cref="Settings"/> holds them as the keys
/// the host binds ("Raft:*" for the hosting package, "KeyValueStore:*" for the service), so
/// appsettings.json and environment variables (<c>Raft__NodeId=1</c>) can say the same, and a flag
/// wins over them. The secret may also come from the environment variable <see cref="SecretVariable"/>.
/// </remarks>
public sealed class CommandLine
{
    /// <summary>The environment variable that may hold the cluster secret, in base64 (it becomes Raft:ClusterSecret).</summary>
    public const string SecretVariable = "RAFT_CLUSTER_SECRET";

    /// <summary>The largest secret file read, in bytes (a secret is tens of bytes; anything this big is the wrong file).</summary>
    public const int MaxSecretFileBytes = KvSettings.MaxSecretFileBytes;

    /// <summary>Which flag writes which setting, for error messages that name a setting.</summary>
    public const string SettingsAndFlags =
        "Settings and their flags: Raft:NodeId --id, Raft:Members --peers, Raft:ListenAddress --listen, Raft:DataDirectory --data, " +
        "Raft:ClusterSecretFile --secret-file, Raft:ClusterSecret " + SecretVariable + ", Raft:Insecure --insecure, Raft:ClusterId --cluster-id, Raft:Join --join, " +
        "KeyValueStore:Http --http, KeyValueStore:HttpPeers --http-peers, KeyValueStore:Forward --forward, KeyValueStore:AllowedHosts --allowed-hosts, KeyValueStore:AllowedOrigins --allowed-origins.";

    private static readonly Option<string?> IdOption = new("--id") { Description = "this node's id (a positive integer, one of the ids in --peers unless --join)", HelpName = "N" };
    private static readonly Option<string?> ListenOption = new("--listen") { Description = "where this node's Raft transport listens (an IP address or localhost, and a port)", HelpName = "HOST:PORT" };
    private static readonly Option<string?> HttpOption = new("--http") { Description = "where this node's HTTP API listens (an IP address or localhost, and a port)", HelpName = "HOST:PORT" };
    private static readonly Option<string?> PeersOption = new("--peers")
    {
        Description = "every member's Raft address, this node included: id=host:port, comma-separated. Used until the log holds a configuration (after the first membership change the log wins). With --join: the running cluster's members, only to reach them.",
        HelpName = "1=HOST:PORT,2=HOST:PORT,...",
    };
    private static readonly Option<bool> JoinOption = new("--join")
    {
        Description = "start with no configuration, to be added to a running cluster: the node never campaigns until the leader adds it (POST /cluster/members on the leader with {\"action\":\"add\",\"id\":N,\"address\":\"HOST:PORT\"}, the --listen address), then follows its log. Keep --join on restarts: the log holds the configuration.",
    };
    private static readonly Option<string?> DataOption = new("--data") { Description = "this node's data directory (log and snapshots); created if missing", HelpName = "DIR" };
    private static readonly Option<string?> HttpPeersOption = new("--http-peers")
    {
        Description = "every other member's HTTP address, used to forward requests to the leader. Default: each member's Raft host, at its Raft port plus this node's offset (--http port minus --listen port), e.g. Raft :7001..7003 and --http :8001 give HTTP :8001..8003. Without --http-peers, a member added later gets its HTTP address the same way from its Raft address in the configuration; with --http-peers, list it there (restart) or send requests to the leader.",
        HelpName = "1=HOST:PORT,...",
    };
    private static readonly Option<string?> SecretFileOption = new("--secret-file")
    {
        Description = $"a file holding the cluster secret, base64 (at least {RaftHostingOptions.MinClusterSecretBytes} bytes decoded; make one with: head -c 32 /dev/urandom | base64 > cluster.secret), the same on every node. Peers must prove they hold it to use the Raft port. Instead of the file, the secret may be given in base64 in the environment variable {SecretVariable}.",
        HelpName = "PATH",
    };
    private static readonly Option<bool> InsecureOption = new("--insecure")
    {
        Description = "run the Raft port without a secret: anyone who can reach it and knows the cluster id can join or disrupt the cluster (a warning is logged)",
    };
    private static readonly Option<string?> ClusterIdOption = new("--cluster-id") { Description = $"a name every node of the cluster shares (default {KvSettings.DefaultClusterId})", HelpName = "NAME" };
    private static readonly Option<ForwardMode?> ForwardOption = new("--forward")
    {
        Description = "how a follower hands requests to the leader: raft (default; over the Raft transport, batched, answered from the follower's own copy once applied) or http (the request is sent to the leader's HTTP address and relayed)",
        HelpName = "raft|http",
        CustomParser = result =>
        {
            var text = result.Tokens.Single().Value;
            switch (text.Trim())
            {
                case "raft":
                    return ForwardMode.Raft;
                case "http":
                    return ForwardMode.Http;
                default:
                    result.AddError($"--forward '{text}': use raft or http.");
                    return null;
            }
        },
    };
    private static readonly Option<string?> AllowedHostsOption = new("--allowed-hosts")
    {
        Description = "host names the HTTP API answers to besides loopback and this node's own --http, --peers and --http-peers hosts (others get 421); * allows any",
        HelpName = "NAME,...",
    };
    private static readonly Option<string?> AllowedOriginsOption = new("--allowed-origins")
    {
        Description = "web origins (http://host:port) allowed to change data besides the node's own pages (others get 403); * allows any",
        HelpName = "ORIGIN,...",
    };

    private static readonly RootCommand Root = CreateRoot();

    private CommandLine(RunMode mode, IReadOnlyDictionary<string, string?> settings, KvNodeOptions? options, string? error)
    {
        Mode = mode;
        Settings = settings;
        Options = options;
        Error = error;
    }

    /// <summary>The usage text (what --help prints).</summary>
    public static string Usage
    {
        get
        {
            using var writer = new StringWriter(CultureInfo.InvariantCulture);
            Root.Parse(["--help"]).Invoke(new InvocationConfiguration { Output = writer });
            return writer.ToString();
        }
    }

    /// <summary>What to run.</summary>
    public RunMode Mode { get; }

    /// <summary>The flags (and <see cref="SecretVariable"/>) as configuration keys, such as "Raft:NodeId" or "KeyValueStore:Http"; empty unless <see cref="Mode"/> is <see cref="RunMode.Node"/>.</summary>
    public IReadOnlyDictionary<string, string?> Settings { get; }

    /// <summary>The node's settings when <see cref="Mode"/> is <see cref="RunMode.Node"/>: the flags over <see cref="KvSettings.Defaults"/>, checked (<see cref="KvSettings.Check"/>).</summary>
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
        var none = new Dictionary<string, string?>();
        if (args.Count == 0)
            return new CommandLine(RunMode.Embedded, none, null, null);
        // System.CommandLine would call "yes" a stray argument; say what is wrong.
        if (args.FirstOrDefault(a => a.StartsWith("--insecure=", StringComparison.Ordinal) || a.StartsWith("--join=", StringComparison.Ordinal)) is { } valued)
            return new CommandLine(RunMode.Invalid, none, null, $"{valued[..valued.IndexOf('=', StringComparison.Ordinal)]} takes no value.");
        var result = Root.Parse([.. args]);
        if (result.Action is HelpAction)
            return new CommandLine(RunMode.Help, none, null, null);
        if (result.Errors.Count > 0)
            return new CommandLine(RunMode.Invalid, none, null, string.Join(Environment.NewLine, result.Errors.Select(e => e.Message)));
        var errors = new List<string>();
        var settings = ToSettings(result, environment, errors);
        if (errors.Count > 0)
            return new CommandLine(RunMode.Invalid, none, null, string.Join(Environment.NewLine, errors));
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(KvSettings.Defaults).AddInMemoryCollection(settings).Build();
        var failures = KvSettings.Check(configuration, out var options);
        return failures.Count > 0
            ? new CommandLine(RunMode.Invalid, none, null, string.Join(Environment.NewLine, failures))
            : new CommandLine(RunMode.Node, settings, options, null);
    }

    private static RootCommand CreateRoot()
    {
        var root = new RootCommand(
            "The replicated key-value service. With no arguments: an embedded 3-node cluster on loopback (data in a temp folder). " +
            "With arguments: one node of a cluster. Every flag is also a configuration key (appsettings.json, environment variables " +
            "such as Raft__NodeId); see README.md. Misconfiguration exits with code 2.");
        foreach (Option option in (Option[])[IdOption, ListenOption, HttpOption, PeersOption, DataOption, SecretFileOption, InsecureOption, ClusterIdOption, HttpPeersOption, ForwardOption, AllowedHostsOption, AllowedOriginsOption, JoinOption])
            root.Options.Add(option);
        return root;
    }

    // The flags given, as configuration keys; syntax errors (a map that is not id=host:port...) name the flag.
    private static Dictionary<string, string?> ToSettings(ParseResult result, Func<string, string?> environment, List<string> errors)
    {
        const string Raft = RaftHostingOptions.DefaultSectionName + ":";
        const string Service = KvServiceOptions.SectionName + ":";
        var settings = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        if (result.GetValue(IdOption) is { } id)
        {
            if (!int.TryParse(id.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number <= 0)
                errors.Add($"--id: '{id}' is not a node id (a positive integer).");
            settings[Raft + nameof(RaftHostingOptions.NodeId)] = id.Trim();
        }
        if (result.GetValue(ListenOption) is { } listen)
        {
            // The transport listens on an IP address; localhost means loopback.
            var colon = listen.LastIndexOf(':');
            settings[Raft + nameof(RaftHostingOptions.ListenAddress)] = colon > 0 && KvSettings.IsLocalhost(listen[..colon].Trim()) ? "127.0.0.1" + listen[colon..].Trim() : listen.Trim();
            CheckEndPoint(listen, "--listen", errors, mustBeLocal: true);
        }
        if (result.GetValue(PeersOption) is { } peers)
        {
            foreach (var (peer, address) in ParseMap(peers, "--peers", errors))
                settings[Raft + "Members:" + peer.ToString(CultureInfo.InvariantCulture)] = address;
        }
        if (result.GetValue(JoinOption))
            settings[Raft + nameof(RaftHostingOptions.Join)] = "true";
        if (result.GetValue(DataOption) is { } data)
        {
            if (string.IsNullOrWhiteSpace(data))
                errors.Add("--data must name a directory.");
            settings[Raft + nameof(RaftHostingOptions.DataDirectory)] = data;
        }
        if (result.GetValue(ClusterIdOption) is { } clusterId)
        {
            if (clusterId.Length == 0)
                errors.Add("--cluster-id must not be empty.");
            settings[Raft + nameof(RaftHostingOptions.ClusterId)] = clusterId;
        }
        var secretFile = result.GetValue(SecretFileOption);
        if (secretFile is not null)
        {
            CheckSecretFile(secretFile, errors);
            settings[Raft + nameof(RaftHostingOptions.ClusterSecretFile)] = secretFile;
        }
        var variable = environment(SecretVariable);
        if (variable is not null)
        {
            if (secretFile is not null)
                errors.Add($"Both --secret-file and {SecretVariable} give a cluster secret; use one.");
            CheckSecret(variable, SecretVariable, errors);
            settings[Raft + nameof(RaftHostingOptions.ClusterSecret)] = variable.Trim();
        }
        // No secret at all is reported by the hosting package's check (the configuration may still give one).
        if (result.GetValue(InsecureOption))
            settings[Raft + nameof(RaftHostingOptions.Insecure)] = "true";
        if (result.GetValue(HttpOption) is { } http)
            settings[Service + nameof(KvServiceOptions.Http)] = http.Trim();
        if (result.GetValue(HttpPeersOption) is { } httpPeers)
        {
            foreach (var (peer, address) in ParseMap(httpPeers, "--http-peers", errors))
                settings[Service + "HttpPeers:" + peer.ToString(CultureInfo.InvariantCulture)] = address;
        }
        if (result.GetValue(ForwardOption) is { } forward)
            settings[Service + nameof(KvServiceOptions.Forward)] = forward.ToString();
        AddList(result.GetValue(AllowedHostsOption), "--allowed-hosts", Service + nameof(KvServiceOptions.AllowedHosts), settings, errors);
        AddList(result.GetValue(AllowedOriginsOption), "--allowed-origins", Service + nameof(KvServiceOptions.AllowedOrigins), settings, errors);
        return settings;
    }

    // The hosting package checks the secret too, in its settings' names; these messages name the flag or variable.
    private static void CheckSecretFile(string path, List<string> errors)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            errors.Add("--secret-file must name a file.");
            return;
        }
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
                errors.Add($"--secret-file {path}: no such file.");
            else if (info.Length > MaxSecretFileBytes)
                errors.Add($"--secret-file {path}: the file is {info.Length} bytes; a secret file holds a short base64 line (at most {MaxSecretFileBytes} bytes).");
            else
                CheckSecret(File.ReadAllText(path), $"--secret-file {path}", errors);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            errors.Add($"--secret-file {path}: cannot be read: {ex.Message}");
        }
    }

    private static void CheckSecret(string base64, string source, List<string> errors)
    {
        var text = base64.Trim();
        var buffer = new byte[text.Length];
        if (text.Length == 0)
            errors.Add($"{source}: the secret is empty.");
        else if (!Convert.TryFromBase64String(text, buffer, out var length))
            errors.Add($"{source}: the secret is not valid base64.");
        else if (length < RaftHostingOptions.MinClusterSecretBytes)
            errors.Add($"{source}: the secret is {length} bytes; at least {RaftHostingOptions.MinClusterSecretBytes} are needed ({KvNodeOptions.GeneratedClusterSecretBytes} random bytes are recommended).");
    }

    private static void AddList(string? text, string option, string key, Dictionary<string, string?> settings, List<string> errors)
    {
        if (text is null)
            return;
        var items = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (items.Length == 0)
            errors.Add($"{option} is empty.");
        for (var i = 0; i < items.Length; i++)
            settings[key + ":" + i.ToString(CultureInfo.InvariantCulture)] = items[i];
    }

    private static Dictionary<int, string> ParseMap(string text, string option, List<string> errors)
    {
        var map = new Dictionary<int, string>();
        foreach (var item in text.Split(',', StringSplitOptions.TrimEntries))
        {
            var equals = item.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                errors.Add($"{option}: '{item}' is not id=host:port (for example 1=127.0.0.1:7001).");
                continue;
            }
            if (!int.TryParse(item[..equals].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var id) || id <= 0)
            {
                errors.Add($"{option}: '{item[..equals]}' is not a node id (a positive integer).");
                continue;
            }
            var address = item[(equals + 1)..].Trim();
            if (!CheckEndPoint(address, $"{option} (node {id})", errors, mustBeLocal: false))
                continue;
            if (!map.TryAdd(id, address))
                errors.Add($"{option}: node id {id} appears twice.");
        }
        return map;
    }

    private static bool CheckEndPoint(string text, string option, List<string> errors, bool mustBeLocal)
    {
        EndPoint endPoint;
        try
        {
            endPoint = TcpTransportOptions.ParseEndPoint(text.Trim());
        }
        catch (Exception ex) when (ex is FormatException or ArgumentException)
        {
            errors.Add($"{option}: {ex.Message}");
            return false;
        }
        if (mustBeLocal && endPoint is DnsEndPoint { Host: var host } && !KvSettings.IsLocalhost(host))
        {
            errors.Add($"{option} {text}: the host must be an IP address or localhost.");
            return false;
        }
        return true;
    }
}
