using System.Net;
using System.Net.Security;
using Microsoft.Extensions.Logging;

namespace Raft.Tests.Transport;

/// <summary>Real transports talking over loopback.</summary>
public class TcpTransportLoopbackTests
{
    internal const string Cluster = "loopback-test";

    internal static TcpTransportOptions Options(
        int queue = 1024,
        SslServerAuthenticationOptions? serverTls = null,
        SslClientAuthenticationOptions? clientTls = null,
        string cluster = Cluster,
        byte[]? secret = null,
        Func<System.Security.Cryptography.X509Certificates.X509Certificate2, int?>? nodeIdFromCertificate = null) => new()
    {
        ClusterSecret = secret,
        NodeIdFromCertificate = nodeIdFromCertificate,
        ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
        ClusterId = cluster,
        SendQueueCapacity = queue,
        ReconnectBackoffMin = TimeSpan.FromMilliseconds(20),
        ReconnectBackoffMax = TimeSpan.FromMilliseconds(200),
        ServerTls = serverTls,
        ClientTls = clientTls,
    };

    /// <summary>Starts node 1 and node 2 and tells each where the other listens.</summary>
    internal static async Task<(TcpTransport A, MessageSink SinkA, TcpTransport B, MessageSink SinkB)> StartPairAsync(
        TcpTransportOptions optionsA, TcpTransportOptions optionsB, ILoggerFactory? logA = null, ILoggerFactory? logB = null)
    {
        var (a, sinkA, b, sinkB) = (new TcpTransport(optionsA, logA), new MessageSink(), new TcpTransport(optionsB, logB), new MessageSink());
        await a.StartAsync(1, sinkA.Handler);
        await b.StartAsync(2, sinkB.Handler);
        a.SetPeer(2, b.LocalEndPoint!);
        b.SetPeer(1, a.LocalEndPoint!);
        return (a, sinkA, b, sinkB);
    }

    [Fact]
    public async Task Two_transports_exchange_every_message_type_both_ways()
    {
        var (a, sinkA, b, sinkB) = await StartPairAsync(Options(), Options());
        await using (a)
        await using (b)
        {
            await AssertExchangeAsync(a, sinkA, b, sinkB);
        }
    }

    internal static async Task AssertExchangeAsync(TcpTransport a, MessageSink sinkA, TcpTransport b, MessageSink sinkB)
    {
        var toB = MessageGenerators.OneOfEach(1, 2);
        var toA = MessageGenerators.OneOfEach(2, 1);
        foreach (var m in toB)
            a.Send(m);
        foreach (var m in toA)
            b.Send(m);

        // Two lanes (snapshots travel apart), so compare as sets keyed by type.
        await AssertReceivesAllAsync(sinkB, toB);
        await AssertReceivesAllAsync(sinkA, toA);
    }

    private static async Task AssertReceivesAllAsync(MessageSink sink, IReadOnlyList<RaftMessage> expected)
    {
        var received = new List<RaftMessage>();
        while (received.Count < expected.Count)
            received.Add(await sink.NextAsync());
        foreach (var m in expected)
            MessageAssert.Equal(m, received.Single(r => r.GetType() == m.GetType()));
    }

    [Fact]
    public async Task Many_messages_arrive_in_order_on_one_lane()
    {
        const int count = 5000;
        var (a, _, b, sinkB) = await StartPairAsync(Options(queue: count), Options());
        await using (a)
        await using (b)
        {
            var payload = new byte[100];
            for (int i = 1; i <= count; i++)
                a.Send(new AppendEntries(1, 2, 1, i - 1, 1, [new LogEntry(i, 1, EntryKind.Command, payload)], i));
            for (int i = 1; i <= count; i++)
                Assert.Equal(i, ((AppendEntries)await sinkB.NextAsync()).LeaderCommit);
        }
    }

    [Fact]
    public async Task Heartbeats_flow_while_the_snapshot_lane_is_blocked()
    {
        // The peer never reads the snapshot connection, so a 15 MiB chunk stalls its writer for
        // good. Heartbeats sent after it must still arrive, on their own connection.
        await using var peer = RawServer.Start();
        await using var a = new TcpTransport(Options());
        await a.StartAsync(1, new MessageSink().Handler);
        a.SetPeer(2, peer.EndPoint);

        a.Send(new InstallSnapshot(1, 2, 1, 100, 1, [1, 2], 0, new byte[15 * 1024 * 1024], Done: false));
        var first = await peer.AcceptAsync(Cluster, 2);
        Assert.Equal(TransportLane.Snapshots, first.Preface.Lane);

        for (int term = 1; term <= 3; term++)
            a.Send(new AppendEntries(1, 2, term, 0, 0, [], 0));
        var messages = await peer.AcceptAsync(Cluster, 2);
        Assert.Equal(TransportLane.Messages, messages.Preface.Lane);
        for (int term = 1; term <= 3; term++)
            Assert.Equal(term, (await RawServer.ReadFrameAsync(messages.Stream)).Term);

        // The chunk can never be flushed; stop without the graceful wait.
        await a.StopAsync(new CancellationToken(canceled: true));
    }

    [Fact]
    public async Task Stop_flushes_what_is_already_queued()
    {
        var (a, _, b, sinkB) = await StartPairAsync(Options(), Options());
        await using (b)
        {
            for (int i = 1; i <= 100; i++)
                a.Send(new TimeoutNow(1, 2, i));
            await a.StopAsync();
            for (int i = 1; i <= 100; i++)
                Assert.Equal(i, (await sinkB.NextAsync()).Term);
        }
    }

