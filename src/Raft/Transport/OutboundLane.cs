using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Threading.Channels;

namespace Raft;

/// <summary>What <see cref="OutboundLane.TryEnqueue"/> did.</summary>
internal enum EnqueueResult
{
    /// <summary>Queued.</summary>
    Queued,

    /// <summary>Dropped: the queue holds <see cref="TcpTransportOptions.SendQueueCapacity"/> messages.</summary>
    FullMessages,

    /// <summary>Dropped: the message would take the queue over <see cref="TcpTransportOptions.SendQueueMaxBytes"/>.</summary>
    FullBytes,

    /// <summary>Dropped: the lane is closed.</summary>
    Closed,
}

/// <summary>
/// One outbound lane to one peer: a bounded queue that <see cref="TcpTransport.Send"/> fills, and
/// a writer task (started by the first message) that connects, drains the queue into the
/// connection in batches (one flush per drained batch) and reconnects with backoff.
/// </summary>
/// <remarks>
/// Invariant: at most one writer task and at most one connection per lane at any time. Messages
/// queued while the peer is unreachable are dropped after each failed connect (Raft retries), so
/// a reconnect never replays a long backlog of stale heartbeats.
/// </remarks>
internal sealed class OutboundLane
{
    private readonly TcpTransport _transport;
    private readonly Channel<Queued> _queue;
    private readonly long _maxBytes;
    private readonly Lock _gate = new();
    private long _queuedBytes; // Invariant: the sum of Bytes over the messages in _queue (added under _gate before they become readable).
    private bool _completed; // guarded by _gate
    private Task? _writer;   // guarded by _gate; null until the first message

