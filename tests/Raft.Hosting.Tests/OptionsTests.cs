using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Raft.Hosting.Tests;

public sealed class OptionsTests
{
    private static Dictionary<string, string?> Valid() => new()
    {
        ["Raft:NodeId"] = "2",
        ["Raft:Members:1"] = "127.0.0.1:7001",
        ["Raft:Members:2"] = "127.0.0.1:7002",
        ["Raft:Members:3"] = "node-3.raft.internal:7003",
        ["Raft:ClusterId"] = "orders",
        ["Raft:ClusterSecret"] = Convert.ToBase64String(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray()),
        ["Raft:DataDirectory"] = "/var/lib/raft",
        ["Raft:ElectionTimeoutMin"] = "00:00:01",
        ["Raft:ElectionTimeoutMax"] = "00:00:02",
        ["Raft:SnapshotInterval"] = "5000",
        ["Raft:ForwardToLeader"] = "true",
    };

    private static RaftHostingOptions Bind(Dictionary<string, string?> values)
    {
        var services = new ServiceCollection();
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
        services.AddRaftNode<RecordingStateMachine>(configuration.GetSection("Raft"));
        using var provider = services.BuildServiceProvider();
        return provider.GetRequiredService<IOptions<RaftHostingOptions>>().Value;
    }

    private static async Task<OptionsValidationException> StartFails(Dictionary<string, string?> values)
    {
        using var host = TestHosts.Build(values);
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Null(host.Services.GetRequiredService<RaftNodeAccessor>().Node); // nothing started
        return error;
    }

    [Fact]
    public void Binds_members_as_host_port_strings_and_settings_from_configuration()
    {
        var options = Bind(Valid());
        Assert.Equal(2, options.NodeId);
        Assert.Equal(["127.0.0.1:7001", "127.0.0.1:7002", "node-3.raft.internal:7003"], options.Members.OrderBy(m => m.Key).Select(m => m.Value));
        Assert.Equal([1, 2, 3], options.Members.Keys.Order());
        Assert.Equal("orders", options.ClusterId);
        Assert.Equal(TimeSpan.FromSeconds(1), options.ElectionTimeoutMin);
        Assert.Equal(TimeSpan.FromSeconds(2), options.ElectionTimeoutMax);
        Assert.Equal(5000, options.SnapshotInterval);
        Assert.True(options.ForwardToLeader);

        var transport = options.ToTransportOptions(options.ReadSecret());
        Assert.Equal("127.0.0.1:7002", transport.ListenEndPoint.ToString());
        Assert.Equal([1, 3], transport.Peers.Keys.Order()); // the own entry is where it listens, not a peer
        Assert.IsType<System.Net.DnsEndPoint>(transport.Peers[3]);
        Assert.Equal(32, transport.ClusterSecret!.Length);
        var node = options.ToNodeOptions();
        Assert.Equal([1, 2, 3], node.Members);
        Assert.Equal(2, node.NodeId);
    }

