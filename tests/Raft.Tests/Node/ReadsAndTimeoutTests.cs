using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Text;
using Raft.Tests.Typed;

namespace Raft.Tests.Node;

/// <summary>
/// <see cref="RaftNode.QueryAsync{TState, TResult}"/>, <see cref="RaftNode.WaitForAppliedAsync"/>,
/// and the default timeouts (<see cref="RaftNodeOptions.ProposalTimeout"/>,
/// <see cref="RaftNodeOptions.ReadTimeout"/>), on a fake clock.
/// </summary>
public sealed class ReadsAndTimeoutTests
{
    private static ReadOnlyMemory<byte> Command(string text) => Encoding.UTF8.GetBytes(text);

    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A state machine whose applies and validations can be held at a gate, to pin what runs
    /// concurrently with what. <see cref="Applied"/> is touched only by the apply loop (no lock: a
    /// query that ran concurrently would see a half-done apply, which is what the tests look for).
    /// </summary>
    private sealed class GatedMachine : IStateMachine, ICommandValidator
    {
        public List<string> Applied { get; } = [];

        public bool Applying { get; private set; }

        public ConcurrentDictionary<string, (TaskCompletionSource Entered, TaskCompletionSource Release)> ApplyGates { get; } = new();

        public string? ValidationBlocks { get; set; }

        public TaskCompletionSource ValidationEntered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ManualResetEventSlim ValidationRelease { get; } = new();

        public (TaskCompletionSource Entered, TaskCompletionSource Release) HoldApply(string command) =>
            ApplyGates.GetOrAdd(command, _ => (new(TaskCreationOptions.RunContinuationsAsynchronously), new(TaskCreationOptions.RunContinuationsAsynchronously)));

        public async ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
        {
            var command = Encoding.UTF8.GetString(entry.Data.Span);
            Applying = true;
            if (ApplyGates.TryGetValue(command, out var gate))
            {
                gate.Entered.TrySetResult();
                await gate.Release.Task.WaitAsync(cancellationToken);
            }
            Applied.Add(command);
            Applying = false;
            return (long)Applied.Count;
        }

        public bool TryValidate(ReadOnlySpan<byte> command, [NotNullWhen(false)] out string? error)
        {
            error = null;
            if (ValidationBlocks is { } blocks && Encoding.UTF8.GetString(command) == blocks)
            {
                // Holds the node's event loop (a test-only stall: a slow disk would do the same).
                ValidationEntered.TrySetResult();
                ValidationRelease.Wait(Guard);
            }
            return true;
        }

        public ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
    }

    private static async Task PollAsync(Func<bool> condition)
    {
        using var guard = new CancellationTokenSource(Guard);
        while (!condition())
            await Task.Delay(1, guard.Token);
    }

    // ------------------------------------------------------------------ QueryAsync

    // The query runs on the apply loop after everything queued for it before the query: here an
    // apply that is held at a gate when the read barrier has already passed. A query run on the
    // caller's thread right after the barrier would read the state while that apply is held.
    [Fact]
    public async Task QueryAsync_runs_on_the_apply_loop_between_applies()
    {
        var machine = new GatedMachine();
        await using var nodes = await TestNodes.StartAsync(1, _ => machine);
        var node = await nodes.LeaderAsync();
        var first = machine.HoldApply("first");
        var second = machine.HoldApply("second");

        var proposeFirst = node.ProposeAsync(Command("first")).AsTask();
        await first.Entered.Task.WaitAsync(Guard); // the apply loop is inside "first"
        var query = node.QueryAsync((GatedMachine m) => (Applying: m.Applying, Applied: string.Join(",", m.Applied)));
        var proposeSecond = node.ProposeAsync(Command("second")).AsTask();
        // "second" committed: queued for the apply loop behind the read's release, before the query.
        await PollAsync(() => node.Status.CommitIndex >= 3); // the no-op, "first", "second"
        first.Release.TrySetResult(); // the barrier passes, then "second" is applied and held
        await second.Entered.Task.WaitAsync(Guard);
        await Task.WhenAny(query, Task.Delay(300)); // a query that does not wait for "second" would be done by now
        second.Release.TrySetResult();

        var seen = await query.WaitAsync(Guard);
        Assert.True(seen.Applied == "first,second", $"the query saw [{seen.Applied}], applying: {seen.Applying}");
        Assert.False(seen.Applying);
        Assert.Equal("first,second", seen.Applied);
        Assert.Equal(1L, await proposeFirst.WaitAsync(Guard));
        Assert.Equal(2L, await proposeSecond.WaitAsync(Guard));
    }

