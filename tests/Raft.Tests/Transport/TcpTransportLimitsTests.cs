using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Raft.Tests.Transport;

/// <summary>
/// What a hostile or broken peer cannot do to this node's memory: hold many connections in the
/// handshake, open unbounded connections, make the send queue grow without bound, stall a flush
/// forever, or keep a frame open by trickling bytes. Plus the warning for an open default.
/// </summary>
public sealed class TcpTransportLimitsTests
{
    private const string Cluster = "limits-test";
    private const int Local = 1;
    private const int Peer = 2;
    private const int OtherPeer = 3;

    [Fact]
    public async Task An_unauthenticated_transport_on_a_non_loopback_address_warns_at_start()
    {
        var log = new CollectingLoggerFactory();
        // 0.0.0.0, port 0: nothing is sent off the machine.
        await using var open = new TcpTransport(Options(new IPEndPoint(IPAddress.Any, 0)), log);
        await open.StartAsync(Local, new MessageSink().Handler);
        var warning = Assert.Single(log.Records, r => r.EventId == 3018);
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, warning.Level);
        Assert.Contains("without peer authentication", warning.Message, StringComparison.Ordinal);
        Assert.Contains("ClusterSecret", warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task No_warning_on_loopback_or_with_a_secret()
    {
        var loopbackLog = new CollectingLoggerFactory();
        await using (var loopback = new TcpTransport(Options(), loopbackLog))
            await loopback.StartAsync(Local, new MessageSink().Handler);
        var secretLog = new CollectingLoggerFactory();
        await using (var authenticated = new TcpTransport(Options(new IPEndPoint(IPAddress.Any, 0), secret: new byte[32]), secretLog))
            await authenticated.StartAsync(Local, new MessageSink().Handler);
        Assert.Contains(loopbackLog.Records, r => r.EventId == 3000);
        Assert.DoesNotContain(loopbackLog.Records, r => r.EventId == 3018);
        Assert.Contains(secretLog.Records, r => r.EventId == 3000);
        Assert.DoesNotContain(secretLog.Records, r => r.EventId == 3018);
    }

    [Fact]
    public async Task Connections_beyond_the_handshake_cap_are_closed_at_once_and_logged_once()
    {
        const int cap = 3;
        var (log, sink) = (new CollectingLoggerFactory(), new MessageSink());
        await using var transport = new TcpTransport(Options(maxPendingHandshakes: cap, handshakeTimeout: TimeSpan.FromSeconds(60)), log);
        await transport.StartAsync(Local, sink.Handler);
        var endPoint = transport.LocalEndPoint!;

        // cap idle half-handshakes hold every slot (a handshake timeout far beyond the test).
        var idle = new List<RawPeer>();
        for (int i = 0; i < cap; i++)
        {
            idle.Add(await RawPeer.ConnectAsync(endPoint));
            await idle[i].SendAsync("RA"u8.ToArray());
        }
        try
        {
            // Every further connection is closed without waiting for the handshake timeout.
            for (int i = 0; i < 4; i++)
                Assert.True(await ConnectAndWaitClosedAsync(endPoint), "a connection over the handshake cap must be closed at once");
            await log.WaitForAsync(3017, "MaxPendingHandshakes");
            Assert.Single(log.Records, r => r.EventId == 3017); // once per interval, not once per connection
            foreach (var peer in idle)
                Assert.False(await peer.WaitClosedByPeerAsync(TimeSpan.FromMilliseconds(200)), "the connections within the cap stay open");

            // A freed slot admits a well-behaved peer again.
            await idle[0].DisposeAsync();
            idle.RemoveAt(0);
            var good = await EventuallyHandshakeAsync(endPoint, Peer);
            await using (good)
            {
                await good.SendAsync(RawPeer.Frame(new TimeoutNow(Peer, Local, 5)));
                Assert.Equal(5, (await sink.NextAsync()).Term);
            }
        }
        finally
        {
            foreach (var peer in idle)
                await peer.DisposeAsync();
        }
    }

    [Fact]
    public async Task An_established_connection_leaves_the_handshake_cap()
    {
        var (log, sink) = (new CollectingLoggerFactory(), new MessageSink());
        await using var transport = new TcpTransport(Options(maxPendingHandshakes: 1), log);
        await transport.StartAsync(Local, sink.Handler);
        await using var first = await RawPeer.HandshakeAsync(transport.LocalEndPoint!, Cluster, Peer, Local);
        await using var second = await RawPeer.HandshakeAsync(transport.LocalEndPoint!, Cluster, OtherPeer, Local);
        await second.SendAsync(RawPeer.Frame(new TimeoutNow(OtherPeer, Local, 8)));
        Assert.Equal(8, (await sink.NextAsync()).Term);
        Assert.DoesNotContain(log.Records, r => r.EventId == 3017);
    }

    [Fact]
    public async Task Connections_beyond_the_inbound_cap_are_closed_at_once()
    {
        var (log, sink) = (new CollectingLoggerFactory(), new MessageSink());
        await using var transport = new TcpTransport(Options(maxInboundConnections: 2), log);
        await transport.StartAsync(Local, sink.Handler);
        var endPoint = transport.LocalEndPoint!;

        await using var first = await RawPeer.HandshakeAsync(endPoint, Cluster, Peer, Local);
        await using var second = await RawPeer.HandshakeAsync(endPoint, Cluster, OtherPeer, Local);
        Assert.True(await ConnectAndWaitClosedAsync(endPoint), "a connection over MaxInboundConnections must be closed at once");
        await log.WaitForAsync(3017, "MaxInboundConnections");

        // The established ones are untouched.
        await first.SendAsync(RawPeer.Frame(new TimeoutNow(Peer, Local, 1)));
        await second.SendAsync(RawPeer.Frame(new TimeoutNow(OtherPeer, Local, 2)));
        var terms = new[] { (await sink.NextAsync()).Term, (await sink.NextAsync()).Term };
        Assert.Equal([1L, 2L], terms.Order());
    }

    [Fact]
    public async Task The_send_queue_is_capped_in_bytes_and_drops_are_counted()
    {
        // The peer accepts TCP (the kernel backlog) but never answers the preface, so nothing is
        // dequeued while the test fills the queue: a deterministic picture of the queue alone.
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        silent.Listen(16);
        const long maxBytes = 16 * 1024;
        var log = new CollectingLoggerFactory();
        await using var transport = new TcpTransport(Options(maxFrameBytes: 4096, sendQueueMaxBytes: maxBytes, handshakeTimeout: TimeSpan.FromSeconds(60)), log);
        await transport.StartAsync(Local, new MessageSink().Handler);
        transport.SetPeer(Peer, silent.LocalEndPoint!);

        var message = Append(900);
        long frameBytes = RawPeer.Frame(message).Length;
        const int sent = 100; // far more than the message-count cap would stop (1024)
        for (int i = 0; i < sent; i++)
        {
            transport.Send(message);
            Assert.InRange(transport.GetQueuedBytes(Peer, TransportLane.Messages), 0, maxBytes);
        }
        long fit = maxBytes / frameBytes;
        Assert.Equal(fit * frameBytes, transport.GetQueuedBytes(Peer, TransportLane.Messages));
        Assert.Equal(sent - fit, transport.QueueFullDropCount);
        Assert.True(log.Has(3022, "SendQueueMaxBytes"));
    }

    [Fact]
    public async Task A_peer_that_stops_reading_gets_its_connection_reset_and_the_queue_stays_bounded()
    {
        // A raw peer completes the handshake, then never reads; its receive buffer is kept small.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        const long maxBytes = 256 * 1024;
        var writeTimeout = TimeSpan.FromSeconds(1);
        var log = new CollectingLoggerFactory();
        await using var transport = new TcpTransport(Options(maxFrameBytes: 128 * 1024, sendQueueMaxBytes: maxBytes, writeTimeout: writeTimeout, handshakeTimeout: TimeSpan.FromSeconds(2)), log);
        await transport.StartAsync(Local, new MessageSink().Handler);
        transport.SetPeer(Peer, listener.LocalEndPoint!);

        transport.Send(Append(64 * 1024));
        using var stuck = await AcceptAndAnswerAsync(listener);

        // Keep offering 64 KiB messages (about 30 MB/s) until the transport gives up on the peer.
        var message = Append(64 * 1024);
        var clock = Stopwatch.StartNew();
        while (!log.Has(3015))
        {
            Assert.True(clock.Elapsed < MessageSink.Patience * 2, "the stalled connection was never reset. Log:\n" + string.Join("\n", log.Records));
            transport.Send(message);
            Assert.InRange(transport.GetQueuedBytes(Peer, TransportLane.Messages), 0, maxBytes);
            await Task.Delay(2);
        }
        Assert.True(log.Has(3015, "stopped reading"));
        Assert.True(transport.QueueFullDropCount > 0, "messages beyond the byte cap are dropped and counted");

        // The peer sees its connection reset (or closed); nothing is left queued for long.
        Assert.True(await ClosedAsync(stuck), "the transport must close the connection of a peer that stopped reading");
        var deadline = DateTime.UtcNow + MessageSink.Patience;
        while (transport.GetQueuedBytes(Peer, TransportLane.Messages) != 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the queue of an unreachable peer must be dropped");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task A_frame_trickled_one_byte_at_a_time_is_cut_at_the_frame_deadline()
    {
        var frameTimeout = TimeSpan.FromMilliseconds(1500);
        var (log, sink) = (new CollectingLoggerFactory(), new MessageSink());
        // Each pause (100 ms) is far within IdleReadTimeout (3 s, generous for a loaded machine):
        // only the frame deadline can cut it.
        await using var transport = new TcpTransport(Options(idleReadTimeout: TimeSpan.FromSeconds(3), frameTimeout: frameTimeout), log);
        await transport.StartAsync(Local, sink.Handler);
        await using var trickler = await RawPeer.HandshakeAsync(transport.LocalEndPoint!, Cluster, Peer, Local);
        var frame = RawPeer.Frame(Append(200)); // 200+ bytes: 20+ seconds at this pace

        using var stop = new CancellationTokenSource();
        var clock = Stopwatch.StartNew();
        var trickle = Task.Run(async () =>
        {
            try
            {
                foreach (byte b in frame)
                {
                    await trickler.Stream.WriteAsync(new[] { b }, stop.Token);
                    await Task.Delay(100, stop.Token);
                }
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException)
            {
            }
        });
        try
        {
            Assert.True(await trickler.WaitClosedByPeerAsync(), "a frame trickled past FrameTimeout must be cut");
            Assert.True(clock.Elapsed >= frameTimeout * 0.8, $"cut after {clock.Elapsed}, before FrameTimeout {frameTimeout}");
            await log.WaitForAsync(3016, "FrameTimeout");
            Assert.False(sink.TryTake(out _));
        }
        finally
        {
            await stop.CancelAsync();
            await trickle;
        }
    }

    [Fact]
    public async Task Frames_that_each_arrive_in_time_keep_the_connection_open_past_the_frame_timeout()
    {
        // The deadline is per frame: a steady stream of small frames outlives FrameTimeout.
        // Each frame takes about 10 ms; FrameTimeout leaves a wide margin for a loaded machine.
        var frameTimeout = TimeSpan.FromMilliseconds(1500);
        var (log, sink) = (new CollectingLoggerFactory(), new MessageSink());
        await using var transport = new TcpTransport(Options(idleReadTimeout: TimeSpan.FromSeconds(10), frameTimeout: frameTimeout), log);
        await transport.StartAsync(Local, sink.Handler);
        await using var peer = await RawPeer.HandshakeAsync(transport.LocalEndPoint!, Cluster, Peer, Local);
        var clock = Stopwatch.StartNew();
        long term = 0;
        while (clock.Elapsed < frameTimeout * 2)
        {
            var frame = RawPeer.Frame(new TimeoutNow(Peer, Local, ++term));
            // Half a frame, a pause, the rest: each frame completes well within its deadline.
            await peer.SendAsync(frame.AsMemory(0, 5));
            await Task.Delay(50);
            await peer.SendAsync(frame.AsMemory(5));
            try
            {
                Assert.Equal(term, (await sink.NextAsync()).Term);
            }
            catch (TimeoutException ex)
            {
                throw new TimeoutException($"frame {term} was not delivered. Log:\n{string.Join("\n", log.Records)}", ex);
            }
        }
        Assert.DoesNotContain(log.Records, r => r.EventId == 3016);
    }

    /// <summary>Connects and waits for the transport to close the connection (the reset may even beat the connect).</summary>
    private static async Task<bool> ConnectAndWaitClosedAsync(IPEndPoint endPoint)
    {
        RawPeer peer;
        try
        {
            peer = await RawPeer.ConnectAsync(endPoint);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
        await using (peer)
            return await peer.WaitClosedByPeerAsync();
    }

    private static AppendEntries Append(int payloadBytes) =>
        new(Local, Peer, 1, 0, 0, [new LogEntry(1, 1, EntryKind.Command, new byte[payloadBytes])], 0);

    private static async Task<NetworkStream> AcceptAndAnswerAsync(Socket listener)
    {
        var socket = await listener.AcceptAsync().WaitAsync(MessageSink.Patience);
        var stream = new NetworkStream(socket, ownsSocket: true);
        var head = new byte[ConnectionPreface.FixedSize];
        await stream.ReadExactlyAsync(head).AsTask().WaitAsync(MessageSink.Patience);
        var id = new byte[BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(16))];
        await stream.ReadExactlyAsync(id).AsTask().WaitAsync(MessageSink.Patience);
        await stream.WriteAsync(RawPeer.Preface(Cluster, Peer, Local, head[6]));
        return stream;
    }

    private static async Task<bool> ClosedAsync(NetworkStream stream)
    {
        // Drain what the transport managed to send before the reset; EOF or a reset ends it.
        using var cts = new CancellationTokenSource(MessageSink.Patience);
        var buffer = new byte[256 * 1024];
        try
        {
            while (await stream.ReadAsync(buffer, cts.Token) > 0)
            {
            }
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    private static async Task<RawPeer> EventuallyHandshakeAsync(IPEndPoint endPoint, int from)
    {
        // The freed slot is returned when the transport notices the close; retry until then.
        var deadline = DateTime.UtcNow + MessageSink.Patience;
        while (true)
        {
            try
            {
                return await RawPeer.HandshakeAsync(endPoint, Cluster, from, Local);
            }
            catch (Exception ex) when (ex is IOException or SocketException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    private static TcpTransportOptions Options(
        IPEndPoint? listen = null,
        byte[]? secret = null,
        int maxPendingHandshakes = 64,
        int maxInboundConnections = 256,
        int maxFrameBytes = 64 * 1024,
        long sendQueueMaxBytes = 1024 * 1024,
        TimeSpan? writeTimeout = null,
        TimeSpan? handshakeTimeout = null,
        TimeSpan? idleReadTimeout = null,
        TimeSpan? frameTimeout = null) => new()
    {
        ListenEndPoint = listen ?? new IPEndPoint(IPAddress.Loopback, 0),
        ClusterId = Cluster,
        ClusterSecret = secret,
        Peers = new Dictionary<int, EndPoint>
        {
            [Peer] = new IPEndPoint(IPAddress.Loopback, 9),
            [OtherPeer] = new IPEndPoint(IPAddress.Loopback, 9),
        },
        MaxPendingHandshakes = maxPendingHandshakes,
        MaxInboundConnections = maxInboundConnections,
        MaxFrameBytes = maxFrameBytes,
        SendQueueMaxBytes = sendQueueMaxBytes,
        WriteTimeout = writeTimeout ?? TimeSpan.FromSeconds(10),
        HandshakeTimeout = handshakeTimeout ?? TimeSpan.FromSeconds(10),
        IdleReadTimeout = idleReadTimeout ?? TimeSpan.FromSeconds(30),
        FrameTimeout = frameTimeout ?? TimeSpan.FromSeconds(60),
        ReconnectBackoffMin = TimeSpan.FromMilliseconds(20),
        ReconnectBackoffMax = TimeSpan.FromMilliseconds(200),
        ShutdownTimeout = TimeSpan.FromMilliseconds(500), // Peers that never answer must not slow disposal.
    };
}
