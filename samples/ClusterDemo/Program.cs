// A three-node Raft cluster in one process, on the in-memory network: elect a leader, replicate
// commands, stop the leader, watch a new one take over with every command intact.
using System.Diagnostics;
using System.Text;
using Raft;
using Raft.Samples.ClusterDemo;
using Raft.Testing;

int[] members = [1, 2, 3];
var network = new InMemoryNetwork(seed: 7);
var nodes = new Dictionary<int, RaftNode>();
var machines = new Dictionary<int, KeyValueStateMachine>();
foreach (var id in members)
{
    machines[id] = new KeyValueStateMachine();
    var node = new RaftNode(
        new RaftNodeOptions { NodeId = id, Members = members },
        network.CreateTransport(id),
        new InMemoryLogStore(),
        machines[id]);
    node.StateChanged += (_, change) =>
    {
        if (change.Role == RaftRole.Leader)
            Console.WriteLine($"  node {change.NodeId} became leader of term {change.Term}");
    };
    nodes[id] = node;
}

Console.WriteLine("Starting 3 nodes...");
foreach (var node in nodes.Values)
    await node.StartAsync();

var leader = await WaitForLeaderAsync(nodes.Values);
Console.WriteLine($"Leader: node {leader.Id} (term {leader.Status.Term})");

const int commands = 1000;
var watch = Stopwatch.StartNew();
var writes = new List<Task<object?>>();
for (var i = 0; i < commands; i++)
    writes.Add(leader.ProposeAsync(Encoding.UTF8.GetBytes($"SET key{i % 100} value{i}")).AsTask());
await Task.WhenAll(writes);
Console.WriteLine($"Replicated {commands} commands in {watch.ElapsedMilliseconds} ms; commit index {leader.Status.CommitIndex}");

try
{
    var follower = nodes.Values.First(n => n.Id != leader.Id);
    await follower.ProposeAsync(Encoding.UTF8.GetBytes("SET nope 1"));
}
catch (NotLeaderException ex)
{
    Console.WriteLine($"A follower refuses proposals: \"{ex.Message}\"");
}

Console.WriteLine($"Stopping the leader, node {leader.Id}...");
await leader.DisposeAsync();
nodes.Remove(leader.Id);

var newLeader = await WaitForLeaderAsync(nodes.Values);
Console.WriteLine($"New leader: node {newLeader.Id} (term {newLeader.Status.Term})");
await newLeader.ProposeAsync(Encoding.UTF8.GetBytes("SET after-failover yes"));
await newLeader.ReadBarrierAsync();
var machine = machines[newLeader.Id];
Console.WriteLine($"On the new leader: key99 = {machine.Get("key99")}, after-failover = {machine.Get("after-failover")}, {machine.Count} keys");
foreach (var node in nodes.Values)
{
    var s = node.Status;
    Console.WriteLine($"  node {s.Id}: {s.Role,-9} term {s.Term} leader {s.LeaderId} commit {s.CommitIndex} applied {s.AppliedIndex}");
}

foreach (var node in nodes.Values)
    await node.DisposeAsync();
Console.WriteLine("Done.");

static async Task<RaftNode> WaitForLeaderAsync(IEnumerable<RaftNode> nodes)
{
    var deadline = Stopwatch.StartNew();
    while (deadline.Elapsed < TimeSpan.FromSeconds(30))
    {
        var leader = nodes.FirstOrDefault(n => n.Status.Role == RaftRole.Leader);
        if (leader is not null)
            return leader;
        await Task.Delay(20);
    }
    throw new TimeoutException("No leader was elected within 30 seconds.");
}
