using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;

namespace Raft;

/// <summary>
/// One accepted connection: TLS (optional), the preface check and answer, then a read loop that
/// parses frames from a PipeReader and hands each message to the node's handler.
/// </summary>
/// <remarks>
/// Any breach (bad preface, bad frame, a frame that stalls longer than
/// <see cref="TcpTransportOptions.IdleReadTimeout"/>, a message not from the connected peer or not
/// for the local node) closes this connection only, with a logged reason; nothing from a frame
/// that fails to decode is delivered.
/// </remarks>
internal sealed class InboundConnection
{
    private readonly TcpTransport _transport;
    private readonly Socket _socket;
    private readonly CancellationTokenSource _closing;
    private string? _closeReason;

    public InboundConnection(TcpTransport transport, Socket socket)
    {
        _transport = transport;
        _socket = socket;
        _closing = CancellationTokenSource.CreateLinkedTokenSource(transport.StoppingToken);
        try
        {
            RemoteEndPoint = socket.RemoteEndPoint;
        }
        catch (SocketException)
        {
            RemoteEndPoint = null;
        }
    }

    public EndPoint? RemoteEndPoint { get; }

    /// <summary>The peer's node id, once its preface was accepted; 0 before.</summary>
    public int PeerId { get; private set; }

    public TransportLane Lane { get; private set; }

    /// <summary>The read loop; never faults.</summary>
    public Task Completion { get; private set; } = Task.CompletedTask;

    public void Start() => Completion = Task.Run(RunAsync);

