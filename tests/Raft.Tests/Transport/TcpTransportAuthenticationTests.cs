using System.Net;
using System.Security.Cryptography;

namespace Raft.Tests.Transport;

/// <summary>
/// The shared-secret challenge-response (TcpTransportOptions.ClusterSecret): nobody without the
/// secret gets a frame to the handler, and a listener without it is not trusted by the connector.
/// </summary>
public sealed class TcpTransportAuthenticationTests
{
    private const string Cluster = "auth-test";
    private const int Local = 1;
    private const int Peer = 2;
    private static readonly byte[] Secret = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
    private static readonly byte[] OtherSecret = Enumerable.Range(101, 32).Select(i => (byte)i).ToArray();

    [Fact]
    public async Task Transports_with_the_same_secret_exchange_every_message_type()
    {
        var (a, sinkA, b, sinkB) = await TcpTransportLoopbackTests.StartPairAsync(
            TcpTransportLoopbackTests.Options(secret: Secret), TcpTransportLoopbackTests.Options(secret: (byte[])Secret.Clone()));
        await using (a)
        await using (b)
        {
            await TcpTransportLoopbackTests.AssertExchangeAsync(a, sinkA, b, sinkB);
        }
    }

    [Fact]
    public async Task A_hand_made_handshake_with_the_secret_delivers_frames()
    {
        // Pins the documented handshake bytes: a client written from docs/custom-transport.md gets in.
        var (transport, sink, _) = await StartListenerAsync();
        await using (transport)
        {
            await using var peer = await RawPeer.AuthenticatedHandshakeAsync(transport.LocalEndPoint!, Cluster, Peer, Local, Secret);
            var message = new TimeoutNow(Peer, Local, 4);
            await peer.SendAsync(RawPeer.Frame(message));
            MessageAssert.Equal(message, await sink.NextAsync());
        }
    }

    [Fact]
    public async Task A_forged_preface_without_the_secret_is_refused_before_the_handler_sees_anything()
    {
        var (transport, sink, log) = await StartListenerAsync();
        await using (transport)
        {
            // What the attack in the issue did: a valid-looking preface, then a forged vote at once.
            await using var forger = await RawPeer.ConnectAsync(transport.LocalEndPoint!);
            await forger.SendAsync((byte[])[.. RawPeer.Preface(Cluster, Peer, Local), .. RawPeer.Frame(new RequestVoteResponse(Peer, Local, 7, Granted: true))]);
            Assert.True(await forger.WaitClosedByPeerAsync(), "the unauthenticated connection must be closed");
            await log.WaitForAsync(3003, "does not authenticate");
            await AssertNothingDeliveredAsync(transport, sink);
        }
    }

    [Fact]
    public async Task A_wrong_proof_is_refused_before_the_handler_sees_anything()
    {
        var (transport, sink, log) = await StartListenerAsync();
        await using (transport)
        {
            await using var forger = await RawPeer.AuthenticatedHandshakeAsync(
                transport.LocalEndPoint!, Cluster, Peer, Local, Secret, proofToSend: (ours, _) => ours.Select(b => (byte)(b ^ 1)).ToArray());
            await forger.SendAsync(RawPeer.Frame(new TimeoutNow(Peer, Local, 3)));
            Assert.True(await forger.WaitClosedByPeerAsync());
            await log.WaitForAsync(3003, "failed to prove it holds the cluster secret");
            await AssertNothingDeliveredAsync(transport, sink);
        }
    }

    [Fact]
    public async Task The_acceptors_own_proof_reflected_back_is_refused()
    {
        // The role label in the MAC keeps a connector from answering with the acceptor's proof.
        var (transport, sink, log) = await StartListenerAsync();
        await using (transport)
        {
            await using var forger = await RawPeer.AuthenticatedHandshakeAsync(
                transport.LocalEndPoint!, Cluster, Peer, Local, Secret, proofToSend: (_, theirs) => theirs);
            await forger.SendAsync(RawPeer.Frame(new TimeoutNow(Peer, Local, 3)));
            Assert.True(await forger.WaitClosedByPeerAsync());
            await log.WaitForAsync(3003, "failed to prove");
            await AssertNothingDeliveredAsync(transport, sink);
        }
    }

    [Fact]
    public async Task A_wrong_secret_is_refused_and_logged_on_both_sides()
    {
        var (logA, logB) = (new CollectingLoggerFactory(), new CollectingLoggerFactory());
        var (a, _, b, sinkB) = await TcpTransportLoopbackTests.StartPairAsync(
            TcpTransportLoopbackTests.Options(secret: OtherSecret), TcpTransportLoopbackTests.Options(secret: Secret), logA: logA, logB: logB);
        await using (a)
        await using (b)
        {
            a.Send(new TimeoutNow(Local, Peer, 1));
            // The connector checks the listener's proof first, finds it wrong, and never proves itself.
            await logA.WaitForAsync(3011, "failed to prove it holds the cluster secret");
            await logB.WaitForAsync(3003, "before its proof of the cluster secret");
            Assert.False(sinkB.TryTake(out _));
        }
    }

