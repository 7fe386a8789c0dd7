using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Raft.Hosting;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>
/// The start-up path: flags, appsettings.json and environment variables become the configuration
/// the hosting package binds ("Raft") and the sample's section ("KeyValueStore"); a bad value exits
/// with code 2 and names it; the generic host stops the node on SIGTERM (exit code 0), and a
/// graceful stop of the leader's host hands leadership over.
/// </summary>
public sealed class HostingStartupTests : IDisposable
{
    private static readonly string[] Flags =
        ["--id", "2", "--listen", "127.0.0.1:7002", "--http", "127.0.0.1:8002", "--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003", "--insecure", "--data", "/tmp/kv-node-2"];

    private readonly string _folder = Directory.CreateTempSubdirectory("kv-hosting-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public async Task Flags_become_the_settings_the_hosting_package_binds()
    {
        var parsed = CommandLine.Parse([.. Flags, "--forward", "http", "--cluster-id", "prod-kv", "--allowed-hosts", "kv.example"], _ => null);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        Assert.Equal("2", parsed.Settings["Raft:NodeId"]);
        Assert.Equal("127.0.0.1:7003", parsed.Settings["Raft:Members:3"]);
        Assert.Equal("127.0.0.1:8002", parsed.Settings["KeyValueStore:Http"]);

        // The application the program runs, built (not started) from those settings.
        await using var app = KvNode.Build(KvNode.CreateBuilder(parsed.Settings));
        var raft = app.Services.GetRequiredService<IOptions<RaftHostingOptions>>().Value;
        Assert.Equal(2, raft.NodeId);
        Assert.Equal(new Dictionary<int, string> { [1] = "127.0.0.1:7001", [2] = "127.0.0.1:7002", [3] = "127.0.0.1:7003" }, raft.Members);
        Assert.Equal("127.0.0.1:7002", raft.ListenAddress);
        Assert.Equal("/tmp/kv-node-2", raft.DataDirectory);
        Assert.Equal("prod-kv", raft.ClusterId);
        Assert.True(raft.Insecure);
        Assert.False(raft.Join);
        Assert.True(raft.ForwardToLeader); // the sample's default
        var node = app.Services.GetRequiredService<KvNode>();
        Assert.Equal(ForwardMode.Http, node.Options.Forward);
        Assert.Equal(["kv.example"], node.Options.AllowedHosts);
        Assert.Equal(new Uri("http://127.0.0.1:8003/"), node.Options.HttpPeers[3]);
    }

    [Fact]
    public async Task Join_the_secret_and_a_localhost_listen_address_become_settings_too()
    {
        var secret = Convert.ToBase64String(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());
        string[] joiner = ["--id", "4", "--listen", "localhost:7004", "--http", "localhost:8004", "--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002", "--data", "d", "--join"];
        var parsed = CommandLine.Parse(joiner, name => name == CommandLine.SecretVariable ? secret : null);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        await using var app = KvNode.Build(KvNode.CreateBuilder(parsed.Settings));
        var raft = app.Services.GetRequiredService<IOptions<RaftHostingOptions>>().Value;
        Assert.True(raft.Join);
        Assert.Equal([1, 2], raft.Members.Keys.Order());
        Assert.Equal("127.0.0.1:7004", raft.ListenAddress); // the transport listens on an IP address
        Assert.Equal(secret, raft.ClusterSecret);
        Assert.False(raft.Insecure);

        var file = Path.Combine(_folder, "cluster.secret");
        await File.WriteAllTextAsync(file, secret);
        var withFile = CommandLine.Parse([.. Flags.Where(a => a != "--insecure"), "--secret-file", file], _ => null);
        Assert.True(withFile.Mode == RunMode.Node, withFile.Error);
        Assert.Equal(file, withFile.Settings["Raft:ClusterSecretFile"]);
        Assert.False(withFile.Settings.ContainsKey("Raft:Insecure"));
    }

    [Fact]
    public void Appsettings_json_configures_a_node_and_a_flag_wins_over_it()
    {
        WriteAppSettings("""
            {
              "Raft": { "NodeId": 1, "Members": { "1": "127.0.0.1:7101", "2": "127.0.0.1:7102" }, "DataDirectory": "data", "Insecure": true },
              "KeyValueStore": { "Http": "127.0.0.1:8102", "Forward": "Http", "RequestTimeout": "00:00:02" }
            }
            """);
        var builder = KvNode.CreateBuilder(new Dictionary<string, string?> { ["Raft:NodeId"] = "2" }, contentRoot: _folder);
        var failures = KvSettings.Check(builder.Configuration, out var options);
        Assert.Empty(failures);
        Assert.Equal(2, options!.Id);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 7102), options.RaftListen); // node 2's entry in Members
        Assert.Equal(ForwardMode.Http, options.Forward);
        Assert.Equal(TimeSpan.FromSeconds(2), options.RequestTimeout);
        Assert.Equal(new Uri("http://127.0.0.1:8101/"), options.HttpPeers[1]); // Raft port + (8102 - 7102)
        Assert.Equal(KvSettings.DefaultClusterId, options.ClusterId);
    }

    [Fact]
    public void Misconfigured_settings_are_each_reported_with_their_name()
    {
        WriteAppSettings("""
            {
              "Raft": { "NodeId": 1, "Members": { "1": "127.0.0.1:7101", "2": "nowhere" }, "DataDirectory": "data" },
              "KeyValueStore": { "Http": "example.com:80", "HttpPeers": { "9": "127.0.0.1:8109" } }
            }
            """);
        var failures = KvSettings.Check(KvNode.CreateBuilder([], contentRoot: _folder).Configuration, out var options);
        Assert.Null(options);
        Assert.Contains(failures, f => f.Contains("Members:2 is 'nowhere'", StringComparison.Ordinal));
        Assert.Contains(failures, f => f.StartsWith("No cluster secret", StringComparison.Ordinal));
        Assert.Contains(failures, f => f.Contains("KeyValueStore:Http (--http) is 'example.com:80': the host must be an IP address or localhost", StringComparison.Ordinal));
        Assert.Contains(failures, f => f.Contains("KeyValueStore:HttpPeers (--http-peers) names node(s) 9", StringComparison.Ordinal));

        WriteAppSettings("""{ "Raft": { "NodeId": "one" } }""");
        var unbindable = KvSettings.Check(KvNode.CreateBuilder([], contentRoot: _folder).Configuration, out _);
        Assert.Contains("Raft:NodeId", Assert.Single(unbindable), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_program_runs_a_node_configured_by_environment_variables_and_stops_cleanly_on_SIGTERM()
    {
        var (raftPort, httpPort) = (FreePort(), FreePort());
        var environment = new Dictionary<string, string>
        {
            ["Raft__NodeId"] = "1",
            ["Raft__Members__1"] = $"127.0.0.1:{raftPort}",
            ["Raft__DataDirectory"] = Path.Combine(_folder, "node-1"),
            ["Raft__Insecure"] = "true",
            ["KeyValueStore__Http"] = $"127.0.0.1:{httpPort}",
        };
        using var program = SampleProcess.Start([], environment);
        await program.WaitForOutputAsync("Press Ctrl+C to stop.");
        Assert.Contains("Node 1 of cluster 1", program.Output, StringComparison.Ordinal);

        using var http = TestCluster.CreateClient();
        var baseUrl = new Uri($"http://127.0.0.1:{httpPort}/");
        HttpStatusCode put = 0;
        await TestCluster.WaitUntilAsync(() =>
        {
            using var response = http.PutAsync(new Uri(baseUrl, "kv/hosted"), new StringContent("yes")).GetAwaiter().GetResult();
            put = response.StatusCode;
            return put == HttpStatusCode.NoContent;
        }, "the single node elects itself and commits a put", TimeSpan.FromSeconds(30));
        Assert.Equal("yes", await http.GetStringAsync(new Uri(baseUrl, "kv/hosted")));
        using (var health = await http.GetAsync(new Uri(baseUrl, "healthz")))
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);

        // The generic host's console lifetime handles SIGTERM: the node stops and the program exits 0.
        var exitCode = await program.TerminateAsync();
        Assert.True(exitCode == 0, $"exit code {exitCode}; output: {program.Output}");
    }

    [Fact]
    public async Task The_program_exits_with_code_2_naming_a_bad_environment_setting()
    {
        using var program = SampleProcess.Start([], new Dictionary<string, string>
        {
            ["Raft__NodeId"] = "1",
            ["Raft__Members__1"] = "nowhere",
            ["Raft__DataDirectory"] = Path.Combine(_folder, "node-1"),
            ["Raft__Insecure"] = "true",
            ["KeyValueStore__Http"] = "127.0.0.1:0",
        });
        var exitCode = await program.WaitForExitAsync();
        Assert.True(exitCode == 2, $"exit code {exitCode}; output: {program.Output}");
        Assert.Contains("error: ", program.Output, StringComparison.Ordinal);
        Assert.Contains("Members:1 is 'nowhere'", program.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stopping_the_leaders_host_hands_leadership_over()
    {
        var logs = new ConcurrentDictionary<int, ListLoggerProvider>();
        var options = TestCluster.Options();
        await using var cluster = await EmbeddedCluster.StartAsync(new EmbeddedClusterOptions
        {
            MinimumLogLevel = options.MinimumLogLevel,
            SnapshotInterval = options.SnapshotInterval,
            SnapshotTrailingEntries = options.SnapshotTrailingEntries,
            ConfigureNode = (id, builder) =>
            {
                var provider = logs.GetOrAdd(id, _ => new ListLoggerProvider());
                builder.Logging.AddProvider(provider);
                builder.Logging.AddFilter<ListLoggerProvider>(null, LogLevel.Information);
            },
        });
        var leader = await cluster.WaitForLeaderAsync(TestCluster.LeaderTimeout);
        var oldTerm = leader.Raft.Status.Term;
        var others = cluster.Nodes.Where(n => n != leader).ToList();

        await leader.App!.StopAsync(); // what Ctrl+C or SIGTERM does

        await TestCluster.WaitUntilAsync(() => others.Any(n => n.Raft.Status.Role == RaftRole.Leader), "a new leader", TestCluster.LeaderTimeout);
        Assert.Contains(logs[leader.Id].Messages, m => m.Contains("handed leadership to node", StringComparison.Ordinal));
        Assert.Equal(oldTerm + 1, others.Single(n => n.Raft.Status.Role == RaftRole.Leader).Raft.Status.Term);
    }

    private void WriteAppSettings(string json) => File.WriteAllText(Path.Combine(_folder, "appsettings.json"), json);

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private sealed class ListLoggerProvider : ILoggerProvider
    {
        private readonly ConcurrentQueue<string> _messages = new();

        public IEnumerable<string> Messages => _messages;

        public ILogger CreateLogger(string categoryName) => new ListLogger(_messages);

        public void Dispose()
        {
        }

        private sealed class ListLogger(ConcurrentQueue<string> messages) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                messages.Enqueue(formatter(state, exception));
        }
    }

    /// <summary>The sample program in a child process (so that its environment variables and signals stay its own).</summary>
    private sealed class SampleProcess : IDisposable
    {
        private readonly Process _process;
        private readonly ConcurrentQueue<string> _lines = new();

        private SampleProcess(Process process) => _process = process;

        public string Output => string.Join(Environment.NewLine, _lines);

        public static SampleProcess Start(string[] args, IReadOnlyDictionary<string, string> environment)
        {
            var host = Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath! : "dotnet";
            var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            start.ArgumentList.Add(typeof(KvNode).Assembly.Location);
            foreach (var arg in args)
                start.ArgumentList.Add(arg);
            start.Environment.Remove(CommandLine.SecretVariable);
            foreach (var (name, value) in environment)
                start.Environment[name] = value;
            var process = new Process { StartInfo = start };
            var sample = new SampleProcess(process);
            process.OutputDataReceived += (_, e) => sample.Add(e.Data);
            process.ErrorDataReceived += (_, e) => sample.Add(e.Data);
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return sample;
        }

        public async Task WaitForOutputAsync(string text)
        {
            var clock = Stopwatch.StartNew();
            while (!_lines.Any(l => l.Contains(text, StringComparison.Ordinal)))
            {
                if (_process.HasExited)
                    Assert.Fail($"The program exited with code {_process.ExitCode} before printing '{text}': {Output}");
                if (clock.Elapsed > TimeSpan.FromSeconds(60))
                    Assert.Fail($"The program did not print '{text}' within 60 s: {Output}");
                await Task.Delay(20);
            }
        }

        public async Task<int> TerminateAsync()
        {
            using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
                await kill.WaitForExitAsync();
            return await WaitForExitAsync();
        }

        public async Task<int> WaitForExitAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await _process.WaitForExitAsync(timeout.Token);
            return _process.ExitCode;
        }

        public void Dispose()
        {
            if (!_process.HasExited)
                _process.Kill(entireProcessTree: true);
            _process.Dispose();
        }

        private void Add(string? line)
        {
            if (line is not null)
                _lines.Enqueue(line);
        }
    }
}

