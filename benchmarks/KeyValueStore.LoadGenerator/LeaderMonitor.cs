using System.Diagnostics;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>
/// Polls every node's <c>/status</c> once a second in the background and notes each new
/// (term, leader) pair any node reports: each one after the first is a leader change.
/// </summary>
internal sealed class LeaderMonitor : IAsyncDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);
    private readonly ClusterStatus _cluster;
    private readonly Lock _gate = new();
    private readonly HashSet<(long Term, int LeaderId)> _seen = [];
    private readonly List<(long Timestamp, long Term, int LeaderId)> _changes = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    /// <summary>Starts polling; <paramref name="initial"/> is the leader found before the load started (not a change).</summary>
    public LeaderMonitor(ClusterStatus cluster, NodeStatus initial)
    {
        _cluster = cluster;
        _seen.Add((initial.Term, initial.LeaderId));
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>How many new (term, leader) pairs were first seen between the two Stopwatch timestamps.</summary>
    public int ChangesBetween(long fromTimestamp, long toTimestamp)
    {
        lock (_gate)
            return _changes.Count(c => c.Timestamp >= fromTimestamp && c.Timestamp < toTimestamp);
    }

    /// <summary>Every change seen so far, as "term T: node N".</summary>
    public IReadOnlyList<string> Describe()
    {
        lock (_gate)
            return [.. _changes.Select(c => $"term {c.Term}: node {c.LeaderId}")];
    }

    private async Task LoopAsync()
    {
        using var timer = new PeriodicTimer(Interval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                var statuses = await _cluster.GetAllAsync(Interval, _stop.Token);
                var now = Stopwatch.GetTimestamp();
                lock (_gate)
                {
                    foreach (var (status, _) in statuses)
                    {
                        if (status is { LeaderId: > 0 } && _seen.Add((status.Term, status.LeaderId)))
                            _changes.Add((now, status.Term, status.LeaderId));
                    }
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }
}