    [Fact]
    public async Task QueryAsync_hands_the_querys_exception_to_the_caller_and_the_node_goes_on()
    {
        var machine = new GatedMachine();
        await using var nodes = await TestNodes.StartAsync(1, _ => machine);
        var node = await nodes.LeaderAsync();

        var failed = node.QueryAsync<GatedMachine, int>(_ => throw new FormatException("bad query"));
        Assert.Equal("bad query", (await Assert.ThrowsAsync<FormatException>(() => failed.WaitAsync(Guard))).Message);

        Assert.Equal(1L, await node.ProposeAsync(Command("a")).AsTask().WaitAsync(Guard));
        Assert.Equal(1, await node.QueryAsync((GatedMachine m) => m.Applied.Count).WaitAsync(Guard));
    }

    [Fact]
    public async Task QueryAsync_with_another_state_type_says_which_type_the_node_has()
    {
        await using var nodes = await TestNodes.StartAsync(1, _ => new GatedMachine());
        var node = await nodes.LeaderAsync();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => node.QueryAsync((ListStateMachine m) => m.LastIndex));
        Assert.Contains("GatedMachine", error.Message);
        Assert.Contains("ListStateMachine", error.Message);
    }

    [Fact]
    public async Task QueryAsync_on_a_follower_sees_the_leaders_acknowledged_write()
    {
        await using var nodes = await TestNodes.StartAsync(3, _ => new ListStateMachine(), o => o with { ForwardToLeader = true });
        var leader = await nodes.LeaderAsync();
        var follower = nodes.Nodes.Values.First(n => n != leader);
        await nodes.RunAsync(leader.ProposeAsync(Command("w")).AsTask(), "the write");

        var read = await nodes.RunAsync(follower.QueryAsync((ListStateMachine m) => m.Commands), "the follower's query");

        Assert.Equal(["w"], await read);
    }

    // ------------------------------------------------------------------ WaitForAppliedAsync

    [Fact]
    public async Task WaitForAppliedAsync_completes_once_the_follower_has_applied_the_index()
    {
        var machines = new Dictionary<int, ListStateMachine>();
        await using var nodes = await TestNodes.StartAsync(3, id => machines[id] = new ListStateMachine());
        var leader = await nodes.LeaderAsync();
        var follower = nodes.Nodes.Values.First(n => n != leader);
        var next = leader.Status.CommitIndex + 1;

        var wait = follower.WaitForAppliedAsync(next);
        await nodes.RunUntilAsync(() => follower.Status.AppliedIndex == next - 1, "the follower to catch up");
        await Task.Delay(50);
        Assert.False(wait.IsCompleted); // nothing at that index yet

        await nodes.RunAsync(leader.ProposeAsync(Command("x")).AsTask(), "the write");
        await nodes.RunAsync(wait, "the follower to apply it");

        await wait;
        Assert.True(follower.Status.AppliedIndex >= next);
        Assert.Equal(["x"], machines[follower.Id].Commands);
        await follower.WaitForAppliedAsync(next).WaitAsync(Guard); // already applied: at once
    }

    [Fact]
    public async Task WaitForAppliedAsync_for_an_index_that_never_comes_fails_after_ReadTimeout()
    {
        await using var nodes = await TestNodes.StartAsync(1, _ => new ListStateMachine(), o => TestNodes.With(o, readTimeout: TimeSpan.FromSeconds(2)));
        var node = await nodes.LeaderAsync();

        var wait = node.WaitForAppliedAsync(1_000);
        var took = await nodes.RunUntilAsync(() => wait.IsCompleted, "the wait to time out");

        var error = await Assert.ThrowsAsync<RaftTimeoutException>(() => wait);
        Assert.True(error.OutcomeKnown);
        Assert.True(took >= TimeSpan.FromSeconds(2) - TestNodes.Tick, $"timed out after {took}, before ReadTimeout");
    }

    // ------------------------------------------------------------------ timeouts

    // The issue's case: a proposal on a leader that lost its majority used to wait until the
    // partition healed. It was appended, so it may still commit: the outcome is unknown.
    [Fact]
    public async Task A_proposal_on_a_leader_cut_off_from_its_majority_fails_after_ProposalTimeout_with_an_unknown_outcome()
    {
        await using var nodes = await TestNodes.StartAsync(3, _ => new ListStateMachine(), o => TestNodes.With(o, proposalTimeout: TimeSpan.FromSeconds(3)));
        var leader = await nodes.LeaderAsync();
        nodes.Network.Isolate(leader.Id);

        var proposal = leader.ProposeAsync(Command("lost")).AsTask();
        var took = await nodes.RunUntilAsync(() => proposal.IsCompleted, "the proposal to time out");

        var error = await Assert.ThrowsAsync<RaftTimeoutException>(() => proposal);
        Assert.False(error.OutcomeKnown);
        Assert.Contains("may still commit", error.Message);
        Assert.True(took >= TimeSpan.FromSeconds(3) - TestNodes.Tick, $"timed out after {took}, before ProposalTimeout");
    }

    // A proposal still in the inbox when its deadline passes (here the event loop is held inside the
    // validator of the proposal before it) is never appended: its outcome is known.
    [Fact]
    public async Task A_proposal_whose_deadline_passed_before_it_was_appended_fails_with_a_known_outcome_and_never_applies()
    {
        var machine = new GatedMachine { ValidationBlocks = "stall" };
        await using var nodes = await TestNodes.StartAsync(1, _ => machine, o => TestNodes.With(o, proposalTimeout: TimeSpan.FromSeconds(1)));
        var node = await nodes.LeaderAsync();

        var stall = node.ProposeAsync(Command("stall")).AsTask();
        await machine.ValidationEntered.Task.WaitAsync(Guard); // the event loop is held
        var late = node.ProposeAsync(Command("late")).AsTask();
        nodes.Time.Advance(TimeSpan.FromSeconds(2));
        machine.ValidationRelease.Set();

        var error = await Assert.ThrowsAsync<RaftTimeoutException>(() => late.WaitAsync(Guard));
        Assert.True(error.OutcomeKnown);
        await nodes.RunAsync(node.ProposeAsync(Command("after")).AsTask(), "a later proposal");
        await nodes.RunUntilAsync(() => stall.IsCompleted, "the stalled proposal");
        Assert.Equal(["stall", "after"], await node.QueryAsync((GatedMachine m) => m.Applied.ToArray()).WaitAsync(Guard));
    }

    // Without CheckQuorum the cut-off leader keeps leading, and its read round is never confirmed.
    [Fact]
    public async Task A_read_barrier_that_cannot_be_confirmed_fails_after_ReadTimeout()
    {
        await using var nodes = await TestNodes.StartAsync(3, _ => new ListStateMachine(), o => TestNodes.With(o, readTimeout: TimeSpan.FromSeconds(2), checkQuorum: false));
        var leader = await nodes.LeaderAsync();
        nodes.Network.Isolate(leader.Id);

        var read = leader.ReadBarrierAsync();
        await nodes.RunUntilAsync(() => read.IsCompleted, "the read to time out");

        var error = await Assert.ThrowsAsync<RaftTimeoutException>(() => read);
        Assert.True(error.OutcomeKnown);
        Assert.Equal(RaftRole.Leader, leader.Status.Role);
    }

    [Fact]
    public void Timeouts_are_finite_by_default_and_must_be_positive_or_infinite()
    {
        var defaults = new RaftNodeOptions { NodeId = 1, Members = [1] };
        Assert.Equal(TimeSpan.FromSeconds(30), defaults.ProposalTimeout);
        Assert.Equal(TimeSpan.FromSeconds(10), defaults.ReadTimeout);

        Assert.Throws<ArgumentOutOfRangeException>(new RaftNodeOptions { NodeId = 1, Members = [1], ProposalTimeout = TimeSpan.Zero }.Validate);
        Assert.Throws<ArgumentOutOfRangeException>(new RaftNodeOptions { NodeId = 1, Members = [1], ReadTimeout = TimeSpan.FromSeconds(-2) }.Validate);
        new RaftNodeOptions { NodeId = 1, Members = [1], ProposalTimeout = Timeout.InfiniteTimeSpan, ReadTimeout = Timeout.InfiniteTimeSpan }.Validate();
    }

    // ------------------------------------------------------------------ lease reads through the node

    [Fact]
    public async Task With_lease_reads_a_leader_answers_reads_and_queries_correctly()
    {
        var machines = new Dictionary<int, ListStateMachine>();
        await using var nodes = await TestNodes.StartAsync(3, id => machines[id] = new ListStateMachine(), o => TestNodes.With(o, leaseReads: true));
        var leader = await nodes.LeaderAsync();
        await nodes.RunAsync(leader.ProposeAsync(Command("a")).AsTask(), "the write");

        var read = await nodes.RunAsync(leader.QueryAsync((ListStateMachine m) => m.Commands), "the query");

        Assert.Equal(["a"], await read);
    }
}

