using System.Diagnostics;
using System.Net;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>The node's command line: what it accepts, and the clear errors (exit code 2) for misconfiguration.</summary>
public sealed class CommandLineTests : IDisposable
{
    // --insecure keeps these independent of files; the secret's own tests are below.
    private static readonly string[] Valid =
        ["--id", "2", "--listen", "127.0.0.1:7002", "--http", "127.0.0.1:8002", "--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003", "--insecure", "--data", "/tmp/kv-node-2"];

    // Valid without a secret choice.
    private static readonly string[] NoSecret = [.. Valid.Where(a => a != "--insecure")];

    private readonly string _folder = Directory.CreateTempSubdirectory("kv-cmdline-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    /// <summary>Parses as the program does, with <see cref="CommandLine.SecretVariable"/> set to <paramref name="variable"/> (null: unset) whatever the test process has.</summary>
    private static CommandLine Parse(string[] args, string? variable = null) =>
        CommandLine.Parse(args, name => name == CommandLine.SecretVariable ? variable : null);

    [Fact]
    public void No_arguments_start_the_embedded_cluster_and_help_prints_the_usage()
    {
        Assert.Equal(RunMode.Embedded, Parse([]).Mode);
        Assert.Equal(RunMode.Help, Parse(["--help"]).Mode);
        Assert.Contains("--peers", CommandLine.Usage, StringComparison.Ordinal);
    }

    [Fact]
    public void A_full_command_line_configures_the_node_and_derives_the_peers_http_addresses()
    {
        var parsed = Parse(Valid);
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
        var parsed = Parse([.. Valid, "--forward", value]);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        Assert.Equal(expected, parsed.Options!.Forward);
    }

    [Fact]
    public void Http_peers_equals_syntax_localhost_and_ipv6_are_accepted()
    {
        var parsed = Parse([
            "--id=1", "--listen=localhost:7001", "--http", "[::1]:9001",
            "--peers", "1=localhost:7001, 2=node-2.example:7001, 3=[::1]:7003",
            "--http-peers", "2=node-2.example:80,3=[::1]:9003", "--data", "d", "--cluster-id", "prod-kv", "--insecure"]);
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
        { "id not in peers", With("--id", "4"), "NodeId 4 is not a key of Members" },
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
        { "missing option", Valid[..^2], "DataDirectory is missing" },
        { "missing value", [.. Valid, "--cluster-id"], "--cluster-id" },
        { "unknown option", [.. Valid, "--port", "1"], "Unrecognized command or argument '--port'" },
        { "option twice", [.. Valid, "--id", "3"], "'--id' expects a single argument but 2 were provided" },
        { "stray argument", [.. Valid, "extra"], "Unrecognized command or argument 'extra'" },
        { "http-peers for a stranger", [.. Valid, "--http-peers", "1=127.0.0.1:8001,3=127.0.0.1:8003,9=127.0.0.1:8009"], "node(s) 9, which are not in Raft:Members (--peers)" },
        { "http-peers incomplete", [.. Valid, "--http-peers", "1=127.0.0.1:8001"], "no address for node(s) 3" },
        { "http-peers bad address", [.. Valid, "--http-peers", "1=127.0.0.1:8001,3=:8003"], "--http-peers" },
        { "unknown forward mode", [.. Valid, "--forward", "grpc"], "--forward 'grpc': use raft or http" },
        { "insecure with a value", [.. NoSecret, "--insecure=yes"], "--insecure takes no value" },
        { "allowed-origins not an origin", [.. Valid, "--allowed-origins", "attacker.example"], "(--allowed-origins): 'attacker.example' is not an origin" },
        { "allowed-origins with a path", [.. Valid, "--allowed-origins", "http://app.example/page"], "is not an origin" },
        { "allowed-hosts empty", [.. Valid, "--allowed-hosts", ","], "--allowed-hosts is empty" },
    };

    [Theory]
    [MemberData(nameof(Misconfigurations))]
    public void Misconfiguration_is_a_clear_error(string why, string[] args, string message)
    {
        var parsed = Parse(args);
        Assert.True(parsed.Mode == RunMode.Invalid, $"{why}: expected an error, got {parsed.Mode}");
        Assert.Contains(message, parsed.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_secret_file_holds_the_cluster_secret_in_base64()
    {
        var secret = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
        var file = WriteFile("cluster.secret", Convert.ToBase64String(secret) + "\n"); // as `base64` writes it
        var parsed = Parse([.. NoSecret, "--secret-file", file]);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        Assert.Equal(secret, parsed.Options!.ClusterSecret);
        Assert.False(parsed.Options.Insecure);
    }

    [Fact]
    public void The_secret_may_come_from_the_environment_and_16_bytes_are_enough()
    {
        var secret = Enumerable.Range(100, KvNodeOptions.MinClusterSecretBytes).Select(i => (byte)i).ToArray();
        var parsed = Parse(NoSecret, variable: " " + Convert.ToBase64String(secret) + " ");
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        Assert.Equal(secret, parsed.Options!.ClusterSecret);
    }

    [Fact]
    public void Insecure_runs_without_a_secret_and_says_so_in_the_options()
    {
        var parsed = Parse(Valid);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        Assert.Null(parsed.Options!.ClusterSecret);
        Assert.True(parsed.Options.Insecure);
    }

    [Fact]
    public void Allowed_hosts_and_origins_are_lists()
    {
        var parsed = Parse([.. Valid, "--allowed-hosts", "kv.example, 10.0.0.5", "--allowed-origins", "http://app.example:3000,https://admin.example"]);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        Assert.Equal(["kv.example", "10.0.0.5"], parsed.Options!.AllowedHosts);
        Assert.Equal(["http://app.example:3000", "https://admin.example"], parsed.Options.AllowedOrigins);
        Assert.Empty(Parse(Valid).Options!.AllowedHosts);
    }

    public static TheoryData<string, string?, string?, string> SecretErrors => new()
    {
        // why, secret file content (null: no --secret-file; "<missing>": a path that does not exist), RAFT_CLUSTER_SECRET, expected message
        { "no secret at all", null, null, "No cluster secret: set ClusterSecret (base64) or ClusterSecretFile" },
        { "missing file", "<missing>", null, "no such file" },
        { "empty file", "\n", null, "the secret is empty" },
        { "file not base64", "this is not base64!", null, "the secret is not valid base64" },
        { "file holds raw bytes", "\u0001\u0002\u0003", null, "not valid base64" },
        { "file secret too short", Convert.ToBase64String(new byte[15]), null, "the secret is 15 bytes; at least 16 are needed" },
        { "file too large", new string('A', CommandLine.MaxSecretFileBytes + 4), null, "a secret file holds a short base64 line" },
        { "variable not base64", null, "%%%", "RAFT_CLUSTER_SECRET: the secret is not valid base64" },
        { "variable too short", null, Convert.ToBase64String(new byte[8]), "RAFT_CLUSTER_SECRET: the secret is 8 bytes" },
        { "variable empty", null, "", "RAFT_CLUSTER_SECRET: the secret is empty" },
        { "file and variable", Convert.ToBase64String(new byte[32]), Convert.ToBase64String(new byte[32]), "Both --secret-file and RAFT_CLUSTER_SECRET" },
    };

    [Theory]
    [MemberData(nameof(SecretErrors))]
    public void A_missing_or_bad_secret_is_a_clear_error(string why, string? fileContent, string? variable, string message)
    {
        string[] args = fileContent switch
        {
            null => NoSecret,
            "<missing>" => [.. NoSecret, "--secret-file", Path.Combine(_folder, "no-such.secret")],
            _ => [.. NoSecret, "--secret-file", WriteFile("cluster.secret", fileContent)],
        };
        var parsed = Parse(args, variable);
        Assert.True(parsed.Mode == RunMode.Invalid, $"{why}: expected an error, got {parsed.Mode}");
        Assert.Contains(message, parsed.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Insecure_and_a_secret_together_are_an_error()
    {
        var file = WriteFile("cluster.secret", Convert.ToBase64String(new byte[32]));
        Assert.Contains("(--insecure) runs without a cluster secret, but Raft:ClusterSecretFile (--secret-file) gives one", Parse([.. Valid, "--secret-file", file]).Error, StringComparison.Ordinal);
        Assert.Contains("but Raft:ClusterSecret (RAFT_CLUSTER_SECRET) gives one", Parse(Valid, Convert.ToBase64String(new byte[32])).Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_program_refuses_to_start_a_node_without_a_secret_unless_insecure()
    {
        var (exitCode, stdout, stderr) = await RunProgramAsync(NoSecret);
        Assert.True(exitCode == 2, $"exit code {exitCode}; stdout: {stdout}; stderr: {stderr}");
        Assert.Contains("error: No cluster secret", stderr, StringComparison.Ordinal);
        Assert.Contains("--insecure", stderr, StringComparison.Ordinal);
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

    private string WriteFile(string name, string content)
    {
        var path = Path.Combine(_folder, name);
        File.WriteAllText(path, content);
        return path;
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
        start.Environment.Remove(CommandLine.SecretVariable);
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
