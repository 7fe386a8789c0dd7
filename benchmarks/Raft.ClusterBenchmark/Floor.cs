using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Raft.ClusterBenchmark;

/// <summary>What no replicated commit can beat on this machine: one loopback round trip plus one fsync.</summary>
internal sealed record FloorResult(LatencyHistogram RoundTrip, LatencyHistogram AppendFsync, LatencyHistogram ConcurrentAppendFsync)
{
    /// <summary>When it was measured ("before 1x100B", "end").</summary>
    public string Label { get; init; } = "";

    /// <summary>The workload that ran right after this measurement, if any.</summary>
    public Workload? Next { get; init; }

    /// <summary>p50 round trip + p50 append-and-fsync, in milliseconds.</summary>
    public double CommitFloorMilliseconds => RoundTrip.PercentileMilliseconds(50) + AppendFsync.PercentileMilliseconds(50);

    /// <summary>
    /// p50 round trip + p50 of one append-and-fsync among three running at once (the three nodes of
    /// the benchmark share this disk and these cores, and all three write every entry), in milliseconds.
    /// </summary>
    public double SharedDiskCommitFloorMilliseconds => RoundTrip.PercentileMilliseconds(50) + ConcurrentAppendFsync.PercentileMilliseconds(50);

    /// <summary>The samples of both measurements together (taken before and after the clusters ran, to even out drift).</summary>
    public static FloorResult Merge(FloorResult first, FloorResult second)
    {
        var roundTrip = new LatencyHistogram();
        roundTrip.Add(first.RoundTrip);
        roundTrip.Add(second.RoundTrip);
        var fsync = new LatencyHistogram();
        fsync.Add(first.AppendFsync);
        fsync.Add(second.AppendFsync);
        var concurrent = new LatencyHistogram();
        concurrent.Add(first.ConcurrentAppendFsync);
        concurrent.Add(second.ConcurrentAppendFsync);
        return new FloorResult(roundTrip, fsync, concurrent) { Label = "all merged" };
    }
}

/// <summary>
/// Measures the floor of a commit in the same run and on the same disk as the clusters: a loopback
/// TCP ping-pong of 100 B (async sockets, Nagle off, as the transports use them) and an append of
/// 100 B to a file followed by fsync (<see cref="RandomAccess.FlushToDisk"/>, which is what
/// <see cref="FileLogStore"/> calls).
/// </summary>
/// <remarks>
/// A leader that writes its own log in parallel with replication commits one command after one
/// round trip to a follower plus that follower's fsync, so (1 RTT + 1 fsync) is the floor of the
/// single-proposer commit latency.
/// </remarks>
internal static class Floor
{
    private const int MessageBytes = 100;

    public static async Task<FloorResult> MeasureAsync(string directory, bool quick)
    {
        var roundTrip = await MeasureRoundTripAsync(warmup: 2_000, samples: quick ? 5_000 : 50_000);
        var fsync = MeasureAppendFsync(directory, warmup: 20, samples: quick ? 200 : 2_000, maxTime: TimeSpan.FromSeconds(quick ? 2 : 10));
        var concurrent = MeasureConcurrentAppendFsync(directory, writers: 3, samples: quick ? 100 : 1_000, maxTime: TimeSpan.FromSeconds(quick ? 2 : 6));
        return new FloorResult(roundTrip, fsync, concurrent);
    }

    /// <summary>
    /// <paramref name="writers"/> threads, each appending 100 B to its own file and fsyncing, all at
    /// once: what one fsync costs while the other nodes of a one-machine cluster fsync too.
    /// </summary>
    private static LatencyHistogram MeasureConcurrentAppendFsync(string directory, int writers, int samples, TimeSpan maxTime)
    {
        var results = new LatencyHistogram[writers];
        var threads = Enumerable.Range(0, writers)
            .Select(w => new Thread(() => results[w] = MeasureAppendFsync(directory, warmup: 10, samples, maxTime)) { IsBackground = true })
            .ToArray();
        foreach (var thread in threads)
            thread.Start();
        foreach (var thread in threads)
            thread.Join();
        var merged = new LatencyHistogram();
        foreach (var result in results)
            merged.Add(result);
        return merged;
    }

    private static async Task<LatencyHistogram> MeasureRoundTripAsync(int warmup, int samples)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var accept = listener.AcceptAsync();
        await client.ConnectAsync(listener.LocalEndPoint!);
        using var server = await accept;
        server.NoDelay = true;

        var echo = Task.Run(async () =>
        {
            var buffer = new byte[MessageBytes];
            while (await ReceiveExactlyAsync(server, buffer))
                await SendAllAsync(server, buffer);
        });

        var histogram = new LatencyHistogram();
        var message = new byte[MessageBytes];
        var reply = new byte[MessageBytes];
        for (var i = 0; i < warmup + samples; i++)
        {
            var started = Stopwatch.GetTimestamp();
            await SendAllAsync(client, message);
            if (!await ReceiveExactlyAsync(client, reply))
                throw new InvalidOperationException("The echo side closed the connection.");
            if (i >= warmup)
                histogram.Record(ElapsedNanoseconds(started));
        }
        client.Shutdown(SocketShutdown.Send);
        await echo;
        return histogram;
    }

    /// <summary>
    /// Waits (up to <paramref name="maxWait"/>) until append + fsync is back near
    /// <paramref name="baselineNanoseconds"/>: a run that wrote gigabytes leaves the disk slow for a
    /// few seconds, and the next run (the other side) must not pay for it. Returns how long it waited.
    /// </summary>
    public static async Task<TimeSpan> SettleDiskAsync(string directory, double baselineNanoseconds, TimeSpan maxWait)
    {
        var started = Stopwatch.GetTimestamp();
        var target = Math.Max(baselineNanoseconds * 1.5, baselineNanoseconds + 100_000);
        while (true)
        {
            DiskSync.FlushEverything();
            var probe = MeasureAppendFsync(directory, warmup: 2, samples: 20, maxTime: TimeSpan.FromSeconds(1));
            var waited = Stopwatch.GetElapsedTime(started);
            if (probe.PercentileNanoseconds(50) <= target || waited >= maxWait)
                return waited;
            await Task.Delay(500);
        }
    }

    private static LatencyHistogram MeasureAppendFsync(string directory, int warmup, int samples, TimeSpan maxTime)
    {
        var path = Path.Combine(directory, $"fsync-floor-{Guid.NewGuid():N}.bin");
        var histogram = new LatencyHistogram();
        var record = new byte[MessageBytes];
        try
        {
            using var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            var deadline = Stopwatch.GetTimestamp() + (long)(maxTime.TotalSeconds * Stopwatch.Frequency);
            long offset = 0;
            for (var i = 0; i < warmup + samples; i++)
            {
                var started = Stopwatch.GetTimestamp();
                RandomAccess.Write(handle, record, offset);
                offset += record.Length;
                RandomAccess.FlushToDisk(handle);
                if (i >= warmup)
                {
                    histogram.Record(ElapsedNanoseconds(started));
                    if (Stopwatch.GetTimestamp() > deadline && histogram.Count >= 20)
                        break;
                }
            }
        }
        finally
        {
            File.Delete(path);
        }
        return histogram;
    }

    private static long ElapsedNanoseconds(long started) => (long)Stopwatch.GetElapsedTime(started).TotalNanoseconds;

    private static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            var sent = await socket.SendAsync(data, SocketFlags.None);
            data = data[sent..];
        }
    }

    private static async ValueTask<bool> ReceiveExactlyAsync(Socket socket, Memory<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None);
            if (read == 0)
                return false;
            buffer = buffer[read..];
        }
        return true;
    }
}
