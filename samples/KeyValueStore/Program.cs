// The replicated key-value service. With no arguments (and no node configured in appsettings.json
// or the environment): an embedded 3-node cluster on loopback. Otherwise: one node of a cluster
// (see --help, or README.md in this folder).
//
// A node is an ordinary ASP.NET Core application: the generic host runs the Raft node through the
// hosting package (services.AddRaftNode), and its console lifetime handles Ctrl+C, SIGTERM and
// SIGQUIT: the HTTP server stops, then the node hands leadership over and closes its stores.
using Microsoft.Extensions.Options;
using Raft;
using Raft.Hosting;
using Raft.Samples.KeyValueStore;

var commandLine = CommandLine.Parse(args);
switch (commandLine.Mode)
{
    case RunMode.Help:
        Console.WriteLine(CommandLine.Usage);
        return 0;
    case RunMode.Invalid:
        return await MisconfiguredAsync(commandLine.Error!);
}

var builder = KvNode.CreateBuilder(commandLine.Settings);
if (commandLine.Mode == RunMode.Embedded && builder.Configuration[$"{RaftHostingOptions.DefaultSectionName}:{nameof(RaftHostingOptions.NodeId)}"] is null)
    return await RunEmbeddedAsync();

// Flags, appsettings.json and environment variables together: check them before anything starts.
var failures = KvSettings.Check(builder.Configuration, out var options);
if (failures.Count > 0)
    return await MisconfiguredAsync(string.Join(Environment.NewLine, failures));

try
{
    await using var app = KvNode.Build(builder);
    var node = app.Services.GetRequiredService<KvNode>();
    app.Lifetime.ApplicationStarted.Register(() => PrintNode(node, options!));
    await app.RunAsync(); // until Ctrl+C, SIGTERM or SIGQUIT (or the node faults: the hosting package then stops the application)
    return node.Raft.Completion.IsFaulted ? 1 : 0;
}
catch (OptionsValidationException ex)
{
    return await MisconfiguredAsync(string.Join(Environment.NewLine, ex.Failures));
}
catch (Exception ex) when (ex is IOException or LogCorruptionException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
{
    await Console.Error.WriteLineAsync($"error: {ex.Message}");
    return 1;
}

static void PrintNode(KvNode node, KvNodeOptions options)
{
    Console.WriteLine(options.Join
        ? $"Node {node.Id} joining the cluster of {string.Join(",", options.Members)} (--join: it waits to be added with POST /cluster/members on the leader): HTTP {node.HttpUrl}, Raft {node.RaftEndPoint}, data in {options.DataDirectory}"
        : $"Node {node.Id} of cluster {string.Join(",", options.Members)}: HTTP {node.HttpUrl}, Raft {node.RaftEndPoint}, data in {options.DataDirectory}");
    foreach (var id in node.Directory.Members.Where(id => id != node.Id))
    {
        node.Directory.TryGet(id, out var url);
        Console.WriteLine($"  forwards to node {id} at {url}");
    }
    Console.WriteLine("Press Ctrl+C to stop.");
}

static async Task<int> MisconfiguredAsync(string error)
{
    await Console.Error.WriteLineAsync($"error: {error}");
    await Console.Error.WriteLineAsync(CommandLine.SettingsAndFlags);
    await Console.Error.WriteLineAsync("Run with --help for the usage.");
    return 2;
}

// Three nodes, each the same web application as a node started with flags, in this process. Each
// host's console lifetime stops it on Ctrl+C (and the hosting package stops one whose node faults);
// once one has stopped, all are stopped and disposed.
static async Task<int> RunEmbeddedAsync()
{
    Console.WriteLine("Starting an embedded 3-node cluster on loopback...");
    await using var cluster = await EmbeddedCluster.StartAsync(new EmbeddedClusterOptions { MinimumLogLevel = LogLevel.Warning });
    var stopped = Task.WhenAny(cluster.Nodes.Select(n => n.App!.WaitForShutdownAsync()));
    KvNode leader;
    try
    {
        using var stopping = new CancellationTokenSource();
        _ = stopped.ContinueWith(_ => stopping.Cancel(), TaskScheduler.Default);
        leader = await cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(15), stopping.Token);
    }
    catch (OperationCanceledException)
    {
        return 0;
    }
    var urls = cluster.Nodes.Select(n => n.HttpUrl!.ToString().TrimEnd('/')).ToList();
    Console.WriteLine();
    Console.WriteLine($"Data: {cluster.DataDirectory} (deleted on exit)");
    foreach (var node in cluster.Nodes)
        Console.WriteLine($"  node {node.Id}: {node.HttpUrl}   (Raft on {node.RaftEndPoint}){(node == leader ? "   <- leader" : "")}");
    var follower = cluster.Nodes.First(n => n != leader).HttpUrl!.ToString().TrimEnd('/');
    Console.WriteLine();
    Console.WriteLine($"Open {urls[0]}/ in a browser for the status page, or try (any node works; followers forward to the leader):");
    Console.WriteLine($"  curl -i -X PUT --data-binary 'world' {urls[0]}/kv/hello");
    Console.WriteLine($"  curl -i {urls[1]}/kv/hello");
    Console.WriteLine($"  curl -i -X POST -H 'Content-Type: application/json' -d '{{\"expected\":\"world\",\"value\":\"raft\"}}' {urls[2]}/kv/hello/cas");
    Console.WriteLine($"  curl -i -X POST -H 'Content-Type: application/json' -d '{{\"expected\":\"world\",\"value\":\"again\"}}' {follower}/kv/hello/cas   # 409: it is 'raft' now");
    Console.WriteLine($"  curl -i -X DELETE {urls[0]}/kv/hello");
    Console.WriteLine($"  curl -s {urls[1]}/status");
    Console.WriteLine($"  curl -s {urls[0]}/cluster");
    Console.WriteLine($"  curl -s {urls[0]}/healthz");
    Console.WriteLine();
    Console.WriteLine("Press Ctrl+C to stop.");
    await stopped;
    Console.WriteLine("Stopping the nodes...");
    return 0;
}
