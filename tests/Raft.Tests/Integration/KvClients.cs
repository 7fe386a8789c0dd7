using System.Collections.Concurrent;
using System.Diagnostics;
using Raft.Testing.Linearizability;

namespace Raft.Tests.Integration;

/// <summary>
/// Concurrent clients of a <see cref="TcpMemberCluster"/>: each, one operation at a time, puts a
/// unique value, compare-and-swaps on the value it last read, or reads linearizably
/// (<see cref="RaftNode.QueryAsync{TState, TResult}"/>) through a node picked at random among the
/// targets (followers forward to the leader), and records the history for
/// <see cref="LinearizabilityChecker"/>. A write that failed with nothing submitted is recorded as
/// failed; one whose fate the library cannot tell (or that threw anything else) as unknown.
/// </summary>
internal sealed class KvClients(TcpMemberCluster cluster, string[] keys) : IAsyncDisposable
{
    private readonly HistoryRecorder _history = new();
    private readonly ConcurrentDictionary<string, int> _errors = new();
    private readonly ConcurrentQueue<string> _unexpected = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Lock _gate = new();
    private int[] _targets = [];
    private CancellationTokenSource? _stop;
    private Task _running = Task.CompletedTask;
    private long _writes;
    private long _reads;
    private long _lastWriteAt;
    private long _longestWriteGap;

    public HistoryRecorder History => _history;

    /// <summary>Writes acknowledged so far.</summary>
    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>Reads that returned a value so far.</summary>
    public long Reads => Interlocked.Read(ref _reads);

    /// <summary>The longest time between two acknowledged writes while the clients ran.</summary>
    public TimeSpan LongestWriteGap => TimeSpan.FromMilliseconds(Interlocked.Read(ref _longestWriteGap));

    /// <summary>How many operations failed, by exception type.</summary>
    public IReadOnlyDictionary<string, int> Errors => _errors;

    /// <summary>Exceptions the library's contract does not name for these calls.</summary>
    public IReadOnlyCollection<string> Unexpected => _unexpected;

    /// <summary>The nodes clients send to from now on.</summary>
    public void Target(IEnumerable<int> ids) => Volatile.Write(ref _targets, [.. ids]);

    public void Start(int clients)
    {
        _stop = new CancellationTokenSource();
        var token = _stop.Token;
        _lastWriteAt = _clock.ElapsedMilliseconds;
        _running = Task.WhenAll(Enumerable.Range(1, clients).Select(id => Task.Run(() => RunAsync(id, token), CancellationToken.None)));
    }

    /// <summary>Stops the clients after their current operation.</summary>
    public async Task StopAsync()
    {
        if (_stop is null)
            return;
        await _stop.CancelAsync();
        await _running;
        _stop.Dispose();
        _stop = null;
    }

    public ValueTask DisposeAsync() => new(StopAsync());

    /// <summary>Waits until <paramref name="count"/> more writes are acknowledged: the cluster serves writes (again).</summary>
    public Task WaitForWritesAsync(int count, string when)
    {
        var target = Writes + count;
        return cluster.WaitUntilAsync(() => Writes >= target, $"{count} more writes are acknowledged {when} (acknowledged {Writes}, errors: {FormatErrors()})");
    }

    public string FormatErrors() => string.Join(", ", _errors.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => $"{e.Key} x{e.Value}"));

    private async Task RunAsync(int clientId, CancellationToken stop)
    {
        var random = new Random(clientId * 104729);
        var lastRead = new Dictionary<string, string?>(StringComparer.Ordinal);
        var sequence = 0;
        while (!stop.IsCancellationRequested)
        {
            var targets = Volatile.Read(ref _targets);
            if (targets.Length == 0 || !cluster.Nodes.TryGetValue(targets[random.Next(targets.Length)], out var member))
            {
                await Task.Delay(10, CancellationToken.None);
                continue;
            }
            var key = keys[random.Next(keys.Length)];
            var roll = random.Next(100);
            bool ok;
            if (roll < 45)
            {
                ok = await WriteAsync(clientId, member, KvInput.Put(key, $"c{clientId}-{++sequence}"));
            }
            else if (roll < 55)
            {
                ok = await WriteAsync(clientId, member, KvInput.Cas(key, lastRead.GetValueOrDefault(key), $"c{clientId}-{++sequence}"));
            }
            else
            {
                var (read, value) = await ReadAsync(clientId, member, key);
                ok = read;
                if (read)
                    lastRead[key] = value;
            }
            if (!ok)
                await Task.Delay(random.Next(10, 40), CancellationToken.None);
        }
    }

    private async Task<bool> WriteAsync(int clientId, TcpMember member, KvInput input)
    {
        var command = input.Kind == KvOperationKind.Put ? KvMachine.Put(input.Key, input.Value!) : KvMachine.Cas(input.Key, input.Expected, input.Value!);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var handle = _history.Invoke(clientId, input);
        try
        {
            var result = await member.Node.ProposeAsync(command, timeout.Token);
            if (input.Kind == KvOperationKind.Cas)
            {
                if (result is not bool swapped)
                {
                    _history.CompleteUnknown(handle);
                    _unexpected.Enqueue($"node {member.Id}: a compare-and-swap applied to {result ?? "null"}, not a bool");
                    return false;
                }
                _history.CompleteCas(handle, swapped);
            }
            else
            {
                _history.Complete(handle);
            }
            var now = _clock.ElapsedMilliseconds;
            lock (_gate)
            {
                _longestWriteGap = Math.Max(_longestWriteGap, now - _lastWriteAt);
                _lastWriteAt = now;
            }
            Interlocked.Increment(ref _writes);
            return true;
        }
        catch (Exception ex) when (ex is NotLeaderException or RaftBusyException or ProposalDroppedException or RaftTimeoutException { OutcomeKnown: true })
        {
            // Nothing was submitted, or what was is replaced for good: it did not take effect.
            _history.CompleteFailed(handle);
            Count(ex, member);
            return false;
        }
        catch (Exception ex)
        {
            // The write may or may not take effect.
            _history.CompleteUnknown(handle);
            Count(ex, member);
            return false;
        }
    }

    private async Task<(bool Ok, string? Value)> ReadAsync(int clientId, TcpMember member, string key)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var handle = _history.Invoke(clientId, KvInput.Get(key));
        try
        {
            var value = await member.Node.QueryAsync<KvMachine, string?>(m => m.Get(key), timeout.Token);
            _history.CompleteGet(handle, value);
            Interlocked.Increment(ref _reads);
            return (true, value);
        }
        catch (Exception ex)
        {
            // A read changes nothing: a failed one is simply not in the history.
            _history.CompleteFailed(handle);
            Count(ex, member);
            return (false, null);
        }
    }

    private void Count(Exception ex, TcpMember member)
    {
        _errors.AddOrUpdate(ex.GetType().Name, 1, (_, n) => n + 1);
        if (ex is not (RaftException or OperationCanceledException or ObjectDisposedException))
            _unexpected.Enqueue($"node {member.Id}: {ex}");
    }
}
