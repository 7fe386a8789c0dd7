using System.Net;

namespace Raft.Tests.Transport;

/// <summary>
/// <see cref="TcpTransport.UpdatePeers"/>: the transport follows the cluster configuration's members
/// and addresses, so a node added while the cluster runs becomes reachable without new options.
/// </summary>
public class TcpTransportUpdatePeersTests
{
    private static AppendEntries Heartbeat(int from, int to, long term) => new(from, to, term, 0, 0, [], 0);

    private static string Address(TcpTransport transport) => $"127.0.0.1:{transport.LocalEndPoint!.Port}";

    private static async Task<(TcpTransport Transport, MessageSink Sink)> StartAsync(int id, CollectingLoggerFactory? log = null, IReadOnlyDictionary<int, EndPoint>? peers = null)
    {
        var options = TcpTransportLoopbackTests.Options();
        var transport = new TcpTransport(peers is null ? options : CopyWithPeers(options, peers), log);
        var sink = new MessageSink();
        await transport.StartAsync(id, sink.Handler);
        return (transport, sink);
    }

    private static TcpTransportOptions CopyWithPeers(TcpTransportOptions o, IReadOnlyDictionary<int, EndPoint> peers) => o with { Peers = peers };

    [Fact]
    public async Task A_member_the_configuration_adds_becomes_reachable_both_ways()
    {
        var (a, sinkA) = await StartAsync(1);
        var (b, sinkB) = await StartAsync(2);
        await using (a)
        await using (b)
        {
            a.UpdatePeers(new Dictionary<int, string?> { [2] = Address(b) });
            b.UpdatePeers(new Dictionary<int, string?> { [1] = Address(a) });

            a.Send(Heartbeat(1, 2, 3));
            var received = await sinkB.NextAsync();
            Assert.Equal(1, received.From);
            Assert.Equal(3, received.Term);

            b.Send(Heartbeat(2, 1, 4));
            Assert.Equal(4, (await sinkA.NextAsync()).Term);
        }
    }

    [Fact]
    public async Task A_learned_member_the_configuration_drops_is_removed()
    {
        var log = new CollectingLoggerFactory();
        var (a, _) = await StartAsync(1, log);
        var (b, sinkB) = await StartAsync(2);
        await using (a)
        await using (b)
        {
            b.UpdatePeers(new Dictionary<int, string?> { [1] = Address(a) });
            a.UpdatePeers(new Dictionary<int, string?> { [2] = Address(b) });
            a.Send(Heartbeat(1, 2, 1));
            await sinkB.NextAsync();

            a.UpdatePeers(new Dictionary<int, string?>());
            await log.WaitForAsync(3033, "Peer 2 removed");

            // Messages to it are now dropped as addressed to an unknown peer.
            a.Send(Heartbeat(1, 2, 2));
            Assert.True(log.Has(3024), "a message to the removed peer was not dropped as unknown");
        }
    }

    [Fact]
    public async Task A_peer_from_the_options_is_kept_when_the_configuration_does_not_list_it()
    {
        var (b, sinkB) = await StartAsync(2);
        await using (b)
        {
            var (a, _) = await StartAsync(1, peers: new Dictionary<int, EndPoint> { [2] = b.LocalEndPoint! });
            await using (a)
            {
                // A transport accepts connections only from peers it knows.
                b.UpdatePeers(new Dictionary<int, string?> { [1] = Address(a) });
                // Listed with its address, then no longer listed: it is a bootstrap peer, so it stays.
                a.UpdatePeers(new Dictionary<int, string?> { [2] = Address(b) });
                a.UpdatePeers(new Dictionary<int, string?>());
                a.UpdatePeers(new Dictionary<int, string?> { [3] = null });

                a.Send(Heartbeat(1, 2, 5));
                Assert.Equal(5, (await sinkB.NextAsync()).Term);
            }
        }
    }

    [Fact]
    public async Task The_configuration_address_replaces_a_stale_address_from_the_options()
    {
        var (b, sinkB) = await StartAsync(2);
        await using (b)
        {
            // Port 1 on loopback: nothing listens there, so without the update nothing arrives.
            var stale = new IPEndPoint(IPAddress.Loopback, 1);
            var (a, _) = await StartAsync(1, peers: new Dictionary<int, EndPoint> { [2] = stale });
            await using (a)
            {
                // A transport accepts connections only from peers it knows.
                b.UpdatePeers(new Dictionary<int, string?> { [1] = Address(a) });
                a.UpdatePeers(new Dictionary<int, string?> { [2] = Address(b) });
                a.Send(Heartbeat(1, 2, 6));
                Assert.Equal(6, (await sinkB.NextAsync()).Term);
            }
        }
    }

    [Fact]
    public async Task A_bad_or_missing_address_is_logged_and_changes_nothing()
    {
        var log = new CollectingLoggerFactory();
        var (b, sinkB) = await StartAsync(2);
        await using (b)
        {
            var (a, _) = await StartAsync(1, log, new Dictionary<int, EndPoint> { [2] = b.LocalEndPoint! });
            await using (a)
            {
                // A transport accepts connections only from peers it knows.
                b.UpdatePeers(new Dictionary<int, string?> { [1] = Address(a) });
                a.UpdatePeers(new Dictionary<int, string?> { [2] = "not an address", [3] = null, [4] = "host:99999" });

                Assert.True(log.Has(3035, "'not an address'"), "an address that is not host:port was not reported");
                Assert.True(log.Has(3035, "'host:99999'"), "a port out of range was not reported");
                Assert.True(log.Has(3034, "node 3"), "a member without any address was not reported");

                // Node 2 keeps its working address.
                a.Send(Heartbeat(1, 2, 7));
                Assert.Equal(7, (await sinkB.NextAsync()).Term);

                // Node 4 was not added with a half-parsed address.
                a.Send(Heartbeat(1, 4, 7));
                Assert.True(log.Has(3024, "node 4"), "node 4 was added despite its bad address");
            }
        }
    }
}
