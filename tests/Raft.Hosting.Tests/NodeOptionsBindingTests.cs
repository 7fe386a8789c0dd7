using System.Diagnostics.Metrics;
using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Raft.Testing;

namespace Raft.Hosting.Tests;

/// <summary>
/// <see cref="RaftNodeOptions"/> holds settings only, so the usual .NET configuration tools work on
/// it: <c>ConfigurationBinder</c>, <c>services.Configure</c>, <c>with</c> copies; and the hosted node
/// gets its clock, logger factory and meter factory from the container.
/// </summary>
public sealed class NodeOptionsBindingTests
{
    private static readonly TimeSpan RealTimeGuard = TimeSpan.FromSeconds(60);

    private static IConfiguration Configuration(Dictionary<string, string?> values) => new ConfigurationBuilder().AddInMemoryCollection(values).Build();

    private static Dictionary<string, string?> SingleMember() => new()
    {
        ["Raft:NodeId"] = "1",
        ["Raft:Members:0"] = "1",
        ["Raft:MemberAddresses:1"] = "127.0.0.1:7001",
        ["Raft:ElectionTimeoutMin"] = "00:00:00.400",
        ["Raft:ElectionTimeoutMax"] = "00:00:00.800",
        ["Raft:RandomSeed"] = "42",
        ["Raft:ForwardToLeader"] = "true",
        ["Raft:Sessions:MaxSessions"] = "5",
        ["Raft:Sessions:Timeout"] = "00:10:00",
    };

    /// <summary>Moves <paramref name="time"/> 10 ms at a time, letting the node run between steps, until <paramref name="condition"/> holds.</summary>
    private static async Task RunUntilAsync(FakeTimeProvider time, Func<bool> condition, string what, TimeSpan? step = null)
    {
        var real = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (real.Elapsed > RealTimeGuard)
                throw new TimeoutException($"Gave up waiting for {what}.");
            time.Advance(step ?? TimeSpan.FromMilliseconds(10));
            await Task.Delay(1);
        }
    }

    [Fact]
    public async Task RaftNodeOptions_bound_by_ConfigurationBinder_run_a_node()
    {
        var options = Configuration(SingleMember()).GetSection("Raft").Get<RaftNodeOptions>();

        Assert.NotNull(options);
        Assert.Equal(1, options.NodeId);
        Assert.Equal([1], options.Members);
        Assert.Equal("127.0.0.1:7001", options.MemberAddresses![1]);
        Assert.Equal((TimeSpan.FromMilliseconds(400), TimeSpan.FromMilliseconds(800)), (options.ElectionTimeoutMin, options.ElectionTimeoutMax));
        Assert.Equal(42, options.RandomSeed);
        Assert.True(options.ForwardToLeader);
        Assert.Equal((5, TimeSpan.FromMinutes(10)), (options.Sessions.MaxSessions, options.Sessions.Timeout));
        Assert.Equal(RaftNodeOptions.DefaultMaxInboxBytes, options.MaxInboxBytes); // unbound settings keep their defaults

        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var machine = new RecordingStateMachine();
        await using var node = new RaftNode(options, new InMemoryNetwork(1, time).CreateTransport(1), new InMemoryLogStore(), machine, timeProvider: time);
        await node.StartAsync();
        await RunUntilAsync(time, () => node.Status.Role == RaftRole.Leader, "the bound member to lead");
        var write = node.ProposeAsync(Encoding.UTF8.GetBytes("bound")).AsTask();
        await RunUntilAsync(time, () => write.IsCompleted, "the write");
        await write;
        Assert.Equal(["bound"], machine.Applied);
        Assert.Equal("127.0.0.1:7001", Assert.Single(node.Configuration.Members).Address);
    }

    [Fact]
    public void Configure_mutates_bound_options_and_with_copies_them()
    {
        var services = new ServiceCollection();
        services.AddOptions<RaftNodeOptions>().Bind(Configuration(SingleMember()).GetSection("Raft"));
        services.Configure<RaftNodeOptions>(o => o.ElectionTimeoutMin = TimeSpan.FromMilliseconds(500));
        services.Configure<RaftNodeOptions>(o => o.Sessions.MaxSessions = 7);
        using var provider = services.BuildServiceProvider();

        var options = provider.GetRequiredService<IOptions<RaftNodeOptions>>().Value;
        Assert.Equal(1, options.NodeId); // bound
        Assert.Equal(TimeSpan.FromMilliseconds(500), options.ElectionTimeoutMin); // configured after binding
        Assert.Equal(7, options.Sessions.MaxSessions);
        options.Validate();

        var second = options with { NodeId = 2, Members = [1, 2], MemberAddresses = null };
        Assert.Equal((2, 1), (second.NodeId, options.NodeId));
        Assert.Equal([1, 2], second.Members);
        Assert.Equal([1], options.Members);
        Assert.Equal(TimeSpan.FromMilliseconds(500), second.ElectionTimeoutMin);
        second.Validate();
    }

    [Fact]
    public void Bound_options_without_a_node_id_or_members_fail_validation_naming_them()
    {
        var noId = Configuration(new() { ["Raft:Members:0"] = "1" }).GetSection("Raft").Get<RaftNodeOptions>()!;
        Assert.Equal("NodeId", Assert.ThrowsAny<ArgumentException>(noId.Validate).ParamName);

        var noMembers = Configuration(new() { ["Raft:NodeId"] = "1" }).GetSection("Raft").Get<RaftNodeOptions>()!;
        var error = Assert.ThrowsAny<ArgumentException>(noMembers.Validate);
        Assert.Equal("Members", error.ParamName);
        Assert.Contains("Members must list at least the local node", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_hosted_node_uses_the_containers_clock_logger_factory_and_meter_factory()
    {
        // Election timeouts of an hour: on the system clock the node would not lead during this test;
        // on the container's fake clock, moved a minute at a time, it does.
        var port = TestHosts.FreePorts(1)[0];
        var settings = TestHosts.Settings(1, [port], TestHosts.TempDirectory(), TimeSpan.FromHours(1), TimeSpan.FromHours(2), TimeSpan.FromMinutes(10));
        settings["Raft:TickInterval"] = "00:01:00";
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var logs = new ListLoggerProvider();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        builder.Services.AddSingleton<TimeProvider>(time);
        builder.Services.AddSingleton(new RecordingStateMachine());
        builder.Services.AddRaftNode<RecordingStateMachine>(builder.Configuration.GetSection("Raft"));
        using var host = builder.Build();
        var meters = host.Services.GetRequiredService<IMeterFactory>();
        var scopes = new List<object?>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Name == RaftTelemetry.MeterName)
                {
                    lock (scopes)
                        scopes.Add(instrument.Meter.Scope);
                }
            },
        };
        listener.Start();

        await host.StartAsync();
        try
        {
            var node = host.Node();
            await RunUntilAsync(time, () => node.Status.Role == RaftRole.Leader, "the hosted member to lead on the fake clock", TimeSpan.FromMinutes(1));
            Assert.Contains(logs.Entries, e => e.Category == typeof(RaftNode).FullName && e.Message.Contains("started at term", StringComparison.Ordinal));
            lock (scopes)
                Assert.Contains(scopes, scope => ReferenceEquals(scope, meters));
        }
        finally
        {
            await host.StopAsync();
        }
    }
}