    [Fact]
    public async Task The_sender_reconnects_after_the_peer_restarts()
    {
        var log = new CollectingLoggerFactory();
        var (a, _, b, sinkB) = await StartPairAsync(Options(), Options(), logA: log);
        await using (a)
        {
            var port = b.LocalEndPoint!;
            a.Send(new TimeoutNow(1, 2, 1));
            Assert.Equal(1, (await sinkB.NextAsync()).Term);
            await b.StopAsync();

            // A new node 2 on the same address.
            var sink2 = new MessageSink();
            var restarted = new TcpTransport(new TcpTransportOptions
            {
                ListenEndPoint = port,
                ClusterId = Cluster,
                Peers = new Dictionary<int, EndPoint> { [1] = a.LocalEndPoint! },
            });
            await using (restarted)
            {
                await restarted.StartAsync(2, sink2.Handler);
                // The leader keeps sending (Raft retries); some are lost while the link heals.
                var received = await RetryUntilAsync(() => a.Send(new TimeoutNow(1, 2, 2)), sink2);
                Assert.Equal(2, received.Term);
            }
            Assert.True(log.Has(3013) || log.Has(3011), "the lost connection should be logged");
        }
    }

    [Fact]
    public async Task Send_to_an_unreachable_or_unknown_peer_drops_without_throwing()
    {
        var log = new CollectingLoggerFactory();
        await using var a = new TcpTransport(Options(queue: 4), log);
        await a.StartAsync(1, new MessageSink().Handler);
        a.SetPeer(2, new IPEndPoint(IPAddress.Loopback, 9)); // Nothing listens on the discard port.
        for (int i = 0; i < 100; i++)
            a.Send(new TimeoutNow(1, 2, i));
        a.Send(new TimeoutNow(1, 77, 1));
        a.Send(new TimeoutNow(5, 2, 1));
        await log.WaitForAsync(3011);
        Assert.True(log.Has(3024, "node 77"));
        Assert.True(log.Has(3026, "its sender is 5"));
        Assert.True(log.Has(3022) || log.Has(3014), "a full queue or an unreachable peer drops messages");
    }

    [Fact]
    public async Task A_message_over_the_frame_cap_is_dropped_by_the_sender()
    {
        var log = new CollectingLoggerFactory();
        var (a, _, b, sinkB) = await StartPairAsync(Options(), Options(), logA: log);
        await using (a)
        await using (b)
        {
            a.Send(new InstallSnapshot(1, 2, 1, 1, 1, [], 0, new byte[TcpTransportOptions.DefaultMaxFrameBytes], true));
            Assert.True(log.Has(3023));
            a.Send(new TimeoutNow(1, 2, 3));
            Assert.IsType<TimeoutNow>(await sinkB.NextAsync());
        }
    }

    [Fact]
    public async Task Stop_and_dispose_are_idempotent_and_a_stopped_transport_drops_sends()
    {
        var (a, _, b, _) = await StartPairAsync(Options(), Options());
        await using (b)
        {
            a.Send(new TimeoutNow(1, 2, 1));
            await Task.WhenAll(a.StopAsync().AsTask(), a.StopAsync().AsTask());
            await a.StopAsync();
            await a.DisposeAsync();
            a.Send(new TimeoutNow(1, 2, 2));
            await Assert.ThrowsAsync<ObjectDisposedException>(() => a.StartAsync(1, new MessageSink().Handler).AsTask());
        }
    }

    [Fact]
    public async Task A_cancelled_stop_still_stops()
    {
        var (a, _, b, _) = await StartPairAsync(Options(), Options());
        await using (b)
        {
            for (int i = 0; i < 100; i++)
                a.Send(new TimeoutNow(1, 2, i));
            await a.StopAsync(new CancellationToken(canceled: true)).AsTask().WaitAsync(MessageSink.Patience);
        }
    }

    [Fact]
    public async Task A_transport_starts_only_once()
    {
        await using var a = new TcpTransport(Options());
        await a.StartAsync(1, new MessageSink().Handler);
        await Assert.ThrowsAsync<InvalidOperationException>(() => a.StartAsync(1, new MessageSink().Handler).AsTask());
    }

    [Fact]
    public async Task A_handler_failure_does_not_close_the_connection()
    {
        var log = new CollectingLoggerFactory();
        var sink = new MessageSink();
        int calls = 0;
        RaftMessageHandler flaky = (m, ct) => Interlocked.Increment(ref calls) == 1
            ? throw new InvalidOperationException("node bug")
            : sink.Handler(m, ct);
        await using var a = new TcpTransport(Options());
        await using var b = new TcpTransport(Options(), log);
        await a.StartAsync(1, new MessageSink().Handler);
        await b.StartAsync(2, flaky);
        a.SetPeer(2, b.LocalEndPoint!);
        b.SetPeer(1, a.LocalEndPoint!);
        a.Send(new TimeoutNow(1, 2, 1));
        a.Send(new TimeoutNow(1, 2, 2));
        Assert.Equal(2, (await sink.NextAsync()).Term);
        Assert.True(log.Has(3030));
    }

    [Fact]
    public async Task A_node_of_another_cluster_is_refused()
    {
        var log = new CollectingLoggerFactory();
        var (a, _, b, sinkB) = await StartPairAsync(Options(cluster: "blue"), Options(cluster: "green"), logB: log);
        await using (a)
        await using (b)
        {
            a.Send(new TimeoutNow(1, 2, 1));
            await log.WaitForAsync(3003, "cluster 'blue'");
            Assert.False(sinkB.TryTake(out _));
        }
    }

    internal static async Task<RaftMessage> RetryUntilAsync(Action send, MessageSink sink)
    {
        var deadline = DateTime.UtcNow + MessageSink.Patience;
        while (true)
        {
            send();
            try
            {
                return await sink.NextAsync(TimeSpan.FromMilliseconds(100));
            }
            catch (TimeoutException) when (DateTime.UtcNow < deadline)
            {
            }
        }
    }
}
