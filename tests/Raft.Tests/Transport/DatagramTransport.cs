// The datagram transport docs/custom-transport.md quotes: the text between the markers below is
// in the guide verbatim (DatagramTransportTests checks it), and DatagramTransportTests runs a
// three-node cluster over it.
#pragma warning disable CA1848, CA1873 // a sample: plain ILogger calls read better than a LoggerMessage catalog
namespace Raft.Tests.Transport;

// <datagram-transport>
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

/// <summary>One UDP datagram per message, encoded by RaftMessageSerializer. Lossy and unordered,
/// which Raft tolerates; unauthenticated, so only for a trusted network.</summary>
public sealed class DatagramTransport : ITransport, IDisposable
{
    public const int MaxDatagramBytes = 65_507; // the largest UDP payload over IPv4
    private readonly Socket _socket;
    private readonly IReadOnlyDictionary<int, IPEndPoint> _peers; // read on every send: may be filled in later
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private Task _receiving = Task.CompletedTask;
    private int _localId;

    public DatagramTransport(IPEndPoint listen, IReadOnlyDictionary<int, IPEndPoint> peers, ILogger logger)
    {
        (_peers, _logger) = (peers, logger);
        _socket = new Socket(listen.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        _socket.Bind(listen); // now, so that LocalEndPoint has the port when listen asked for port 0
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;

    public ValueTask StartAsync(int localId, RaftMessageHandler handler, CancellationToken cancellationToken = default)
    {
        _localId = localId;
        _receiving = Task.Run(() => ReceiveAsync(handler), CancellationToken.None);
        return ValueTask.CompletedTask;
    }

    public void Send(RaftMessage message)
    {
        if (!_peers.TryGetValue(message.To, out var peer) || RaftMessageSerializer.GetSerializedLength(message) > MaxDatagramBytes)
        {
            _logger.LogWarning("Dropped a {Type} for node {To}: unknown peer, or too large for a datagram", message.GetType().Name, message.To);
            return;
        }
        try
        {
            _socket.SendTo(RaftMessageSerializer.Serialize(message), SocketFlags.None, peer); // UDP: never waits for the peer
        }
        catch (SocketException ex)
        {
            _logger.LogDebug("Could not send a {Type} to node {To} ({Error}); Raft retries", message.GetType().Name, message.To, ex.SocketErrorCode);
        }
    }

    private async Task ReceiveAsync(RaftMessageHandler handler)
    {
        var buffer = new byte[MaxDatagramBytes];
        var any = new IPEndPoint(_socket.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                var received = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, any, _stop.Token);
                if (!RaftMessageSerializer.TryDeserialize(buffer.AsMemory(0, received.ReceivedBytes), MaxDatagramBytes, out var message, out var error))
                    _logger.LogWarning("Dropped a datagram from {Sender}: {Reason}", received.RemoteEndPoint, error);
                else if (message.To != _localId || !_peers.TryGetValue(message.From, out var sender) || !sender.Equals(received.RemoteEndPoint))
                    _logger.LogWarning("Dropped a {Type} from {Sender}: not node {From}'s address, or not for this node", message.GetType().Name, received.RemoteEndPoint, message.From);
                else
                    await handler(message, _stop.Token); // awaited: the node's inbox pushes back
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex)
            {
                _logger.LogDebug("Receive failed ({Error}); carrying on", ex.SocketErrorCode); // e.g. an ICMP "port unreachable"
            }
        }
    }

    public async ValueTask StopAsync(CancellationToken cancellationToken = default)
    {
        await _stop.CancelAsync();
        await _receiving.WaitAsync(cancellationToken);
        Dispose();
    }

    public void Dispose()
    {
        _socket.Dispose();
        _stop.Dispose();
    }
}
// </datagram-transport>
