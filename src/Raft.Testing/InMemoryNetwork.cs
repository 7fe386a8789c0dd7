using System.Collections.Concurrent;

namespace Raft.Testing;

/// <summary>
/// A network of in-process <see cref="ITransport"/>s for tests and demos: messages are handed over
/// as objects, and the test can partition, drop, delay, duplicate and reorder them. <b>Testing only.</b>
/// </summary>
/// <remarks>
/// Thread-safe. Delays use the given <see cref="TimeProvider"/>, so a fake clock controls them.
/// Randomness comes from one seeded <see cref="Random"/>. Delivery order is deterministic only
/// when no delays are set and the test drives the nodes from one thread; for fully deterministic
/// runs use the simulator (<c>Raft.Testing.Simulation</c>).
/// </remarks>
public sealed class InMemoryNetwork
{
    private readonly ConcurrentDictionary<int, InMemoryTransport> _transports = new();
    private readonly HashSet<(int From, int To)> _cut = [];
    private readonly Lock _gate = new();
    private readonly Random _random;
    private readonly TimeProvider _time;
    private double _dropRate;
    private double _duplicateRate;
    private TimeSpan _minDelay;
    private TimeSpan _maxDelay;
    private Func<RaftMessage, bool>? _filter;
    private long _delivered;
    private long _dropped;

    /// <summary>Creates a network.</summary>
    /// <param name="seed">Seeds the randomness of drops, duplicates and delays.</param>
    /// <param name="timeProvider">The clock for delays. The default is <see cref="TimeProvider.System"/>.</param>
    public InMemoryNetwork(int seed = 0, TimeProvider? timeProvider = null)
    {
        _random = new Random(seed);
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <summary>How many messages reached a handler.</summary>
    public long DeliveredCount => Interlocked.Read(ref _delivered);

    /// <summary>How many messages were dropped (cut links, drop rate, filter, or no such node).</summary>
    public long DroppedCount => Interlocked.Read(ref _dropped);

    /// <summary>Creates (or returns) the transport of node <paramref name="nodeId"/>.</summary>
    /// <param name="nodeId">The node's id.</param>
    /// <returns>The node's transport.</returns>
    public ITransport CreateTransport(int nodeId) => _transports.GetOrAdd(nodeId, id => new InMemoryTransport(this, id));

    /// <summary>Cuts both directions between <paramref name="a"/> and <paramref name="b"/>.</summary>
    /// <param name="a">One node.</param>
    /// <param name="b">The other node.</param>
    public void Cut(int a, int b)
    {
        lock (_gate)
        {
            _cut.Add((a, b));
            _cut.Add((b, a));
        }
    }

    /// <summary>Cuts the direction from <paramref name="from"/> to <paramref name="to"/> only (an asymmetric partition).</summary>
    /// <param name="from">The sender.</param>
    /// <param name="to">The receiver.</param>
    public void CutOneWay(int from, int to)
    {
        lock (_gate)
            _cut.Add((from, to));
    }

    /// <summary>Cuts <paramref name="node"/> off from every other node.</summary>
    /// <param name="node">The node to isolate.</param>
    public void Isolate(int node)
    {
        lock (_gate)
        {
            foreach (var other in _transports.Keys)
            {
                if (other == node)
                    continue;
                _cut.Add((node, other));
                _cut.Add((other, node));
            }
        }
    }

    /// <summary>Restores every link and clears drop, duplicate, delay and filter settings.</summary>
    public void Heal()
    {
        lock (_gate)
        {
            _cut.Clear();
            _dropRate = 0;
            _duplicateRate = 0;
            _minDelay = TimeSpan.Zero;
            _maxDelay = TimeSpan.Zero;
            _filter = null;
        }
    }

    /// <summary>Drops each message with probability <paramref name="dropRate"/> and delivers each surviving one twice with probability <paramref name="duplicateRate"/>.</summary>
    /// <param name="dropRate">In [0, 1].</param>
    /// <param name="duplicateRate">In [0, 1].</param>
    public void SetLoss(double dropRate, double duplicateRate = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dropRate);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(dropRate, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(duplicateRate);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(duplicateRate, 1);
        lock (_gate)
        {
            _dropRate = dropRate;
            _duplicateRate = duplicateRate;
        }
    }

    /// <summary>Delays each message by a random time in [<paramref name="min"/>, <paramref name="max"/>]; different delays reorder messages.</summary>
    /// <param name="min">The shortest delay.</param>
    /// <param name="max">The longest delay.</param>
    public void SetDelay(TimeSpan min, TimeSpan max)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(min.Ticks, nameof(min));
        if (max < min)
            throw new ArgumentException($"The maximum delay ({max}) is below the minimum ({min}).", nameof(max));
        lock (_gate)
        {
            _minDelay = min;
            _maxDelay = max;
        }
    }