/// <summary>
/// A lease is measured on the clock, not on how many timer callbacks arrived: a leader whose timer
/// is starved (a saturated thread pool) while its clock moves on must not serve a read from a lease
/// that ran out long ago.
/// </summary>
public sealed class LeaseClockTests
{
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(10);

    /// <summary>A clock moved by hand whose timers fire, once per step, only when the test lets them.</summary>
    private sealed class StarvableClock : TimeProvider
    {
        private readonly List<ManualTimer> _timers = [];
        private long _now;

        public object? Starved { get; set; }

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Interlocked.Read(ref _now);

        public override DateTimeOffset GetUtcNow() => new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero).AddTicks(GetTimestamp());

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = new ManualTimer(callback, state);
            lock (_timers)
                _timers.Add(timer);
            return timer;
        }

        public void Step()
        {
            Interlocked.Add(ref _now, Tick.Ticks);
            ManualTimer[] timers;
            lock (_timers)
                timers = [.. _timers];
            foreach (var timer in timers)
            {
                if (!timer.Disposed && timer.State != Starved)
                    timer.Callback(timer.State);
            }
        }

        private sealed class ManualTimer(TimerCallback callback, object? state) : ITimer
        {
            public TimerCallback Callback { get; } = callback;

            public object? State { get; } = state;

            public bool Disposed { get; private set; }

            public bool Change(TimeSpan dueTime, TimeSpan period) => true;

            public void Dispose() => Disposed = true;

            public ValueTask DisposeAsync()
            {
                Disposed = true;
                return ValueTask.CompletedTask;
            }
        }
    }

    private static async Task RunUntilAsync(StarvableClock clock, Func<bool> condition, string what)
    {
        for (var step = 0; !condition(); step++)
        {
            if (step > 6000)
                throw new TimeoutException($"Gave up waiting for {what}.");
            clock.Step();
            await Task.Delay(1);
        }
    }

    [Fact]
    public async Task A_leader_whose_timer_is_starved_serves_no_read_from_a_lease_its_clock_says_ran_out()
    {
        var clock = new StarvableClock();
        var network = new Raft.Testing.InMemoryNetwork(seed: 3);
        int[] members = [1, 2, 3];
        var machines = members.ToDictionary(id => id, _ => new ListStateMachine());
        var nodes = members.Select(id => new RaftNode(
            new RaftNodeOptions
            {
                NodeId = id, Members = members, TickInterval = Tick, RandomSeed = id, LeaseReads = true,
            },
            network.CreateTransport(id), new Raft.Testing.InMemoryLogStore(), machines[id], timeProvider: clock)).ToList();
        try
        {
            foreach (var node in nodes)
                await node.StartAsync();
            await RunUntilAsync(clock, () => nodes.Count(n => n.Status.Role == RaftRole.Leader) == 1 && nodes.All(n => n.Status.CommitIndex >= 1), "a leader");
            var old = nodes.Single(n => n.Status.Role == RaftRole.Leader);
            for (var i = 0; i < 10; i++) // heartbeats acknowledged: a fresh lease
            {
                clock.Step();
                await Task.Delay(1);
            }

            // The old leader is cut off and its timer starves while the clock runs on; the others
            // elect a new leader and commit a write.
            network.Isolate(old.Id);
            clock.Starved = old;
            await RunUntilAsync(clock, () => nodes.Any(n => n != old && n.Status.Role == RaftRole.Leader), "a new leader");
            var fresh = nodes.Single(n => n != old && n.Status.Role == RaftRole.Leader);
            var write = fresh.ProposeAsync(Encoding.UTF8.GetBytes("x")).AsTask();
            await RunUntilAsync(clock, () => write.IsCompleted, "the new leader's write");
            await write;
            for (var i = 0; i < 100; i++) // another second: two quorum checks' worth of silence
                clock.Step();

            // Still starved, the clock still: the read is decided by the clock alone. The old leader
            // counts the time that passed, finds it lost its majority long ago and steps down.
            var read = old.QueryAsync((ListStateMachine m) => m.Commands);
            var error = await Record.ExceptionAsync(() => read.WaitAsync(TimeSpan.FromSeconds(30)));

            Assert.True(error is NotLeaderException, $"the old leader answered a read with its lease run out: {(error is null ? "[" + string.Join(",", await read) + "], without x" : error.GetType().Name)}");
        }
        finally
        {
            foreach (var node in nodes)
                await node.DisposeAsync();
        }
    }
}