    [Fact]
    public async Task An_impostor_listener_is_detected_by_the_connector_before_it_sends_anything()
    {
        var log = new CollectingLoggerFactory();
        await using var impostor = RawServer.Start();
        await using var a = new TcpTransport(TcpTransportLoopbackTests.Options(secret: Secret), log);
        await a.StartAsync(Local, new MessageSink().Handler);
        a.SetPeer(Peer, impostor.EndPoint);
        a.Send(new TimeoutNow(Local, Peer, 1));

        // The impostor knows the cluster id and the ids (they travel in clear) but not the secret.
        var (stream, preface) = await impostor.AcceptAsync(TcpTransportLoopbackTests.Cluster, Peer, answerFlags: ConnectionPreface.AuthenticatedFlag);
        Assert.True(preface.Authenticated);
        var nonce = new byte[PrefaceAuthentication.NonceSize];
        await stream.ReadExactlyAsync(nonce).AsTask().WaitAsync(MessageSink.Patience);
        await stream.WriteAsync(RandomNumberGenerator.GetBytes(PrefaceAuthentication.NonceSize + PrefaceAuthentication.MacSize));

        await log.WaitForAsync(3011, "failed to prove it holds the cluster secret");
        // The connector closed without proving itself or sending the message.
        var buffer = new byte[64];
        int read = await stream.ReadAsync(buffer).AsTask().WaitAsync(MessageSink.Patience);
        Assert.Equal(0, read);
    }

    [Fact]
    public async Task A_node_with_a_secret_and_one_without_refuse_each_other_and_both_say_why()
    {
        var (logA, logB) = (new CollectingLoggerFactory(), new CollectingLoggerFactory());
        var (a, sinkA, b, sinkB) = await TcpTransportLoopbackTests.StartPairAsync(
            TcpTransportLoopbackTests.Options(secret: Secret), TcpTransportLoopbackTests.Options(), logA: logA, logB: logB);
        await using (a)
        await using (b)
        {
            a.Send(new TimeoutNow(Local, Peer, 1));   // with -> without
            b.Send(new TimeoutNow(Peer, Local, 1));   // without -> with
            await logB.WaitForAsync(3003, "authenticates with a ClusterSecret but this node has none");
            await logA.WaitForAsync(3011, "does not authenticate (it has no ClusterSecret) but this node requires");
            await logA.WaitForAsync(3003, "does not authenticate (it has no ClusterSecret) but this node requires");
            await logB.WaitForAsync(3011, "authenticates with a ClusterSecret but this node has none");
            Assert.False(sinkA.TryTake(out _));
            Assert.False(sinkB.TryTake(out _));
        }
    }

    [Fact]
    public void A_short_secret_fails_validation()
    {
        var options = TcpTransportLoopbackTests.Options(secret: new byte[15]);
        var ex = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains("ClusterSecret is 15 bytes; at least 16", ex.Message, StringComparison.Ordinal);
        TcpTransportLoopbackTests.Options(secret: new byte[16]).Validate();
    }

    [Fact]
    public async Task The_transport_keeps_its_own_copy_of_the_secret()
    {
        var secret = (byte[])Secret.Clone();
        var (transport, sink, _) = await StartListenerAsync(secret);
        await using (transport)
        {
            Array.Clear(secret); // The host wipes its copy after creating the transport.
            await using var peer = await RawPeer.AuthenticatedHandshakeAsync(transport.LocalEndPoint!, Cluster, Peer, Local, Secret);
            await peer.SendAsync(RawPeer.Frame(new TimeoutNow(Peer, Local, 2)));
            Assert.Equal(2, (await sink.NextAsync()).Term);
        }
    }

    private static async Task<(TcpTransport Transport, MessageSink Sink, CollectingLoggerFactory Log)> StartListenerAsync(byte[]? secret = null)
    {
        var (sink, log) = (new MessageSink(), new CollectingLoggerFactory());
        var transport = new TcpTransport(new TcpTransportOptions
        {
            ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            ClusterId = Cluster,
            ClusterSecret = secret ?? Secret,
            Peers = new Dictionary<int, EndPoint> { [Peer] = new IPEndPoint(IPAddress.Loopback, 9) },
            HandshakeTimeout = TimeSpan.FromSeconds(10),
        }, log);
        await transport.StartAsync(Local, sink.Handler);
        return (transport, sink, log);
    }

    private static async Task AssertNothingDeliveredAsync(TcpTransport transport, MessageSink sink)
    {
        // A well-behaved authenticated peer still gets through, and its message is the first one delivered.
        await using var good = await RawPeer.AuthenticatedHandshakeAsync(transport.LocalEndPoint!, Cluster, Peer, Local, Secret);
        await good.SendAsync(RawPeer.Frame(new TimeoutNow(Peer, Local, 1000)));
        Assert.Equal(1000, (await sink.NextAsync()).Term);
    }
}
