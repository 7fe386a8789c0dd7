using System.Globalization;

namespace Raft.ClusterBenchmark;

/// <summary>One load shape: how many proposers run at once, each proposing one command of <see cref="PayloadBytes"/> at a time.</summary>
internal sealed record Workload(int Proposers, int PayloadBytes)
{
    public static readonly IReadOnlyList<Workload> Defaults =
    [
        new(1, 100), new(16, 100), new(256, 100),
        new(1, 4096), new(16, 4096), new(256, 4096),
    ];

    public string Name => $"{Proposers}x{FormatSize(PayloadBytes)}";

    public static string FormatSize(int bytes) =>
        bytes % 1024 == 0 ? $"{bytes / 1024}KiB" : $"{bytes}B";

    /// <summary>Reads "16x4KiB", "256x100", "1x4096B", "16x4k".</summary>
    public static Workload Parse(string text)
    {
        var parts = text.Trim().Split('x', 'X');
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var proposers) || proposers <= 0)
            throw new FormatException($"'{text}' is not a workload: write PROPOSERSxSIZE, such as 16x4KiB or 256x100.");
        return new Workload(proposers, ParseSize(parts[1]));
    }

    private static int ParseSize(string text)
    {
        var s = text.Trim().ToUpperInvariant();
        var multiplier = 1;
        foreach (var (suffix, factor) in new[] { ("KIB", 1024), ("KB", 1024), ("K", 1024), ("B", 1) })
        {
            if (s.EndsWith(suffix, StringComparison.Ordinal))
            {
                s = s[..^suffix.Length];
                multiplier = factor;
                break;
            }
        }
        if (!int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value <= 0 || value > (1 << 20) / multiplier)
            throw new FormatException($"'{text}' is not a payload size between 1 B and 1 MiB (such as 100, 100B, 4KiB).");
        return value * multiplier;
    }
}

/// <summary>The command line of the benchmark.</summary>
internal sealed class BenchmarkOptions
{
    public IReadOnlyList<Workload> Workloads { get; private set; } = Workload.Defaults;

    public TimeSpan Duration { get; private set; } = TimeSpan.FromSeconds(10);

    public TimeSpan Warmup { get; private set; } = TimeSpan.FromSeconds(3);

    /// <summary>How many times each side runs each workload (alternating ours, DotNext, ours, DotNext...).</summary>
    public int Rounds { get; private set; } = 2;

    public bool SkipDotNext { get; private set; }

    public bool SkipFloor { get; private set; }

    public bool Quick { get; private set; }

    public bool KeepData { get; private set; }

    /// <summary>Where the data folders go: <c>--data-dir</c>, else <c>RAFT_BENCH_DIR</c>, else the temp folder.</summary>
    public string DataRoot { get; private set; } = Environment.GetEnvironmentVariable("RAFT_BENCH_DIR") is { Length: > 0 } dir ? dir : Path.GetTempPath();

    public bool ShowHelp { get; private set; }

    public const string Usage = """
        Raft.ClusterBenchmark: a 3-node cluster in one process (loopback TCP, file log with fsync),
        measured against DotNext.Net.Cluster 6.12.0 on the same workloads in the same run.

        Usage: dotnet run -c Release --project benchmarks/Raft.ClusterBenchmark [-- options]

          --workload LIST   Comma-separated PROPOSERSxSIZE, e.g. 1x100B,16x4KiB (default: 1, 16 and
                            256 proposers x 100 B and 4 KiB, six workloads).
          --duration SEC    Measured seconds per run (default 10).
          --warmup SEC      Load before measuring in each run (default 3).
          --rounds N        Runs per side per workload, alternating ours/DotNext (default 2).
          --quick           Smoke run: --duration 2 --warmup 1 --rounds 1, fewer floor samples.
          --skip-dotnext    Measure this library only.
          --skip-floor      Skip the loopback round-trip and fsync floor measurements.
          --data-dir DIR    Where the nodes' data folders go (default: $RAFT_BENCH_DIR, else the
                            temp folder). Use the disk you care about: fsync cost is the disk's.
          --keep-data       Do not delete the data folders afterwards.
          -h, --help        This text.
        """;

    public static BenchmarkOptions Parse(IReadOnlyList<string> args)
    {
        var options = new BenchmarkOptions();
        TimeSpan? duration = null, warmup = null;
        int? rounds = null;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            string Value()
            {
                if (i + 1 >= args.Count)
                    throw new ArgumentException($"{arg} needs a value.");
                return args[++i];
            }

            switch (arg)
            {
                case "--workload":
                case "--workloads":
                    options.Workloads = [.. Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Workload.Parse)];
                    break;
                case "--duration":
                    duration = Seconds(arg, Value());
                    break;
                case "--warmup":
                    warmup = Seconds(arg, Value(), allowZero: true);
                    break;
                case "--rounds":
                    rounds = int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
                        ? n
                        : throw new ArgumentException("--rounds needs a positive whole number.");
                    break;
                case "--quick":
                    options.Quick = true;
                    break;
                case "--skip-dotnext":
                    options.SkipDotNext = true;
                    break;
                case "--skip-floor":
                    options.SkipFloor = true;
                    break;
                case "--data-dir":
                    options.DataRoot = Value();
                    break;
                case "--keep-data":
                    options.KeepData = true;
                    break;
                case "-h":
                case "--help":
                    options.ShowHelp = true;
                    break;
                default:
                    throw new ArgumentException($"Unknown argument '{arg}'. Try --help.");
            }
        }
        if (options.Quick)
        {
            options.Duration = TimeSpan.FromSeconds(2);
            options.Warmup = TimeSpan.FromSeconds(1);
            options.Rounds = 1;
        }
        options.Duration = duration ?? options.Duration;
        options.Warmup = warmup ?? options.Warmup;
        options.Rounds = rounds ?? options.Rounds;
        if (options.Workloads.Count == 0)
            throw new ArgumentException("--workload lists no workload.");
        return options;
    }

    private static TimeSpan Seconds(string name, string text, bool allowZero = false)
    {
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || seconds < 0 || (seconds == 0 && !allowZero) || seconds > 3600)
            throw new ArgumentException($"{name} needs a number of seconds{(allowZero ? "" : " above 0")} (at most 3600), not '{text}'.");
        return TimeSpan.FromSeconds(seconds);
    }
}
