// The replicated key-value service. With no arguments: an embedded 3-node cluster on loopback.
// With arguments: one node of a cluster (see CommandLine.Usage, or README.md in this folder).
using System.Runtime.InteropServices;
using Raft;
using Raft.Samples.KeyValueStore;

var commandLine = CommandLine.Parse(args);
switch (commandLine.Mode)
{
    case RunMode.Help:
        Console.WriteLine(CommandLine.Usage);
        return 0;
    case RunMode.Invalid:
        await Console.Error.WriteLineAsync($"error: {commandLine.Error}");
        await Console.Error.WriteLineAsync("Run with --help for the usage.");
        return 2;
}

// Ctrl+C, SIGTERM and SIGQUIT all mean: stop the nodes cleanly, then exit.
using var stop = new CancellationTokenSource();
void RequestStop(PosixSignalContext context)
{
    context.Cancel = true; // keep the process alive until the nodes are disposed
    stop.Cancel();
}
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, RequestStop);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, RequestStop);
using var sigquit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, RequestStop);

try
{
    return commandLine.Mode == RunMode.Embedded
        ? await RunEmbeddedAsync(stop.Token)
        : await RunNodeAsync(commandLine.Options!, stop.Token);
}
catch (Exception ex) when (ex is IOException or LogCorruptionException or UnauthorizedAccessException or InvalidOperationException or System.Net.Sockets.SocketException or TimeoutException)
{
    await Console.Error.WriteLineAsync($"error: {ex.Message}");
    return 1;
}

static async Task<int> RunNodeAsync(KvNodeOptions options, CancellationToken stop)
{
    await using var node = await KvNode.CreateAsync(options, CancellationToken.None);
    await node.StartAsync(CancellationToken.None);
    Console.WriteLine(options.Join
        ? $"Node {node.Id} joining the cluster of {string.Join(",", options.Members)} (--join: it waits to be added with POST /cluster/members on the leader): HTTP {node.HttpUrl}, Raft {node.RaftEndPoint}, data in {options.DataDirectory}"
        : $"Node {node.Id} of cluster {string.Join(",", options.Members)}: HTTP {node.HttpUrl}, Raft {node.RaftEndPoint}, data in {options.DataDirectory}");
    foreach (var id in node.Directory.Members.Where(id => id != node.Id))
    {
        node.Directory.TryGet(id, out var url);
        Console.WriteLine($"  forwards to node {id} at {url}");
    }
    Console.WriteLine("Press Ctrl+C to stop.");
    await WaitAsync(node.Raft.Completion, stop);
    Console.WriteLine("Stopping...");
    return node.Raft.Completion.IsFaulted ? 1 : 0;
}

static async Task<int> RunEmbeddedAsync(CancellationToken stop)
{
    Console.WriteLine("Starting an embedded 3-node cluster on loopback...");
    await using var cluster = await EmbeddedCluster.StartAsync(new EmbeddedClusterOptions { MinimumLogLevel = LogLevel.Warning }, CancellationToken.None);
    KvNode leader;
    try
    {
        leader = await cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(15), stop);
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
    Console.WriteLine();
    Console.WriteLine("Press Ctrl+C to stop.");
    await WaitAsync(Task.WhenAny(cluster.Nodes.Select(n => n.Raft.Completion)), stop);
    Console.WriteLine("Stopping the nodes...");
    return 0;
}

// Until a stop is requested, or the task completes (a node stopped on its own, e.g. a disk error).
static async Task WaitAsync(Task task, CancellationToken stop)
{
    try
    {
        await task.WaitAsync(stop);
    }
    catch (OperationCanceledException) when (stop.IsCancellationRequested)
    {
    }
#pragma warning disable CA1031 // A failed node is reported by the caller (exit code), then disposed.
    catch (Exception ex)
#pragma warning restore CA1031
    {
        await Console.Error.WriteLineAsync($"A node stopped: {ex.Message}");
    }
}
