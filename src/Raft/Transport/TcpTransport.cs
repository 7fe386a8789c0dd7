using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Raft;

/// <summary>
/// An <see cref="ITransport"/> over TCP (optionally TLS), built on System.IO.Pipelines: one
/// long-lived outbound connection per peer for messages, a second one for snapshot chunks, and an
/// accept loop for the connections peers open to this node.
/// </summary>
/// <remarks>
/// <para><b>Sending.</b> <see cref="Send"/> never blocks and never throws for a network problem: it
/// puts the message in the peer's bounded queue (<see cref="TcpTransportOptions.SendQueueCapacity"/>)
/// and returns, or drops it (logged at Debug) when the queue is full. The first message to a peer
/// opens its connection; a writer task drains the queue and flushes once per drained batch, so
/// messages are pipelined. A lost connection is re-opened with capped exponential backoff and
/// jitter; messages queued while a peer is unreachable are dropped, which Raft tolerates (the
/// leader retries). <see cref="InstallSnapshot"/> chunks travel on a separate connection, so a
/// large chunk never delays a heartbeat or a vote.</para>
/// <para><b>Receiving.</b> Every accepted connection must open with the preface (magic, protocol
/// version, <see cref="TcpTransportOptions.ClusterId"/>, sender id, receiver id) within
/// <see cref="TcpTransportOptions.HandshakeTimeout"/>; the sender must be a configured peer and the
/// receiver this node. Frames are then parsed from a PipeReader and each message is passed to the
/// handler, awaited before the next frame is read (back-pressure). A connection that breaks the
/// protocol (see <see cref="RaftProtocolException"/>) or stalls mid-frame for
/// <see cref="TcpTransportOptions.IdleReadTimeout"/> is closed with a logged reason; others carry
/// on. Each connection is one-way: inbound connections carry the peer's messages, answers go back
/// on this node's own outbound connection.</para>
/// <para><b>Lifetime.</b> <see cref="StartAsync"/> once; <see cref="StopAsync"/> and
/// <see cref="DisposeAsync"/> stop accepting, flush what is queued (within the token and
/// <see cref="TcpTransportOptions.ShutdownTimeout"/>), and close every socket. Both are idempotent;
/// a stopped transport cannot be restarted.</para>
/// <para><b>Authentication.</b> With <see cref="TcpTransportOptions.ClusterSecret"/>, both ends of
/// every connection prove they hold the secret before any frame is read; with
/// <see cref="TcpTransportOptions.NodeIdFromCertificate"/>, the id each end claims must be the one
/// its TLS certificate maps to. With neither, a transport listening on a non-loopback address logs
/// a warning at start. See docs/security.md.</para>
/// <para><b>Bounded memory.</b> Connections in the handshake
/// (<see cref="TcpTransportOptions.MaxPendingHandshakes"/>) and inbound connections
/// (<see cref="TcpTransportOptions.MaxInboundConnections"/>) are capped; send queues are capped in
/// messages and bytes (<see cref="TcpTransportOptions.SendQueueMaxBytes"/>); a flush that takes
/// longer than <see cref="TcpTransportOptions.WriteTimeout"/> resets the connection; a frame must
/// arrive whole within <see cref="TcpTransportOptions.FrameTimeout"/>.</para>
/// <para>Wire format: see docs/custom-transport.md.</para>
/// </remarks>
public sealed class TcpTransport : ITransport, IAsyncDisposable
{
    private const int NotStarted = 0;
    private const int Running = 1;
    private const int Stopped = 2;

    private readonly Lock _gate = new();
    private readonly Lock _randomGate = new();
    private readonly Random _random;
    private readonly ConcurrentDictionary<int, PeerLanes> _peers = new();

    /// <summary>The peers <see cref="UpdatePeers"/> added (not given in the options), which a later call may remove.</summary>
    private readonly ConcurrentDictionary<int, byte> _learnedPeers = new();
    private readonly ConcurrentDictionary<int, byte> _warnedUnknownPeers = new();
    private readonly ConcurrentDictionary<InboundConnection, byte> _inbound = new();
    private readonly ConcurrentDictionary<(int PeerId, TransportLane Lane), InboundConnection> _inboundByPeer = new();
    private readonly List<Task> _retiredLanes = []; // guarded by _gate
    private readonly CancellationTokenSource _stopping = new(); // Stop requested: no accepting, connecting or delivering.
    private readonly CancellationTokenSource _abort = new();    // Stop flushing: close everything now.
    private int _state = NotStarted;
    private Socket? _listener;
    private Task _acceptLoop = Task.CompletedTask;
    private Task? _stopTask; // guarded by _gate
    private RaftMessageHandler _handler = static (_, _) => ValueTask.CompletedTask;
    private int _pendingHandshakes; // Invariant: the number of started inbound connections that have not left the handshake.
    private long _queueFullDrops;
    private readonly RefusalThrottle _refusals;

