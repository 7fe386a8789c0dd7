using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Raft.Samples.KeyValueStore;

/// <summary>
/// One node of the key-value service: a <see cref="RaftNode"/> (TCP transport, file log, file
/// snapshots, <see cref="KeyValueStateMachine"/>) and the HTTP API in front of it.
/// </summary>
/// <remarks>
/// Create with <see cref="CreateAsync"/>, then <see cref="StartAsync"/>; <see cref="DisposeAsync"/>
/// stops the HTTP server, the Raft node and the transport, and closes the stores (everything the
/// log store acknowledged is already durable: it fsyncs every write).
/// </remarks>
public sealed class KvNode : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly FileLogStore _logStore;
    private readonly FileSnapshotStore _snapshotStore;
    private readonly TcpTransport _transport;
    private readonly ILogger _logger;
    private int _started;
    private int _disposed;

    private KvNode(KvNodeOptions options, WebApplication app, FileLogStore logStore, FileSnapshotStore snapshotStore, TcpTransportOptions transportOptions, TcpTransport transport, RaftNode raft, KeyValueStateMachine stateMachine, ClusterDirectory directory)
    {
        TransportOptions = transportOptions;
        Options = options;
        Forward = options.Forward;
        _app = app;
        _logStore = logStore;
        _snapshotStore = snapshotStore;
        _transport = transport;
        Raft = raft;
        StateMachine = stateMachine;
        Directory = directory;
        _logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<KvNode>();
        Http = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false, // peers are addressed directly, whatever http_proxy says
            AllowAutoRedirect = false,
            UseCookies = false,
            ConnectTimeout = TimeSpan.FromSeconds(2),
            PooledConnectionLifetime = TimeSpan.FromMinutes(1),
        })
        {
            Timeout = Timeout.InfiniteTimeSpan, // every call has its own deadline
            MaxResponseContentBufferSize = 4L * options.MaxBodyBytes + 64 * 1024,
        };
    }

    /// <summary>This node's id.</summary>
    public int Id => Options.Id;

    /// <summary>The node's settings.</summary>
    public KvNodeOptions Options { get; }

    /// <summary>The Raft node.</summary>
    public RaftNode Raft { get; }

    /// <summary>The replicated dictionary (this node's copy).</summary>
    public KeyValueStateMachine StateMachine { get; }

    /// <summary>The members' HTTP addresses.</summary>
    public ClusterDirectory Directory { get; }

    /// <summary>The HTTP base address this node serves, once started.</summary>
    public Uri? HttpUrl { get; private set; }

    /// <summary>The address the Raft transport listens on, once started.</summary>
    public IPEndPoint? RaftEndPoint => _transport.LocalEndPoint;

    internal HttpClient Http { get; }

    /// <summary>What the Raft transport was created with (tests check the secret reached it).</summary>
    internal TcpTransportOptions TransportOptions { get; }

    /// <summary>How this node hands requests to the leader; starts as <see cref="KvNodeOptions.Forward"/> (tests switch it).</summary>
    internal ForwardMode Forward { get; set; }

    internal ILogger Logger => _logger;

    /// <summary>Opens the node's stores and builds its HTTP server; nothing listens until <see cref="StartAsync"/>.</summary>
    /// <exception cref="LogCorruptionException">The log or the latest snapshot on disk is damaged.</exception>
    /// <exception cref="IOException">The data directory cannot be used (for example, another process has it open).</exception>
    public static async Task<KvNode> CreateAsync(KvNodeOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.ClusterSecret is null && !options.Insecure)
            throw new ArgumentException($"Node {options.Id} has no cluster secret: set KvNodeOptions.ClusterSecret (at least {KvNodeOptions.MinClusterSecretBytes} bytes), or Insecure to run the Raft port unauthenticated.", nameof(options));
        if (options.ClusterSecret is { Length: < KvNodeOptions.MinClusterSecretBytes } shortSecret)
            throw new ArgumentException($"Node {options.Id}'s cluster secret is {shortSecret.Length} bytes; at least {KvNodeOptions.MinClusterSecretBytes} are needed.", nameof(options));
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = [],
            ApplicationName = typeof(KvNode).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(console =>
        {
            console.SingleLine = true;
            console.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Logging.SetMinimumLevel(options.MinimumLogLevel);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
        // The host program handles Ctrl+C / SIGTERM itself, once for every node of the process.
        builder.Services.AddSingleton<IHostLifetime, PassiveHostLifetime>();
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = TimeSpan.FromSeconds(5));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // The API enforces MaxBodyBytes itself, with a 413 that explains it; Kestrel's own limit,
            // above it, only stops the server from draining a huge unread body after that answer.
            kestrel.Limits.MaxRequestBodySize = 2L * options.MaxBodyBytes + 64 * 1024;
            switch (options.HttpListen)
            {
                case IPEndPoint ip:
                    kestrel.Listen(ip);
                    break;
                case DnsEndPoint { Host: var host } dns when string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase):
                    kestrel.ListenLocalhost(dns.Port);
                    break;
                default:
                    throw new ArgumentException($"The HTTP address {options.HttpListen} must be an IP address or localhost.", nameof(options));
            }
        });
        var app = builder.Build();
        var loggerFactory = app.Services.GetRequiredService<ILoggerFactory>();

        FileLogStore? logStore = null;
        FileSnapshotStore? snapshotStore = null;
        TcpTransport? transport = null;
        try
        {
            System.IO.Directory.CreateDirectory(options.DataDirectory);
            logStore = await FileLogStore.OpenAsync(Path.Combine(options.DataDirectory, "log"), loggerFactory: loggerFactory, cancellationToken: cancellationToken);
            snapshotStore = await FileSnapshotStore.OpenAsync(Path.Combine(options.DataDirectory, "snapshots"), loggerFactory, cancellationToken);
            var transportOptions = new TcpTransportOptions
            {
                ListenEndPoint = options.RaftListen,
                Peers = options.RaftPeers.Where(peer => peer.Key != options.Id).ToDictionary(),
                ClusterId = options.ClusterId,
                ClusterSecret = options.ClusterSecret,
            };
            transport = new TcpTransport(transportOptions, loggerFactory);
            var stateMachine = new KeyValueStateMachine();
            var raft = new RaftNode(
                new RaftNodeOptions
                {
                    NodeId = options.Id,
                    // A joining node starts with no configuration; --peers then only says where the cluster is.
                    Members = options.Join ? [] : options.Members,
                    MemberAddresses = options.Join ? null : BootstrapAddresses(options),
                    Join = options.Join,
                    MaxPromotionLag = options.MaxPromotionLag,
                    SnapshotInterval = options.SnapshotInterval,
                    SnapshotTrailingEntries = options.SnapshotTrailingEntries,
                    // Always on: with ForwardMode.Http the API forwards before it would ask a follower's node.
                    ForwardToLeader = true,
                },
                transport,
                logStore,
                stateMachine,
                snapshotStore,
                loggerFactory,
                meterFactory: app.Services.GetService<System.Diagnostics.Metrics.IMeterFactory>()); // the host's: docs/observability.md
            var directory = new ClusterDirectory(options.Members, options.HttpPeers, options.HttpPortOffset);
            directory.Follow(() => raft.Configuration);
            var node = new KvNode(options, app, logStore, snapshotStore, transportOptions, transport, raft, stateMachine, directory);
            KvApi.Map(app, node);
            return node;
        }
        catch
        {
            if (transport is not null)
                await transport.DisposeAsync();
            if (logStore is not null)
                await logStore.DisposeAsync();
            snapshotStore?.Dispose();
            await app.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts serving HTTP, then starts the Raft node.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (Interlocked.Exchange(ref _started, 1) != 0)
            throw new InvalidOperationException($"Node {Id} was already started.");
        await _app.StartAsync(cancellationToken);
        var bound = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
            ?? throw new InvalidOperationException("The HTTP server reports no address.");
        HttpUrl = Directory.TryGetGiven(Id, out var advertised) ? advertised : ToBaseUrl(bound);
        Directory.Set(Id, HttpUrl!);
        try
        {
            await Raft.StartAsync(cancellationToken);
        }
        catch (SocketException ex)
        {
            throw new IOException($"Node {Id} cannot listen for Raft peers on {Options.RaftListen}: {ex.Message}", ex);
        }
        Log.NodeStarted(_logger, Id, HttpUrl!, RaftEndPoint);
        if (Options.ClusterSecret is null)
            Log.InsecureTransport(_logger, Id, RaftEndPoint, Options.ClusterId);
    }

    /// <summary>Tells this node where another member is: its Raft address (the transport connects there) and its HTTP address (requests are forwarded there).</summary>
    public void SetPeer(int id, EndPoint raftEndPoint, Uri httpUrl)
    {
        if (id == Id)
            return;
        _transport.SetPeer(id, raftEndPoint);
        Directory.Set(id, httpUrl);
    }

    /// <summary>Stops the HTTP server (waiting briefly for requests in flight), the Raft node and its transport, and closes the stores. Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        if (_started != 0)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                await _app.StopAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                // Requests still in flight are cut off; the node is stopped below all the same.
            }
        }
        // Fails what is still pending, stops the loops and the transport.
        await Raft.DisposeAsync();
        await _transport.DisposeAsync();
        await _logStore.DisposeAsync();
        _snapshotStore.Dispose();
        Http.Dispose();
        await _app.DisposeAsync();
        Log.NodeStopped(_logger, Id);
    }

    // The bootstrap members' Raft addresses, recorded in the bootstrap configuration (so a node added
    // later learns them from the configuration it receives); null when none is known yet (port 0).
    private static Dictionary<int, string>? BootstrapAddresses(KvNodeOptions options)
    {
        var addresses = new Dictionary<int, string>();
        foreach (var id in options.Members)
        {
            if (id == options.Id)
            {
                if (options.RaftListen.Port != 0)
                    addresses[id] = ClusterDirectory.ToRaftAddress(options.RaftPeers.TryGetValue(id, out var own) ? own : options.RaftListen);
            }
            else if (options.RaftPeers.TryGetValue(id, out var peer))
            {
                addresses[id] = ClusterDirectory.ToRaftAddress(peer);
            }
        }
        return addresses.Count == 0 ? null : addresses;
    }

    private static Uri ToBaseUrl(string address)
    {
        // Kestrel reports "http://127.0.0.1:41234" (or "http://[::]:80" / "http://0.0.0.0:80" for wildcard binds).
        var uri = new Uri(address);
        var host = IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) ? ip : null;
        return host is null ? new Uri(uri.GetLeftPart(UriPartial.Authority) + "/") : ClusterDirectory.ToHttpUrl(new IPEndPoint(host, uri.Port));
    }

    private sealed class PassiveHostLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
