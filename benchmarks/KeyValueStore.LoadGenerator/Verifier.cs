using System.Diagnostics;
using System.Net;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>The end-of-run check: the nodes converged, and every key holds a value its acknowledged writes allow.</summary>
internal sealed record Verification(
    bool Converged,
    long? LastApplied,
    TimeSpan ConvergenceWait,
    string ConvergenceDetail,
    int Checked,
    int SkippedUnknown,
    int SkippedNeverWritten,
    IReadOnlyList<string> Mismatches)
{
    public bool Passed => Converged && Mismatches.Count == 0;
}

internal static class Verifier
{
    private static readonly TimeSpan ConvergenceTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Waits (up to 20 s) until every node reports the same <c>lastApplied</c>, then reads every key
    /// from the leader and compares it with <see cref="KeyTracker.Expected"/>.
    /// </summary>
    public static async Task<Verification> RunAsync(ClusterStatus cluster, LoadTarget target)
    {
        var started = Stopwatch.StartNew();
        (NodeStatus? Status, string? Error)[] statuses;
        bool converged;
        while (true)
        {
            statuses = await cluster.GetAllAsync();
            converged = statuses.All(s => s.Status is not null) && statuses.Select(s => s.Status!.LastApplied).Distinct().Count() == 1;
            if (converged || started.Elapsed >= ConvergenceTimeout)
                break;
            await Task.Delay(200);
        }
        var wait = started.Elapsed;
        var detail = string.Join(", ", statuses.Select((s, i) => s.Status is { } status
            ? $"node {status.Id} {status.Role} term {status.Term} commit {status.CommitIndex} applied {status.LastApplied}"
            : $"{cluster.Urls[i]} unreachable ({s.Error})"));
        var leader = statuses.Select((s, i) => (s.Status, Url: cluster.Urls[i])).FirstOrDefault(s => s.Status is { IsLeader: true });
        if (leader.Status is null)
            return new Verification(converged, null, wait, detail + "; no leader to read from", 0, 0, 0, ["no node is the leader: the keys were not checked"]);

        var mismatches = new List<string>();
        int checkedKeys = 0, unknown = 0, neverWritten = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, target.KeyCount), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (key, _) =>
        {
            var expected = target.Tracker.Expected(key);
            if (expected is null)
            {
                Interlocked.Increment(ref unknown);
                return;
            }
            if (expected.Count == 0)
            {
                Interlocked.Increment(ref neverWritten);
                return;
            }
            var problem = await CheckKeyAsync(cluster.Http, leader.Url, key, expected, target.Values);
            Interlocked.Increment(ref checkedKeys);
            if (problem is not null)
            {
                lock (mismatches)
                    mismatches.Add(problem);
            }
        });
        mismatches.Sort(StringComparer.Ordinal);
        return new Verification(converged, converged ? statuses[0].Status!.LastApplied : null, wait, detail, checkedKeys, unknown, neverWritten, mismatches);
    }

    /// <summary>Null when the key holds the value of one of <paramref name="expected"/>'s writes; otherwise what is wrong.</summary>
    private static async Task<string?> CheckKeyAsync(HttpClient http, Uri leader, int key, IReadOnlyList<long> expected, ValueFactory values)
    {
        var name = LoadTarget.KeyName(key);
        var allowed = string.Join(" or ", expected.Select(id => "#" + id));
        string? last = null;
        for (var attempt = 0; attempt < 10; attempt++)
        {
            try
            {
                using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                using var response = await http.GetAsync(new Uri(leader, LoadTarget.KeyPath(key)), deadline.Token);
                var body = await response.Content.ReadAsByteArrayAsync(deadline.Token);
                switch (response.StatusCode)
                {
                    case HttpStatusCode.OK:
                        if (!values.TryGetId(body, out var id))
                            return $"{name}: holds a value no write of this run produced ({body.Length} bytes); expected write {allowed}";
                        return expected.Contains(id) ? null : $"{name}: holds write #{id}; expected write {allowed}";
                    case HttpStatusCode.NotFound:
                        return $"{name}: absent; expected write {allowed}";
                    default:
                        last = $"answered {(int)response.StatusCode}";
                        break;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
            {
                last = ex.Message;
            }
            await Task.Delay(200);
        }
        return $"{name}: could not be read from the leader at {leader} ({last})";
    }
}