    [Fact]
    public void Defaults_are_the_core_defaults()
    {
        var hosting = new RaftHostingOptions();
        var core = new RaftNodeOptions { NodeId = 1, Members = [1] };
        Assert.Equal(core.TickInterval, hosting.TickInterval);
        Assert.Equal(core.HeartbeatInterval, hosting.HeartbeatInterval);
        Assert.Equal(core.ElectionTimeoutMin, hosting.ElectionTimeoutMin);
        Assert.Equal(core.ElectionTimeoutMax, hosting.ElectionTimeoutMax);
        Assert.Equal(core.MaxInflightAppends, hosting.MaxInflightAppends);
        Assert.Equal(core.MaxAppendBytes, hosting.MaxAppendBytes);
        Assert.Equal(core.MaxUncommittedEntries, hosting.MaxUncommittedEntries);
        Assert.Equal(core.SnapshotInterval, hosting.SnapshotInterval);
        Assert.Equal(core.SnapshotTrailingEntries, hosting.SnapshotTrailingEntries);
        Assert.Equal(core.MaxSnapshotChunkBytes, hosting.MaxSnapshotChunkBytes);
        Assert.Equal(core.PreVote, hosting.PreVote);
        Assert.Equal(core.CheckQuorum, hosting.CheckQuorum);
        Assert.Equal(core.ForwardToLeader, hosting.ForwardToLeader);
        Assert.Equal(core.ForwardTimeout, hosting.ForwardTimeout);
        Assert.Equal(core.ProposalTimeout, hosting.ProposalTimeout);
        Assert.Equal(core.ReadTimeout, hosting.ReadTimeout);
        Assert.Equal(core.LeaseReads, hosting.LeaseReads);
        Assert.Equal(core.LeaseClockDriftBound, hosting.LeaseClockDriftBound);
        // Every setting reaches the node.
        var custom = new RaftHostingOptions
        {
            NodeId = 1, Members = { [1] = "127.0.0.1:1" }, TickInterval = TimeSpan.FromMilliseconds(7), HeartbeatInterval = TimeSpan.FromMilliseconds(70),
            ElectionTimeoutMin = TimeSpan.FromMilliseconds(700), ElectionTimeoutMax = TimeSpan.FromMilliseconds(900), MaxInflightAppends = 3, MaxAppendBytes = 4096,
            MaxUncommittedEntries = 9, SnapshotInterval = 11, SnapshotTrailingEntries = 5, MaxSnapshotChunkBytes = 8192, PreVote = false, CheckQuorum = false,
            ForwardToLeader = true, ForwardTimeout = TimeSpan.FromSeconds(3),
        }.ToNodeOptions();
        Assert.Equal(
            (TimeSpan.FromMilliseconds(7), TimeSpan.FromMilliseconds(70), TimeSpan.FromMilliseconds(700), TimeSpan.FromMilliseconds(900), 3, 4096L, 9, 11L, 5L, 8192, false, false, true, TimeSpan.FromSeconds(3)),
            (custom.TickInterval, custom.HeartbeatInterval, custom.ElectionTimeoutMin, custom.ElectionTimeoutMax, custom.MaxInflightAppends, custom.MaxAppendBytes,
             custom.MaxUncommittedEntries, custom.SnapshotInterval, custom.SnapshotTrailingEntries, custom.MaxSnapshotChunkBytes, custom.PreVote, custom.CheckQuorum,
             custom.ForwardToLeader, custom.ForwardTimeout));
        var timeouts = new RaftHostingOptions
        {
            NodeId = 1, Members = { [1] = "127.0.0.1:1" }, ProposalTimeout = TimeSpan.FromSeconds(4), ReadTimeout = TimeSpan.FromSeconds(2),
            LeaseReads = true, LeaseClockDriftBound = 0.25,
        }.ToNodeOptions();
        Assert.Equal((TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(2), true, 0.25),
            (timeouts.ProposalTimeout, timeouts.ReadTimeout, timeouts.LeaseReads, timeouts.LeaseClockDriftBound));
    }

    [Fact]
    public void Valid_settings_pass()
    {
        Assert.True(new RaftHostingOptionsValidator().Validate(null, Bind(Valid())).Succeeded);
    }

