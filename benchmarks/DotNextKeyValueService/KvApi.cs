using System.Net;
using DotNext.Net.Cluster.Consensus.Raft;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Raft.Benchmarks.KeyValueServices;

/// <summary>
/// The HTTP routes: PUT, GET, DELETE <c>/kv/{key}</c>, POST <c>/kv/{key}/cas</c>, GET <c>/status</c>.
/// Writes are replicated on the leader (<see cref="RaftClusterExtensions.ReplicateAsync(IRaftCluster, ReadOnlyMemory{byte}, object?, CancellationToken)"/>);
/// a follower relays them to the leader over HTTP. Reads are served by any node after DotNext's read barrier.
/// </summary>
internal sealed class KvApi(int id, RaftCluster cluster, WriteAheadLog wal, KvStateMachine stateMachine, LeaderForwarder forwarder, SortedDictionary<int, IPEndPoint> peers)
{
    /// <summary>How long a write may wait for its commit, or a read for its barrier.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    private bool IsLeader => !cluster.LeadershipToken.IsCancellationRequested;

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/kv/{key}", GetAsync);
        app.MapPut("/kv/{key}", async (string key, HttpContext context) =>
        {
            if (KvHttp.CheckKey(key) is { } bad)
            {
                await KvHttp.ErrorAsync(context, 400, bad);
                return;
            }
            if (await KvHttp.ReadValueAsync(context) is not { } value)
                return;
            if (IsLeader)
                await ReplicateAsync(context, KvStateMachine.Encode(KvStateMachine.Put, key, value), null);
            else
                await ForwardAsync(context, HttpMethod.Put, $"/kv/{Uri.EscapeDataString(key)}", value, null);
        });
        app.MapDelete("/kv/{key}", async (string key, HttpContext context) =>
        {
            if (KvHttp.CheckKey(key) is { } bad)
            {
                await KvHttp.ErrorAsync(context, 400, bad);
                return;
            }
            if (IsLeader)
                await ReplicateAsync(context, KvStateMachine.Encode(KvStateMachine.Delete, key, []), null);
            else
                await ForwardAsync(context, HttpMethod.Delete, $"/kv/{Uri.EscapeDataString(key)}", [], null);
        });
        app.MapPost("/kv/{key}/cas", async (string key, HttpContext context) =>
        {
            if (KvHttp.CheckKey(key) is { } bad)
            {
                await KvHttp.ErrorAsync(context, 400, bad);
                return;
            }
            var contentType = context.Request.ContentType;
            if (await KvHttp.ReadCasAsync(context) is not { } cas)
                return;
            if (!IsLeader)
            {
                // The body was checked here; the leader parses it again from the same JSON.
                var json = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string?>
                {
                    ["expected"] = cas.Expected is null ? null : System.Text.Encoding.UTF8.GetString(cas.Expected),
                    ["value"] = System.Text.Encoding.UTF8.GetString(cas.Value),
                });
                await ForwardAsync(context, HttpMethod.Post, $"/kv/{Uri.EscapeDataString(key)}/cas", json, contentType);
                return;
            }
            var waiter = new TaskCompletionSource<CasOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
            await ReplicateAsync(context, KvStateMachine.EncodeCas(key, cas), waiter);
        });
        app.MapGet("/status", Status);
    }

    private async Task GetAsync(string key, HttpContext context)
    {
        if (KvHttp.CheckKey(key) is { } bad)
        {
            await KvHttp.ErrorAsync(context, 400, bad);
            return;
        }
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        deadline.CancelAfter(Timeout);
        try
        {
            // Strong: the leader confirms its leadership with a replication round to a majority; a
            // follower asks the leader for its commit index and waits until it has applied that far.
            await cluster.ApplyReadBarrierAsync(ReadBarrierType.Strong, deadline.Token);
        }
        catch (Exception ex) when (ex is QuorumUnreachableException or InvalidOperationException
            || (ex is OperationCanceledException && !context.RequestAborted.IsCancellationRequested))
        {
            await KvHttp.ErrorAsync(context, StatusCodes.Status503ServiceUnavailable, $"the read could not be confirmed: {ex.GetType().Name}: {ex.Message}");
            return;
        }
        if (stateMachine.Store.TryGetValue(key, out var value))
            await KvHttp.ValueAsync(context, value);
        else
            await KvHttp.ErrorAsync(context, StatusCodes.Status404NotFound, $"no key '{key}'");
    }

    private Task ForwardAsync(HttpContext context, HttpMethod method, string path, byte[] body, string? contentType) =>
        context.Request.Headers.ContainsKey(LeaderForwarder.ForwardedHeader)
            ? KvHttp.ErrorAsync(context, StatusCodes.Status503ServiceUnavailable, $"node {id} is not the leader either (forwarding is one hop)")
            : forwarder.ForwardAsync(context, method, path, body, contentType);

    /// <summary>
    /// Appends the command on this leader and waits for its commit: 204 (a CAS: 204 swapped, 409 not, once applied);
    /// 503 when this node is no longer the leader before anything was appended; 504 no commit within
    /// <see cref="Timeout"/>, 500 any other failure after the append (outcome unknown).
    /// </summary>
    private async Task ReplicateAsync(HttpContext context, byte[] command, TaskCompletionSource<CasOutcome>? waiter)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        deadline.CancelAfter(Timeout);
        try
        {
            await cluster.ReplicateAsync(command, waiter, deadline.Token);
            if (waiter is not null)
            {
                var outcome = await waiter.Task.WaitAsync(deadline.Token);
                if (!outcome.Swapped)
                {
                    await KvHttp.ConflictAsync(context, outcome.Current);
                    return;
                }
            }
            context.Response.StatusCode = StatusCodes.Status204NoContent;
        }
        catch (NotLeaderException ex)
        {
            // Thrown before appending when this node is not (or no longer) the leader.
            await KvHttp.ErrorAsync(context, StatusCodes.Status503ServiceUnavailable, $"node {id} is not the leader: {ex.Message}");
        }
        catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
        {
            await KvHttp.ErrorAsync(context, StatusCodes.Status504GatewayTimeout, $"not committed within {Timeout.TotalSeconds:0} s: outcome unknown");
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            await KvHttp.ErrorAsync(context, StatusCodes.Status500InternalServerError, $"outcome unknown: {ex.GetType().Name}: {ex.Message}");
        }
    }

    private IResult Status()
    {
        var leaderId = forwarder.LeaderId;
        return Results.Json(new Dictionary<string, object?>
        {
            ["id"] = id,
            ["role"] = IsLeader ? "leader" : "follower",
            ["term"] = cluster.Term,
            ["leaderId"] = leaderId,
            ["commitIndex"] = wal.LastCommittedEntryIndex,
            ["lastApplied"] = stateMachine.LastApplied,
            ["lastLogIndex"] = wal.LastEntryIndex,
            ["keys"] = stateMachine.Store.Count,
            ["members"] = peers.Count,
            ["failure"] = null,
            ["service"] = "dotnext",
        });
    }
}
