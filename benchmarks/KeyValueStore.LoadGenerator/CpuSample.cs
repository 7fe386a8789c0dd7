using System.Diagnostics;
using System.Globalization;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>
/// CPU time used so far by this process, by the nodes it started, and (on Linux, from
/// <c>/proc/stat</c>) by the whole machine; two samples give the cores each used in between, so a
/// report shows how much of the machine the run had, and what else was running.
/// </summary>
internal sealed record CpuSample(long Timestamp, TimeSpan LoadGenerator, TimeSpan? Nodes, TimeSpan? Machine, IReadOnlyList<TimeSpan?> PerNode)
{
    /// <summary>Length of a <c>/proc/stat</c> tick (USER_HZ, 100 on Linux).</summary>
    private const double ProcStatTickSeconds = 0.01;

    public static CpuSample Take(LocalCluster? local)
    {
        using var self = Process.GetCurrentProcess();
        TimeSpan? nodes = null;
        IReadOnlyList<TimeSpan?> perNode = [];
        if (local is not null)
        {
            // utime + stime of each node process (/proc/PID/stat on Linux).
            var times = local.Nodes.Select(n => n.ProcStatCpuTime).ToList();
            perNode = times;
            nodes = times.All(t => t is not null) ? times.Aggregate(TimeSpan.Zero, (sum, t) => sum + t!.Value) : null;
        }
        return new CpuSample(Stopwatch.GetTimestamp(), ProcStatCpuTime(Environment.ProcessId) ?? self.TotalProcessorTime, nodes, MachineBusy(), perNode);
    }

    /// <summary>Cores used on average between <paramref name="start"/> and <paramref name="end"/>.</summary>
    public static CpuUsage Between(CpuSample start, CpuSample end)
    {
        var seconds = (end.Timestamp - start.Timestamp) / (double)Stopwatch.Frequency;
        double? Cores(TimeSpan? a, TimeSpan? b) => a is { } x && b is { } y && seconds > 0 ? (y - x).TotalSeconds / seconds : null;
        var perNode = start.PerNode.Count == end.PerNode.Count
            ? start.PerNode.Zip(end.PerNode, (a, b) => Cores(a, b)).ToList()
            : [];
        return new CpuUsage(Cores(start.LoadGenerator, end.LoadGenerator)!.Value, Cores(start.Nodes, end.Nodes), Cores(start.Machine, end.Machine), perNode, LoadAverage());
    }

    /// <summary>
    /// The CPU time (user + system) process <paramref name="pid"/> has used so far, from <c>/proc/PID/stat</c>
    /// (utime + stime, fields 14 and 15, in USER_HZ ticks of 10 ms); null when unknown (not Linux, or the process is gone).
    /// </summary>
    public static TimeSpan? ProcStatCpuTime(int pid)
    {
        if (!OperatingSystem.IsLinux())
            return null;
        try
        {
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            // "pid (comm) state ppid ...": the fields after the command's closing parenthesis start at field 3.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
            return TimeSpan.FromSeconds(ticks * ProcStatTickSeconds);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or OverflowException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }

    /// <summary>The 1-minute load average (<c>/proc/loadavg</c>), or null when unknown.</summary>
    public static double? LoadAverage()
    {
        if (!OperatingSystem.IsLinux())
            return null;
        try
        {
            var first = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return double.Parse(first, NumberStyles.Float, CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
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

/// <summary>
/// Average cores used over a window: this program, the nodes it started (null with --urls), the whole machine (null
/// when unknown), each node process; and the 1-minute load average at the window's end.
/// </summary>
internal sealed record CpuUsage(double LoadGenerator, double? Nodes, double? Machine, IReadOnlyList<double?> PerNode, double? LoadAverage)
{
    /// <summary>Everything else running on the machine: busy cores not used by the nodes or this program.</summary>
    public double? Others => Machine is { } machine && Nodes is { } nodes ? Math.Max(0, machine - nodes - LoadGenerator) : null;
}
