using System.Buffers;
using System.Diagnostics;
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
/// Any breach (bad preface, a failed proof of the cluster secret, a certificate bound to another
/// id, bad frame, a frame that stalls longer than <see cref="TcpTransportOptions.IdleReadTimeout"/>
/// or takes longer than <see cref="TcpTransportOptions.FrameTimeout"/>, a message not from the connected peer or not
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
        bool inHandshake = true; // Counted in the transport's pending handshakes until cleared.
        try
        {
            TcpTransportLog.InboundAccepted(logger, RemoteEndPoint);
            _socket.NoDelay = true;
            using (var handshake = CancellationTokenSource.CreateLinkedTokenSource(_closing.Token))
            {
                handshake.CancelAfter(options.HandshakeTimeout);
                try
                {
                    if (options.ServerTls is { } tls)
                    {
                        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                        stream = ssl;
                        await ssl.AuthenticateAsServerAsync(tls, handshake.Token).ConfigureAwait(false);
                    }
                    reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 256 * 1024, leaveOpen: true));
                    if (await HandshakeAsync(stream, reader, handshake.Token).ConfigureAwait(false) is { } refusal)
                    {
                        TcpTransportLog.InboundRefused(logger, RemoteEndPoint, refusal);
                        return;
                    }
                }
                catch (OperationCanceledException) when (handshake.IsCancellationRequested && !_closing.IsCancellationRequested)
                {
                    TcpTransportLog.InboundRefused(logger, RemoteEndPoint, $"the handshake did not complete within {options.HandshakeTimeout}");
                    return;
                }
            }

            inHandshake = false;
            _transport.HandshakeEnded();
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
            if (inHandshake)
                _transport.HandshakeEnded();
            if (established)
                _transport.UnregisterInbound(this);
            if (reader is not null)
                await reader.CompleteAsync().ConfigureAwait(false);
            await stream.DisposeAsync().ConfigureAwait(false);
            _transport.Forget(this);
            _closing.Dispose();
        }
    }

    /// <summary>
    /// Reads and checks the peer's preface (and, with a cluster secret, runs the challenge-response),
    /// checks the certificate binding, and answers. Nothing after the handshake is read here.
    /// </summary>
    /// <returns>Null when the peer is accepted (<see cref="PeerId"/> and <see cref="Lane"/> are set); otherwise why it is refused.</returns>
    private async Task<string?> HandshakeAsync(Stream stream, PipeReader reader, CancellationToken cancellationToken)
    {
        var secret = _transport.Secret;
        var preface = await ReadPrefaceAsync(reader, cancellationToken).ConfigureAwait(false);
        if (_transport.CheckPreface(preface) is { } refusal)
            return refusal;
        // Read the connector's nonce even when it will be refused, so closing does not reset the
        // connection before the peer has read our answer.
        var theirNonce = preface.Authenticated
            ? await ReadExactlyAsync(reader, PrefaceAuthentication.NonceSize, "its nonce", cancellationToken).ConfigureAwait(false)
            : [];
        if (stream is SslStream ssl && _transport.CheckCertificateBinding(ssl.RemoteCertificate, preface.SenderId) is { } wrongCertificate)
            return wrongCertificate;

        var answer = new ConnectionPreface(ConnectionPreface.CurrentVersion, preface.Lane, _transport.LocalId, preface.SenderId, _transport.Options.ClusterId, Authenticated: secret is not null);
        var answerBytes = answer.ToArray();
        if (preface.Authenticated != secret is not null)
        {
            // Tell the peer how this node is configured (the bare answer, no proof), so both logs say why.
            await stream.WriteAsync(answerBytes, cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
            return PrefaceAuthentication.Mismatch(secret is not null, $"node {preface.SenderId}");
        }
        if (secret is null)
        {
            await stream.WriteAsync(answerBytes, cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        else
        {
            var prefaceBytes = preface.ToArray();
            var ourNonce = PrefaceAuthentication.NewNonce();
            var ourProof = PrefaceAuthentication.ComputeProof(secret, byAcceptor: true, prefaceBytes, theirNonce, answerBytes, ourNonce);
            await stream.WriteAsync((byte[])[.. answerBytes, .. ourNonce, .. ourProof], cancellationToken).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
            var theirProof = await ReadExactlyAsync(reader, PrefaceAuthentication.MacSize, "its proof of the cluster secret (it may have refused ours: a different ClusterSecret?)", cancellationToken).ConfigureAwait(false);
            var expected = PrefaceAuthentication.ComputeProof(secret, byAcceptor: false, prefaceBytes, theirNonce, answerBytes, ourNonce);
            if (!PrefaceAuthentication.Verify(expected, theirProof))
                return $"it claims to be node {preface.SenderId} but failed to prove it holds the cluster secret (wrong ClusterSecret, or not a cluster member)";
        }
        PeerId = preface.SenderId;
        Lane = preface.Lane;
        return null;
    }

    private static async Task<byte[]> ReadExactlyAsync(PipeReader reader, int count, string what, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.Length >= count)
            {
                var bytes = buffer.Slice(0, count).ToArray();
                reader.AdvanceTo(buffer.GetPosition(count));
                return bytes;
            }
            if (result.IsCompleted)
                throw new RaftProtocolException($"the connection closed before {what}");
            reader.AdvanceTo(buffer.Start, buffer.End);
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
        var metrics = _transport.Metrics;
        var peerTag = metrics?.PeerTag(PeerId) ?? default;
        CancellationTokenSource? stall = null;
        bool midFrame = false;   // Invariant: true iff the bytes left after the last parse are part of an unfinished frame.
        long frameStarted = 0;   // Stopwatch timestamp of the read that brought the unfinished frame's first byte.
        try
        {
            while (true)
            {
                var token = _closing.Token;
                bool frameDeadline = false; // Whether the stall timer below is the frame's deadline rather than the idle limit.
                if (midFrame)
                {
                    var left = options.FrameTimeout - Stopwatch.GetElapsedTime(frameStarted);
                    frameDeadline = left < options.IdleReadTimeout;
                    stall ??= CancellationTokenSource.CreateLinkedTokenSource(_closing.Token);
                    stall.CancelAfter(frameDeadline ? (left > TimeSpan.Zero ? left : TimeSpan.Zero) : options.IdleReadTimeout);
                    token = stall.Token;
                }

                ReadResult result;
                try
                {
                    result = await reader.ReadAsync(token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stall is { IsCancellationRequested: true } && !_closing.IsCancellationRequested)
                {
                    if (frameDeadline)
                        TcpTransportLog.InboundFrameTooSlow(logger, PeerId, Lane, RemoteEndPoint, options.FrameTimeout);
                    else
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
                bool completedFrame = false;
                try
                {
                    long unread = buffer.Length;
                    while (MessageCodec.TryReadFrame(ref buffer, maxFrameBytes, out var message))
                    {
                        completedFrame = true;
                        metrics?.Received(peerTag, unread - buffer.Length);
                        unread = buffer.Length;
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
                    bool unfinished = !buffer.IsEmpty;
                    if (unfinished && (!midFrame || completedFrame))
                        frameStarted = Stopwatch.GetTimestamp(); // A new frame began in this read.
                    midFrame = unfinished;
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
