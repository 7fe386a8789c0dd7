using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Raft.Samples.KeyValueStore;

/// <summary>Settings of an <see cref="EmbeddedCluster"/>.</summary>
public sealed class EmbeddedClusterOptions
{
    /// <summary>How many nodes. The default is 3.</summary>
    public int NodeCount { get; init; } = 3;

    /// <summary>The folder that holds every node's data (<c>node-N/</c>). The default is a new folder under the system's temp directory.</summary>
    public string? DataDirectory { get; init; }

    /// <summary>Whether <see cref="EmbeddedCluster.DisposeAsync"/> deletes <see cref="DataDirectory"/>. The default is true.</summary>
    public bool DeleteDataOnDispose { get; init; } = true;

    /// <summary>The least severe log level written to the console. The default is Information.</summary>
    public LogLevel MinimumLogLevel { get; init; } = LogLevel.Information;

    /// <summary>How many applied commands between snapshots. The default is the library's, <see cref="Raft.RaftNodeOptions.SnapshotInterval"/> (16,384).</summary>
    public long SnapshotInterval { get; init; } = 16_384;

    /// <summary>
    /// How many entries before a snapshot stay in the log. The default is the library's,
    /// <see cref="Raft.RaftNodeOptions.SnapshotTrailingEntries"/> (10,240): a follower that lags under
    /// load catches up from the log, never through a snapshot (which would leave its forwarded writes
    /// without results).
    /// </summary>
    public long SnapshotTrailingEntries { get; init; } = 10_240;

    /// <summary>The longest a request waits on the leader. The default is 5 s.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The secret the nodes share on their Raft ports. The default (null) is <see cref="KvNodeOptions.GeneratedClusterSecretBytes"/> random bytes, new for each cluster.</summary>
    public byte[]? ClusterSecret { get; init; }

    /// <summary>See <see cref="KvNodeOptions.MaxPromotionLag"/>. The default is 1,000.</summary>
    public long MaxPromotionLag { get; init; } = 1000;

    /// <summary>Called with each node's id and its application's builder before it is built (to add a logging provider, a service...). The default is none.</summary>
    public Action<int, WebApplicationBuilder>? ConfigureNode { get; init; }
}

/// <summary>
/// A whole cluster in one process, on loopback: every node listens for Raft (TCP) and HTTP on free
/// ports, keeps a file log and file snapshots under one folder, and learns the others' addresses
/// once all are started.
/// </summary>
public sealed class EmbeddedCluster : IAsyncDisposable
{
    private readonly EmbeddedClusterOptions _options;
    private readonly List<KvNode> _nodes;
    private int _disposed;

    private EmbeddedCluster(EmbeddedClusterOptions options, string dataDirectory, List<KvNode> nodes)
    {
        _options = options;
        DataDirectory = dataDirectory;
        _nodes = nodes;
    }

    /// <summary>The nodes, by ascending id (1..N).</summary>
    public IReadOnlyList<KvNode> Nodes => _nodes;

    /// <summary>The folder holding every node's data.</summary>
    public string DataDirectory { get; }

    /// <summary>The settings the cluster was started with.</summary>
    public EmbeddedClusterOptions Options => _options;

    /// <summary>
    /// Starts every node (each its own web application, built as the command line builds one) and
    /// tells each where the others serve HTTP. Does not wait for a leader (see <see cref="WaitForLeaderAsync"/>).
    /// </summary>
    /// <remarks>
    /// The Raft ports are chosen here (free loopback ports, bound and released), since every member
    /// lists the others' addresses from the start. Should another program take one of them before its
    /// node listens, the cluster is started again on new ports (a few times at most).
    /// </remarks>
    public static async Task<EmbeddedCluster> StartAsync(EmbeddedClusterOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new EmbeddedClusterOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.NodeCount);
        var dataDirectory = options.DataDirectory ?? Path.Combine(Path.GetTempPath(), "raft-kv-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dataDirectory);
        int[] members = [.. Enumerable.Range(1, options.NodeCount)];
        // One secret for this run's nodes: nothing else on the machine can join their Raft ports.
        var secret = options.ClusterSecret ?? RandomNumberGenerator.GetBytes(KvNodeOptions.GeneratedClusterSecretBytes);
        // A restarted cluster listens where it did: its configuration (in snapshots) records these addresses.
        var endPointsFile = Path.Combine(dataDirectory, EndPointsFileName);
        var recorded = ReadEndPoints(endPointsFile);
        for (var attempt = 1; ; attempt++)
        {
            var raftEndPoints = recorded ?? FreeEndPoints(members);
            var nodes = new List<KvNode>();
            var cluster = new EmbeddedCluster(options, dataDirectory, nodes);
            try
            {
                foreach (var id in members)
                    nodes.Add(await KvNode.CreateAsync(NodeOptions(options, id, members, dataDirectory, secret, raftEndPoints), options.ConfigureNode is { } configure ? builder => configure(id, builder) : null, cancellationToken));
                foreach (var node in nodes)
                    await node.StartAsync(cancellationToken);
                if (recorded is null)
                    await File.WriteAllLinesAsync(endPointsFile, raftEndPoints.Select(p => $"{p.Key}={p.Value}"), cancellationToken);
                // HTTP ports are chosen when each node starts; the peers learn them here.
                foreach (var node in nodes)
                {
                    foreach (var other in nodes)
                        node.SetPeer(other.Id, other.RaftEndPoint!, other.HttpUrl!);
                }
                return cluster;
            }
            catch (Exception ex) when (attempt < 3 && recorded is null && IsAddressInUse(ex))
            {
                // Another program took a port: start afresh (these nodes' folders hold nothing yet).
                await cluster.DisposeAsync(deleteData: false);
                foreach (var id in members.Where(id => Directory.Exists(Path.Combine(dataDirectory, $"node-{id}"))))
                    Directory.Delete(Path.Combine(dataDirectory, $"node-{id}"), recursive: true);
            }
            catch
            {
                await cluster.DisposeAsync();
                throw;
            }
        }
    }