    /// <summary>Creates a transport; nothing is bound or connected until <see cref="StartAsync"/>.</summary>
    /// <param name="options">The settings; validated here.</param>
    /// <param name="loggerFactory">Creates the transport's logger (event ids 3000-3099). The default, null, logs nothing.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">A setting is invalid (see <see cref="TcpTransportOptions.Validate"/>).</exception>
    /// <remarks>The reconnect jitter draws from <see cref="Random.Shared"/>.</remarks>
    public TcpTransport(TcpTransportOptions options, ILoggerFactory? loggerFactory = null)
        : this(options, loggerFactory, Random.Shared)
    {
    }

    // Tests pass a seeded Random for reproducible reconnect delays; the transport serializes its calls to it.
    internal TcpTransport(TcpTransportOptions options, ILoggerFactory? loggerFactory, Random random)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(random);
        // The transport's own copy: a host changing its options object later changes nothing here.
        options = options with { Peers = options.Peers is null ? null! : new Dictionary<int, EndPoint>(options.Peers) };
        options.Validate();
        Options = options;
        Logger = loggerFactory?.CreateLogger<TcpTransport>() ?? NullLogger<TcpTransport>.Instance;
        _random = random;
        Secret = options.ClusterSecret?.ToArray(); // A copy: later changes to the caller's array do not apply.
        _refusals = new RefusalThrottle(this);
        foreach (var (id, endPoint) in options.Peers)
            _peers[id] = new PeerLanes(this, id, endPoint);
    }

    /// <summary>The address and port the transport accepts peers on, once started (the actual port when <see cref="TcpTransportOptions.ListenEndPoint"/> asked for port 0); null before.</summary>
    public IPEndPoint? LocalEndPoint { get; private set; }

    /// <summary>
    /// How many messages <see cref="Send"/> dropped because the peer's queue was full, in messages
    /// (<see cref="TcpTransportOptions.SendQueueCapacity"/>) or bytes
    /// (<see cref="TcpTransportOptions.SendQueueMaxBytes"/>), since the transport was created.
    /// </summary>
    public long QueueFullDropCount => Interlocked.Read(ref _queueFullDrops);

    internal TcpTransportOptions Options { get; }

    /// <summary>The cluster secret (a private copy), or null.</summary>
    internal byte[]? Secret { get; }

    internal ILogger Logger { get; }

    /// <summary>Where the transport counts messages and bytes per peer: the meter of the <see cref="RaftNode"/> it was given to (null: not counted).</summary>
    internal TransportMetrics? Metrics { get; set; }

    internal int LocalId { get; private set; }

    internal RaftMessageHandler Handler => _handler;

    internal CancellationToken StoppingToken => _stopping.Token;

    internal CancellationToken AbortToken => _abort.Token;

    /// <summary>Binds <see cref="TcpTransportOptions.ListenEndPoint"/> and starts accepting peers for node <paramref name="localId"/>.</summary>
    /// <param name="localId">The local node's id; a configured peer entry with this id is ignored.</param>
    /// <param name="handler">Receives every inbound message, from any thread; awaited before the connection's next frame is read.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <returns>A task that completes once the listener is bound.</returns>
    /// <exception cref="InvalidOperationException">The transport was already started or stopped.</exception>
    /// <exception cref="ObjectDisposedException">The transport was disposed.</exception>
    /// <exception cref="SocketException">The listen address cannot be bound.</exception>
    public ValueTask StartAsync(int localId, RaftMessageHandler handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(localId);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_stopTask is not null, this);
            if (_state != NotStarted)
                throw new InvalidOperationException("The transport is already started; a transport starts once.");

            var listener = new Socket(Options.ListenEndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                if (Options.ListenEndPoint.Address.Equals(IPAddress.IPv6Any))
                    listener.DualMode = true; // [::] accepts IPv4 peers too.
                listener.Bind(Options.ListenEndPoint);
                listener.Listen(512);
            }
            catch
            {
                listener.Dispose();
                throw;
            }
            _listener = listener;
            LocalEndPoint = (IPEndPoint?)listener.LocalEndPoint;
            LocalId = localId;
            _handler = handler;
            _peers.TryRemove(localId, out _);
            Volatile.Write(ref _state, Running);
            _acceptLoop = Task.Run(AcceptLoopAsync, CancellationToken.None);
        }
        TcpTransportLog.Listening(Logger, localId, LocalEndPoint);
        if (Secret is null && Options.NodeIdFromCertificate is null && !IPAddress.IsLoopback(Options.ListenEndPoint.Address))
            TcpTransportLog.Unauthenticated(Logger, localId, LocalEndPoint);
        return ValueTask.CompletedTask;
    }

    /// <summary>Queues <paramref name="message"/> for <see cref="RaftMessage.To"/> without blocking.</summary>
    /// <param name="message">The message; its buffers are read (not copied) when it is written out, so they must not change.</param>
    /// <remarks>
    /// Best effort: the message is dropped (and logged) when the transport is not running, the
    /// receiver is not a configured peer, the sender is not the local node, it would encode larger
    /// than <see cref="TcpTransportOptions.MaxFrameBytes"/>, or the peer's queue is full.
    /// </remarks>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is null.</exception>
    /// <exception cref="ArgumentException">A list in the message (entries, members, commands) is null, or the message is malformed in a way the receiver would reject (a read <see cref="ForwardRequest"/> with commands, a <see cref="ForwardResponse"/> with a negative count or an undefined status).</exception>
    public void Send(RaftMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (Volatile.Read(ref _state) != Running)
        {
            TcpTransportLog.DroppedNotRunning(Logger, message.GetType().Name, message.To);
            Metrics?.Dropped(message.To, "not_running");
            return;
        }
        if (message.From != LocalId)
        {
            TcpTransportLog.DroppedWrongSender(Logger, message.GetType().Name, message.To, message.From, LocalId);
            return;
        }
        if (!_peers.TryGetValue(message.To, out var peer))
        {
            if (_warnedUnknownPeers.TryAdd(message.To, 0))
                TcpTransportLog.DroppedUnknownPeer(Logger, message.GetType().Name, message.To);
            else
                TcpTransportLog.DroppedUnknownPeerAgain(Logger, message.GetType().Name, message.To);
            Metrics?.Dropped(message.To, "unknown_peer");
            return;
        }
        if (!MessageCodec.TryGetPayloadLength(message, out long length))
        {
            TcpTransportLog.DroppedNoEncoding(Logger, message.GetType().Name, message.To);
            Metrics?.Dropped(message.To, "no_encoding");
            return;
        }
        if (length > Options.MaxFrameBytes)
        {
            TcpTransportLog.DroppedTooLarge(Logger, message.GetType().Name, message.To, length, Options.MaxFrameBytes);
            Metrics?.Dropped(message.To, "too_large");
            return;
        }
        var lane = message is InstallSnapshot ? peer.Snapshots : peer.Messages;
        switch (lane.TryEnqueue(message, length + MessageCodec.HeaderSize))
        {
            case EnqueueResult.FullMessages:
                Interlocked.Increment(ref _queueFullDrops);
                TcpTransportLog.DroppedQueueFull(Logger, message.GetType().Name, message.To, Options.SendQueueCapacity, "messages (SendQueueCapacity)");
                Metrics?.Dropped(message.To, "queue_full");
                break;
            case EnqueueResult.FullBytes:
                Interlocked.Increment(ref _queueFullDrops);
                TcpTransportLog.DroppedQueueFull(Logger, message.GetType().Name, message.To, Options.SendQueueMaxBytes, "bytes (SendQueueMaxBytes)");
                Metrics?.Dropped(message.To, "queue_full");
                break;
            case EnqueueResult.Closed:
                TcpTransportLog.DroppedNotRunning(Logger, message.GetType().Name, message.To);
                Metrics?.Dropped(message.To, "not_running");
                break;
        }
    }

    /// <summary>
    /// Adds a peer, or moves it to a new address (its connections to the old address close after
    /// flushing). Use it for membership changes; the peer may connect in from then on.
    /// </summary>
    /// <param name="nodeId">The peer's id, positive. The local node's own id is ignored.</param>
    /// <param name="endPoint">An <see cref="IPEndPoint"/> or <see cref="DnsEndPoint"/> with a port.</param>
    /// <exception cref="ArgumentException"><paramref name="nodeId"/> or <paramref name="endPoint"/> is invalid.</exception>
    public void SetPeer(int nodeId, EndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        TcpTransportOptions.ValidatePeer(nodeId, endPoint, nameof(endPoint));
        lock (_gate)
        {
            if (_stopTask is not null || (_state == Running && nodeId == LocalId))
                return;
            if (_peers.TryGetValue(nodeId, out var old) && old.EndPoint.Equals(endPoint))
                return;
            _peers[nodeId] = new PeerLanes(this, nodeId, endPoint);
            _warnedUnknownPeers.TryRemove(nodeId, out _);
            if (old is not null)
                Retire(old);
        }
        TcpTransportLog.PeerSet(Logger, nodeId, endPoint);
    }

    /// <summary>
    /// Removes a peer: messages to it are dropped from now on, its queued messages are flushed if it
    /// is connected, and it may no longer connect in (connections it has open stay until they close).
    /// </summary>
    /// <param name="nodeId">The peer's id.</param>
    /// <returns>True when the peer was configured.</returns>
    public bool RemovePeer(int nodeId)
    {
        lock (_gate)
        {
            if (!_peers.TryRemove(nodeId, out var old))
                return false;
            Retire(old);
        }
        TcpTransportLog.PeerRemoved(Logger, nodeId);
        return true;
    }

    /// <summary>
    /// Follows the cluster configuration (see <see cref="ITransport.UpdatePeers"/>): a member whose
    /// address the configuration records is set with <see cref="SetPeer"/> (so a node added while the
    /// cluster runs becomes reachable), and a peer an earlier call added that the configuration no
    /// longer lists is removed. Peers given in <see cref="TcpTransportOptions.Peers"/> are the
    /// bootstrap addresses and are never removed by this method; a configuration address for one of
    /// them replaces the configured address.
    /// </summary>
    /// <param name="peers">The configuration's other members, by id, with their "host:port" addresses or null.</param>
    public void UpdatePeers(IReadOnlyDictionary<int, string?> peers)
    {
        ArgumentNullException.ThrowIfNull(peers);
        foreach (var (id, address) in peers)
        {
            if (id == LocalId || id <= 0)
                continue;
            if (address is null)
            {
                if (!_peers.ContainsKey(id))
                    TcpTransportLog.PeerWithoutAddress(Logger, id);
                continue;
            }
            EndPoint endPoint;
            try
            {
                endPoint = TcpTransportOptions.ParseEndPoint(address);
            }
            catch (FormatException ex)
            {
                TcpTransportLog.PeerAddressInvalid(Logger, id, address, ex.Message);
                continue;
            }
            SetPeer(id, endPoint);
            if (!Options.Peers.ContainsKey(id))
                _learnedPeers[id] = 0;
        }
        foreach (var id in _learnedPeers.Keys)
        {
            if (!peers.ContainsKey(id))
            {
                _learnedPeers.TryRemove(id, out _);
                RemovePeer(id);
            }
        }
    }

    /// <summary>
    /// Stops accepting and delivering, flushes queued messages to connected peers (until
    /// <paramref name="cancellationToken"/> is cancelled or <see cref="TcpTransportOptions.ShutdownTimeout"/>
    /// passes, whichever comes first) and closes every connection. Idempotent: later calls wait for the first.
    /// </summary>
    /// <param name="cancellationToken">Cancels the graceful part: connections are then closed at once, and the task still completes normally.</param>
    /// <returns>A task that completes when no more messages will be delivered and every socket is closed.</returns>
    public async ValueTask StopAsync(CancellationToken cancellationToken = default)
    {
        Task stop;
        lock (_gate)
        {
            if (_stopTask is null)
            {
                if (_state == NotStarted)
                {
                    _state = Stopped;
                    _stopTask = Task.CompletedTask;
                }
                else
                {
                    Volatile.Write(ref _state, Stopped);
                    _stopTask = Task.Run(StopCoreAsync, CancellationToken.None);
                }
            }
            stop = _stopTask;
        }
        using (cancellationToken.Register(static state => ((TcpTransport)state!).Abort(), this))
            await stop.ConfigureAwait(false);
    }

    /// <summary>Stops the transport as <see cref="StopAsync"/> does, waiting at most <see cref="TcpTransportOptions.ShutdownTimeout"/> for queued messages.</summary>
    /// <returns>A task that completes when every socket is closed.</returns>
    public ValueTask DisposeAsync() => StopAsync(CancellationToken.None);

    /// <summary>Checks an inbound preface.</summary>
    /// <returns>Null when it is acceptable; otherwise why it is refused.</returns>
    internal string? CheckPreface(ConnectionPreface preface)
    {
        if (!string.Equals(preface.ClusterId, Options.ClusterId, StringComparison.Ordinal))
            return $"it belongs to cluster '{preface.ClusterId}', not '{Options.ClusterId}'";
        if (preface.ReceiverId != LocalId)
            return $"it wants node {preface.ReceiverId}, but this is node {LocalId}";
        if (preface.SenderId == LocalId || !_peers.ContainsKey(preface.SenderId))
            return $"it claims to be node {preface.SenderId}, which is not a configured peer";
        return null;
    }

    /// <summary>
    /// Checks the peer's TLS certificate against the id it claims (or the id this node meant to
    /// reach) when <see cref="TcpTransportOptions.NodeIdFromCertificate"/> is set.
    /// </summary>
    /// <returns>Null when it is acceptable (or no binding is configured); otherwise why it is refused.</returns>
    internal string? CheckCertificateBinding(X509Certificate? certificate, int expectedId)
    {
        var map = Options.NodeIdFromCertificate;
        if (map is null)
            return null;
        if (certificate is null)
            return $"it presented no TLS certificate, so it cannot be node {expectedId}";
        int? id;
        string subject;
        X509Certificate2? copy = null; // Made (and disposed) here only when the stream did not give an X509Certificate2.
        try
        {
            var certificate2 = certificate as X509Certificate2 ?? (copy = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
            subject = certificate2.Subject;
            id = map(certificate2);
        }
#pragma warning disable CA1031 // The host's callback failing refuses the connection; it must not kill the connection task.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            return $"NodeIdFromCertificate threw {ex.GetType().Name}: {ex.Message}";
        }
        finally
        {
            copy?.Dispose();
        }
        if (id is null)
            return $"its certificate ({subject}) maps to no node id";
        if (id != expectedId)
            return $"its certificate ({subject}) is node {id}'s, but it claims to be node {expectedId}";
        return null;
    }

    /// <summary>The bytes queued for <paramref name="peerId"/> on <paramref name="lane"/> (tests).</summary>
    internal long GetQueuedBytes(int peerId, TransportLane lane) =>
        _peers.TryGetValue(peerId, out var peer) ? (lane == TransportLane.Snapshots ? peer.Snapshots : peer.Messages).QueuedBytes : 0;

    /// <summary>Marks one inbound connection as out of the handshake (established or closed).</summary>
    internal void HandshakeEnded() => Interlocked.Decrement(ref _pendingHandshakes);

    internal void RegisterInbound(InboundConnection connection)
    {
        var key = (connection.PeerId, connection.Lane);
        InboundConnection? previous = null;
        _inboundByPeer.AddOrUpdate(key, connection, (_, old) =>
        {
            previous = old;
            return connection;
        });
        if (previous is not null && previous != connection)
        {
            TcpTransportLog.InboundSuperseded(Logger, previous.PeerId, previous.Lane, previous.RemoteEndPoint);
            previous.Close("the peer opened a newer connection");
        }
    }

    internal void UnregisterInbound(InboundConnection connection) =>
        _inboundByPeer.TryRemove(new KeyValuePair<(int, TransportLane), InboundConnection>((connection.PeerId, connection.Lane), connection));

    internal void Forget(InboundConnection connection) => _inbound.TryRemove(connection, out _);

    /// <summary>The delay before reconnect attempt <paramref name="failures"/> (1-based).</summary>
    internal TimeSpan NextBackoff(int failures)
    {
        lock (_randomGate)
            return ComputeBackoff(failures, Options.ReconnectBackoffMin, Options.ReconnectBackoffMax, _random);
    }

    /// <summary>
    /// Capped exponential backoff with jitter: the ceiling is min * 2^(failures-1), capped at max,
    /// and the delay is uniform in [max(min, ceiling / 2), ceiling].
    /// </summary>
    internal static TimeSpan ComputeBackoff(int failures, TimeSpan min, TimeSpan max, Random random)
    {
        int doublings = Math.Clamp(failures - 1, 0, 30);
        double ceiling = Math.Min(max.TotalMilliseconds, min.TotalMilliseconds * Math.Pow(2, doublings));
        double floor = Math.Max(min.TotalMilliseconds, ceiling / 2);
        return TimeSpan.FromMilliseconds(floor + (random.NextDouble() * (ceiling - floor)));
    }

    private void Retire(PeerLanes peer)
    {
        // Caller holds _gate.
        _retiredLanes.RemoveAll(static t => t.IsCompleted);
        _retiredLanes.Add(peer.Messages.Complete());
        _retiredLanes.Add(peer.Snapshots.Complete());
    }

    private void Abort()
    {
        try
        {
            _abort.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
        catch (AggregateException)
        {
        }
    }

    private async Task AcceptLoopAsync()
    {
        var listener = _listener!;
        var stopping = _stopping.Token;
        int failures = 0;
        while (!stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(stopping).ConfigureAwait(false);
                failures = 0;
            }
            catch (Exception) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is SocketException or IOException)
            {
                // Out of descriptors and the like: log, pause, keep accepting.
                TcpTransportLog.AcceptFailed(Logger, ex);
                try
                {
                    await Task.Delay(NextBackoff(++failures), stopping).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }

            // Caps first, before anything is read or allocated for the connection.
            if (_inbound.Count >= Options.MaxInboundConnections)
            {
                Reset(socket);
                _refusals.Refused($"{Options.MaxInboundConnections} inbound connections are open (MaxInboundConnections)");
                continue;
            }
            if (Volatile.Read(ref _pendingHandshakes) >= Options.MaxPendingHandshakes)
            {
                Reset(socket);
                _refusals.Refused($"{Options.MaxPendingHandshakes} connections are in the handshake (MaxPendingHandshakes)");
                continue;
            }
            Interlocked.Increment(ref _pendingHandshakes);
            var connection = new InboundConnection(this, socket);
            _inbound.TryAdd(connection, 0);
            connection.Start();
        }
    }

    /// <summary>Closes <paramref name="socket"/> with a reset: no graceful close, no lingering buffers.</summary>
    internal static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(enable: true, seconds: 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
        socket.Dispose();
    }

    private async Task StopCoreAsync()
    {
        // 1. No new connections, connects, backoffs or deliveries.
        await _stopping.CancelAsync().ConfigureAwait(false);
        _abort.CancelAfter(Options.ShutdownTimeout);
        _listener?.Dispose();
        await _acceptLoop.ConfigureAwait(false);

        // 2. Inbound connections close now; outbound lanes flush what is queued.
        foreach (var connection in _inbound.Keys)
            connection.Close("the transport is stopping");
        var writers = new List<Task>();
        lock (_gate)
        {
            foreach (var peer in _peers.Values)
            {
                writers.Add(peer.Messages.Complete());
                writers.Add(peer.Snapshots.Complete());
            }
            writers.AddRange(_retiredLanes);
            _retiredLanes.Clear();
        }
        await Task.WhenAll(writers).ConfigureAwait(false);

        // 3. Whatever is left is cut.
        Abort();
        await Task.WhenAll(_inbound.Keys.Select(static c => c.Completion)).ConfigureAwait(false);
        TcpTransportLog.Stopped(Logger, LocalId);
    }

    /// <summary>Logs connections refused by a cap at most once per <see cref="Interval"/>, with a count.</summary>
    private sealed class RefusalThrottle(TcpTransport transport)
    {
        public static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

        private readonly Lock _gate = new();
        private long _lastLogged = long.MinValue; // Environment.TickCount64 of the last log line.
        private int _unlogged;                    // Refusals since then.

        public void Refused(string reason)
        {
            int count;
            lock (_gate)
            {
                _unlogged++;
                long now = Environment.TickCount64;
                if (_lastLogged != long.MinValue && now - _lastLogged < (long)Interval.TotalMilliseconds)
                    return;
                _lastLogged = now;
                count = _unlogged;
                _unlogged = 0;
            }
            TcpTransportLog.InboundOverCapacity(transport.Logger, count, reason, Interval);
        }
    }

    private sealed class PeerLanes(TcpTransport transport, int id, EndPoint endPoint)
    {
        public EndPoint EndPoint { get; } = endPoint;

        public OutboundLane Messages { get; } = new(transport, id, endPoint, TransportLane.Messages, transport.Options.SendQueueCapacity, transport.Options.SendQueueMaxBytes);

        public OutboundLane Snapshots { get; } = new(transport, id, endPoint, TransportLane.Snapshots, transport.Options.SendQueueCapacity, transport.Options.SendQueueMaxBytes);
    }
}
