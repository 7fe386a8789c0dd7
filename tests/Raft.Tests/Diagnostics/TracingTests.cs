using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;

namespace Raft.Tests.Diagnostics;

/// <summary>
/// The spans of <see cref="RaftTelemetry.ActivitySourceName"/>: propose and read barrier on the
/// caller's side, forward on the follower with its W3C trace context carried to the leader, whose
/// span is its child, and the log append.
/// </summary>
[Collection(nameof(TelemetryCollection))]
public sealed class TracingTests
{
    private static ReadOnlyMemory<byte> Command(string text) => Encoding.UTF8.GetBytes(text);

    // Every ForwardRequest the cluster's network carries from now on (all messages still pass).
    private static ConcurrentQueue<ForwardRequest> RecordForwardRequests(TelemetryCluster cluster)
    {
        var sent = new ConcurrentQueue<ForwardRequest>();
        cluster.Network.SetFilter(m =>
        {
            if (m is ForwardRequest request)
                sent.Enqueue(request);
            return true;
        });
        return sent;
    }

    [Fact]
    public async Task A_forwarded_proposal_is_one_trace_from_the_callers_span_to_the_leaders()
    {
        using var spans = new SpanRecorder();
        await using var cluster = await TelemetryCluster.StartAsync(forwardToLeader: true);
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();
        var sent = RecordForwardRequests(cluster);

        Task<object?> proposal;
        ActivityContext caller;
        using (var parent = SpanRecorder.TestSource.StartActivity("test.request"))
        {
            caller = parent!.Context;
            proposal = follower.ProposeAsync(Command("traced")).AsTask();
            // The node's span does not stay the caller's current one.
            Assert.Same(parent, Activity.Current);
        }
        await cluster.RunAsync(proposal, "a traced forwarded proposal");

        var propose = Assert.Single(spans.Stopped("raft.propose"));
        Assert.Equal(caller.SpanId, propose.ParentSpanId);
        Assert.Equal(caller.TraceId, propose.TraceId);
        Assert.Equal(follower.Id, propose.GetTagItem("raft.node.id"));
        Assert.Equal(ActivityStatusCode.Unset, propose.Status);

        var forward = Assert.Single(spans.Stopped("raft.forward"));
        Assert.Equal(ActivityKind.Client, forward.Kind);
        Assert.Equal(propose.SpanId, forward.ParentSpanId);
        Assert.Equal(caller.TraceId, forward.TraceId);
        Assert.Equal(leader.Id, forward.GetTagItem("raft.peer.id"));
        Assert.Equal("Accepted", forward.GetTagItem("raft.forward.status"));

        // The request carried the forward span as its W3C traceparent...
        var request = Assert.Single(sent);
        Assert.Equal(forward.Id, request.TraceParent);
        Assert.Equal($"00-{forward.TraceId}-{forward.SpanId}-01", request.TraceParent);

        // ...so the leader's span is its child, in the same trace.
        var handled = Assert.Single(spans.Stopped("raft.forward.handle"));
        Assert.Equal(ActivityKind.Server, handled.Kind);
        Assert.Equal(forward.SpanId, handled.ParentSpanId);
        Assert.Equal(caller.TraceId, handled.TraceId);
        Assert.Equal(leader.Id, handled.GetTagItem("raft.node.id"));
        Assert.Equal(follower.Id, handled.GetTagItem("raft.peer.id"));
    }

    [Fact]
    public async Task A_forwarded_read_barrier_is_traced_to_the_leader_too()
    {
        using var spans = new SpanRecorder();
        await using var cluster = await TelemetryCluster.StartAsync(forwardToLeader: true);
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();

        await cluster.RunAsync(follower.ReadBarrierAsync(), "a traced forwarded read");

        var read = Assert.Single(spans.Stopped("raft.read_barrier"));
        var forward = Assert.Single(spans.Stopped("raft.forward"));
        Assert.Equal("read", forward.GetTagItem("raft.forward.kind"));
        Assert.Equal(read.SpanId, forward.ParentSpanId);
        Assert.Equal(forward.SpanId, Assert.Single(spans.Stopped("raft.forward.handle")).ParentSpanId);
    }

