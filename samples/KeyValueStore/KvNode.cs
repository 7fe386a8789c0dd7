using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using Raft.Hosting;

namespace Raft.Samples.KeyValueStore;

/// <summary>
/// One node of the key-value service, as the HTTP API sees it: the <see cref="RaftNode"/> the
/// hosting package runs (<see cref="RaftServiceCollectionExtensions.AddRaftNode{TStateMachine}(IServiceCollection, IConfiguration)"/>),
/// this node's <see cref="KeyValueStateMachine"/>, the members' HTTP addresses and the client that
/// forwards to the leader. A singleton of the node's web application.
/// </summary>
/// <remarks>
/// <para>
/// A program builds the application with <see cref="CreateBuilder"/> and <see cref="Build"/> and runs
/// it (Program.cs). The generic host does the rest: the hosting package opens the stores, starts the
/// transport and the node, and on a graceful stop (Ctrl+C, SIGTERM) hands leadership over before it
/// closes them.
/// </para>
/// <para>
/// <see cref="CreateAsync"/> builds the same application from typed settings and returns its node,
/// to start and dispose in one process (<see cref="EmbeddedCluster"/>, tests).
/// </para>
/// </remarks>
public sealed class KvNode : IAsyncDisposable
{
    private readonly RaftNodeAccessor _accessor;
    private readonly IServer _server;
    private readonly IHostApplicationLifetime _lifetime;
    private WebApplication? _app;
    private Uri? _httpUrl;
    private int _started;
    private int _disposed;

    /// <summary>Creates the node's view of its services (dependency injection does).</summary>
    public KvNode(KvNodeOptions options, RaftNodeAccessor accessor, KeyValueStateMachine stateMachine, IOptions<RaftHostingOptions> raftSettings, IServer server, IHostApplicationLifetime lifetime, ILogger<KvNode> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(accessor);
        ArgumentNullException.ThrowIfNull(raftSettings);
        ArgumentNullException.ThrowIfNull(lifetime);
        Options = options;
        Forward = options.Forward;
        _accessor = accessor;
        _server = server;
        _lifetime = lifetime;
        StateMachine = stateMachine;
        RaftSettings = raftSettings.Value;
        Logger = logger;
        Directory = new ClusterDirectory(options.Members, options.HttpPeers, options.HttpPortOffset);
        Directory.Follow(() => accessor.Node?.Configuration ?? ClusterConfiguration.Empty);
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
        // Once the server and the Raft node are both up (the host starts its hosted services first).
        lifetime.ApplicationStarted.Register(OnStarted);
        lifetime.ApplicationStopped.Register(() => Log.NodeStopped(Logger, Id));
    }

    /// <summary>This node's id.</summary>
    public int Id => Options.Id;

    /// <summary>The node's settings, resolved from configuration (<see cref="KvSettings"/>).</summary>
    public KvNodeOptions Options { get; }

    /// <summary>The Raft node, once the host started it.</summary>
    /// <exception cref="InvalidOperationException">The host has not started yet.</exception>
    public RaftNode Raft => _accessor.GetRequiredNode();

    /// <summary>The replicated dictionary (this node's copy).</summary>
    public KeyValueStateMachine StateMachine { get; }

    /// <summary>The members' HTTP addresses.</summary>
    public ClusterDirectory Directory { get; }

    /// <summary>The HTTP base address this node serves, once started (the address given for it in <see cref="KvNodeOptions.HttpPeers"/>, else the one the server bound).</summary>
    public Uri? HttpUrl
    {
        get
        {
            // Read once the server has started: only then does it report the address it bound.
            if (_httpUrl is null && _lifetime.ApplicationStarted.IsCancellationRequested && _server.Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() is { } bound)
                _httpUrl = Directory.TryGetGiven(Id, out var advertised) ? advertised : ToBaseUrl(bound);
            return _httpUrl;
        }
    }

    /// <summary>The address the Raft transport listens on, once started.</summary>
    public IPEndPoint? RaftEndPoint => _accessor.ListenEndPoint;

    /// <summary>The application, when this node was made by <see cref="CreateAsync"/>.</summary>
    internal WebApplication? App => _app;

    internal HttpClient Http { get; }

