using System.Runtime.InteropServices;

namespace Raft.ClusterBenchmark;

/// <summary>
/// Flushes every dirty page of the system (<c>sync(2)</c>) before a measurement, so that the
/// writeback of an earlier run (gigabytes of log, deleted or not) does not slow the fsyncs of the
/// next one. Linux only; elsewhere nothing happens.
/// </summary>
internal static class DiskSync
{
    public static void FlushEverything()
    {
        if (OperatingSystem.IsLinux())
            Sync();
    }

    [DllImport("libc", EntryPoint = "sync")]
    private static extern void Sync();
}