    /// <summary>Installs a hook that sees every message first; returning false drops it. Null removes the hook.</summary>
    /// <param name="filter">The hook.</param>
    public void SetFilter(Func<RaftMessage, bool>? filter)
    {
        lock (_gate)
            _filter = filter;
    }

    internal void Send(RaftMessage message)
    {
        int copies;
        TimeSpan delay;
        TimeSpan delay2 = TimeSpan.Zero;
        lock (_gate)
        {
            if (_cut.Contains((message.From, message.To)) || (_filter is { } filter && !filter(message)) || _random.NextDouble() < _dropRate)
            {
                Interlocked.Increment(ref _dropped);
                return;
            }
            copies = _random.NextDouble() < _duplicateRate ? 2 : 1;
            delay = NextDelay();
            if (copies == 2)
                delay2 = NextDelay();
        }
        if (!_transports.TryGetValue(message.To, out var target))
        {
            Interlocked.Increment(ref _dropped);
            return;
        }
        target.Enqueue(message, delay);
        if (copies == 2)
            target.Enqueue(message, delay2);
    }

    private TimeSpan NextDelay()
    {
        if (_maxDelay <= TimeSpan.Zero)
            return TimeSpan.Zero;
        return _minDelay + (_maxDelay - _minDelay) * _random.NextDouble();
    }

    internal TimeProvider Time => _time;

    internal void CountDelivered() => Interlocked.Increment(ref _delivered);

    internal void CountDropped() => Interlocked.Increment(ref _dropped);

    private sealed class InMemoryTransport(InMemoryNetwork network, int id) : ITransport, IDisposable
    {
        public void Dispose() => _stop?.Dispose();

        private readonly System.Threading.Channels.Channel<RaftMessage> _queue =
            System.Threading.Channels.Channel.CreateUnbounded<RaftMessage>(new() { SingleReader = true });
        private RaftMessageHandler? _handler;
        private CancellationTokenSource? _stop;
        private Task _pump = Task.CompletedTask;

        public ValueTask StartAsync(int localId, RaftMessageHandler handler, CancellationToken cancellationToken = default)
        {
            ArgumentNullException.ThrowIfNull(handler);
            if (localId != id)
                throw new ArgumentException($"This transport belongs to node {id}, not node {localId}.", nameof(localId));
            _handler = handler;
            _stop = new CancellationTokenSource();
            _pump = Task.Run(() => PumpAsync(_stop.Token), CancellationToken.None);
            return ValueTask.CompletedTask;
        }

        public void Send(RaftMessage message) => network.Send(message);

        public async ValueTask StopAsync(CancellationToken cancellationToken = default)
        {
            if (_stop is null)
                return;
            await _stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await _pump.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            _stop.Dispose();
            _stop = null;
            _handler = null;
        }

        internal void Enqueue(RaftMessage message, TimeSpan delay)
        {
            if (delay <= TimeSpan.Zero)
            {
                _queue.Writer.TryWrite(message);
                return;
            }
            _ = DelayThenEnqueueAsync(message, delay);
        }

        private async Task DelayThenEnqueueAsync(RaftMessage message, TimeSpan delay)
        {
            await Task.Delay(delay, network.Time).ConfigureAwait(false);
            _queue.Writer.TryWrite(message);
        }

        private async Task PumpAsync(CancellationToken cancellationToken)
        {
            while (await _queue.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (_queue.Reader.TryRead(out var message))
                {
                    var handler = _handler;
                    if (handler is null)
                    {
                        network.CountDropped();
                        continue;
                    }
                    await handler(message, cancellationToken).ConfigureAwait(false);
                    network.CountDelivered();
                }
            }
        }
    }
}
