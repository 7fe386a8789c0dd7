using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Raft.Testing;

namespace Raft.Tests.Node;

/// <summary>
/// A node keeps its transport able to reach every member it sends to: a member just added before
/// the first append goes to it, a member being removed until the entry removing it and the leader's
/// last append went out. The transport here behaves like <see cref="TcpTransport"/>: a message to a
/// peer it was not told about is dropped (and recorded as a violation).
/// </summary>
public sealed class MembershipTransportPeersTests
{
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan RealTimeGuard = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Knows the peers its options gave it (never forgotten, like <see cref="TcpTransportOptions.Peers"/>)
    /// and those the node's last <see cref="ITransport.UpdatePeers"/> named; drops anything else.
    /// </summary>
    private sealed class PeerCheckingTransport(ITransport inner, int self, int[] configured) : ITransport
    {
        private readonly Lock _gate = new();
        private readonly List<string> _violations = [];
        private HashSet<int> _told = [];

        public string[] Violations
        {
            get
            {
                lock (_gate)
                    return [.. _violations];
            }
        }

        public bool Knows(int id)
        {
            lock (_gate)
                return configured.Contains(id) || _told.Contains(id);
        }

        public ValueTask StartAsync(int localId, RaftMessageHandler handler, CancellationToken cancellationToken = default) => inner.StartAsync(localId, handler, cancellationToken);

        public void Send(RaftMessage message)
        {
            if (!Knows(message.To))
            {
                lock (_gate)
                    _violations.Add($"node {self} sent {message.GetType().Name} (term {message.Term}) to node {message.To}, which its transport was not told about");
                return;
            }
            inner.Send(message);
        }

        public ValueTask StopAsync(CancellationToken cancellationToken = default) => inner.StopAsync(cancellationToken);

        public void UpdatePeers(IReadOnlyDictionary<int, string?> peers)
        {
            lock (_gate)
                _told = [.. peers.Keys];
        }
    }

    [Fact]
    public async Task The_transport_knows_a_new_member_before_its_first_append_and_a_removed_one_until_it_learned_of_its_removal()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var network = new InMemoryNetwork(7, time);
        int[] originals = [1, 2, 3];
        var nodes = new Dictionary<int, RaftNode>();
        var transports = new Dictionary<int, PeerCheckingTransport>();
        async Task StartAsync(int id, bool join)
        {
            var transport = new PeerCheckingTransport(network.CreateTransport(id), id, originals);
            var node = new RaftNode(
                new RaftNodeOptions
                {
                    NodeId = id,
                    Members = join ? [] : originals,
                    MemberAddresses = join ? null : originals.ToDictionary(m => m, m => $"node{m}:700{m}"),
                    Join = join,
                    TickInterval = Tick,
                    HeartbeatInterval = TimeSpan.FromMilliseconds(50),
                    ElectionTimeoutMin = TimeSpan.FromMilliseconds(300),
                    ElectionTimeoutMax = TimeSpan.FromMilliseconds(600),
                    RandomSeed = id * 31,
                },
                transport,
                new InMemoryLogStore(),
                new ListStateMachine(),
                timeProvider: time);
            nodes[id] = node;
            transports[id] = transport;
            await node.StartAsync();
        }

        async Task RunUntilAsync(Func<bool> condition, string what)
        {
            var real = Stopwatch.StartNew();
            for (var ticks = 0; !condition(); ticks++)
            {
                if (ticks > 6000 || real.Elapsed > RealTimeGuard)
                    throw new TimeoutException($"Gave up waiting for {what}. Violations: {string.Join("; ", transports.Values.SelectMany(t => t.Violations))}");
                time.Advance(Tick);
                await Task.Delay(1);
            }
        }

        async Task<T> RunAsync<T>(Task<T> task, string what)
        {
            await RunUntilAsync(() => task.IsCompleted, what);
            return await task;
        }

        try
        {
            foreach (var id in originals)
                await StartAsync(id, join: false);
            await StartAsync(4, join: true);
            RaftNode? leader = null;
            await RunUntilAsync(() => (leader = nodes.Values.FirstOrDefault(n => n.Status.Role == RaftRole.Leader)) is not null, "a leader");
            await RunAsync(leader!.ProposeAsync(Encoding.UTF8.GetBytes("before")).AsTask(), "a first write");

            await RunAsync(leader.ChangeMembershipAsync(MembershipChange.AddLearner(4, "node4:7004")), "adding a learner");
            await RunUntilAsync(() => leader.Status.Progress.GetValueOrDefault(4) == leader.Status.LastLogIndex, "the learner catches up");
            await RunAsync(leader.ChangeMembershipAsync(MembershipChange.Promote(4)), "promoting it");
            await RunUntilAsync(() => nodes[4].Status.Configuration.IsVoter(4), "node 4 learns it votes");

            await RunAsync(leader.ChangeMembershipAsync(MembershipChange.Remove(4)), "removing it");
            await RunUntilAsync(() => nodes[4].Status.IsRemoved, "the removed node learns it was removed");
            // Once the removal committed (and the last append went out), the members forget its address.
            await RunUntilAsync(() => originals.All(id => !transports[id].Knows(4)), "the members' transports forget the removed node");
            await RunAsync(leader.ProposeAsync(Encoding.UTF8.GetBytes("after")).AsTask(), "a write without node 4");

            Assert.Empty(transports.Values.SelectMany(t => t.Violations));
        }
        finally
        {
            foreach (var node in nodes.Values)
                await node.DisposeAsync().AsTask().WaitAsync(RealTimeGuard);
        }
    }
}