    /// <summary>Closes the connection (from any thread); the read loop logs <paramref name="reason"/>.</summary>
    public void Close(string reason)
    {
        Interlocked.CompareExchange(ref _closeReason, reason, null);
        try
        {
            _closing.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
        catch (AggregateException)
        {
        }
    }

    private async Task RunAsync()
    {
        var options = _transport.Options;
        var logger = _transport.Logger;
        Stream stream = new NetworkStream(_socket, ownsSocket: true);
        PipeReader? reader = null;
        bool established = false;
        try
        {
            TcpTransportLog.InboundAccepted(logger, RemoteEndPoint);
            _socket.NoDelay = true;
            using (var handshake = CancellationTokenSource.CreateLinkedTokenSource(_closing.Token))
            {
                handshake.CancelAfter(options.HandshakeTimeout);
                ConnectionPreface preface;
                try
                {
                    if (options.ServerTls is { } tls)
                    {
                        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                        stream = ssl;
                        await ssl.AuthenticateAsServerAsync(tls, handshake.Token).ConfigureAwait(false);
                    }
                    reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, leaveOpen: true));
                    preface = await ReadPrefaceAsync(reader, handshake.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (handshake.IsCancellationRequested && !_closing.IsCancellationRequested)
                {
                    TcpTransportLog.InboundRefused(logger, RemoteEndPoint, $"the handshake did not complete within {options.HandshakeTimeout}");
                    return;
                }

                if (_transport.CheckPreface(preface) is { } refusal)
                {
                    TcpTransportLog.InboundRefused(logger, RemoteEndPoint, refusal);
                    return;
                }
                PeerId = preface.SenderId;
                Lane = preface.Lane;
                var answer = new ConnectionPreface(ConnectionPreface.CurrentVersion, Lane, _transport.LocalId, PeerId, options.ClusterId);
                try
                {
                    await stream.WriteAsync(answer.ToArray(), handshake.Token).ConfigureAwait(false);
                    await stream.FlushAsync(handshake.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (handshake.IsCancellationRequested && !_closing.IsCancellationRequested)
                {
                    TcpTransportLog.InboundRefused(logger, RemoteEndPoint, $"the handshake did not complete within {options.HandshakeTimeout}");
                    return;
                }
            }

            established = true;
            _transport.RegisterInbound(this);
            TcpTransportLog.InboundEstablished(logger, PeerId, Lane, RemoteEndPoint);
            if (await ReadFramesAsync(reader).ConfigureAwait(false) is { } reason)
                TcpTransportLog.InboundClosed(logger, PeerId, Lane, RemoteEndPoint, reason);
        }
        catch (RaftProtocolException ex)
        {
            if (established)
                TcpTransportLog.InboundProtocolViolation(logger, PeerId, Lane, RemoteEndPoint, ex.Message);
            else
                TcpTransportLog.InboundRefused(logger, RemoteEndPoint, ex.Message);
        }
        catch (OperationCanceledException) when (_closing.IsCancellationRequested)
        {
            if (established && _closeReason is { } reason)
                TcpTransportLog.InboundClosed(logger, PeerId, Lane, RemoteEndPoint, reason);
        }
        catch (Exception ex) when (ex is IOException or SocketException or AuthenticationException or ObjectDisposedException)
        {
            string reason = ex is AuthenticationException ? $"TLS authentication failed: {ex.Message}" : OutboundConnection.Describe(ex);
            if (established)
                TcpTransportLog.InboundClosed(logger, PeerId, Lane, RemoteEndPoint, reason);
            else
                TcpTransportLog.InboundRefused(logger, RemoteEndPoint, reason);
        }
        finally
        {
            if (established)
                _transport.UnregisterInbound(this);
            if (reader is not null)
                await reader.CompleteAsync().ConfigureAwait(false);
            await stream.DisposeAsync().ConfigureAwait(false);
            _transport.Forget(this);
            _closing.Dispose();
        }
    }

    private static async Task<ConnectionPreface> ReadPrefaceAsync(PipeReader reader, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (ConnectionPreface.TryParse(ref buffer, out var preface))
            {
                reader.AdvanceTo(buffer.Start);
                return preface;
            }
            if (result.IsCompleted)
                throw new RaftProtocolException($"the connection closed after {buffer.Length} bytes, before a complete preface");
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Reads and delivers frames until the peer closes or breaks the protocol.</summary>
    /// <returns>Why the connection ended, or null when that was logged already (a stall).</returns>
    private async Task<string?> ReadFramesAsync(PipeReader reader)
    {
        var options = _transport.Options;
        var logger = _transport.Logger;
        var handler = _transport.Handler;
        var delivery = _transport.StoppingToken;
        int maxFrameBytes = options.MaxFrameBytes;
        CancellationTokenSource? stall = null;
        bool midFrame = false; // Invariant: true iff the bytes left after the last parse are part of an unfinished frame.
        try
        {
            while (true)
            {
                var token = _closing.Token;
                if (midFrame)
                {
                    stall ??= CancellationTokenSource.CreateLinkedTokenSource(_closing.Token);
                    stall.CancelAfter(options.IdleReadTimeout);
                    token = stall.Token;
                }

                ReadResult result;
                try
                {
                    result = await reader.ReadAsync(token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stall is { IsCancellationRequested: true } && !_closing.IsCancellationRequested)
                {
                    TcpTransportLog.InboundStalled(logger, PeerId, Lane, RemoteEndPoint, options.IdleReadTimeout);
                    return null;
                }
                if (midFrame && !stall!.TryReset())
                {
                    // The timer fired just as bytes arrived; start from a fresh source next time.
                    stall.Dispose();
                    stall = null;
                }

                var buffer = result.Buffer;
                try
                {
                    while (MessageCodec.TryReadFrame(ref buffer, maxFrameBytes, out var message))
                    {
                        if (message.From != PeerId)
                            throw new RaftProtocolException($"a {message.GetType().Name} claims to be from node {message.From} on node {PeerId}'s connection");
                        if (message.To != _transport.LocalId)
                            throw new RaftProtocolException($"a {message.GetType().Name} is addressed to node {message.To}, not this node ({_transport.LocalId})");
                        TcpTransportLog.MessageReceived(logger, message.GetType().Name, PeerId, message.Term);
                        try
                        {
                            await handler(message, delivery).ConfigureAwait(false);
                        }
                        catch (OperationCanceledException) when (delivery.IsCancellationRequested)
                        {
                            return "the transport is stopping";
                        }
                        catch (Exception ex)
                        {
                            // The node's failure, not the peer's: keep the connection.
                            TcpTransportLog.HandlerFailed(logger, ex, message.GetType().Name, PeerId);
                        }
                    }
                    if (result.IsCompleted)
                    {
                        if (!buffer.IsEmpty)
                            throw new RaftProtocolException($"the connection closed in the middle of a frame ({buffer.Length} bytes of it received)");
                        return "the peer closed the connection";
                    }
                    midFrame = !buffer.IsEmpty;
                }
                finally
                {
                    reader.AdvanceTo(buffer.Start, buffer.End);
                }
            }
        }
        finally
        {
            stall?.Dispose();
        }
    }
}
