using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Raft.Testing;
using Raft.Tests.Node;

namespace Raft.Tests.Transport;

/// <summary>
/// The datagram transport of docs/custom-transport.md, built on <see cref="RaftMessageSerializer"/>:
/// a real cluster runs over it, bad datagrams are dropped with a logged reason, and the guide
/// quotes the code that is tested here.
/// </summary>
public sealed class DatagramTransportTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Three_nodes_elect_a_leader_and_commit_commands_over_datagrams()
    {
        using var log = new CollectingLoggerFactory();
        var directory = new ConcurrentDictionary<int, IPEndPoint>();
        int[] members = [1, 2, 3];
        var machines = members.ToDictionary(id => id, _ => new ListStateMachine());
        var nodes = new List<RaftNode>();
        foreach (var id in members)
        {
            var transport = new DatagramTransport(new IPEndPoint(IPAddress.Loopback, 0), directory, log.CreateLogger("datagram"));
            directory[id] = transport.LocalEndPoint;
            nodes.Add(new RaftNode(
                new RaftNodeOptions
                {
                    NodeId = id,
                    Members = members,
                    ForwardToLeader = true,
                    MaxAppendBytes = 16 * 1024, // an AppendEntries stays far below a datagram's 64 KiB
                    RandomSeed = id,
                },
                transport,
                new InMemoryLogStore(),
                machines[id]));
        }
        try
        {
            foreach (var node in nodes)
                await node.StartAsync();
            var leaderId = await nodes[0].WaitForLeaderAsync().WaitAsync(Patience);
            var leader = nodes.Single(n => n.Id == leaderId);
            var follower = nodes.First(n => n.Id != leaderId);

            await leader.ProposeAsync(Encoding.UTF8.GetBytes("on the leader")).AsTask().WaitAsync(Patience);
            await follower.ProposeAsync(Encoding.UTF8.GetBytes("forwarded")).AsTask().WaitAsync(Patience);
            await follower.ReadBarrierAsync().WaitAsync(Patience);

            Assert.Equal(["on the leader", "forwarded"], machines[follower.Id].Commands);
            var deadline = DateTime.UtcNow + Patience;
            while (machines.Values.Any(m => m.Commands.Length < 2) && DateTime.UtcNow < deadline)
                await Task.Delay(20);
            Assert.All(machines.Values, m => Assert.Equal(["on the leader", "forwarded"], m.Commands));
        }
        finally
        {
            foreach (var node in nodes)
                await node.DisposeAsync();
        }
    }

    [Fact]
    public async Task Garbage_and_datagrams_from_unknown_addresses_are_dropped_with_a_logged_reason()
    {
        using var log = new CollectingLoggerFactory();
        var directory = new ConcurrentDictionary<int, IPEndPoint>();
        var receiver = new DatagramTransport(new IPEndPoint(IPAddress.Loopback, 0), directory, log.CreateLogger("receiver"));
        var sender = new DatagramTransport(new IPEndPoint(IPAddress.Loopback, 0), directory, log.CreateLogger("sender"));
        (directory[1], directory[2]) = (sender.LocalEndPoint, receiver.LocalEndPoint);
        var sink = new MessageSink();
        await receiver.StartAsync(2, sink.Handler);
        await sender.StartAsync(1, (_, _) => ValueTask.CompletedTask);
        using var stranger = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        try
        {
            await stranger.SendAsync(new byte[] { 1, 2, 3 }, receiver.LocalEndPoint);                  // truncated
            await stranger.SendAsync(new byte[] { 0, 0, 0, 0, 77, 0, 0, 0 }, receiver.LocalEndPoint);  // unknown type
            await stranger.SendAsync(RaftMessageSerializer.Serialize(new TimeoutNow(1, 2, 5)), receiver.LocalEndPoint); // node 1's message, not from node 1

            sender.Send(new TimeoutNow(1, 2, 6)); // the real node 1
            var delivered = await sink.NextAsync();

            Assert.Equal(new TimeoutNow(1, 2, 6), delivered);
            Assert.False(sink.TryTake(out _), "nothing but the genuine message may be delivered");
            var warnings = log.Records.Where(r => r.Level == LogLevel.Warning).Select(r => r.Message).ToArray();
            Assert.Contains(warnings, w => w.Contains("The frame is truncated: 3 bytes", StringComparison.Ordinal));
            Assert.Contains(warnings, w => w.Contains("Unknown message type 77.", StringComparison.Ordinal));
            Assert.Contains(warnings, w => w.Contains("Dropped a TimeoutNow from", StringComparison.Ordinal) && w.Contains("not node 1's address", StringComparison.Ordinal));

            sender.Send(new TimeoutNow(1, 3, 7)); // no address for node 3
            Assert.Contains(log.Records, r => r.Message.Contains("Dropped a TimeoutNow for node 3: unknown peer", StringComparison.Ordinal));
        }
        finally
        {
            await receiver.StopAsync();
            await sender.StopAsync();
        }
    }

    [Fact]
    public void The_guide_quotes_this_transport_verbatim()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Raft.sln")))
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("Raft.sln not found above the test binaries.");
        var source = File.ReadAllText(Path.Combine(root, "tests", "Raft.Tests", "Transport", "DatagramTransport.cs")).ReplaceLineEndings("\n");
        var guide = File.ReadAllText(Path.Combine(root, "docs", "custom-transport.md")).ReplaceLineEndings("\n");

        const string begin = "// <datagram-transport>\n", end = "// </datagram-transport>";
        var start = source.IndexOf(begin, StringComparison.Ordinal) + begin.Length;
        var code = source[start..source.IndexOf(end, start, StringComparison.Ordinal)];

        Assert.Contains("```csharp\n" + code + "```", guide, StringComparison.Ordinal);
        Assert.True(code.Split('\n').Length <= 100, $"the guide's transport has grown to {code.Split('\n').Length} lines");
    }
}
