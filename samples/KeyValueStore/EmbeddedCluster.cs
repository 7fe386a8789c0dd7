using System.Diagnostics;
using System.Net;
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

    /// <summary>Starts every node and tells each where the others are. Does not wait for a leader (see <see cref="WaitForLeaderAsync"/>).</summary>
    public static async Task<EmbeddedCluster> StartAsync(EmbeddedClusterOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new EmbeddedClusterOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.NodeCount);
        var dataDirectory = options.DataDirectory ?? Path.Combine(Path.GetTempPath(), "raft-kv-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dataDirectory);
        int[] members = [.. Enumerable.Range(1, options.NodeCount)];
        // One secret for this run's nodes: nothing else on the machine can join their Raft ports.
        var secret = options.ClusterSecret ?? RandomNumberGenerator.GetBytes(KvNodeOptions.GeneratedClusterSecretBytes);
        var nodes = new List<KvNode>();
        var cluster = new EmbeddedCluster(options, dataDirectory, nodes);
        try
        {
            foreach (var id in members)
            {
                nodes.Add(await KvNode.CreateAsync(NodeOptions(options, id, members, dataDirectory, secret), cancellationToken));
            }
            // Ports are chosen when each node starts; the peers learn them right after, well within
            // the first election timeout (messages sent before that are dropped, which Raft tolerates).
            foreach (var node in nodes)
                await node.StartAsync(cancellationToken);
            foreach (var node in nodes)
            {
                foreach (var other in nodes)
                    node.SetPeer(other.Id, other.RaftEndPoint!, other.HttpUrl!);
            }
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Creates the settings of node <paramref name="id"/> (free loopback ports, its folder under <paramref name="dataDirectory"/>, the cluster's <paramref name="clusterSecret"/>).</summary>
    public static KvNodeOptions NodeOptions(EmbeddedClusterOptions options, int id, IReadOnlyList<int> members, string dataDirectory, byte[] clusterSecret)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(clusterSecret);
        return new KvNodeOptions
        {
            Id = id,
            Members = members,
            RaftListen = new IPEndPoint(IPAddress.Loopback, 0),
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

    /// <summary>Stops every node, in parallel (each stops its HTTP server, then its Raft node, then closes its stores), and deletes the data unless told to keep it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        await Task.WhenAll(_nodes.Select(n => n.DisposeAsync().AsTask()));
        if (_options.DeleteDataOnDispose)
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
