using System.Diagnostics;
using System.Net;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>The node's command line: what it accepts, and the clear errors (exit code 2) for misconfiguration.</summary>
public sealed class CommandLineTests
{
    private static readonly string[] Valid =
        ["--id", "2", "--listen", "127.0.0.1:7002", "--http", "127.0.0.1:8002", "--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003", "--data", "/tmp/kv-node-2"];

    [Fact]
    public void No_arguments_start_the_embedded_cluster_and_help_prints_the_usage()
    {
        Assert.Equal(RunMode.Embedded, CommandLine.Parse([]).Mode);
        Assert.Equal(RunMode.Help, CommandLine.Parse(["--help"]).Mode);
        Assert.Contains("--peers", CommandLine.Usage, StringComparison.Ordinal);
    }

    [Fact]
    public void A_full_command_line_configures_the_node_and_derives_the_peers_http_addresses()
    {
        var parsed = CommandLine.Parse(Valid);
        Assert.Equal(RunMode.Node, parsed.Mode);
        var options = parsed.Options!;
        Assert.Equal(2, options.Id);
        Assert.Equal([1, 2, 3], options.Members);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 7002), options.RaftListen);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 8002), options.HttpListen);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 7003), options.RaftPeers[3]);
        Assert.Equal(Path.GetFullPath("/tmp/kv-node-2"), options.DataDirectory);
        // Documented default: each member's HTTP port is its Raft port plus this node's offset (8002 - 7002).
        Assert.Equal(new Uri("http://127.0.0.1:8001/"), options.HttpPeers[1]);
        Assert.Equal(new Uri("http://127.0.0.1:8003/"), options.HttpPeers[3]);
        Assert.Equal(ForwardMode.Raft, options.Forward);
    }

    [Theory]
    [InlineData("raft", ForwardMode.Raft)]
    [InlineData("http", ForwardMode.Http)]
    public void Forward_chooses_how_a_follower_hands_requests_to_the_leader(string value, ForwardMode expected)
    {
        var parsed = CommandLine.Parse([.. Valid, "--forward", value]);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        Assert.Equal(expected, parsed.Options!.Forward);
    }

    [Fact]
    public void Http_peers_equals_syntax_localhost_and_ipv6_are_accepted()
    {
        var parsed = CommandLine.Parse([
            "--id=1", "--listen=localhost:7001", "--http", "[::1]:9001",
            "--peers", "1=localhost:7001, 2=node-2.example:7001, 3=[::1]:7003",
            "--http-peers", "2=node-2.example:80,3=[::1]:9003", "--data", "d", "--cluster-id", "prod-kv"]);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        var options = parsed.Options!;
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 7001), options.RaftListen);
        Assert.Equal(new IPEndPoint(IPAddress.IPv6Loopback, 9001), options.HttpListen);
        Assert.Equal(new DnsEndPoint("node-2.example", 7001), options.RaftPeers[2]);
        Assert.Equal(new Uri("http://node-2.example/"), options.HttpPeers[2]);
        Assert.Equal(new Uri("http://[::1]:9003/"), options.HttpPeers[3]);
        Assert.Equal("prod-kv", options.ClusterId);
    }

    public static TheoryData<string, string[], string> Misconfigurations => new()
    {
        { "duplicate ids", With("--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002,2=127.0.0.1:7003"), "node id 2 appears twice" },
        { "id not in peers", With("--id", "4"), "--id 4 is not one of the members" },
        { "id not a number", With("--id", "two"), "not a node id" },
        { "id zero", With("--id", "0"), "not a node id" },
        { "bad peer address", With("--peers", "1=127.0.0.1:7001,2=127.0.0.1,3=127.0.0.1:7003"), "not host:port" },
        { "peer port out of range", With("--peers", "1=127.0.0.1:7001,2=127.0.0.1:70000,3=127.0.0.1:7003"), "not host:port" },
        { "peer without id", With("--peers", "127.0.0.1:7001,2=127.0.0.1:7002"), "not id=host:port" },
        { "same address twice", With("--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7002"), "the same address" },
        { "bad listen address", With("--listen", "nowhere"), "--listen" },
        { "listen on a host name", With("--listen", "example.com:7002"), "IP address or localhost" },
        { "bad http address", With("--http", "127.0.0.1:"), "--http" },
        { "http on a host name", With("--http", "example.com:8002"), "IP address or localhost" },
        { "missing option", Valid[..^2], "--data is required" },
        { "missing value", [.. Valid, "--cluster-id"], "needs a value" },
        { "unknown option", [.. Valid, "--port", "1"], "Unknown option --port" },
        { "option twice", [.. Valid, "--id", "3"], "--id is given twice" },
        { "stray argument", [.. Valid, "extra"], "Unexpected argument 'extra'" },
        { "http-peers for a stranger", [.. Valid, "--http-peers", "1=127.0.0.1:8001,3=127.0.0.1:8003,9=127.0.0.1:8009"], "node(s) 9, which are not in --peers" },
        { "http-peers incomplete", [.. Valid, "--http-peers", "1=127.0.0.1:8001"], "no address for node(s) 3" },
        { "http-peers bad address", [.. Valid, "--http-peers", "1=127.0.0.1:8001,3=:8003"], "--http-peers" },
        { "unknown forward mode", [.. Valid, "--forward", "grpc"], "--forward 'grpc': use raft or http" },
    };

    [Theory]
    [MemberData(nameof(Misconfigurations))]
    public void Misconfiguration_is_a_clear_error(string why, string[] args, string message)
    {
        var parsed = CommandLine.Parse(args);
        Assert.True(parsed.Mode == RunMode.Invalid, $"{why}: expected an error, got {parsed.Mode}");
        Assert.Contains(message, parsed.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_program_exits_with_code_2_and_a_message_on_misconfiguration()
    {
        var (exitCode, stdout, stderr) = await RunProgramAsync(With("--peers", "1=127.0.0.1:7001,1=127.0.0.1:7002"));
        Assert.True(exitCode == 2, $"exit code {exitCode}; stdout: {stdout}; stderr: {stderr}");
        Assert.Contains("error: --peers: node id 1 appears twice", stderr, StringComparison.Ordinal);
        Assert.Contains("--help", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_program_prints_the_usage_for_help()
    {
        var (exitCode, stdout, _) = await RunProgramAsync(["--help"]);
        Assert.Equal(0, exitCode);
        Assert.Contains("--http-peers", stdout, StringComparison.Ordinal);
    }

    private static string[] With(string option, string value)
    {
        var args = Valid.ToArray();
        args[Array.IndexOf(args, option) + 1] = value;
        return args;
    }

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunProgramAsync(string[] args)
    {
        var dll = typeof(KvNode).Assembly.Location;
        var host = Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath! : "dotnet";
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(dll);
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        return (process.ExitCode, await stdout, await stderr);
    }
}
