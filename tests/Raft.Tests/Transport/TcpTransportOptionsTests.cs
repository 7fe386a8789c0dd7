using System.Net;
using System.Net.Security;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Raft.Tests.Transport;

public class TcpTransportOptionsTests
{
    private static TcpTransportOptions Valid() => new()
    {
        ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
        ClusterId = "c",
    };

    [Fact]
    public async Task The_transport_keeps_its_own_copy_of_the_options()
    {
        var peers = new Dictionary<int, EndPoint> { [2] = new IPEndPoint(IPAddress.Loopback, 7002) };
        var options = Valid() with { Peers = peers };
        await using var transport = new TcpTransport(options);
        // The host changes its objects after creating the transport: nothing reaches it.
        options.ClusterId = "other";
        options.WriteTimeout = TimeSpan.FromMilliseconds(1);
        peers[3] = new IPEndPoint(IPAddress.Loopback, 7003);
        Assert.Equal("c", transport.Options.ClusterId);
        Assert.Equal(TimeSpan.FromSeconds(10), transport.Options.WriteTimeout);
        Assert.Equal([2], transport.Options.Peers.Keys);
    }

    [Fact]
    public void Options_are_a_record_copied_by_with()
    {
        var options = Valid();
        var copy = options with { ClusterId = "d", SendQueueCapacity = 8 };
        Assert.Equal("c", options.ClusterId);
        Assert.Equal(1024, options.SendQueueCapacity);
        Assert.Equal(options.ListenEndPoint, copy.ListenEndPoint);
        copy.Validate();
    }

