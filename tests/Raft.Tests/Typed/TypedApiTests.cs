using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Raft.Tests.Node;

namespace Raft.Tests.Typed;

/// <summary>A command of the typed tests: a key and a value to append to it.</summary>
public sealed record Append(string Key, string Value);

[JsonSerializable(typeof(Append))]
[JsonSerializable(typeof(int?))]
internal sealed partial class TypedTestJson : JsonSerializerContext;

/// <summary>A typed state machine: per key, the values appended; Apply returns how many the key now has.</summary>
internal sealed class AppendLog : IStateMachine<Append, int>
{
    public Dictionary<string, List<string>> Values { get; } = [];

    public List<long> Indexes { get; } = [];

    public int Apply(Append command, long index)
    {
        Indexes.Add(index);
        if (!Values.TryGetValue(command.Key, out var list))
            Values[command.Key] = list = [];
        list.Add(command.Value);
        return list.Count;
    }

    public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) =>
        await JsonSerializer.SerializeAsync(destination, Values, cancellationToken: cancellationToken);

    public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
    {
        var values = await JsonSerializer.DeserializeAsync<Dictionary<string, List<string>>>(source, cancellationToken: cancellationToken);
        Values.Clear();
        foreach (var (key, list) in values!)
            Values[key] = list;
    }
}

public sealed class TypedApiTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    private static RaftStateMachine<Append, int> Adapter(AppendLog log) => new(log, new JsonRaftSerializer<Append>(TypedTestJson.Default.Append));

    [Fact]
    public async Task ProposeAsync_returns_the_typed_result_and_every_node_applies_the_typed_command()
    {
        var logs = new Dictionary<int, AppendLog>();
        await using var nodes = await TestNodes.StartAsync(3, id => Adapter(logs[id] = new AppendLog()));
        var leader = await nodes.LeaderAsync();
        var client = new RaftClient<Append, int>(leader);

        var first = await nodes.RunAsync(client.ProposeAsync(new Append("k", "a")), "the first command");
        var second = await nodes.RunAsync(client.ProposeAsync(new Append("k", "b")), "the second command");
        var other = await nodes.RunAsync(client.ProposeAsync(new Append("j", "c")), "the third command");

        Assert.Equal(1, await first);
        Assert.Equal(2, await second);
        Assert.Equal(1, await other);
        var values = await nodes.RunAsync(leader.QueryAsync((AppendLog l) => string.Join(",", l.Values["k"])), "a query");
        Assert.Equal("a,b", await values);
        foreach (var node in nodes.Nodes.Values)
        {
            await nodes.RunAsync(node.WaitForAppliedAsync(4), "every node to apply the three commands");
            Assert.Equal([2L, 3L, 4L], logs[node.Id].Indexes); // the log indexes, after the no-op at 1
        }
    }

    // A follower that forwards to the leader applies the command itself: its result is typed too.
    [Fact]
    public async Task A_typed_proposal_forwarded_by_a_follower_returns_the_followers_typed_result()
    {
        await using var nodes = await TestNodes.StartAsync(3, _ => Adapter(new AppendLog()), o => o with { ForwardToLeader = true });
        var leader = await nodes.LeaderAsync();
        var follower = new RaftClient<Append, int>(nodes.Nodes.Values.First(n => n != leader));

        var first = await nodes.RunAsync(follower.ProposeAsync(new Append("k", "a")), "the forwarded command");
        var second = await nodes.RunAsync(follower.ProposeAsync(new Append("k", "b")), "the second forwarded command");

        Assert.Equal(1, await first);
        Assert.Equal(2, await second);
    }

    // The adapter is the node's ICommandValidator: bytes its serializer cannot read are refused
    // before they are appended, instead of stopping every node that would apply them.
    [Fact]
    public async Task Raw_bytes_the_serializer_cannot_read_are_refused_before_they_are_appended()
    {
        var log = new AppendLog();
        await using var nodes = await TestNodes.StartAsync(1, _ => Adapter(log));
        var node = await nodes.LeaderAsync();

        var error = await Assert.ThrowsAsync<InvalidCommandException>(() => node.ProposeAsync(Encoding.UTF8.GetBytes("{not json")).AsTask().WaitAsync(Guard));
        Assert.Contains("Append", error.Message);
        var nullCommand = await Assert.ThrowsAsync<InvalidCommandException>(() => node.ProposeAsync(Encoding.UTF8.GetBytes("null")).AsTask().WaitAsync(Guard));
        Assert.Contains("null", nullCommand.Message);

        var client = new RaftClient<Append, int>(node);
        Assert.Equal(1, await client.ProposeAsync(new Append("k", "ok")).WaitAsync(Guard));
        Assert.Null(node.Status.Fault);
        Assert.Equal([2L], log.Indexes); // only the valid command reached the log after the no-op
    }

    [Fact]
    public async Task A_client_for_a_node_without_the_matching_adapter_is_refused_with_the_types_named()
    {
        await using var nodes = await TestNodes.StartAsync(1, _ => new ListStateMachine());

        var error = Assert.Throws<ArgumentException>(() => new RaftClient<Append, int>(nodes.Nodes[1]));

        Assert.Contains("ListStateMachine", error.Message);
        Assert.Contains("RaftStateMachine<Append, Int32>", error.Message);
    }

    [Fact]
    public async Task QueryAsync_finds_the_typed_state_machine_inside_the_adapter_and_names_it_when_the_type_is_wrong()
    {
        await using var nodes = await TestNodes.StartAsync(1, _ => Adapter(new AppendLog()));
        var node = await nodes.LeaderAsync();

        Assert.Empty(await node.QueryAsync((AppendLog l) => l.Values).WaitAsync(Guard));
        Assert.NotNull(await node.QueryAsync((RaftStateMachine<Append, int> a) => a.StateMachine).WaitAsync(Guard));
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => node.QueryAsync((ListStateMachine m) => m.LastIndex));
        Assert.Contains("wrapping a AppendLog", error.Message);
    }

    [Fact]
    public void JsonRaftSerializer_round_trips_and_refuses_what_is_not_a_value()
    {
        var serializer = new JsonRaftSerializer<Append>(TypedTestJson.Default.Append);
        var buffer = new ArrayBufferWriter<byte>();
        serializer.Serialize(new Append("k", "v"), buffer);

        Assert.Equal(new Append("k", "v"), serializer.Deserialize(buffer.WrittenSpan));
        Assert.ThrowsAny<JsonException>(() => serializer.Deserialize("null"u8));
        Assert.ThrowsAny<JsonException>(() => serializer.Deserialize("[1]"u8));

        var nullable = new JsonRaftSerializer<int?>(TypedTestJson.Default.NullableInt32);
        Assert.Null(nullable.Deserialize("null"u8)); // a Nullable<T> may be null
    }

    [Fact]
    public async Task The_adapter_passes_snapshots_through_to_the_typed_state_machine()
    {
        var source = new AppendLog();
        var adapter = Adapter(source);
        await adapter.ApplyAsync(new LogEntry(1, 1, EntryKind.Command, Encoding.UTF8.GetBytes("""{"Key":"k","Value":"v"}""")));
        using var snapshot = new MemoryStream();
        await adapter.WriteSnapshotAsync(snapshot);
        snapshot.Position = 0;

        var restored = new AppendLog();
        await Adapter(restored).RestoreSnapshotAsync(snapshot);

        Assert.Equal(["v"], restored.Values["k"]);
    }
}