    [Theory]
    [InlineData("Raft:Members:3", "nonsense", "Members:3 is 'nonsense'")]
    [InlineData("Raft:Members:3", "10.0.0.1:99999", "Members:3 is '10.0.0.1:99999'")]
    [InlineData("Raft:NodeId", "7", "NodeId 7 is not a key of Members (1, 2, 3)")]
    [InlineData("Raft:NodeId", "0", "NodeId is 0")]
    [InlineData("Raft:ClusterId", "", "ClusterId is missing")]
    [InlineData("Raft:DataDirectory", "", "DataDirectory is missing")]
    [InlineData("Raft:ClusterSecret", "not base64!", "ClusterSecret is not base64")]
    [InlineData("Raft:ClusterSecret", "AAAAAAAAAAAAAAAAAAAA", "ClusterSecret is 15 bytes decoded; at least 16")]
    [InlineData("Raft:ListenAddress", "somehost:7002", "ListenAddress is 'somehost:7002'; it must be an IP address")]
    [InlineData("Raft:ElectionTimeoutMax", "00:00:00.500", "ElectionTimeout")]
    public async Task A_bad_setting_fails_the_start_with_a_message_naming_it(string key, string value, string expected)
    {
        var values = Valid();
        values[key] = value;
        var error = await StartFails(values);
        Assert.Contains(error.Failures, f => f.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void A_joining_node_starts_with_no_configuration_and_reaches_the_running_members()
    {
        var values = Valid();
        values["Raft:NodeId"] = "4";
        values["Raft:Join"] = "true";
        values["Raft:ListenAddress"] = "127.0.0.1:7004";
        values["Raft:MaxPromotionLag"] = "50";
        var options = Bind(values);
        Assert.True(new RaftHostingOptionsValidator().Validate(null, options).Succeeded);

        var node = options.ToNodeOptions();
        Assert.True(node.Join);
        Assert.Empty(node.Members);
        Assert.Null(node.MemberAddresses);
        Assert.Equal(50, node.MaxPromotionLag);
        var transport = options.ToTransportOptions(options.ReadSecret());
        Assert.Equal("127.0.0.1:7004", transport.ListenEndPoint.ToString());
        Assert.Equal([1, 2, 3], transport.Peers.Keys.Order());
    }

    [Fact]
    public void A_bootstrapping_node_records_every_members_address_in_its_first_configuration()
    {
        var node = Bind(Valid()).ToNodeOptions();
        Assert.False(node.Join);
        Assert.Equal([1, 2, 3], node.Members);
        Assert.Equal("node-3.raft.internal:7003", node.MemberAddresses![3]);
    }

    [Fact]
    public async Task A_joining_node_not_in_members_needs_a_listen_address()
    {
        var values = Valid();
        values["Raft:NodeId"] = "4";
        values["Raft:Join"] = "true";
        var error = await StartFails(values);
        Assert.Contains(error.Failures, f => f.Contains("Join is set and Members does not list node 4: set ListenAddress", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Own_member_entry_with_a_host_name_needs_a_listen_address()
    {
        var values = Valid();
        values["Raft:NodeId"] = "3";
        var error = await StartFails(values);
        Assert.Contains(error.Failures, f => f.Contains("Members:3 (this node) is 'node-3.raft.internal:7003', a host name", StringComparison.Ordinal));
        values["Raft:ListenAddress"] = "0.0.0.0:7003";
        Assert.True(new RaftHostingOptionsValidator().Validate(null, Bind(values)).Succeeded);
        Assert.Equal("0.0.0.0:7003", Bind(values).ToTransportOptions(null).ListenEndPoint.ToString());
    }

    [Fact]
    public async Task A_missing_secret_fails_unless_insecure()
    {
        var values = Valid();
        values.Remove("Raft:ClusterSecret");
        var error = await StartFails(values);
        Assert.Contains(error.Failures, f => f.Contains("No cluster secret", StringComparison.Ordinal) && f.Contains("Insecure", StringComparison.Ordinal));
        values["Raft:Insecure"] = "true";
        Assert.True(new RaftHostingOptionsValidator().Validate(null, Bind(values)).Succeeded);
        Assert.Null(Bind(values).ReadSecret());
    }

    [Fact]
    public async Task The_secret_can_come_from_a_file()
    {
        var dir = TestHosts.TempDirectory();
        var file = Path.Combine(dir, "cluster.secret");
        var secret = Enumerable.Range(100, 32).Select(i => (byte)i).ToArray();
        await File.WriteAllTextAsync(file, Convert.ToBase64String(secret) + "\n");
        var values = Valid();
        values.Remove("Raft:ClusterSecret");
        values["Raft:ClusterSecretFile"] = file;
        Assert.True(new RaftHostingOptionsValidator().Validate(null, Bind(values)).Succeeded);
        Assert.Equal(secret, Bind(values).ReadSecret());

        values["Raft:ClusterSecretFile"] = Path.Combine(dir, "missing.secret");
        Assert.Contains((await StartFails(values)).Failures, f => f.Contains("missing.secret' cannot be read", StringComparison.Ordinal));
        values["Raft:ClusterSecret"] = Valid()["Raft:ClusterSecret"];
        Assert.Contains((await StartFails(values)).Failures, f => f.Contains("Both ClusterSecret and ClusterSecretFile", StringComparison.Ordinal));
        Directory.Delete(dir, recursive: true);
    }

    private sealed class StartRecorder : IHostedService
    {
        public bool Started { get; private set; }

        public Task StartAsync(CancellationToken cancellationToken)
        {
            Started = true;
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    [Fact]
    public async Task Bad_settings_stop_the_host_before_any_hosted_service_starts()
    {
        var values = Valid();
        values["Raft:NodeId"] = "9";
        var recorder = new StartRecorder();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(values);
        builder.Services.AddHostedService(_ => recorder); // registered first: it would start first
        builder.Services.AddRaftNode<RecordingStateMachine>(builder.Configuration.GetSection("Raft"));
        using var host = builder.Build();
        await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.False(recorder.Started);
    }

    [Fact]
    public void AddRaftNode_twice_is_refused()
    {
        var services = new ServiceCollection();
        services.AddRaftNode<RecordingStateMachine>(o => o.NodeId = 1);
        Assert.Throws<InvalidOperationException>(() => services.AddRaftNode<RecordingStateMachine>(o => o.NodeId = 2));
    }

    [Fact]
    public void The_quickstart_settings_bind_and_validate()
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "quickstart.appsettings.json"))
            .AddCommandLine(["--Raft:NodeId=2"])
            .Build();
        var services = new ServiceCollection();
        services.AddRaftNode<RecordingStateMachine>(configuration.GetSection(RaftHostingOptions.DefaultSectionName));
        using var provider = services.BuildServiceProvider();
        var options = provider.GetRequiredService<IOptions<RaftHostingOptions>>().Value;
        var result = new RaftHostingOptionsValidator().Validate(null, options);
        Assert.True(result.Succeeded, result.FailureMessage);
        Assert.Equal(2, options.NodeId);
        Assert.Equal([1, 2, 3], options.Members.Keys.Order());
        Assert.All(options.Members.Values, address => Assert.True(System.Net.IPAddress.IsLoopback(((System.Net.IPEndPoint)TcpTransportOptions.ParseEndPoint(address)).Address)));
        Assert.True(options.ForwardToLeader);
    }
}
