using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Raft.Testing;

namespace Raft.Tests.Node;

/// <summary>
/// A node stopped by an error says why; bad commands never reach the log; a flood of inbound bytes
/// waits instead of growing memory; messages from non-members never reach the core.
/// </summary>
public sealed class NodeHardeningTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    private static RaftNodeOptions Options(FakeTimeProvider time, int id = 1, int[]? members = null, long maxInboxBytes = RaftNodeOptions.DefaultMaxInboxBytes) => new()
    {
        NodeId = id,
        Members = members ?? [1],
        TickInterval = TimeSpan.FromMilliseconds(10),
        HeartbeatInterval = TimeSpan.FromMilliseconds(50),
        ElectionTimeoutMin = TimeSpan.FromMilliseconds(300),
        ElectionTimeoutMax = TimeSpan.FromMilliseconds(600),
        RandomSeed = 7,
        MaxInboxBytes = maxInboxBytes,
    };

    private static FakeTimeProvider NewTime() => new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    private static async Task RunUntilAsync(FakeTimeProvider time, Func<bool> condition, string what)
    {
        var real = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (real.Elapsed > Guard)
                throw new TimeoutException($"Gave up waiting for {what}.");
            time.Advance(TimeSpan.FromMilliseconds(10));
            await Task.Delay(1);
        }
    }

    private static async Task<RaftNode> StartLeaderAsync(FakeTimeProvider time, IStateMachine machine, ILogStore? store = null, ILoggerFactory? logs = null)
    {
        var node = new RaftNode(Options(time), new InMemoryNetwork(1, time).CreateTransport(1), store ?? new InMemoryLogStore(), machine, loggerFactory: logs, timeProvider: time);
        await node.StartAsync();
        await RunUntilAsync(time, () => node.Status.Role == RaftRole.Leader, "the single node to lead");
        return node;
    }

    [Fact]
    public async Task A_state_machine_that_throws_stops_the_node_and_every_later_call_says_why()
    {
        var time = NewTime();
        var logs = new CapturingLoggerFactory();
        await using var node = await StartLeaderAsync(time, new ThrowingStateMachine(), logs: logs);
        var changes = new List<RaftStateChange>();
        node.StateChanged += (_, change) =>
        {
            lock (changes)
                changes.Add(change);
        };

        var pending = node.ProposeAsync(Encoding.UTF8.GetBytes("boom")).AsTask();
        await RunUntilAsync(time, () => pending.IsCompleted, "the proposal to fail");

        // The pending proposal, the node's status, its Completion, StateChanged, the log and every
        // later call all carry the cause; nothing says "disposed".
        var failed = await Assert.ThrowsAsync<RaftNodeFaultedException>(() => pending);
        Assert.IsType<InvalidDataException>(failed.InnerException);
        Assert.IsType<InvalidDataException>(node.Status.Fault);
        var completion = await Assert.ThrowsAsync<InvalidDataException>(() => node.Completion.WaitAsync(Guard));
        Assert.Equal("the state machine cannot apply boom", completion.Message);
        lock (changes)
            Assert.Contains(changes, c => c.Fault is InvalidDataException);
        Assert.Contains(logs.Entries, e => e.Level == LogLevel.Critical && e.Exception is InvalidDataException);
        var later = Assert.Throws<RaftNodeFaultedException>(() => Discard(node.ProposeAsync(Encoding.UTF8.GetBytes("x"))));
        Assert.IsType<InvalidDataException>(later.InnerException);
        Assert.Throws<RaftNodeFaultedException>(() => Discard(node.ReadBarrierAsync()));
    }

    [Fact]
    public async Task Calls_before_StartAsync_throw_instead_of_hanging()
    {
        var time = NewTime();
        await using var node = new RaftNode(Options(time), new InMemoryNetwork(1, time).CreateTransport(1), new InMemoryLogStore(), new ListStateMachine(), timeProvider: time);

        var propose = Assert.Throws<InvalidOperationException>(() => Discard(node.ProposeAsync(Encoding.UTF8.GetBytes("x"))));
        Assert.Contains("StartAsync", propose.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => Discard(node.ReadBarrierAsync()));
        Assert.Throws<InvalidOperationException>(() => Discard(node.TransferLeadershipAsync(2)));
    }

    [Fact]
    public async Task A_command_the_validator_refuses_is_never_appended()
    {
        var time = NewTime();
        var store = new InMemoryLogStore();
        await using var node = await StartLeaderAsync(time, new ValidatingStateMachine(), store);
        var ok = node.ProposeAsync(Encoding.UTF8.GetBytes("good")).AsTask();
        await RunUntilAsync(time, () => ok.IsCompleted, "the good command");
        await ok;
        var last = store.LastIndex;

        var refused = node.ProposeAsync(Encoding.UTF8.GetBytes("bad")).AsTask();
        await RunUntilAsync(time, () => refused.IsCompleted, "the bad command's refusal");

        var error = await Assert.ThrowsAsync<InvalidCommandException>(() => refused);
        Assert.Contains("starts with 'bad'", error.Message, StringComparison.Ordinal);
        await Task.Delay(50);
        Assert.Equal(last, store.LastIndex);
        Assert.Null(node.Status.Fault);
    }

    [Fact]
    public async Task A_forged_forward_with_a_bad_command_appends_only_the_good_ones_before_it()
    {
        // Node 1 leads a 3-member configuration alone (its peers never answer): a forged
        // ForwardRequest claiming to come from member 2 holds [good, bad, good].
        var time = NewTime();
        var sent = new List<RaftMessage>();
        var transport = new CapturingTransport(sent);
        var store = new InMemoryLogStore();
        await store.SaveHardStateAsync(new HardState(5, 1, 0));
        var options = Options(time, members: [1, 2, 3]);
        await using var node = new RaftNode(options, transport, store, new ValidatingStateMachine(), timeProvider: time);
        await node.StartAsync();
        // Make it leader: grant it member 2's (pre-)votes until it leads.
        var granted = new HashSet<RequestVote>();
        await RunUntilAsync(time, () =>
        {
            RequestVote[] votes;
            lock (sent)
                votes = [.. sent.OfType<RequestVote>().Where(v => v.To == 2)];
            foreach (var vote in votes.Where(granted.Add))
                node.DeliverAsync(new RequestVoteResponse(2, 1, vote.Term, Granted: true, vote.PreVote)).AsTask().Wait(Guard);
            return node.Status.Role == RaftRole.Leader;
        }, "node 1 to lead with member 2's votes");
        await RunUntilAsync(time, () => node.Status.Role == RaftRole.Leader, "node 1 to lead");
        var before = store.LastIndex;

        await node.DeliverAsync(new ForwardRequest(2, 1, node.Status.Term, RequestId: 77, IsRead: false,
            [Encoding.UTF8.GetBytes("good 1"), Encoding.UTF8.GetBytes("bad"), Encoding.UTF8.GetBytes("good 2")]));
        ForwardResponse? answer = null;
        await RunUntilAsync(time, () =>
        {
            lock (sent)
                answer = sent.OfType<ForwardResponse>().FirstOrDefault(r => r.RequestId == 77);
            return answer is not null;
        }, "the leader's answer");

        Assert.Equal(ForwardStatus.Invalid, answer!.Status);
        Assert.Equal(1, answer.Count); // "good 1" only: the bad one and everything after it were not appended
        await RunUntilAsync(time, () => store.LastIndex >= answer.Index, "the good command to be persisted");
        await Task.Delay(50);
        var entries = new List<LogEntry>();
        store.ReadEntries(before + 1, store.LastIndex + 1, long.MaxValue, entries);
        Assert.DoesNotContain(entries, e => Encoding.UTF8.GetString(e.Data.Span) is "bad" or "good 2");
        Assert.Contains(entries, e => Encoding.UTF8.GetString(e.Data.Span) == "good 1");
    }

    [Fact]
    public async Task A_message_from_a_non_member_never_reaches_the_core()
    {
        var time = NewTime();
        await using var node = await StartLeaderAsync(time, new ListStateMachine());
        var term = node.Status.Term;

        // A heartbeat from node 9 at a much higher term would depose the leader if it got through.
        await node.DeliverAsync(new AppendEntries(9, 1, term + 1000, PrevLogIndex: 0, PrevLogTerm: 0, [], LeaderCommit: 0));
        await RunUntilAsync(time, () => true, "a round");
        time.Advance(TimeSpan.FromMilliseconds(50));
        await Task.Delay(50);

        Assert.Equal(term, node.Status.Term);
        Assert.Equal(RaftRole.Leader, node.Status.Role);
    }

    [Fact]
    public async Task DeliverAsync_waits_while_the_inbox_holds_more_than_its_byte_budget()
    {
        // Not started: nothing takes messages out, so the inbox fills.
        var time = NewTime();
        await using var node = new RaftNode(Options(time, members: [1, 2, 3], maxInboxBytes: 64 * 1024), new InMemoryNetwork(1, time).CreateTransport(1), new InMemoryLogStore(), new ListStateMachine(), timeProvider: time);
        var big = new LogEntry(1, 1, EntryKind.Command, new byte[40 * 1024]);

        var first = node.DeliverAsync(new AppendEntries(2, 1, 1, 0, 0, [big], 0));
        var second = node.DeliverAsync(new AppendEntries(2, 1, 1, 0, 0, [big], 0)).AsTask();
        var third = node.DeliverAsync(new AppendEntries(2, 1, 1, 0, 0, [big], 0)).AsTask();

        Assert.True(first.IsCompletedSuccessfully); // an empty inbox always admits one message
        await Task.Delay(100);
        Assert.False(second.IsCompleted); // 40 KiB queued, 40 more would pass 64 KiB: back-pressure
        Assert.False(third.IsCompleted);

        // The loop drains the inbox: the waiting deliveries go through.
        await node.StartAsync();
        await second.WaitAsync(Guard);
        await third.WaitAsync(Guard);
    }

    // Calls that must throw before returning a task: the task is never awaited.
    private static void Discard<T>(ValueTask<T> task) => _ = task;

    private static void Discard(Task task) => _ = task;

    [Fact]
    public async Task Pipelined_writes_stop_at_the_unpersisted_byte_budget_when_the_disk_stalls()
    {
        // A single-node leader whose disk stops completing writes: proposals keep coming, but what
        // waits for the disk stays near MaxUnpersistedBytes instead of growing with them.
        var time = NewTime();
        var store = new StallingLogStore();
        await using var node = new RaftNode(new RaftNodeOptions
        {
            NodeId = 1,
            Members = [1],
            RandomSeed = 3,
            MaxUnpersistedBytes = 64 * 1024,
        }, new InMemoryNetwork(1, time).CreateTransport(1), store, new ListStateMachine(), timeProvider: time);
        await node.StartAsync();
        await RunUntilAsync(time, () => node.Status.Role == RaftRole.Leader, "the single node to lead");
        store.Stall();

        var proposals = new List<Task<object?>>();
        for (var i = 0; i < 100; i++)
        {
            proposals.Add(node.ProposeAsync(new byte[10 * 1024]).AsTask());
            time.Advance(TimeSpan.FromMilliseconds(10));
            await Task.Delay(2);
        }
        await Task.Delay(200);

        // 1 MB proposed; at most the budget plus one round's batch is handed to the writer.
        Assert.InRange(node.UnpersistedBytes, 1, (64 * 1024) + (20 * 1024));
        store.Resume();
        await RunUntilAsync(time, () => proposals.All(p => p.IsCompleted), "the proposals to commit once the disk is back");
        Assert.All(proposals, p => Assert.True(p.IsCompletedSuccessfully));
    }

    private sealed class StallingLogStore : ILogStore
    {
        private readonly InMemoryLogStore _inner = new();
        private TaskCompletionSource? _stall;

        public void Stall() => Volatile.Write(ref _stall, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

        public void Resume() => Volatile.Read(ref _stall)?.TrySetResult();

        public HardState HardState => _inner.HardState;

        public long FirstIndex => _inner.FirstIndex;

        public long LastIndex => _inner.LastIndex;

        public bool SupportsReadsDuringAppend => true;

        public long GetTerm(long index) => _inner.GetTerm(index);

        public void ReadEntries(long startIndex, long endIndex, long maxBytes, List<LogEntry> destination) => _inner.ReadEntries(startIndex, endIndex, maxBytes, destination);

        public async ValueTask AppendAsync(IReadOnlyList<LogEntry> entries, CancellationToken cancellationToken = default)
        {
            if (Volatile.Read(ref _stall) is { } stall)
                await stall.Task.WaitAsync(cancellationToken);
            await _inner.AppendAsync(entries, cancellationToken);
        }

        public ValueTask SaveHardStateAsync(HardState state, CancellationToken cancellationToken = default) => _inner.SaveHardStateAsync(state, cancellationToken);

        public ValueTask CompactAsync(long index, CancellationToken cancellationToken = default) => _inner.CompactAsync(index, cancellationToken);

        public ValueTask ResetAsync(long index, long term, CancellationToken cancellationToken = default) => _inner.ResetAsync(index, term, cancellationToken);
    }

    private sealed class ThrowingStateMachine : IStateMachine
    {
        public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default) =>
            throw new InvalidDataException("the state machine cannot apply " + Encoding.UTF8.GetString(entry.Data.Span));

        public ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
    }

    private sealed class ValidatingStateMachine : IStateMachine, ICommandValidator
    {
        public bool TryValidate(ReadOnlySpan<byte> command, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
        {
            error = command.StartsWith("bad"u8) ? "the command starts with 'bad'" : null;
            return error is null;
        }

        public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default) =>
            entry.Data.Span.StartsWith("bad"u8) ? throw new InvalidDataException("a bad command was applied") : ValueTask.FromResult<object?>(null);

        public ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
    }

    private sealed class CapturingTransport(List<RaftMessage> sent) : ITransport
    {
        public ValueTask StartAsync(int localId, RaftMessageHandler handler, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public void Send(RaftMessage message)
        {
            lock (sent)
                sent.Add(message);
        }

        public ValueTask StopAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
    }

    internal sealed class CapturingLoggerFactory : ILoggerFactory
    {
        private readonly List<(LogLevel Level, string Message, Exception? Exception)> _entries = [];

        public IReadOnlyList<(LogLevel Level, string Message, Exception? Exception)> Entries
        {
            get
            {
                lock (_entries)
                    return [.. _entries];
            }
        }

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }

        private sealed class Logger(CapturingLoggerFactory owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (owner._entries)
                    owner._entries.Add((logLevel, formatter(state, exception), exception));
            }
        }
    }
}