/// <summary>The membership endpoint's "outcome unknown" answer: 504 when a change the leader accepted cannot commit within the request timeout.</summary>
public sealed class MembershipOutcomeUnknownTests
{
    [Fact]
    public async Task A_change_the_leader_accepted_but_could_not_commit_in_time_is_504_outcome_unknown()
    {
        var options = TestCluster.Options(requestTimeout: TimeSpan.FromSeconds(1));
        await using var cluster = await EmbeddedCluster.StartAsync(new EmbeddedClusterOptions
        {
            MinimumLogLevel = options.MinimumLogLevel,
            RequestTimeout = options.RequestTimeout,
            // Deterministic: an isolated leader without CheckQuorum stays leader, so the change can
            // neither commit nor be dropped; it can only time out.
            ConfigureNode = (_, builder) => builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Raft:CheckQuorum"] = "false" }),
        });
        using var http = TestCluster.CreateClient();
        var nowhere = new IPEndPoint(IPAddress.Loopback, 1);
        KvNode leader;
        List<KvNode> followers;
        while (true)
        {
            leader = await cluster.WaitForLeaderAsync(TestCluster.LeaderTimeout);
            followers = [.. cluster.Nodes.Where(n => n != leader)];
            // A leader accepts a membership change only once it has committed an entry of its term.
            using (var put = await http.PutAsync(leader.Url("kv/before"), new StringContent("x")))
                Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
            // Isolate the leader both ways: it sends nowhere, and the followers send it nowhere.
            Connect(leader, followers, nowhere);
            if (leader.Raft.Status.Role == RaftRole.Leader && leader.Raft.Status.CommitIndex == leader.Raft.Status.LastLogIndex)
                break;
            Connect(leader, followers, null); // leadership moved in between: heal and try again
        }
        try
        {
            var removed = followers[0].Id;
            using var response = await http.PostAsJsonAsync(leader.Url("cluster/members"), new { action = "remove", id = removed });
            var error = (await response.ReadJsonAsync()).GetProperty("error").GetString()!;
            Assert.True(response.StatusCode == HttpStatusCode.GatewayTimeout, $"{(int)response.StatusCode}: {error}");
            Assert.Contains("outcome unknown", error, StringComparison.Ordinal);
            Assert.Null(response.Headers.RetryAfter);
            // The leader did append it: it is pending, not refused.
            Assert.Contains(leader.Raft.Status.Configuration.AllIds, id => id == removed);
        }
        finally
        {
            Connect(leader, followers, null);
        }
    }

    // Points the leader's transport and its followers' at "nowhere" (both ways), or back at each other when null.
    private static void Connect(KvNode leader, List<KvNode> followers, IPEndPoint? nowhere)
    {
        foreach (var follower in followers)
        {
            leader.SetPeer(follower.Id, nowhere ?? follower.RaftEndPoint!, follower.HttpUrl!);
            follower.SetPeer(leader.Id, nowhere ?? leader.RaftEndPoint!, leader.HttpUrl!);
        }
    }
}