    [Fact]
    public async Task A_failed_call_ends_its_span_with_an_error_status()
    {
        using var spans = new SpanRecorder();
        await using var cluster = await TelemetryCluster.StartAsync(); // no forwarding: followers refuse
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();

        await Assert.ThrowsAsync<NotLeaderException>(() => follower.ProposeAsync(Command("x")).AsTask());
        await Assert.ThrowsAsync<NotLeaderException>(() => follower.ReadBarrierAsync());

        var propose = Assert.Single(spans.Stopped("raft.propose"));
        Assert.Equal(ActivityStatusCode.Error, propose.Status);
        Assert.StartsWith("NotLeaderException", propose.StatusDescription, StringComparison.Ordinal);
        Assert.Equal(ActivityStatusCode.Error, Assert.Single(spans.Stopped("raft.read_barrier")).Status);
    }

    [Fact]
    public async Task The_log_append_is_a_span_with_the_entries_it_persisted()
    {
        using var spans = new SpanRecorder();
        await using var cluster = await TelemetryCluster.StartAsync();
        var leader = await cluster.LeaderAsync();

        await cluster.RunAsync(leader.ProposeAsync(Command("a")).AsTask(), "a proposal");
        await cluster.RunUntilAsync(() => cluster.Machines.Values.All(m => m.Commands.Length == 1), "every node to apply it");

        var appends = spans.Stopped("raft.append");
        // The leader and both followers persisted the command's entry (index 2, after the leader's no-op).
        foreach (var node in cluster.Nodes)
        {
            Assert.Contains(appends, a => Equals(a.GetTagItem("raft.node.id"), node.Id)
                && a.GetTagItem("raft.log.first_index") is long first && a.GetTagItem("raft.log.last_index") is long last
                && first <= 2 && last >= 2 && (int)a.GetTagItem("raft.log.entries")! == last - first + 1);
        }
    }

    [Fact]
    public async Task Without_a_listener_nothing_is_traced_and_no_trace_context_is_sent()
    {
        await using var cluster = await TelemetryCluster.StartAsync(forwardToLeader: true);
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();
        var sent = RecordForwardRequests(cluster);

        await cluster.RunAsync(follower.ProposeAsync(Command("untraced")).AsTask(), "an untraced forwarded proposal");

        using var probe = new ActivitySource(RaftTelemetry.ActivitySourceName);
        Assert.False(probe.HasListeners());
        Assert.Null(Assert.Single(sent).TraceParent);
    }
}

/// <summary>A host's <see cref="ActivityListener"/> that throws must not stop a node or fail its callers.</summary>
[Collection(nameof(TelemetryCollection))]
public sealed class ThrowingListenerTests
{
    [Theory]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public async Task A_listener_that_throws_on_start_or_stop_leaves_the_node_working(bool throwOnStart, bool throwOnStop)
    {
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == RaftTelemetry.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStarted = _ =>
            {
                if (throwOnStart)
                    throw new InvalidOperationException("listener bug on start");
            },
            ActivityStopped = _ =>
            {
                if (throwOnStop)
                    throw new InvalidOperationException("listener bug on stop");
            },
        };
        ActivitySource.AddActivityListener(listener);
        await using var cluster = await TelemetryCluster.StartAsync(forwardToLeader: true);
        var leader = await cluster.LeaderAsync();
        var follower = cluster.Followers(leader).First();

        // Proposals (the leader's append span, a follower's forward spans) and reads all go through.
        for (var i = 0; i < 3; i++)
        {
            await cluster.RunAsync(leader.ProposeAsync(Encoding.UTF8.GetBytes("on the leader " + i)).AsTask(), "a proposal on the leader");
            await cluster.RunAsync(follower.ProposeAsync(Encoding.UTF8.GetBytes("through a follower " + i)).AsTask(), "a forwarded proposal");
            await cluster.RunAsync(follower.ReadBarrierAsync().ContinueWith(t => { t.GetAwaiter().GetResult(); return 0; }, TaskScheduler.Default), "a forwarded read");
        }
        foreach (var node in cluster.Nodes)
            Assert.Null(node.Status.Fault);
    }
}
