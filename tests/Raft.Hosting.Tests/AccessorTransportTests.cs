using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Raft.Hosting.Tests;

/// <summary><see cref="RaftNodeAccessor.Transport"/>: the hosted node's transport, for what configuration cannot say ahead of time.</summary>
[Collection("hosts")]
public sealed class AccessorTransportTests
{
    [Fact]
    public async Task The_accessor_gives_the_running_transport_which_can_move_a_peer()
    {
        var root = TestHosts.TempDirectory();
        var ports = TestHosts.FreePorts(2);
        using var host = TestHosts.Build(TestHosts.Settings(1, ports, root, TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(600), TimeSpan.FromMilliseconds(50)));
        var accessor = host.Services.GetRequiredService<RaftNodeAccessor>();
        Assert.Null(accessor.Transport);

        await host.StartAsync();
        try
        {
            var transport = accessor.Transport;
            Assert.NotNull(transport);
            Assert.Equal(new IPEndPoint(IPAddress.Loopback, ports[0]), transport.LocalEndPoint);
            Assert.Equal(accessor.ListenEndPoint, transport.LocalEndPoint);
            // Moving a peer at run time is the transport's own operation; it is the one the node sends through.
            transport.SetPeer(2, new IPEndPoint(IPAddress.Loopback, ports[1]));
            Assert.True(transport.RemovePeer(2));
            Assert.False(transport.RemovePeer(2));
        }
        finally
        {
            await host.StopAsync();
            Directory.Delete(root, recursive: true);
        }
    }
}
