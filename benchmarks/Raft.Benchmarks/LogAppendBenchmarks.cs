using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;

namespace Raft.Benchmarks;

/// <summary>
/// Durable append throughput of <see cref="FileLogStore"/> (fsync on, the default) for 100 B and
/// 4 KiB entries in batches of 1, 64 and 1,024 entries (one <c>AppendAsync</c> call, so one fsync,
/// per batch), next to the floor: a plain <see cref="FileStream"/> that writes the same bytes per
/// batch in one call and then calls <c>Flush(true)</c>, on the same disk.
/// </summary>
/// <remarks>
/// <para>Every number is per entry (<c>OperationsPerInvoke</c> = batch size), so the Op/s column is
/// entries per second. Files go to a fresh folder under <c>RAFT_BENCH_DIR</c> (default: the system
/// temp folder); point it at the disk you care about. Each iteration (128 calls) starts from an
/// empty log, so the disk use stays below one iteration's worth of appends (512 MiB at most), and
/// the first call of each iteration also creates a segment (one more fsync, amortized).</para>
/// <para>Run: <c>dotnet run -c Release --project benchmarks/Raft.Benchmarks -- --filter '*LogAppend*' --job short</c></para>
/// </remarks>
[MemoryDiagnoser]
[Config(typeof(EntriesPerSecondConfig))]
[InvocationCount(128)] // per iteration; the log is emptied between iterations
public class LogAppendBenchmarks
{
    private string _directory = "";
    private FileLogStore _store = null!;
    private FileStream _floor = null!;
    private byte[] _payload = [];
    private LogEntry[] _batch1 = [];
    private LogEntry[] _batch64 = [];
    private LogEntry[] _batch1024 = [];
    // The bytes FileLogStore writes for a batch of 1,024 (records: 32 bytes of framing each); the
    // floor writes a prefix of it matching the batch size.
    private byte[] _encoded = [];
    private long _next = 1;

    /// <summary>The payload size of each entry in bytes.</summary>
    [Params(100, 4096)]
    public int EntrySize { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _directory = BenchmarkDirectory.Create("append");
        _payload = new byte[EntrySize];
        Random.Shared.NextBytes(_payload);
        _batch1 = new LogEntry[1];
        _batch64 = new LogEntry[64];
        _batch1024 = new LogEntry[1024];
        _encoded = new byte[1024 * (EntrySize + 32)];
        Random.Shared.NextBytes(_encoded);
        _store = FileLogStore.OpenAsync(Path.Combine(_directory, "store")).AsTask().GetAwaiter().GetResult();
        _floor = new FileStream(Path.Combine(_directory, "floor.bin"), FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);
    }

    [IterationCleanup]
    public void EmptyTheLog()
    {
        // Keeps the disk use bounded: drops every segment (outside the measured time).
        _store.ResetAsync(_next - 1, 1).AsTask().GetAwaiter().GetResult();
        _floor.SetLength(0);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _floor.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Benchmark(OperationsPerInvoke = 1)]
    public ValueTask FileLogStore_Batch1() => Append(_batch1);

    [Benchmark(OperationsPerInvoke = 64)]
    public ValueTask FileLogStore_Batch64() => Append(_batch64);

    [Benchmark(OperationsPerInvoke = 1024)]
    public ValueTask FileLogStore_Batch1024() => Append(_batch1024);

    [Benchmark(OperationsPerInvoke = 1)]
    public void FileStreamFloor_Batch1() => WriteFloor(1);

    [Benchmark(OperationsPerInvoke = 64)]
    public void FileStreamFloor_Batch64() => WriteFloor(64);

    [Benchmark(OperationsPerInvoke = 1024)]
    public void FileStreamFloor_Batch1024() => WriteFloor(1024);

    private ValueTask Append(LogEntry[] batch)
    {
        // LogEntry is a struct: refilling the array allocates nothing.
        for (var i = 0; i < batch.Length; i++)
            batch[i] = new LogEntry(_next + i, 1, EntryKind.Command, _payload);
        _next += batch.Length;
        return _store.AppendAsync(batch);
    }

    private void WriteFloor(int entries)
    {
        _floor.Write(_encoded, 0, entries * (EntrySize + 32));
        _floor.Flush(flushToDisk: true);
    }
}