    public OutboundLane(TcpTransport transport, int peerId, EndPoint endPoint, TransportLane lane, int capacity, long maxBytes)
    {
        _maxBytes = maxBytes;
        _transport = transport;
        PeerId = peerId;
        EndPoint = endPoint;
        Lane = lane;
        _queue = Channel.CreateBounded<Queued>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait, // TryWrite fails when full: the caller drops and logs.
            AllowSynchronousContinuations = false,
        });
    }

    public int PeerId { get; }

    public EndPoint EndPoint { get; }

    public TransportLane Lane { get; }

    /// <summary>The encoded size of the messages waiting in the queue.</summary>
    public long QueuedBytes => Interlocked.Read(ref _queuedBytes);

    /// <summary>Queues <paramref name="message"/> without blocking, starting the writer on first use.</summary>
    /// <param name="message">The message.</param>
    /// <param name="bytes">Its encoded size (frame header included).</param>
    public EnqueueResult TryEnqueue(RaftMessage message, long bytes)
    {
        lock (_gate)
        {
            if (_completed)
                return EnqueueResult.Closed;
            // Dequeues only lower the count, so a check under the lock never lets it exceed the cap.
            if (Interlocked.Read(ref _queuedBytes) + bytes > _maxBytes)
                return EnqueueResult.FullBytes;
            Interlocked.Add(ref _queuedBytes, bytes);
            if (!_queue.Writer.TryWrite(new Queued(message, bytes)))
            {
                Interlocked.Add(ref _queuedBytes, -bytes);
                return EnqueueResult.FullMessages;
            }
            _writer ??= Task.Run(RunAsync);
            return EnqueueResult.Queued;
        }
    }

    /// <summary>Takes the next queued message, if any (writer task only).</summary>
    public bool TryDequeue(out RaftMessage message)
    {
        if (_queue.Reader.TryRead(out var queued))
        {
            Interlocked.Add(ref _queuedBytes, -queued.Bytes);
            message = queued.Message;
            return true;
        }
        message = null!;
        return false;
    }

    /// <summary>Waits until a message can be taken; false once the queue is completed and empty.</summary>
    public ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken = default) => _queue.Reader.WaitToReadAsync(cancellationToken);

    /// <summary>Closes the queue; the writer sends what is queued (if connected) and exits.</summary>
    /// <returns>The writer task, which never faults.</returns>
    public Task Complete()
    {
        lock (_gate)
        {
            _completed = true;
            _queue.Writer.TryComplete();
            return _writer ?? Task.CompletedTask;
        }
    }

    private async Task RunAsync()
    {
        var stopping = _transport.StoppingToken;
        var abort = _transport.AbortToken;
        var logger = _transport.Logger;
        int failures = 0;        // consecutive failures, for the backoff
        int connectFailures = 0; // consecutive failed connects, for the log level
        string? lastFailure = null; // a new reason is logged at Warning, a repeated one at Debug
        try
        {
            // Connect only when there is something to send (lazily), and again after a loss. A
            // connect under way when the transport stops may finish (within the shutdown grace),
            // so messages queued just before a stop are still delivered; backoffs end at once.
            while (await _queue.Reader.WaitToReadAsync(abort).ConfigureAwait(false))
            {
                OutboundConnection? connection = null;
                string? failure = null;
                try
                {
                    connection = await OutboundConnection.ConnectAsync(_transport, this, abort).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (abort.IsCancellationRequested)
                {
                    break;
                }
                catch (Exception ex)
                {
                    failure = OutboundConnection.Describe(ex);
                }

                if (connection is null)
                {
                    failures++;
                    connectFailures++;
                    var delay = _transport.NextBackoff(failures);
                    if (connectFailures == 1 || !string.Equals(failure, lastFailure, StringComparison.Ordinal))
                        TcpTransportLog.OutboundConnectFailed(logger, PeerId, EndPoint, Lane, failure!, delay);
                    else
                        TcpTransportLog.OutboundConnectFailedAgain(logger, PeerId, EndPoint, Lane, connectFailures, failure!, delay);
                    lastFailure = failure;
                    DropQueued("the peer is unreachable");
                    if (!await DelayAsync(delay, stopping).ConfigureAwait(false))
                    {
                        DropQueued("the transport is stopping and the peer is not connected");
                        return;
                    }
                    continue;
                }

                failures = 0;
                connectFailures = 0;
                lastFailure = null;
                TcpTransportLog.OutboundConnected(logger, PeerId, EndPoint, Lane);
                string? lost;
                await using (connection.ConfigureAwait(false))
                {
                    lost = await connection.PumpAsync().ConfigureAwait(false);
                }
                if (lost is null)
                    return; // The queue was completed and everything in it was flushed.

                TcpTransportLog.OutboundClosed(logger, PeerId, EndPoint, Lane, lost);
                if (abort.IsCancellationRequested)
                    break;
                // A short pause, so a peer that drops every connection at once is not hammered.
                failures = 1;
                if (!await DelayAsync(_transport.NextBackoff(failures), stopping).ConfigureAwait(false))
                {
                    DropQueued("the transport is stopping and the peer is not connected");
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (abort.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            // A bug, not a network condition. Let the next Send start a fresh writer rather than
            // leave the lane without one.
            TcpTransportLog.SendLoopFailed(logger, ex, PeerId, Lane);
            DropQueued("the writer failed");
            lock (_gate)
                _writer = null;
            return;
        }
        DropQueued("the transport stopped before they could be sent");
    }

    private void DropQueued(string reason)
    {
        int count = 0;
        while (TryDequeue(out _))
            count++;
        if (count > 0)
        {
            TcpTransportLog.DroppedQueued(_transport.Logger, count, PeerId, Lane, reason);
            _transport.Metrics?.Dropped(PeerId, "unreachable", count);
        }
    }

    private readonly record struct Queued(RaftMessage Message, long Bytes);

    // Returns false when cancelled.
    private static async Task<bool> DelayAsync(TimeSpan delay, CancellationToken cancellationToken = default)
    {
        try
        {
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}

/// <summary>
/// One established outbound connection: TCP (and TLS) connected and the preface exchanged. It
/// only writes frames after the handshake; a background read notices the peer closing at once.
/// </summary>
internal sealed class OutboundConnection : IAsyncDisposable
{
    // Flush mid-batch once this much is buffered, so a long batch does not sit in memory.
    private const int FlushThreshold = 256 * 1024;

    private readonly TcpTransport _transport;
    private readonly OutboundLane _lane;
    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly CancellationTokenSource _broken;
    private readonly Task _monitor;
    private string? _brokenReason;

    private OutboundConnection(TcpTransport transport, OutboundLane lane, Socket socket, Stream stream)
    {
        _transport = transport;
        _lane = lane;
        _socket = socket;
        _stream = stream;
        _broken = CancellationTokenSource.CreateLinkedTokenSource(transport.AbortToken);
        _monitor = MonitorAsync();
    }

    /// <summary>Connects to the lane's peer, runs TLS and exchanges prefaces, within the configured timeouts.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="Exception">Any other exception means the connect failed; see <see cref="Describe"/>.</exception>
    public static async Task<OutboundConnection> ConnectAsync(TcpTransport transport, OutboundLane lane, CancellationToken cancellationToken = default)
    {
        var options = transport.Options;
        var socket = lane.EndPoint is IPEndPoint ip
            ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
            : new Socket(SocketType.Stream, ProtocolType.Tcp);
        Stream? stream = null;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        try
        {
            socket.NoDelay = true;
            timeout.CancelAfter(options.ConnectTimeout);
            try
            {
                await socket.ConnectAsync(lane.EndPoint, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"the TCP connect did not complete within {options.ConnectTimeout}");
            }

            stream = new NetworkStream(socket, ownsSocket: true);
            timeout.CancelAfter(options.HandshakeTimeout);
            try
            {
                if (options.ClientTls is { } tls)
                {
                    var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                    stream = ssl;
                    await ssl.AuthenticateAsClientAsync(tls, timeout.Token).ConfigureAwait(false);
                }

                if (stream is SslStream tlsStream && transport.CheckCertificateBinding(tlsStream.RemoteCertificate, lane.PeerId) is { } wrongCertificate)
                    throw new RaftProtocolException($"the listener at {lane.EndPoint} is refused: {wrongCertificate}");

                var secret = transport.Secret;
                var preface = new ConnectionPreface(ConnectionPreface.CurrentVersion, lane.Lane, transport.LocalId, lane.PeerId, options.ClusterId, Authenticated: secret is not null);
                var prefaceBytes = preface.ToArray();
                var nonce = secret is null ? [] : PrefaceAuthentication.NewNonce();
                await stream.WriteAsync((byte[])[.. prefaceBytes, .. nonce], timeout.Token).ConfigureAwait(false);
                await stream.FlushAsync(timeout.Token).ConfigureAwait(false);

                var answer = await ReadPrefaceAsync(stream, timeout.Token).ConfigureAwait(false);
                if (answer.ClusterId != options.ClusterId)
                    throw new RaftProtocolException($"the peer belongs to cluster '{answer.ClusterId}', not '{options.ClusterId}'");
                if (answer.SenderId != lane.PeerId)
                    throw new RaftProtocolException($"the peer at {lane.EndPoint} is node {answer.SenderId}, not node {lane.PeerId}");
                if (answer.ReceiverId != transport.LocalId || answer.Lane != lane.Lane)
                    throw new RaftProtocolException($"the peer answered for node {answer.ReceiverId} on the {answer.Lane} lane");
                if (answer.Authenticated != secret is not null)
                    throw new RaftProtocolException(PrefaceAuthentication.Mismatch(secret is not null, $"node {lane.PeerId} at {lane.EndPoint}"));
                if (secret is not null)
                {
                    // The listener proves it holds the secret first; only then do we prove it.
                    var proof = new byte[PrefaceAuthentication.NonceSize + PrefaceAuthentication.MacSize];
                    await stream.ReadExactlyAsync(proof, timeout.Token).ConfigureAwait(false);
                    var answerBytes = answer.ToArray();
                    var theirNonce = proof.AsSpan(0, PrefaceAuthentication.NonceSize);
                    var expected = PrefaceAuthentication.ComputeProof(secret, byAcceptor: true, prefaceBytes, nonce, answerBytes, theirNonce);
                    if (!PrefaceAuthentication.Verify(expected, proof.AsSpan(PrefaceAuthentication.NonceSize)))
                        throw new RaftProtocolException($"the listener at {lane.EndPoint} failed to prove it holds the cluster secret (an impostor, or a different ClusterSecret)");
                    var ours = PrefaceAuthentication.ComputeProof(secret, byAcceptor: false, prefaceBytes, nonce, answerBytes, theirNonce);
                    await stream.WriteAsync(ours, timeout.Token).ConfigureAwait(false);
                    await stream.FlushAsync(timeout.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"the handshake did not complete within {options.HandshakeTimeout}");
            }
            return new OutboundConnection(transport, lane, socket, stream);
        }
        catch
        {
            if (stream is not null)
                await stream.DisposeAsync().ConfigureAwait(false);
            else
                socket.Dispose();
            throw;
        }
    }

    /// <summary>Turns a connect failure into a log reason.</summary>
    public static string Describe(Exception exception) => exception switch
    {
        TimeoutException or RaftProtocolException => exception.Message,
        EndOfStreamException => "the peer closed the connection during the handshake (it refused us; its log says why)",
        SocketException socket => $"{socket.SocketErrorCode}: {socket.Message}",
        _ => $"{exception.GetType().Name}: {exception.Message}",
    };

    /// <summary>
    /// Drains the lane's queue into the connection: everything readable is encoded, then
    /// flushed once (a batch), until the queue completes or the connection fails.
    /// </summary>
    /// <returns>Null when the queue completed and everything was flushed; otherwise why the connection was lost.</returns>
    public async Task<string?> PumpAsync()
    {
        var queue = _lane;
        var logger = _transport.Logger;
        var token = _broken.Token;
        var writer = PipeWriter.Create(_stream, new StreamPipeWriterOptions(minimumBufferSize: 64 * 1024, leaveOpen: true));
        var metrics = _transport.Metrics;
        var peerTag = metrics?.PeerTag(_lane.PeerId) ?? default;
        try
        {
            while (await queue.WaitToReadAsync(token).ConfigureAwait(false))
            {
                while (queue.TryDequeue(out var message))
                {
                    int written;
                    try
                    {
                        written = MessageCodec.Write(writer, message);
                    }
                    catch (ArgumentException)
                    {
                        // Send checked encodability; a message that still fails is dropped, not sent half-written.
                        TcpTransportLog.DroppedNoEncoding(logger, message.GetType().Name, _lane.PeerId);
                        metrics?.Dropped(_lane.PeerId, "no_encoding");
                        continue;
                    }
                    metrics?.Sent(peerTag, written); // written to the connection's buffer; a broken connection loses what is unflushed
                    TcpTransportLog.MessageSent(logger, message.GetType().Name, _lane.PeerId, message.Term);
                    if (writer.UnflushedBytes >= FlushThreshold && await FlushAsync(writer, token).ConfigureAwait(false) is { } partialFailure)
                        return partialFailure;
                }
                if (await FlushAsync(writer, token).ConfigureAwait(false) is { } failure)
                    return failure;
            }

            // Completed and drained: flush, then close our side so the peer reads everything and EOF.
            await writer.CompleteAsync().ConfigureAwait(false);
            if (_stream is SslStream ssl)
                await ssl.ShutdownAsync().WaitAsync(token).ConfigureAwait(false);
            _socket.Shutdown(SocketShutdown.Send);
            return null;
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            return _transport.AbortToken.IsCancellationRequested
                ? "the transport stopped before the queue was flushed"
                : _brokenReason ?? "the connection broke";
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
        {
            return _brokenReason ?? OutboundConnection.Describe(ex);
        }
        finally
        {
            // No-op after a graceful completion; otherwise release the buffers without writing them.
            await writer.CompleteAsync(new IOException("The connection is closed.")).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Flushes within <see cref="TcpTransportOptions.WriteTimeout"/>. A peer that stopped reading
    /// gets its connection reset, so the bytes stuck in this node's socket buffer are released.
    /// </summary>
    /// <returns>Null when flushed; otherwise why the connection is lost.</returns>
    private async ValueTask<string?> FlushAsync(PipeWriter writer, CancellationToken token)
    {
        var timeout = _transport.Options.WriteTimeout;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(token);
        deadline.CancelAfter(timeout);
        FlushResult result = default;
        bool timedOut;
        try
        {
            result = await writer.FlushAsync(deadline.Token).ConfigureAwait(false);
            timedOut = result.IsCanceled && deadline.IsCancellationRequested && !token.IsCancellationRequested;
        }
        catch (Exception ex) when (deadline.IsCancellationRequested && !token.IsCancellationRequested
            && ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            timedOut = true;
        }
        if (timedOut)
        {
            string reason = $"the peer took no data for WriteTimeout ({timeout}): it stopped reading; the connection is reset";
            _brokenReason ??= reason;
            TcpTransportLog.OutboundReset(_transport.Logger, _lane.PeerId, _lane.EndPoint, _lane.Lane, reason);
            TcpTransport.Reset(_socket);
            return reason;
        }
        return result.IsCompleted ? "the connection stopped accepting data" : null;
    }

    public async ValueTask DisposeAsync()
    {
        _brokenReason ??= "closed";
        try
        {
            await _broken.CancelAsync().ConfigureAwait(false);
        }
        catch (AggregateException)
        {
            // A registration failed; the connection closes regardless.
        }
        await _stream.DisposeAsync().ConfigureAwait(false);
        await _monitor.ConfigureAwait(false);
        _broken.Dispose();
    }

    // The peer never sends after its preface answer, so any read completing means the connection is
    // over (EOF, reset, or a protocol breach); cancel the writer so the lane reconnects at once.
    private async Task MonitorAsync()
    {
        var buffer = new byte[1];
        try
        {
            int read = await _stream.ReadAsync(buffer, _broken.Token).ConfigureAwait(false);
            _brokenReason ??= read == 0 ? "the peer closed the connection" : "the peer sent unexpected data";
        }
        catch (Exception ex)
        {
            _brokenReason ??= Describe(ex);
        }
        try
        {
            await _broken.CancelAsync().ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
        }
        catch (AggregateException)
        {
        }
    }

    internal static async Task<ConnectionPreface> ReadPrefaceAsync(Stream stream, CancellationToken cancellationToken = default)
    {
        var head = new byte[ConnectionPreface.FixedSize];
        await stream.ReadExactlyAsync(head, cancellationToken).ConfigureAwait(false);
        var sequence = new System.Buffers.ReadOnlySequence<byte>(head);
        if (ConnectionPreface.TryParse(ref sequence, out var preface))
            return preface; // Unreachable: a cluster id is at least one byte.

        int idLength = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(16));
        var whole = new byte[ConnectionPreface.FixedSize + idLength];
        head.CopyTo(whole, 0);
        await stream.ReadExactlyAsync(whole.AsMemory(ConnectionPreface.FixedSize), cancellationToken).ConfigureAwait(false);
        sequence = new System.Buffers.ReadOnlySequence<byte>(whole);
        if (!ConnectionPreface.TryParse(ref sequence, out preface))
            throw new RaftProtocolException("the peer's preface answer is incomplete");
        return preface;
    }
}
