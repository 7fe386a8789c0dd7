using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Time.Testing;
using Raft.Testing;
using Raft.Tests.Sessions;

namespace Raft.Tests.Typed;

/// <summary>The result of a <see cref="Tallies"/> command: a key and how many times it has been counted.</summary>
public sealed record Tally(string Key, int Count);

[JsonSerializable(typeof(Tally))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(Dictionary<string, int>))]
internal sealed partial class TallyJson : JsonSerializerContext;

/// <summary>A typed state machine whose result type (a record) sessions cannot save by themselves.</summary>
internal sealed class Tallies : IStateMachine<string, Tally>
{
    public Dictionary<string, int> Counts { get; private set; } = [];

    public int Applied { get; private set; }

    public Tally Apply(string command, long index)
    {
        Applied++;
        Counts[command] = Counts.GetValueOrDefault(command) + 1;
        return new Tally(command, Counts[command]);
    }

    public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) =>
        await JsonSerializer.SerializeAsync(destination, Counts, TallyJson.Default.DictionaryStringInt32, cancellationToken);

    public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default) =>
        Counts = await JsonSerializer.DeserializeAsync(source, TallyJson.Default.DictionaryStringInt32, cancellationToken) ?? [];
}

/// <summary>Typed commands through exactly-once sessions: <see cref="RaftClient{TCommand, TResult}.ProposeAsync(RaftSession, TCommand, CancellationToken)"/> and the adapter's result serializer.</summary>
public sealed class TypedSessionTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static RaftStateMachine<string, Tally> Adapter(Tallies machine, bool withResultSerializer) => withResultSerializer
        ? new(machine, new JsonRaftSerializer<string>(TallyJson.Default.String), new JsonRaftSerializer<Tally>(TallyJson.Default.Tally))
        : new(machine, new JsonRaftSerializer<string>(TallyJson.Default.String));

    private static byte[] Json(string command) => Encoding.UTF8.GetBytes(JsonSerializer.Serialize(command, TallyJson.Default.String));

    [Fact]
    public async Task A_typed_result_comes_back_to_a_retry_after_a_restart_from_a_snapshot()
    {
        var time = new FakeTimeProvider(Start);
        var store = new InMemoryLogStore();
        var snapshots = new InMemorySnapshotStore();
        long clientId;
        await using (var node = await SessionNodeTests.StartSingleAsync(time, store, snapshots, Adapter(new Tallies(), withResultSerializer: true)))
        {
            var client = new RaftClient<string, Tally>(node);
            var session = await node.OpenSessionAsync().WaitAsync(Guard);
            clientId = session.ClientId;
            Assert.Equal(new Tally("a", 1), await client.ProposeAsync(session, "a").WaitAsync(Guard));
            await SessionNodeTests.WaitAsync(() => snapshots.Latest?.Index >= 3, "a snapshot covering the command");
        }

        var restored = new Tallies();
        await using (var node = await SessionNodeTests.StartSingleAsync(time, store, snapshots, Adapter(restored, withResultSerializer: true)))
        {
            Assert.Equal(1, restored.Counts["a"]); // from the snapshot, not applied again
            var retry = await node.ResumeSession(clientId).ProposeAsync(Json("a"), 1).WaitAsync(Guard);
            Assert.Equal(new Tally("a", 1), retry);
            Assert.Equal(0, restored.Applied);
        }
    }

    [Fact]
    public async Task Without_a_result_serializer_a_retry_after_a_restart_says_committed_without_result()
    {
        var time = new FakeTimeProvider(Start);
        var store = new InMemoryLogStore();
        var snapshots = new InMemorySnapshotStore();
        long clientId;
        await using (var node = await SessionNodeTests.StartSingleAsync(time, store, snapshots, Adapter(new Tallies(), withResultSerializer: false)))
        {
            var session = await node.OpenSessionAsync().WaitAsync(Guard);
            clientId = session.ClientId;
            Assert.Equal(new Tally("b", 1), await new RaftClient<string, Tally>(node).ProposeAsync(session, "b").WaitAsync(Guard));
            await SessionNodeTests.WaitAsync(() => snapshots.Latest?.Index >= 3, "a snapshot covering the command");
        }

        var restored = new Tallies();
        await using (var node = await SessionNodeTests.StartSingleAsync(time, store, snapshots, Adapter(restored, withResultSerializer: false)))
        {
            var retry = await node.ResumeSession(clientId).ProposeAsync(Json("b"), 1).WaitAsync(Guard);
            Assert.Same(CommittedWithoutResult.Instance, retry);
            Assert.Equal(0, restored.Applied);
        }
    }

    [Fact]
    public async Task A_session_of_another_node_is_refused()
    {
        var time = new FakeTimeProvider(Start);
        await using var a = await SessionNodeTests.StartSingleAsync(time, new InMemoryLogStore(), new InMemorySnapshotStore(), Adapter(new Tallies(), true));
        await using var b = await SessionNodeTests.StartSingleAsync(time, new InMemoryLogStore(), new InMemorySnapshotStore(), Adapter(new Tallies(), true));
        var session = await b.OpenSessionAsync().WaitAsync(Guard);
        await Assert.ThrowsAsync<ArgumentException>(() => new RaftClient<string, Tally>(a).ProposeAsync(session, "x"));
    }
}
