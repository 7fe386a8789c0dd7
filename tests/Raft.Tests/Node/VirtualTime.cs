using System.Diagnostics;
using Microsoft.Extensions.Time.Testing;

namespace Raft.Tests.Node;

/// <summary>What the node-level test clusters share: driving a fake clock while real nodes run, and finding the leader they agree on.</summary>
internal static class VirtualTime
{
    /// <summary>
    /// Advances <paramref name="time"/> a <paramref name="tick"/> at a time, letting the nodes' loops and the network
    /// pumps run between ticks, until <paramref name="condition"/> holds; gives up after <paramref name="maxVirtual"/> of
    /// virtual time or <paramref name="realGuard"/> of real time (the latter only against a hang).
    /// </summary>
    /// <returns>The virtual time it took.</returns>
    public static async Task<TimeSpan> RunUntilAsync(FakeTimeProvider time, TimeSpan tick, Func<bool> condition, string what, TimeSpan maxVirtual, TimeSpan realGuard)
    {
        var real = Stopwatch.StartNew();
        var elapsed = TimeSpan.Zero;
        while (!condition())
        {
            if (elapsed > maxVirtual || real.Elapsed > realGuard)
                throw new TimeoutException($"Gave up waiting for {what} after {elapsed.TotalSeconds:0.0} s of virtual time ({real.Elapsed.TotalSeconds:0.0} s real).");
            time.Advance(tick);
            elapsed += tick;
            await Task.Delay(1);
        }
        return elapsed;
    }

    /// <summary>The one leader that every node of <paramref name="nodes"/> follows in its term, or null while they disagree.</summary>
    public static RaftNode? AgreedLeader(IReadOnlyCollection<RaftNode> nodes)
    {
        var statuses = nodes.Select(n => n.Status).ToArray();
        var leaders = statuses.Where(s => s.Role == RaftRole.Leader).ToArray();
        if (leaders.Length != 1 || statuses.Any(s => s.LeaderId != leaders[0].Id || s.Term != leaders[0].Term))
            return null;
        return nodes.Single(n => n.Id == leaders[0].Id);
    }
}
