using System.Globalization;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>One load shape: <see cref="Clients"/> closed-loop clients, each request a PUT with probability <see cref="WritePercent"/> %, else a GET.</summary>
internal sealed record WorkloadSpec(int Clients, int WritePercent)
{
    /// <summary>The defaults: a mixed load, then a write-only load with more clients.</summary>
    public static readonly IReadOnlyList<WorkloadSpec> Defaults = [new(16, 50), new(64, 100)];

    public string Name => string.Create(CultureInfo.InvariantCulture, $"{Clients}x{WritePercent}");

    /// <summary>Reads <c>CLIENTSxWRITEPERCENT</c>, such as <c>16x50</c> or <c>64x100</c>.</summary>
    /// <exception cref="FormatException">Not of that form, or out of range.</exception>
    public static WorkloadSpec Parse(string text)
    {
        var parts = text.Trim().Split('x', 'X');
        if (parts.Length != 2
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var clients) || clients is <= 0 or > 10_000
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var writePercent) || writePercent > 100)
        {
            throw new FormatException($"'{text}' is not a workload: write CLIENTSxWRITEPERCENT, such as 16x50 (16 clients, 50 % writes) or 64x100; 1 to 10000 clients, 0 to 100 %.");
        }
        return new WorkloadSpec(clients, writePercent);
    }
}

/// <summary>The command line of the load generator.</summary>
internal sealed class LoadOptions
{
    /// <summary>The smallest value size: the first 17 bytes of every value identify the write that produced it.</summary>
    public const int MinValueBytes = ValueFactory.IdPrefixLength + 1;

    /// <summary>The largest value size: the sample refuses bodies over 1 MiB.</summary>
    public const int MaxValueBytes = 1024 * 1024;

    public IReadOnlyList<WorkloadSpec> Workloads { get; private set; } = WorkloadSpec.Defaults;

    public TimeSpan Duration { get; private set; } = TimeSpan.FromSeconds(15);

    public TimeSpan Warmup { get; private set; } = TimeSpan.FromSeconds(20);

    /// <summary>How many times the whole list of workloads runs.</summary>
    public int Rounds { get; private set; } = 1;

    public int Keys { get; private set; } = 100;

    public int ValueBytes { get; private set; } = 100;

    /// <summary>Seeds the clients' key and operation choices (timing still varies between runs).</summary>
    public int Seed { get; private set; } = Random.Shared.Next();

    /// <summary>The HTTP base addresses of an already running cluster; null: start three nodes.</summary>
    public IReadOnlyList<Uri>? Urls { get; private set; }

    public bool KeepData { get; private set; }

    /// <summary>Whether each client uses its own minimal HTTP/1.1 connection (<c>--client raw</c>, the default) rather than the shared <see cref="HttpClient"/>.</summary>
    public bool RawClient { get; private set; } = true;

    /// <summary>The started nodes' <c>--forward</c> mode (raft or http); null: the sample's default.</summary>
    public string? Forward { get; private set; }

    /// <summary>The services to start and load, one after another (<c>--services</c>; default ours, dotnext, floor).</summary>
    public IReadOnlyList<ServiceKind> Services { get; private set; } = ServiceKind.All;

    /// <summary>Whether any 5xx answer from the sample ("ours") during a workload makes the run fail (<c>--fail-on-5xx</c>).</summary>
    public bool FailOn5xx { get; private set; }

    /// <summary>Whether the sample's writes go through exactly-once sessions and are retried until their outcome is known (<c>--exactly-once</c>).</summary>
    public bool ExactlyOnce { get; private set; }

    public bool ShowHelp { get; private set; }

    public const string Usage = """
        KeyValueStore.LoadGenerator: drives key-value services of the sample's HTTP API over all nodes
        with closed-loop clients (PUT and linearizable GET) and prints ops/s and p50/p99/p99.9 latency.

        Usage: dotnet run -c Release --project benchmarks/KeyValueStore.LoadGenerator [-- options]

        With no options, for each service in turn (ours, dotnext, floor) it starts three nodes
        (separate processes, free loopback ports, data in a fresh temp folder), runs 16x50 then
        64x100, checks that every node applied the same log and every key holds its last
        acknowledged value (not for floor: its nodes are independent), and stops the nodes.

          --services LIST     Comma-separated: ours (the sample), dotnext (DotNext.Net.Cluster-based
                              service), floor (a dictionary per process, no consensus). Default: all three.
          --fail-on-5xx       Exit 1 if the sample (ours) answered any 5xx during a workload.
          --exactly-once      The sample's clients open a session (POST /sessions) and send each
                              PUT with an Idempotency-Key; a PUT whose outcome is unknown (5xx,
                              timeout, broken connection) or not submitted (503) is sent again with
                              the same key and value until answered (it applies once), so every key
                              stays verifiable. Other services get plain PUTs.

          --workload LIST     Comma-separated CLIENTSxWRITEPERCENT (default: 16x50,64x100).
          --duration SEC      Measured seconds per workload (default 15).
          --warmup SEC        Load before measuring, per workload (default 20).
          --rounds N          Times the whole workload list runs (default 1).
          --keys N            Keys k0..k(N-1) (default 100).
          --value-bytes N     Size of each written value, ASCII (default 100; at least 17).
          --seed N            Seed of the clients' key and operation choices (default: random, printed).
          --urls URL,URL,...  Drive an already running cluster (every node's HTTP address) instead
                              of starting one.
          --keep-data         Keep the started nodes' data and logs (default: deleted at the end).
          --forward MODE      The started nodes' --forward: raft (the sample's default) or http.
          --client KIND       raw (default): each client sends its requests over its own minimal
                              HTTP/1.1 keep-alive connection, which costs the generator less CPU;
                              httpclient: one shared HttpClient, as an application would.
          -h, --help          This text.

        Options can also be written --name=value. Exit code: 0 ok; 1 the run failed (no leader, a node
        exited, the final state does not match the acknowledged writes); 2 bad command line.
        """;