    /// <summary>Free loopback endpoints, one per member (bound and released: another program may take one before the node listens).</summary>
    public static Dictionary<int, IPEndPoint> FreeEndPoints(IReadOnlyList<int> members)
    {
        ArgumentNullException.ThrowIfNull(members);
        var listeners = members.Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
        try
        {
            listeners.ForEach(l => l.Start());
            return members.Zip(listeners).ToDictionary(p => p.First, p => (IPEndPoint)p.Second.LocalEndpoint);
        }
        finally
        {
            listeners.ForEach(l => l.Stop());
        }
    }

    /// <summary>The file in <see cref="DataDirectory"/> that records the nodes' Raft addresses, one "id=ip:port" a line.</summary>
    public const string EndPointsFileName = "raft-endpoints.txt";

    private static Dictionary<int, IPEndPoint>? ReadEndPoints(string path)
    {
        if (!File.Exists(path))
            return null;
        return File.ReadAllLines(path)
            .Where(line => line.Contains('=', StringComparison.Ordinal))
            .Select(line => line.Split('=', 2))
            .ToDictionary(p => int.Parse(p[0], System.Globalization.CultureInfo.InvariantCulture), p => IPEndPoint.Parse(p[1]));
    }

    private static bool IsAddressInUse(Exception ex) => ex switch
    {
        SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse } => true,
        IOException { InnerException: { } inner } => IsAddressInUse(inner),
        _ => false,
    };

    /// <summary>
    /// Creates the settings of node <paramref name="id"/>: its Raft address from <paramref name="raftEndPoints"/>
    /// (which lists every member; free loopback ports when null), HTTP on a free loopback port, its folder
    /// under <paramref name="dataDirectory"/>, the cluster's <paramref name="clusterSecret"/>.
    /// </summary>
    public static KvNodeOptions NodeOptions(EmbeddedClusterOptions options, int id, IReadOnlyList<int> members, string dataDirectory, byte[] clusterSecret, IReadOnlyDictionary<int, IPEndPoint>? raftEndPoints = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(clusterSecret);
        raftEndPoints ??= FreeEndPoints(members);
        return new KvNodeOptions
        {
            Id = id,
            Members = members,
            RaftListen = raftEndPoints[id],
            RaftPeers = members.ToDictionary(m => m, m => (EndPoint)raftEndPoints[m]),
            HttpListen = new IPEndPoint(IPAddress.Loopback, 0),
            DataDirectory = Path.Combine(dataDirectory, $"node-{id}"),
            MinimumLogLevel = options.MinimumLogLevel,
            SnapshotInterval = options.SnapshotInterval,
            SnapshotTrailingEntries = options.SnapshotTrailingEntries,
            RequestTimeout = options.RequestTimeout,
            ClusterSecret = clusterSecret,
            MaxPromotionLag = options.MaxPromotionLag,
        };
    }

    /// <summary>Waits until one node is leader and every running node knows it; returns it.</summary>
    /// <exception cref="TimeoutException">No leader within <paramref name="timeout"/>.</exception>
    public async Task<KvNode> WaitForLeaderAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var running = _nodes.Where(n => !n.Raft.Completion.IsCompleted).ToList();
            var leaders = running.Where(n => n.Raft.Status.Role == RaftRole.Leader).ToList();
            if (leaders.Count == 1 && running.All(n => n.Raft.Status.LeaderId == leaders[0].Id))
                return leaders[0];
            if (clock.Elapsed > timeout)
                throw new TimeoutException($"No leader known to every node within {timeout.TotalSeconds} s: " + string.Join("; ", running.Select(n => $"node {n.Id} {n.Raft.Status.Role} term {n.Raft.Status.Term} leader {n.Raft.Status.LeaderId}")));
            await Task.Delay(20, cancellationToken);
        }
    }

    /// <summary>Stops every node, in parallel (each as its host stops on Ctrl+C: HTTP server, then the Raft node, which hands leadership over first), and deletes the data unless told to keep it.</summary>
    public ValueTask DisposeAsync() => DisposeAsync(_options.DeleteDataOnDispose);

    private async ValueTask DisposeAsync(bool deleteData)
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        await Task.WhenAll(_nodes.Select(n => n.DisposeAsync().AsTask()));
        if (deleteData)
        {
            try
            {
                Directory.Delete(DataDirectory, recursive: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Leave it; it is in the temp folder.
            }
        }
    }
}