    /// <summary>The Raft settings the hosting package runs the node (and its transport) with.</summary>
    internal RaftHostingOptions RaftSettings { get; }

    /// <summary>How this node hands requests to the leader; starts as <see cref="KvNodeOptions.Forward"/> (tests switch it).</summary>
    internal ForwardMode Forward { get; set; }

    internal ILogger Logger { get; }

    /// <summary>
    /// Creates the builder of a node's web application: the sample's configuration defaults
    /// (<see cref="KvSettings.Defaults"/>), then appsettings.json and environment variables, then
    /// <paramref name="settings"/> (the command line's), which win.
    /// </summary>
    /// <param name="settings">Configuration keys that override every other source, such as "Raft:NodeId".</param>
    /// <param name="contentRoot">Where appsettings.json is looked for. The default is the program's folder.</param>
    public static WebApplicationBuilder CreateBuilder(IEnumerable<KeyValuePair<string, string?>> settings, string? contentRoot = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            // The flags are parsed by CommandLine and come in as settings. The settings are read once
            // at start, so appsettings.json is not watched (one file watcher less per node).
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
            ApplicationName = typeof(KvNode).Assembly.GetName().Name,
            ContentRootPath = contentRoot ?? AppContext.BaseDirectory,
        });
        // The defaults go under every source the builder added; the command line goes over them.
        builder.Configuration.Sources.Insert(0, new Microsoft.Extensions.Configuration.Memory.MemoryConfigurationSource { InitialData = KvSettings.Defaults });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(console =>
        {
            console.SingleLine = true;
            console.TimestampFormat = "HH:mm:ss.fff ";
        });
        return builder;
    }

    /// <summary>
    /// Adds the node's services (the Raft node through the hosting package, the state machine, the
    /// HTTP listener, a health check) to <paramref name="builder"/>, builds the application and maps the API.
    /// </summary>
    public static WebApplication Build(WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        services.AddSingleton<KeyValueStateMachine>();
        services.AddRaftNode<KeyValueStateMachine>(builder.Configuration.GetSection(RaftHostingOptions.DefaultSectionName));
        services.AddOptions<KvServiceOptions>().Bind(builder.Configuration.GetSection(KvServiceOptions.SectionName));
        // Resolved (and checked) once, from both sections; an error is an OptionsValidationException at start.
        services.AddSingleton(sp => KvSettings.Resolve(
            sp.GetRequiredService<IOptions<RaftHostingOptions>>().Value,
            sp.GetRequiredService<IOptions<KvServiceOptions>>().Value));
        services.AddSingleton<KvNode>();
        services.AddHealthChecks().AddRaftHealthCheck();
        services.Configure<HostOptions>(host => host.ShutdownTimeout = TimeSpan.FromSeconds(5));
        services.AddOptions<KestrelServerOptions>().Configure<KvNodeOptions>((kestrel, options) =>
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
                case DnsEndPoint { Host: var host } dns when KvSettings.IsLocalhost(host):
                    kestrel.ListenLocalhost(dns.Port);
                    break;
                default:
                    throw new ArgumentException($"The HTTP address {options.HttpListen} must be an IP address or localhost.", nameof(builder));
            }
        });
        var app = builder.Build();
        KvApi.Map(app, app.Services.GetRequiredService<KvNode>());
        app.MapHealthChecks("/healthz");
        return app;
    }

    /// <summary>Builds a node's application from typed settings (the same application the command line builds) and returns its node; nothing runs until <see cref="StartAsync"/>.</summary>
    /// <param name="options">The settings. <see cref="KvNodeOptions.RaftListen"/> needs a port (the Raft transport does not pick one); the HTTP port may be 0.</param>
    /// <param name="cancellationToken">Unused: building does no I/O. Present for the async pattern.</param>
    /// <exception cref="ArgumentException">The settings have no usable secret, or no Raft port.</exception>
    /// <exception cref="OptionsValidationException">The settings break a rule of the hosting package or of the sample.</exception>
    public static Task<KvNode> CreateAsync(KvNodeOptions options, CancellationToken cancellationToken = default) => CreateAsync(options, configure: null, cancellationToken);

    /// <inheritdoc cref="CreateAsync(KvNodeOptions, CancellationToken)"/>
    /// <param name="options">The settings. <see cref="KvNodeOptions.RaftListen"/> needs a port (the Raft transport does not pick one); the HTTP port may be 0.</param>
    /// <param name="configure">Called with the application's builder before it is built (to add a logging provider, a service...); null for none.</param>
    /// <param name="cancellationToken">Unused: building does no I/O. Present for the async pattern.</param>
    public static Task<KvNode> CreateAsync(KvNodeOptions options, Action<WebApplicationBuilder>? configure, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        cancellationToken.ThrowIfCancellationRequested();
        if (options.ClusterSecret is null && !options.Insecure)
            throw new ArgumentException($"Node {options.Id} has no cluster secret: set KvNodeOptions.ClusterSecret (at least {KvNodeOptions.MinClusterSecretBytes} bytes), or Insecure to run the Raft port unauthenticated.", nameof(options));
        if (options.ClusterSecret is { Length: < KvNodeOptions.MinClusterSecretBytes } shortSecret)
            throw new ArgumentException($"Node {options.Id}'s cluster secret is {shortSecret.Length} bytes; at least {KvNodeOptions.MinClusterSecretBytes} are needed.", nameof(options));
        if (options.RaftListen.Port == 0)
            throw new ArgumentException($"Node {options.Id}'s Raft address {options.RaftListen} has port 0: give a port (EmbeddedCluster.FreePorts picks free ones).", nameof(options));
        var builder = CreateBuilder(KvSettings.ToConfiguration(options));
        configure?.Invoke(builder);
        var app = Build(builder);
        var node = app.Services.GetRequiredService<KvNode>();
        node._app = app;
        return Task.FromResult(node);
    }

    /// <summary>Starts the application made by <see cref="CreateAsync"/>: the Raft node (stores, transport), then the HTTP server.</summary>
    /// <exception cref="InvalidOperationException">The node was not made by <see cref="CreateAsync"/>, or was started already.</exception>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var app = _app ?? throw new InvalidOperationException($"Node {Id} belongs to a host that starts it (WebApplication.RunAsync).");
        if (Interlocked.Exchange(ref _started, 1) != 0)
            throw new InvalidOperationException($"Node {Id} was already started.");
        await app.StartAsync(cancellationToken);
    }

    /// <summary>Tells this node where another member is: its Raft address (the transport connects there) and its HTTP address (requests are forwarded there).</summary>
    public void SetPeer(int id, EndPoint raftEndPoint, Uri httpUrl)
    {
        if (id == Id)
            return;
        (_accessor.Transport ?? throw new InvalidOperationException($"Node {Id} has not started.")).SetPeer(id, raftEndPoint);
        Directory.Set(id, httpUrl);
    }

    /// <summary>
    /// For a node made by <see cref="CreateAsync"/>: stops the application as the host does on Ctrl+C
    /// (the HTTP server, then the Raft node, which hands leadership over first), and disposes it.
    /// Otherwise: releases the forwarding client (the host disposes its singletons). Idempotent.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        if (_app is { } app)
        {
            if (_started != 0)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                try
                {
                    await app.StopAsync(timeout.Token);
                }
                catch (OperationCanceledException)
                {
                    // Requests still in flight are cut off; the node is closed below all the same.
                }
            }
            await app.DisposeAsync();
        }
        Http.Dispose();
    }

    private void OnStarted()
    {
        if (HttpUrl is not { } url)
            return;
        Directory.Set(Id, url);
        Log.NodeStarted(Logger, Id, url, RaftEndPoint);
        if (Options.ClusterSecret is null)
            Log.InsecureTransport(Logger, Id, RaftEndPoint, Options.ClusterId);
    }

    private static Uri ToBaseUrl(string address)
    {
        // Kestrel reports "http://127.0.0.1:41234" (or "http://[::]:80" / "http://0.0.0.0:80" for wildcard binds).
        var uri = new Uri(address);
        var host = IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) ? ip : null;
        return host is null ? new Uri(uri.GetLeftPart(UriPartial.Authority) + "/") : ClusterDirectory.ToHttpUrl(new IPEndPoint(host, uri.Port));
    }
}