    /// <summary>Parses <paramref name="args"/>.</summary>
    /// <exception cref="FormatException">An unknown, repeated or malformed option (the message says which).</exception>
    public static LoadOptions Parse(IReadOnlyList<string> args)
    {
        var options = new LoadOptions();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (arg is "-h" or "--help")
            {
                options.ShowHelp = true;
                continue;
            }
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
                throw new FormatException($"unexpected argument '{arg}': options are written --name value.");
            var name = arg;
            string? inline = null;
            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            if (equals >= 0)
            {
                name = arg[..equals];
                inline = arg[(equals + 1)..];
            }
            if (!seen.Add(name))
                throw new FormatException($"option {name} is given twice.");

            string Value()
            {
                if (inline is not null)
                    return inline;
                if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    throw new FormatException($"option {name} needs a value.");
                return args[++i];
            }

            switch (name)
            {
                case "--workload":
                case "--workloads":
                    options.Workloads = [.. Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(WorkloadSpec.Parse)];
                    if (options.Workloads.Count == 0)
                        throw new FormatException("--workload lists no workload.");
                    break;
                case "--duration":
                    options.Duration = Seconds(name, Value(), allowZero: false);
                    break;
                case "--warmup":
                    options.Warmup = Seconds(name, Value(), allowZero: true);
                    break;
                case "--rounds":
                    options.Rounds = Integer(name, Value(), 1, 1_000);
                    break;
                case "--keys":
                    options.Keys = Integer(name, Value(), 1, 1_000_000);
                    break;
                case "--value-bytes":
                    options.ValueBytes = Integer(name, Value(), MinValueBytes, MaxValueBytes);
                    break;
                case "--seed":
                    options.Seed = Integer(name, Value(), int.MinValue, int.MaxValue);
                    break;
                case "--urls":
                    options.Urls = ParseUrls(Value());
                    break;
                case "--keep-data":
                    if (inline is not null)
                        throw new FormatException("--keep-data takes no value.");
                    options.KeepData = true;
                    break;
                case "--client":
                    options.RawClient = Value() switch
                    {
                        "raw" => true,
                        "httpclient" => false,
                        var other => throw new FormatException($"--client '{other}': use raw or httpclient."),
                    };
                    break;
                case "--services":
                    var services = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ServiceKind.Parse).ToList();
                    if (services.Count == 0)
                        throw new FormatException("--services lists no service.");
                    if (services.Distinct().Count() != services.Count)
                        throw new FormatException("--services lists a service twice.");
                    options.Services = services;
                    break;
                case "--fail-on-5xx":
                    if (inline is not null)
                        throw new FormatException("--fail-on-5xx takes no value.");
                    options.FailOn5xx = true;
                    break;
                case "--exactly-once":
                    if (inline is not null)
                        throw new FormatException("--exactly-once takes no value.");
                    options.ExactlyOnce = true;
                    break;
                case "--forward":
                    options.Forward = Value() switch
                    {
                        "raft" => "raft",
                        "http" => "http",
                        var other => throw new FormatException($"--forward '{other}': use raft or http."),
                    };
                    break;
                default:
                    throw new FormatException($"unknown option {name}.");
            }
        }
        if (options.Urls is not null)
        {
            if (seen.Contains("--services") && options.Services.Count != 1)
                throw new FormatException("with --urls, --services names the one service running there.");
            if (!seen.Contains("--services"))
                options.Services = [ServiceKind.Ours];
        }
        if (options.Forward is not null && !options.Services.Contains(ServiceKind.Ours))
            throw new FormatException("--forward applies to the sample (ours), which --services leaves out.");
        if (options.Forward is not null && options.Urls is not null)
            throw new FormatException("--forward applies to nodes the load generator starts; it cannot be used with --urls.");
        if (options.KeepData && options.Urls is not null)
            throw new FormatException("--keep-data applies to nodes the load generator starts; it cannot be used with --urls.");
        return options;
    }

    private static List<Uri> ParseUrls(string text)
    {
        var urls = new List<Uri>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!Uri.TryCreate(part.EndsWith('/') ? part : part + "/", UriKind.Absolute, out var url)
                || url.Scheme != Uri.UriSchemeHttp || url.AbsolutePath != "/" || url.Query.Length > 0)
            {
                throw new FormatException($"--urls: '{part}' is not an http://HOST:PORT address.");
            }
            if (urls.Contains(url))
                throw new FormatException($"--urls lists {url} twice.");
            urls.Add(url);
        }
        if (urls.Count == 0)
            throw new FormatException("--urls lists no address.");
        return urls;
    }

    private static TimeSpan Seconds(string name, string text, bool allowZero)
    {
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || seconds < 0 || (seconds == 0 && !allowZero) || seconds > 3600)
            throw new FormatException($"{name} needs a number of seconds{(allowZero ? "" : " above 0")}, at most 3600, not '{text}'.");
        return TimeSpan.FromSeconds(seconds);
    }

    private static int Integer(string name, string text, int min, int max)
    {
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
            throw new FormatException($"{name} needs a whole number from {min} to {max}, not '{text}'.");
        return value;
    }
}
