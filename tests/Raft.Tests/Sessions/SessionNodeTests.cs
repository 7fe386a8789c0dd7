using System.Buffers;
using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Raft.Testing;
using Raft.Tests.Node;
using Raft.Tests.Transport;

namespace Raft.Tests.Sessions;

/// <summary>Exactly-once sessions through real <see cref="RaftNode"/>s: retries, leader changes, forwarding, snapshots, expiry, bad input.</summary>
public sealed class SessionNodeTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    private static byte[] Command(string text) => Encoding.UTF8.GetBytes(text);

    [Fact]
    public async Task A_retried_command_is_applied_once_and_every_retry_gets_the_first_result()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        var session = await cluster.RunAsync(leader.OpenSessionAsync(), "open a session");
        await cluster.RunAsync(leader.ProposeAsync(Command("plain")), "a plain command first");

        var first = await cluster.RunAsync(session.ProposeAsync(Command("x"), 1), "the command");
        var second = await cluster.RunAsync(session.ProposeAsync(Command("x"), 1), "its retry");
        var third = await cluster.RunAsync(leader.ResumeSession(session.ClientId).ProposeAsync(Command("x"), 1), "a retry through another handle");

        Assert.Equal(2L, first); // ListStateMachine answers with the command's position
        Assert.Equal(first, second);
        Assert.Equal(first, third);
        await cluster.RunUntilAsync(() => cluster.Machines.Values.All(m => m.Commands.Length == 2), "every node applies");
        Assert.All(cluster.Machines.Values, m => Assert.Equal(["plain", "x"], m.Commands));
    }

    [Fact]
    public async Task Sessions_get_the_index_of_their_registration_as_client_id_and_number_their_commands()
    {
        await using var cluster = await NodeCluster.StartAsync();
        var leader = await cluster.LeaderAsync();
        var a = await cluster.RunAsync(leader.OpenSessionAsync(), "open a");
        var b = await cluster.RunAsync(leader.OpenSessionAsync(), "open b");
        Assert.NotEqual(a.ClientId, b.ClientId);
        Assert.True(b.ClientId > a.ClientId);

        var results = await cluster.RunAsync(Task.WhenAll(a.ProposeAsync(Command("a1")), b.ProposeAsync(Command("b1")), a.ProposeAsync(Command("a2"))), "three commands");
        Assert.Equal([1L, 2L, 3L], results.Cast<long>().Order());
        Assert.Equal(3, a.ReserveSequence());
        Assert.Equal(2, b.ReserveSequence());
    }

    [Fact]
    public async Task A_retry_through_a_follower_after_the_leader_stopped_applies_once()
    {
        await using var cluster = await NodeCluster.StartAsync(forwardToLeader: true);
        var leader = await cluster.LeaderAsync();
        var session = await cluster.RunAsync(leader.OpenSessionAsync(), "open a session");
        var first = await cluster.RunAsync(session.ProposeAsync(Command("once"), 1), "the command");
        await cluster.RunUntilAsync(() => cluster.Machines.Values.All(m => m.Commands.Length == 1), "every node applies it");

        await cluster.StopAsync(leader.Id);
        var newLeader = await cluster.LeaderAsync();
        var follower = cluster.Followers(newLeader).Single();

        // The client never heard back and retries through another node, which forwards it.
        var retry = await cluster.RunAsync(follower.ResumeSession(session.ClientId).ProposeAsync(Command("once"), 1), "the retry");
        var next = await cluster.RunAsync(follower.ResumeSession(session.ClientId, 2).ProposeAsync(Command("twice?"), 2), "the next command");

        Assert.Equal(first, retry);
        Assert.Equal(2L, next);
        await cluster.RunUntilAsync(() => cluster.Running.All(n => cluster.Machines[n.Id].Commands.Length == 2), "the survivors apply");
        foreach (var node in cluster.Running)
            Assert.Equal(["once", "twice?"], cluster.Machines[node.Id].Commands);
    }

    [Fact]
    public async Task The_session_table_survives_a_snapshot_and_a_restart_from_it()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var store = new InMemoryLogStore();
        var snapshots = new InMemorySnapshotStore();
        long clientId;
        object? first;
        await using (var node = await StartSingleAsync(time, store, snapshots, new ListStateMachine()))
        {
            var session = await node.OpenSessionAsync().WaitAsync(Guard);
            clientId = session.ClientId;
            first = await session.ProposeAsync(Command("once"), 1).WaitAsync(Guard);
            await WaitAsync(() => snapshots.Latest?.Index >= 3, "a snapshot covering the command");
        }

        var machine = new ListStateMachine();
        await using (var node = await StartSingleAsync(time, store, snapshots, machine))
        {
            Assert.Equal(["once"], machine.Commands); // restored from the snapshot
            var retry = await node.ResumeSession(clientId).ProposeAsync(Command("once"), 1).WaitAsync(Guard);
            Assert.Equal(first, retry);
            Assert.Equal(["once"], machine.Commands);
        }
    }

    [Fact]
    public async Task A_snapshot_without_sessions_keeps_its_old_format()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var snapshots = new InMemorySnapshotStore();
        await using (var node = await StartSingleAsync(time, new InMemoryLogStore(), snapshots, new ListStateMachine()))
        {
            await node.ProposeAsync(Command("a")).AsTask().WaitAsync(Guard);
            await WaitAsync(() => snapshots.Latest?.Index >= 2, "a snapshot");
        }
        using var stream = snapshots.OpenLatest()!;
        using var reader = new StreamReader(stream);
        Assert.Equal("a", await reader.ReadToEndAsync()); // the state machine's bytes alone
    }

    [Fact]
    public async Task A_command_of_an_expired_session_is_refused_and_not_applied()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var machine = new ListStateMachine();
        await using var node = await StartSingleAsync(time, new InMemoryLogStore(), new InMemorySnapshotStore(), machine, new SessionOptions { Timeout = TimeSpan.FromSeconds(5) });
        var session = await node.OpenSessionAsync().WaitAsync(Guard);
        await session.ProposeAsync(Command("a"), 1).WaitAsync(Guard);
        time.Advance(TimeSpan.FromSeconds(4));
        await session.ProposeAsync(Command("b"), 2).WaitAsync(Guard); // activity keeps it alive
        time.Advance(TimeSpan.FromSeconds(6));

        var error = await Assert.ThrowsAsync<SessionExpiredException>(() => session.ProposeAsync(Command("c"), 3).WaitAsync(Guard));
        Assert.Equal(session.ClientId, error.ClientId);
        Assert.Equal(["a", "b"], machine.Commands);
        Assert.Equal(0, node.SessionCount);
    }

    [Fact]
    public async Task A_retry_below_the_acknowledged_sequence_is_refused_not_reapplied()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var machine = new ListStateMachine();
        await using var node = await StartSingleAsync(time, new InMemoryLogStore(), new InMemorySnapshotStore(), machine);
        var session = await node.OpenSessionAsync().WaitAsync(Guard);
        await session.ProposeAsync(Command("a"), 1).WaitAsync(Guard);
        await session.ProposeAsync(Command("b"), 2).WaitAsync(Guard); // 1 is done: this says so

        var error = await Assert.ThrowsAsync<SessionSequenceException>(() => session.ProposeAsync(Command("a"), 1).WaitAsync(Guard));
        Assert.Equal((1L, 2L), (error.Sequence, error.LowestKept));
        Assert.Equal(["a", "b"], machine.Commands);
    }

    [Fact]
    public async Task Results_of_a_state_machine_serializer_come_back_on_a_retry()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var machine = new PointMachine();
        await using var node = await StartSingleAsync(time, new InMemoryLogStore(), new InMemorySnapshotStore(), machine);
        var session = await node.OpenSessionAsync().WaitAsync(Guard);
        var first = await session.ProposeAsync(Command("p"), 1).WaitAsync(Guard);
        var retry = await session.ProposeAsync(Command("p"), 1).WaitAsync(Guard);
        Assert.Equal(new Point(1, 1), first);
        Assert.Equal(first, retry);
        Assert.NotSame(first, retry); // decoded from the kept bytes
        Assert.Equal(1, machine.Applied);
    }

    [Fact]
    public async Task A_malformed_session_proposal_is_refused_before_it_is_appended()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var store = new InMemoryLogStore();
        await using var node = await StartSingleAsync(time, store, new InMemorySnapshotStore(), new ListStateMachine());
        var last = store.LastIndex;
        var error = await Assert.ThrowsAsync<InvalidCommandException>(() => node.ProposeEntryAsync(EntryKind.Session, new byte[] { 2, 0 }, CancellationToken.None).AsTask().WaitAsync(Guard));
        Assert.Contains("shorter than its 9-byte header", error.Message, StringComparison.Ordinal);
        Assert.Equal(last, store.LastIndex);
    }

    [Fact]
    public async Task A_malformed_session_entry_from_a_leader_is_refused_and_a_good_one_appended()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var store = new InMemoryLogStore();
        var network = new InMemoryNetwork(1, time);
        await using var node = new RaftNode(new RaftNodeOptions
        {
            NodeId = 1,
            Members = [1, 2],
            TickInterval = NodeCluster.Tick,
            HeartbeatInterval = TimeSpan.FromMilliseconds(50),
            ElectionTimeoutMin = TimeSpan.FromSeconds(100),
            ElectionTimeoutMax = TimeSpan.FromSeconds(200),
            RandomSeed = 1,
        }, network.CreateTransport(1), store, new ListStateMachine(), timeProvider: time);
        await node.StartAsync();

        var unstamped = SessionEntry.EncodeOpen(); // no limits: a leader never appends that
        await node.DeliverAsync(new AppendEntries(2, 1, 5, 0, 0, [new LogEntry(1, 5, EntryKind.Session, unstamped)], 0));
        await node.DeliverAsync(new AppendEntries(2, 1, 5, 0, 0, [], 0)); // processed after it
        await WaitAsync(() => node.Status.LeaderId == 2, "the heartbeat");
        Assert.Equal(0, store.LastIndex);

        var stamped = SessionEntry.Stamp(unstamped, 1, new SessionOptions());
        await node.DeliverAsync(new AppendEntries(2, 1, 5, 0, 0, [new LogEntry(1, 5, EntryKind.Session, stamped)], 0));
        await WaitAsync(() => store.LastIndex == 1, "the well-formed entry appended");
    }

    [Fact]
    public void A_forwarded_request_carries_its_entry_kinds_over_the_wire()
    {
        var request = new ForwardRequest(1, 2, 3, 4, false, [new byte[] { 1 }, SessionEntry.EncodeCommand(1, 1, 1, [9])]) { Kinds = [EntryKind.Command, EntryKind.Session] };
        var frame = RawPeer.Frame(request);
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.True(MessageCodec.TryReadFrame(ref buffer, 1 << 16, out var decoded));
        var copy = (ForwardRequest)decoded;
        Assert.Equal([EntryKind.Command, EntryKind.Session], copy.Kinds);
        Assert.Equal(request.Commands[1].ToArray(), copy.Commands[1].ToArray());

        var plain = (ForwardRequest)Decode(RawPeer.Frame(request with { Kinds = null }));
        Assert.Null(plain.Kinds);

        frame[^1] = (byte)EntryKind.NoOp; // a kind that cannot be forwarded
        var bad = new ReadOnlySequence<byte>(frame);
        var error = Assert.Throws<RaftProtocolException>(() => MessageCodec.TryReadFrame(ref bad, 1 << 16, out _));
        Assert.Contains("kind 1", error.Message, StringComparison.Ordinal);
    }

    private static RaftMessage Decode(byte[] frame)
    {
        var buffer = new ReadOnlySequence<byte>(frame);
        Assert.True(MessageCodec.TryReadFrame(ref buffer, 1 << 16, out var decoded));
        return decoded;
    }

    internal static RaftNodeOptions SingleOptions(SessionOptions? sessions) => new()
    {
        NodeId = 1,
        Members = [1],
        TickInterval = NodeCluster.Tick,
        HeartbeatInterval = TimeSpan.FromMilliseconds(50),
        ElectionTimeoutMin = TimeSpan.FromMilliseconds(300),
        ElectionTimeoutMax = TimeSpan.FromMilliseconds(600),
        RandomSeed = 7,
        SnapshotInterval = 1,
        SnapshotTrailingEntries = 0,
        Sessions = sessions ?? new SessionOptions(),
    };

    internal static async Task<RaftNode> StartSingleAsync(FakeTimeProvider time, InMemoryLogStore store, InMemorySnapshotStore snapshots, IStateMachine machine, SessionOptions? sessions = null)
    {
        var node = new RaftNode(SingleOptions(sessions), new InMemoryNetwork(1, time).CreateTransport(1), store, machine, snapshots, timeProvider: time);
        await node.StartAsync();
        var real = Stopwatch.StartNew();
        while (node.Status.Role != RaftRole.Leader)
        {
            if (real.Elapsed > Guard)
                throw new TimeoutException("The single node did not become leader.");
            time.Advance(NodeCluster.Tick);
            await Task.Delay(1);
        }
        return node;
    }

    internal static async Task WaitAsync(Func<bool> condition, string what)
    {
        var real = Stopwatch.StartNew();
        while (!condition())
        {
            if (real.Elapsed > Guard)
                throw new TimeoutException($"Gave up waiting for {what}.");
            await Task.Delay(1);
        }
    }

    private sealed record Point(int X, int Y);

    private sealed class PointMachine : IStateMachine, ISessionResultSerializer
    {
        public int Applied { get; private set; }

        public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
        {
            Applied++;
            return ValueTask.FromResult<object?>(new Point(Applied, 1));
        }

        public ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public bool TryWriteResult(object? result, IBufferWriter<byte> destination)
        {
            if (result is not Point p)
                return false;
            destination.Write([(byte)p.X, (byte)p.Y]);
            return true;
        }

        public object? ReadResult(ReadOnlySpan<byte> data) => new Point(data[0], data[1]);
    }
}