    [Fact]
    public void Defaults_are_valid_and_documented()
    {
        var options = Valid();
        options.Validate();
        Assert.Equal(16 * 1024 * 1024, options.MaxFrameBytes);
        Assert.Equal(1024, options.SendQueueCapacity);
        Assert.Equal(TimeSpan.FromSeconds(5), options.ConnectTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(50), options.ReconnectBackoffMin);
        Assert.Equal(TimeSpan.FromSeconds(5), options.ReconnectBackoffMax);
        Assert.Equal(TimeSpan.FromSeconds(5), options.HandshakeTimeout);
        Assert.Equal(TimeSpan.FromSeconds(30), options.IdleReadTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), options.ShutdownTimeout);
        Assert.Null(options.ServerTls);
        Assert.Null(options.ClientTls);
        Assert.Null(options.ClusterSecret);
        Assert.Null(options.NodeIdFromCertificate);
        Assert.Equal(64, options.MaxPendingHandshakes);
        Assert.Equal(256, options.MaxInboundConnections);
        Assert.Equal(32L * 1024 * 1024, options.SendQueueMaxBytes);
        Assert.Equal(TimeSpan.FromSeconds(10), options.WriteTimeout);
        Assert.Equal(TimeSpan.FromSeconds(60), options.FrameTimeout);
    }

    [Fact]
    public void Invalid_limits_are_rejected_with_messages_that_name_the_values()
    {
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", MaxPendingHandshakes = 0 }, "MaxPendingHandshakes (0)");
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", MaxInboundConnections = -1 }, "MaxInboundConnections (-1)");
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", WriteTimeout = TimeSpan.Zero }, "WriteTimeout");
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", FrameTimeout = TimeSpan.Zero }, "FrameTimeout");
        AssertInvalid(
            new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", MaxFrameBytes = 8192, SendQueueMaxBytes = 8199 },
            "SendQueueMaxBytes (8199) must be at least MaxFrameBytes (8192) + 8");
        new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", MaxFrameBytes = 8192, SendQueueMaxBytes = 8200 }.Validate();
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", ClusterSecret = new byte[8] }, "ClusterSecret is 8 bytes");
    }

    [Fact]
    public void Invalid_settings_are_rejected_with_messages_that_name_the_values()
    {
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "" }, "ClusterId");
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = new string('x', 256) }, "256 UTF-8 bytes");
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", MaxFrameBytes = 100 }, "MaxFrameBytes (100)");
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", SendQueueCapacity = 0 }, "SendQueueCapacity (0)");
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", ConnectTimeout = TimeSpan.Zero }, "ConnectTimeout");
        AssertInvalid(new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", IdleReadTimeout = TimeSpan.FromSeconds(-1) }, "IdleReadTimeout");
        AssertInvalid(
            new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", ReconnectBackoffMin = TimeSpan.FromSeconds(2), ReconnectBackoffMax = TimeSpan.FromSeconds(1) },
            "ReconnectBackoffMax (00:00:01) must be at least ReconnectBackoffMin (00:00:02)");
        AssertInvalid(
            new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", Peers = new Dictionary<int, EndPoint> { [0] = new IPEndPoint(IPAddress.Loopback, 1) } },
            "Peer id 0");
        AssertInvalid(
            new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", Peers = new Dictionary<int, EndPoint> { [2] = new IPEndPoint(IPAddress.Loopback, 0) } },
            "Peer 2");
        AssertInvalid(
            new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", ClientTls = new SslClientAuthenticationOptions() },
            "must be set together");
        AssertInvalid(
            new TcpTransportOptions { ListenEndPoint = new(IPAddress.Loopback, 0), ClusterId = "c", ClientTls = new(), ServerTls = new() },
            "no server certificate");
        Assert.Throws<ArgumentNullException>(() => new TcpTransport(null!));
    }

    [Theory]
    [InlineData("10.0.0.5:7000", "10.0.0.5:7000")]
    [InlineData("[::1]:7001", "[::1]:7001")]
    [InlineData("node-2.raft.internal:7002", "Unspecified/node-2.raft.internal:7002")]
    [InlineData("localhost:1", "Unspecified/localhost:1")]
    public void Peer_addresses_parse_from_host_and_port(string text, string expected) =>
        Assert.Equal(expected, TcpTransportOptions.ParseEndPoint(text).ToString());

    [Theory]
    [InlineData("10.0.0.5")]
    [InlineData("host:")]
    [InlineData(":7000")]
    [InlineData("host:0")]
    [InlineData("host:70000")]
    [InlineData("::1:7000")]
    [InlineData("host:-1")]
    public void Malformed_peer_addresses_are_rejected(string text) =>
        Assert.Throws<FormatException>(() => TcpTransportOptions.ParseEndPoint(text));

    [Property(MaxTest = 500)]
    public Property Backoff_is_capped_exponential_with_jitter()
    {
        var cases =
            from failures in Gen.Choose(1, 100)
            from minMs in Gen.Choose(1, 1000)
            from extraMs in Gen.Choose(0, 60_000)
            from seed in Gen.Choose(0, int.MaxValue)
            select (failures, minMs, maxMs: minMs + extraMs, seed);
        return Prop.ForAll(cases.ToArbitrary(), c =>
        {
            var (min, max) = (TimeSpan.FromMilliseconds(c.minMs), TimeSpan.FromMilliseconds(c.maxMs));
            var delay = TcpTransport.ComputeBackoff(c.failures, min, max, new Random(c.seed));
            double ceiling = Math.Min(c.maxMs, c.minMs * Math.Pow(2, Math.Min(c.failures - 1, 30)));
            double tolerance = 0.001;
            return delay >= min - TimeSpan.FromMilliseconds(tolerance)
                && delay <= max + TimeSpan.FromMilliseconds(tolerance)
                && delay.TotalMilliseconds <= ceiling + tolerance
                && delay.TotalMilliseconds >= (ceiling / 2) - tolerance;
        });
    }

    [Fact]
    public void Backoff_doubles_until_the_cap()
    {
        var (min, max) = (TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1));
        var random = new Random(1);
        Assert.Equal(min, TcpTransport.ComputeBackoff(1, min, max, random));
        Assert.InRange(TcpTransport.ComputeBackoff(2, min, max, random).TotalMilliseconds, 100, 200);
        Assert.InRange(TcpTransport.ComputeBackoff(3, min, max, random).TotalMilliseconds, 200, 400);
        Assert.InRange(TcpTransport.ComputeBackoff(50, min, max, random).TotalMilliseconds, 500, 1000);
        Assert.InRange(TcpTransport.ComputeBackoff(int.MaxValue, min, max, random).TotalMilliseconds, 500, 1000);
    }

    private static void AssertInvalid(TcpTransportOptions options, string expected)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(options.Validate);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.ThrowsAny<ArgumentException>(() => new TcpTransport(options));
    }
}
