using System.Globalization;
using System.Net;
using DotNext.Net.Cluster.Consensus.Raft;
using DotNext.Net.Cluster.Consensus.Raft.Membership;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Raft.Benchmarks.KeyValueServices;

// One node of a key-value service of the sample's HTTP contract on DotNext.Net.Cluster's Raft.
// See README.md beside this file.
const string Usage = "Usage: DotNextKeyValueService --id N --listen HOST:PORT --http HOST:PORT --peers 1=HOST:PORT,... --http-peers 1=HOST:PORT,... --data DIR";
int id;
IPEndPoint listen, http;
SortedDictionary<int, IPEndPoint> peers, httpPeers;
string data;
try
{
    string[] names = ["id", "listen", "http", "peers", "http-peers", "data"];
    var options = NodeArgs.Parse(args, names, names);
    id = options.Id();
    listen = NodeArgs.EndPoint(options["listen"]!, "--listen");
    http = NodeArgs.EndPoint(options["http"]!, "--http");
    peers = NodeArgs.Members(options["peers"]!, "--peers");
    httpPeers = NodeArgs.Members(options["http-peers"]!, "--http-peers");
    data = options["data"]!;
    if (!peers.TryGetValue(id, out var self) || !self.Equals(listen))
        throw new FormatException($"--peers must list this node (id {id}) at its --listen address {listen}.");
    if (!peers.Keys.SequenceEqual(httpPeers.Keys))
        throw new FormatException("--peers and --http-peers must list the same ids.");
}
catch (FormatException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    Console.Error.WriteLine(Usage);
    return 2;
}

var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(console =>
{
    console.SingleLine = true;
    console.TimestampFormat = "HH:mm:ss.fff ";
});
builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.AddServerHeader = false;
    kestrel.Limits.MaxRequestBodySize = 2L * KvHttp.MaxBodyBytes;
    kestrel.Listen(http);
});
var app = builder.Build();
var loggerFactory = app.Services.GetRequiredService<ILoggerFactory>();

// The state machine restores its latest snapshot before the WAL opens (the WAL reads it in its constructor).
var stateMachine = new KvStateMachine(new DirectoryInfo(Path.Combine(data, "state")));
await stateMachine.RestoreAsync(CancellationToken.None);
var wal = new WriteAheadLog(
    new WriteAheadLog.Options
    {
        Location = Path.Combine(data, "wal"),
        // As the cluster benchmark configures it for throughput (see README: what "fsync on" means here).
        MemoryManagement = WriteAheadLog.MemoryManagementStrategy.PrivateMemory,
        ChunkSize = 512 * 1024,
        ConcurrencyLevel = 64 + (Environment.ProcessorCount * 2) + 1,
    },
    stateMachine);
var configuration = new RaftCluster.TcpConfiguration(listen)
{
    // This library's defaults (300-600 ms), as in the cluster benchmark.
    LowerElectionTimeout = 300,
    UpperElectionTimeout = 600,
    ColdStart = false,
    ConfigurationStorage = null!, // null: in-memory configuration storage, filled below
    LoggerFactory = loggerFactory,
};
var members = ((InMemoryClusterConfigurationStorage<EndPoint>)configuration.ConfigurationStorage).CreateInitialConfigurationBuilder();
foreach (var endPoint in peers.Values)
    members.Add(endPoint);
members.Build();
var cluster = new RaftCluster(configuration) { AuditTrail = wal };

using var forwarder = new LeaderForwarder(cluster, peers, httpPeers);
var api = new KvApi(id, cluster, wal, stateMachine, forwarder, peers);
api.Map(app);

await cluster.StartAsync(CancellationToken.None);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"DotNext node {id}: Raft {listen}, HTTP http://{http}/, data {data}"));
try
{
    await app.RunAsync(); // until SIGTERM / Ctrl+C
}
finally
{
    try
    {
        await cluster.StopAsync(CancellationToken.None);
    }
    catch (Exception ex) when (ex is not OutOfMemoryException)
    {
        Console.Error.WriteLine($"stopping Raft: {ex.Message}");
    }
    await cluster.DisposeAsync();
    await wal.DisposeAsync();
    await stateMachine.DisposeAsync();
}
return 0;
