using System.Diagnostics;
using System.Globalization;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>
/// CPU time used so far by this process, by the nodes it started, and (on Linux, from
/// <c>/proc/stat</c>) by the whole machine; two samples give the cores each used in between, so a
/// report shows how much of the machine the run had, and what else was running.
/// </summary>
internal sealed record CpuSample(long Timestamp, TimeSpan LoadGenerator, TimeSpan? Nodes, TimeSpan? Machine)
{
    /// <summary>Length of a <c>/proc/stat</c> tick (USER_HZ, 100 on Linux).</summary>
    private const double ProcStatTickSeconds = 0.01;

    public static CpuSample Take(LocalCluster? local)
    {
        using var self = Process.GetCurrentProcess();
        TimeSpan? nodes = null;
        if (local is not null)
        {
            var times = local.Nodes.Select(n => n.CpuTime).ToList();
            nodes = times.All(t => t is not null) ? times.Aggregate(TimeSpan.Zero, (sum, t) => sum + t!.Value) : null;
        }
        return new CpuSample(Stopwatch.GetTimestamp(), self.TotalProcessorTime, nodes, MachineBusy());
    }

    /// <summary>Cores used on average between <paramref name="start"/> and <paramref name="end"/>.</summary>
    public static CpuUsage Between(CpuSample start, CpuSample end)
    {
        var seconds = (end.Timestamp - start.Timestamp) / (double)Stopwatch.Frequency;
        double? Cores(TimeSpan? a, TimeSpan? b) => a is { } x && b is { } y && seconds > 0 ? (y - x).TotalSeconds / seconds : null;
        return new CpuUsage(Cores(start.LoadGenerator, end.LoadGenerator)!.Value, Cores(start.Nodes, end.Nodes), Cores(start.Machine, end.Machine));
    }

    /// <summary>Busy CPU time of the whole machine since boot (everything but idle and iowait), or null when unknown.</summary>
    private static TimeSpan? MachineBusy()
    {
        if (!OperatingSystem.IsLinux())
            return null;
        try
        {
            using var reader = new StreamReader("/proc/stat");
            var fields = reader.ReadLine()?.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields is null || fields.Length < 8 || fields[0] != "cpu")
                return null;
            // cpu user nice system idle iowait irq softirq steal ...; guest time is already in user.
            long busy = 0;
            for (var i = 1; i <= 8 && i < fields.Length; i++)
            {
                if (i is 4 or 5)
                    continue;
                busy += long.Parse(fields[i], NumberStyles.None, CultureInfo.InvariantCulture);
            }
            return TimeSpan.FromSeconds(busy * ProcStatTickSeconds);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            return null;
        }
    }
}

/// <summary>Average cores used over a window: this program, the nodes it started (null with --urls), the whole machine (null when unknown).</summary>
internal sealed record CpuUsage(double LoadGenerator, double? Nodes, double? Machine)
{
    /// <summary>Everything else running on the machine: busy cores not used by the nodes or this program.</summary>
    public double? Others => Machine is { } machine && Nodes is { } nodes ? Math.Max(0, machine - nodes - LoadGenerator) : null;
}