/// <summary>
/// <b>Opt-in</b> (run it by name; it writes a large log first): how long <see cref="FileLogStore.OpenAsync"/>
/// takes to recover a log of <c>RAFT_RECOVERY_MIB</c> MiB (default 1,024) of 100 B or 4 KiB entries,
/// from the page cache (<c>ColdCache = false</c>) and, on Linux, after evicting the segment files
/// from it with <c>posix_fadvise(DONTNEED)</c> (<c>ColdCache = true</c>; devices with their own
/// cache may still serve it warm).
/// </summary>
/// <remarks>
/// Run: <c>RAFT_RECOVERY_MIB=1024 dotnet run -c Release --project benchmarks/Raft.Benchmarks -- --filter '*LogRecovery*'</c>.
/// The log is written once per parameter set (without fsync, to save setup time; recovery reads it
/// the same way) under <c>RAFT_BENCH_DIR</c> and deleted afterwards; it needs that much free disk.
/// </remarks>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 5)]
public class LogRecoveryBenchmarks
{
    private string _directory = "";

    /// <summary>The log sizes to recover, in MiB: <c>RAFT_RECOVERY_MIB</c> (comma-separated), or 1,024.</summary>
    public static IEnumerable<int> Sizes =>
        (Environment.GetEnvironmentVariable("RAFT_RECOVERY_MIB") ?? "1024")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.Parse(s, System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>The size of the log in MiB.</summary>
    [ParamsSource(nameof(Sizes))]
    public int SizeMiB { get; set; }

    /// <summary>The payload size of each entry in bytes.</summary>
    [Params(100, 4096)]
    public int EntrySize { get; set; }

    /// <summary>Whether the segment files are evicted from the page cache before each recovery (Linux only).</summary>
    [Params(false, true)]
    public bool ColdCache { get; set; }

    [GlobalSetup]
    public void Setup() => SetupAsync().GetAwaiter().GetResult();

    private async Task SetupAsync()
    {
        _directory = BenchmarkDirectory.Create("recovery");
        var options = new FileLogStoreOptions { Durability = LogDurability.UnsafeNoFsync, CacheBytes = 0 };
        await using var store = await FileLogStore.OpenAsync(_directory, options);
        var payload = new byte[EntrySize];
        Random.Shared.NextBytes(payload);
        var batch = new LogEntry[Math.Max(1, (4 << 20) / (EntrySize + 32))];
        long target = (long)SizeMiB << 20, written = 0, next = 1;
        while (written < target)
        {
            for (var i = 0; i < batch.Length; i++)
                batch[i] = new LogEntry(next + i, 1 + (next / 100_000), EntryKind.Command, payload);
            await store.AppendAsync(batch);
            next += batch.Length;
            written += (long)batch.Length * (EntrySize + 32);
        }
        // Clean pages only: posix_fadvise(DONTNEED) cannot evict dirty ones.
        foreach (var path in Directory.EnumerateFiles(_directory, "*.log"))
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
            RandomAccess.FlushToDisk(handle);
        }
    }

    [IterationSetup]
    public void Evict()
    {
        if (!ColdCache || !OperatingSystem.IsLinux())
            return;
        foreach (var path in Directory.EnumerateFiles(_directory, "*.log"))
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
            _ = PosixFadvise(handle.DangerousGetHandle().ToInt32(), 0, 0, PosixFadvDontNeed);
        }
    }

    [Benchmark]
    public async Task<long> OpenAndRecover()
    {
        await using var store = await FileLogStore.OpenAsync(_directory);
        return store.LastIndex;
    }

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_directory, recursive: true);

    private const int PosixFadvDontNeed = 4;

    [DllImport("libc", EntryPoint = "posix_fadvise")]
    private static extern int PosixFadvise(int fd, long offset, long length, int advice);
}

internal static class BenchmarkDirectory
{
    public static string Create(string name)
    {
        var root = Environment.GetEnvironmentVariable("RAFT_BENCH_DIR") ?? Path.GetTempPath();
        var path = Path.Combine(root, $"raft-bench-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }
}

/// <summary>Adds an Op/s column: with OperationsPerInvoke = entries per call, it reads entries per second.</summary>
public sealed class EntriesPerSecondConfig : ManualConfig
{
    public EntriesPerSecondConfig() => AddColumn(StatisticColumn.OperationsPerSecond);
}
