using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.Features;

namespace Raft.Samples.KeyValueStore;

/// <summary>
/// The HTTP API of one node (DESIGN.md §8): <c>PUT|GET|DELETE /kv/{key}</c>,
/// <c>POST /kv/{key}/cas</c>, <c>GET /status</c>, plus <c>GET /cluster</c> (every node's status,
/// gathered by this node) and <c>GET /</c> (the status page).
/// </summary>
/// <remarks>
/// <para>Input is checked on the node that receives the request, before anything is submitted or
/// forwarded: a bad key or body is a 4xx with a JSON <c>{"error": ...}</c> message and changes
/// nothing.</para>
/// <para>Writes and reads go through the leader. By default (<see cref="ForwardMode.Raft"/>) a
/// follower's <see cref="RaftNode"/> hands them to the leader over the Raft transport and the
/// follower answers from its own copy once it has applied the write (or the leader's read index).
/// With <see cref="ForwardMode.Http"/> a follower forwards the request to the leader's HTTP address
/// and relays the answer (one hop: a forwarded request that reaches a node which is not the leader
/// either is answered 503). Status codes: 503 + <c>Retry-After</c> means nothing was
/// submitted (no leader, leader unreachable, busy, shutting down); 500/502/504 on a write mean its
/// outcome is unknown or it was dropped (the message says which).</para>
/// </remarks>
internal sealed partial class KvApi
{
    /// <summary>The header a node adds to a request it forwards to the leader: the forwarding node's id.</summary>
    public const string ForwardedHeader = "X-Raft-Forwarded-By";

    /// <summary>The header on every answer: the id of the node that produced it (the leader's, when forwarded).</summary>
    public const string NodeHeader = "X-Raft-Node";

    /// <summary>
    /// The header that makes a write exactly-once: <c>{clientId}:{sequence}</c>, a session from
    /// <c>POST /sessions</c> and the client's number for this write. A retry with the same value,
    /// through any node, is applied at most once and answered with the first result.
    /// </summary>
    public const string IdempotencyKeyHeader = "Idempotency-Key";

    private const string RetryAfterSeconds = "1";
    private const string Routes = "GET /, GET /status, GET /cluster, GET|PUT|DELETE /kv/{key}, POST /kv/{key}/cas, POST /kv/{key}/incr, POST /sessions, GET|POST /cluster/members";
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    private static readonly TimeSpan StatusTimeout = TimeSpan.FromSeconds(1.5);
    private static readonly Lazy<byte[]> Page = new(LoadPage);

    private readonly KvNode _node;

    private KvApi(KvNode node) => _node = node;

    public static void Map(WebApplication app, KvNode node)
    {
        var api = new KvApi(node);
        var guard = new RequestGuard(node.Options);
        // Outermost, so that every answer has it, error pages included (Kestrel's own bare 400s for
        // unparsable requests aside: they have no body to sniff).
        app.Use((context, next) =>
        {
            context.Response.OnStarting(static state =>
            {
                ((HttpResponse)state).Headers.XContentTypeOptions = "nosniff";
                return Task.CompletedTask;
            }, context.Response);
            return next(context);
        });
        // A bug must still answer with a message (and, for a write, not pretend to know the outcome).
        app.UseExceptionHandler(errors => errors.Run(context => WriteErrorAsync(context, StatusCodes.Status500InternalServerError,
            "Unexpected server error (logged by the node). If this was a write, its outcome is unknown: read the key to find out.")));
        // Routing's own 404 and 405 answers have no body: give them a message.
        app.UseStatusCodePages(api.WriteStatusCodePageAsync);
        app.Use((context, next) =>
        {
            context.Response.Headers[NodeHeader] = node.Id.ToString(CultureInfo.InvariantCulture);
            var request = context.Request;
            // A page on another site whose name resolves to this node (DNS rebinding) sends its own name.
            if (!guard.IsAllowedHost(request.Host))
            {
                Log.RequestRefused(node.Logger, node.Id, request.Method, request.Path, $"Host '{request.Host}' is not allowed");
                return WriteErrorAsync(context, StatusCodes.Status421MisdirectedRequest,
                    $"Node {node.Id} does not answer to the host '{request.Host.Host}'. Allowed hosts: {string.Join(", ", guard.Hosts)} (add others with --allowed-hosts).");
            }
            // A page on another origin may send simple requests without asking (cross-site request forgery).
            if (RequestGuard.IsStateChanging(request.Method) && request.Headers.Origin is [{ } origin, ..] && !guard.IsAllowedOrigin(origin, request))
            {
                Log.RequestRefused(node.Logger, node.Id, request.Method, request.Path, $"Origin '{origin}' is not allowed");
                return WriteErrorAsync(context, StatusCodes.Status403Forbidden,
                    $"Cross-origin {request.Method} from '{origin}' refused: only the node's own pages (and origins given with --allowed-origins) may change data.");
            }
            // The server resolves "/kv/.." to "/" before routing: say why instead of answering for another route.
            if (KvInput.IsDotSegmentKey(context.Features.Get<IHttpRequestFeature>()?.RawTarget))
                return WriteErrorAsync(context, StatusCodes.Status400BadRequest, "The keys \".\" and \"..\" cannot be used: URLs treat them as relative path segments.");
            return next(context);
        });
        app.MapGet("/", ServePageAsync);
        app.MapGet("/status", api.StatusAsync);
        app.MapGet("/cluster", api.ClusterAsync);
        app.MapGet("/kv/{key}", api.GetAsync);
        app.MapPut("/kv/{key}", api.PutAsync);
        app.MapDelete("/kv/{key}", api.DeleteAsync);
        app.MapPost("/kv/{key}/cas", api.CompareAndSwapAsync);
        app.MapPost("/kv/{key}/incr", api.IncrementAsync);
        app.MapPost("/sessions", api.OpenSessionAsync);
        MapMembership(app, api);
        app.Map("/kv", MissingKeyAsync); // "/kv" and "/kv/", any method
    }

    // ------------------------------------------------------------------ routes

    private static Task ServePageAsync(HttpContext context)
    {
        context.Response.ContentType = "text/html; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        return context.Response.Body.WriteAsync(Page.Value, context.RequestAborted).AsTask();
    }

    private Task StatusAsync(HttpContext context) => context.Response.WriteAsJsonAsync(GetStatus(), context.RequestAborted);

    private async Task ClusterAsync(HttpContext context)
    {
        // This node too when the configuration does not list it (joining, or removed).
        var ids = _node.Directory.Members.Append(_node.Id).Distinct().Order();
        var members = await Task.WhenAll(ids.Select(id => GetMemberAsync(id, context.RequestAborted)));
        await context.Response.WriteAsJsonAsync(new ClusterStatus(_node.Id, members), context.RequestAborted);
    }

    private async Task GetAsync(HttpContext context)
    {
        if (!KvInput.TryGetKey(context, out var key, out var error))
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, error);
            return;
        }
        await OnLeaderAsync(context, isRead: true, body: null, async () =>
        {
            if (!await ReadBarrierAsync(context))
                return;
            if (_node.StateMachine.TryGet(key, out var value))
            {
                var bytes = StrictUtf8.GetBytes(value!);
                context.Response.ContentType = "text/plain; charset=utf-8";
                context.Response.ContentLength = bytes.Length; // one write, no chunked framing
                await context.Response.Body.WriteAsync(bytes, context.RequestAborted);
            }
            else
            {
                await WriteErrorAsync(context, StatusCodes.Status404NotFound, $"Key '{key}' does not exist.");
            }
        });
    }

    private async Task PutAsync(HttpContext context)
    {
        if (!KvInput.TryGetKey(context, out var key, out var error))
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, error);
            return;
        }
        var body = await ReadBodyAsync(context, "PUT needs the value as the request body (UTF-8 text; send an empty body with Content-Length: 0 for an empty value).");
        if (body is null)
            return;
        if (!KvInput.TryDecode(body, out var value))
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, "The value (the request body) is not valid UTF-8 text.");
            return;
        }
        await OnLeaderAsync(context, isRead: false, body, () => ProposeAsync(context, KvCommand.Put(key, value), _ => NoContent(context)));
    }

    private async Task DeleteAsync(HttpContext context)
    {
        if (!KvInput.TryGetKey(context, out var key, out var error))
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, error);
            return;
        }
        await OnLeaderAsync(context, isRead: false, body: null, () => ProposeAsync(context, KvCommand.Delete(key), _ => NoContent(context)));
    }

    private async Task CompareAndSwapAsync(HttpContext context)
    {
        if (!KvInput.TryGetKey(context, out var key, out var error))
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, error);
            return;
        }
        const string Shape = "Send JSON {\"expected\": string or null, \"value\": string}.";
        // Before the body is read: a cross-site form or text/plain fetch is refused unread.
        if (!RequestGuard.IsJson(context.Request.ContentType, out error))
        {
            await WriteErrorAsync(context, StatusCodes.Status415UnsupportedMediaType, error + " " + Shape);
            return;
        }
        var body = await ReadBodyAsync(context, "POST /kv/{key}/cas needs a JSON body. " + Shape);
        if (body is null)
            return;
        if (body.Length == 0)
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, "The body is empty. " + Shape);
            return;
        }
        if (!KvInput.TryParseCas(body, out var expected, out var value, out error))
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, error + " " + Shape);
            return;
        }
        await OnLeaderAsync(context, isRead: false, body, () => ProposeAsync(context, KvCommand.CompareAndSwap(key, expected, value), async result =>
        {
            if (result is not CasResult cas)
            {
                // Committed, but applied here only through the leader's snapshot: the swap's outcome
                // exists on the nodes that applied it, not on this one.
                await WriteErrorAsync(context, StatusCodes.Status500InternalServerError, $"The compare-and-swap of '{key}' committed, but this node did not apply it itself and cannot tell whether it swapped; read the key.");
                return;
            }
            if (cas.Swapped)
            {
                await NoContent(context);
                return;
            }
            context.Response.StatusCode = StatusCodes.Status409Conflict;
            var message = (cas.Current, expected) switch
            {
                (null, _) => $"Key '{key}' does not exist; expected the value '{expected}'.",
                (_, null) => $"Key '{key}' exists; expected it to be absent.",
                _ => $"The current value of '{key}' differs from the expected '{expected}'.",
            };
            await context.Response.WriteAsJsonAsync(CasConflict.For(message, cas.Current), options: null, ProblemContentType, context.RequestAborted);
        }));
    }

    private async Task IncrementAsync(HttpContext context)
    {
        if (!KvInput.TryGetKey(context, out var key, out var error))
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, error);
            return;
        }
        const string Shape = "Send an empty body to add 1, or a 64-bit integer (UTF-8 text) to add.";
        long delta = 1;
        byte[]? body = null;
        if (context.Request.ContentLength > 0 || context.Request.Headers.TransferEncoding.Count > 0)
        {
            body = await ReadBodyAsync(context, Shape);
            if (body is null)
                return;
            if (body.Length > 0 && !(KvInput.TryDecode(body, out var text) && long.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out delta)))
            {
                await WriteErrorAsync(context, StatusCodes.Status400BadRequest, "The body is not a 64-bit integer. " + Shape);
                return;
            }
        }
        await OnLeaderAsync(context, isRead: false, body, () => ProposeAsync(context, KvCommand.Increment(key, delta), async result =>
        {
            if (result is not IncrementResult increment)
            {
                await WriteErrorAsync(context, StatusCodes.Status500InternalServerError, $"The increment of '{key}' committed, but this node did not apply it itself and cannot tell the new value; read the key (or send it with an Idempotency-Key, whose retry returns the first result).");
                return;
            }
            if (!increment.Done)
            {
                context.Response.StatusCode = StatusCodes.Status409Conflict;
                await context.Response.WriteAsJsonAsync(CasConflict.For($"The value of '{key}' is not a 64-bit integer, or adding {delta} would overflow; nothing changed.", increment.Current), options: null, ProblemContentType, context.RequestAborted);
                return;
            }
            var bytes = StrictUtf8.GetBytes(increment.Current!);
            context.Response.ContentType = "text/plain; charset=utf-8";
            context.Response.ContentLength = bytes.Length;
            await context.Response.Body.WriteAsync(bytes, context.RequestAborted);
        }));
    }

    private Task OpenSessionAsync(HttpContext context) => OnLeaderAsync(context, isRead: false, body: null, async () =>
    {
        RaftSession session;
        try
        {
            session = await _node.Raft.OpenSessionAsync(context.RequestAborted).WaitAsync(_node.Options.RequestTimeout, context.RequestAborted);
        }
        catch (NotLeaderException)
        {
            throw;
        }
        catch (ObjectDisposedException)
        {
            await ShuttingDownAsync(context);
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }
        catch (Exception ex) when (ex is RaftException or TimeoutException)
        {
            // A session may have been registered anyway: unused, it expires. Nothing else changed.
            await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, $"No session was opened ({ex.Message}). Retry shortly.", retryLater: true);
            return;
        }
        context.Response.StatusCode = StatusCodes.Status201Created;
        await context.Response.WriteAsJsonAsync(new SessionCreated(session.ClientId, $"Send writes with the header {IdempotencyKeyHeader}: {session.ClientId}:<sequence>, numbering them 1, 2, ...; retry a write with the same header."), context.RequestAborted);
    });

    /// <summary>Reads the <see cref="IdempotencyKeyHeader"/>: null when absent; false (with the reason) when malformed.</summary>
    internal static bool TryGetIdempotencyKey(HttpRequest request, out (long ClientId, long Sequence)? key, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        key = null;
        error = null;
        if (!request.Headers.TryGetValue(IdempotencyKeyHeader, out var values))
            return true;
        var text = values.Count == 1 ? values[0] ?? "" : "";
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0
            || !long.TryParse(text.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out var clientId)
            || !long.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var sequence)
            || clientId <= 0 || sequence <= 0)
        {
            error = $"The {IdempotencyKeyHeader} header must be one value '<clientId>:<sequence>' (two positive integers: a session from POST /sessions and this write's number in it); got '{string.Join(",", values.ToArray())}'. Nothing was submitted.";
            return false;
        }
        key = (clientId, sequence);
        return true;
    }

    private static Task MissingKeyAsync(HttpContext context) =>
        WriteErrorAsync(context, StatusCodes.Status400BadRequest, "The key is missing or empty: use /kv/{key} with a key of 1 to 256 UTF-8 bytes.");

    private Task WriteStatusCodePageAsync(StatusCodeContext statusContext)
    {
        var context = statusContext.HttpContext;
        var request = context.Request;
        var status = context.Response.StatusCode;
        var message = status switch
        {
            StatusCodes.Status404NotFound => $"There is no route {request.Method} {request.Path}. Routes: {Routes}.",
            StatusCodes.Status405MethodNotAllowed => $"Method {request.Method} is not allowed on {request.Path}" +
                (context.Response.Headers.Allow.Count > 0 ? $"; allowed: {context.Response.Headers.Allow}." : "."),
            _ => $"HTTP {status}.",
        };
        return WriteErrorAsync(context, status, message);
    }

    // ------------------------------------------------------------------ leader routing

    /// <summary>Runs <paramref name="local"/> on this node (with <see cref="ForwardMode.Raft"/>, where the library forwards from a follower), or, with <see cref="ForwardMode.Http"/>, when this node is the leader; otherwise forwards the request to the leader over HTTP, or answers 503.</summary>
    /// <param name="local">Serves the request; throws <see cref="NotLeaderException"/> only when nothing was submitted.</param>
    private async Task OnLeaderAsync(HttpContext context, bool isRead, byte[]? body, Func<Task> local)
    {
        if (!isRead && !TryGetIdempotencyKey(context.Request, out _, out var keyError))
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, keyError);
            return;
        }
        if (_node.Forward == ForwardMode.Raft)
        {
            // The library forwards from a follower; the answer comes from this node's own copy.
            try
            {
                await local();
            }
            catch (NotLeaderException ex)
            {
                await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, ex.LeaderId == 0 && _node.Raft.Status.LeaderId == 0
                    ? $"Node {_node.Id} knows no leader right now (an election may be under way); nothing was submitted. Retry shortly."
                    : $"Node {_node.Id} could not hand the request to the leader ({ex.Message}); nothing was submitted. Retry shortly.", retryLater: true);
            }
            return;
        }
        await OnLeaderOrRelayAsync(context, isRead, body, local, nothingWas: "submitted", addressHint: "");
    }

    /// <summary>
    /// Runs <paramref name="local"/> when this node leads; otherwise relays the request to the leader's HTTP address, or
    /// answers 503 saying that nothing was <paramref name="nothingWas"/> (submitted, changed).
    /// </summary>
    /// <param name="local">Serves the request; throws <see cref="NotLeaderException"/> only when nothing was submitted.</param>
    /// <param name="addressHint">Added to the 503 for a leader whose HTTP address this node does not know.</param>
    private async Task OnLeaderOrRelayAsync(HttpContext context, bool isRead, byte[]? body, Func<Task> local, string nothingWas, string addressHint)
    {
        var status = _node.Raft.Status;
        var leaderId = status.LeaderId;
        if (status.Role == RaftRole.Leader)
        {
            try
            {
                await local();
                return;
            }
            catch (NotLeaderException ex)
            {
                // Leadership moved before anything was submitted: the new leader, if known, gets it.
                leaderId = ex.LeaderId;
            }
        }
        if (leaderId == 0 || leaderId == _node.Id)
        {
            await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable,
                $"Node {_node.Id} knows no leader right now (an election may be under way); nothing was {nothingWas}. Retry shortly.", retryLater: true);
            return;
        }
        if (context.Request.Headers.TryGetValue(ForwardedHeader, out var from))
        {
            await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable,
                $"Node {from} forwarded this request to node {_node.Id} as the leader, but node {_node.Id} is not the leader (it knows node {leaderId}); nothing was {nothingWas}. Retry.", retryLater: true);
            return;
        }
        if (!_node.Directory.TryGet(leaderId, out var leaderUrl))
        {
            await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable,
                $"The leader is node {leaderId}, but node {_node.Id} does not know its HTTP address{addressHint}; nothing was {nothingWas}.", retryLater: true);
            return;
        }
        await ForwardAsync(context, leaderId, leaderUrl!, isRead, body);
    }

    private async Task ForwardAsync(HttpContext context, int leaderId, Uri leaderUrl, bool isRead, byte[]? body)
    {
        var target = new Uri(leaderUrl, PathAndQuery(context));
        using var request = new HttpRequestMessage(new HttpMethod(context.Request.Method), target);
        request.Headers.TryAddWithoutValidation(ForwardedHeader, _node.Id.ToString(CultureInfo.InvariantCulture));
        if (context.Request.Headers.TryGetValue(IdempotencyKeyHeader, out var idempotencyKey))
            request.Headers.TryAddWithoutValidation(IdempotencyKeyHeader, (string?)idempotencyKey);
        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
            if (context.Request.ContentType is { } contentType)
                request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        }
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        // The leader answers within its own request timeout; allow for the hop.
        deadline.CancelAfter(_node.Options.RequestTimeout + TimeSpan.FromSeconds(2));
        try
        {
            using var response = await _node.Http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token);
            var payload = await response.Content.ReadAsByteArrayAsync(deadline.Token);
            context.Response.StatusCode = (int)response.StatusCode;
            foreach (var name in (string[])["Retry-After", "Allow", NodeHeader])
            {
                if (response.Headers.TryGetValues(name, out var values) || response.Content.Headers.TryGetValues(name, out values))
                    context.Response.Headers[name] = values.ToArray();
            }
            if (response.Content.Headers.ContentType is { } type)
                context.Response.ContentType = type.ToString();
            context.Response.Headers[ForwardedHeader] = _node.Id.ToString(CultureInfo.InvariantCulture);
            if (payload.Length > 0)
                await context.Response.Body.WriteAsync(payload, context.RequestAborted);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away.
        }
        catch (HttpRequestException ex) when (ex.HttpRequestError == HttpRequestError.ConnectionError)
        {
            Log.ForwardFailed(_node.Logger, _node.Id, context.Request.Method, context.Request.Path, leaderId, leaderUrl, ex);
            await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable,
                $"Node {_node.Id} could not connect to the leader, node {leaderId} at {leaderUrl}; nothing was submitted. Retry shortly.", retryLater: true);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
        {
            Log.ForwardFailed(_node.Logger, _node.Id, context.Request.Method, context.Request.Path, leaderId, leaderUrl, ex);
            if (isRead)
            {
                await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable,
                    $"The leader, node {leaderId}, did not answer the forwarded read ({ex.Message}). Retry.", retryLater: true);
            }
            else if (ex is OperationCanceledException)
            {
                await WriteErrorAsync(context, StatusCodes.Status504GatewayTimeout,
                    $"The leader, node {leaderId}, did not answer the forwarded write in time: outcome unknown (it may still be applied). Read the key to find out.");
            }
            else
            {
                await WriteErrorAsync(context, StatusCodes.Status502BadGateway,
                    $"The connection to the leader, node {leaderId}, failed after the write was sent ({ex.Message}): outcome unknown. Read the key to find out.");
            }
        }
    }

    /// <summary>Proposes a command on this node (the leader) and hands the state machine's result to <paramref name="onApplied"/>; answers the failures itself.</summary>
    /// <exception cref="NotLeaderException">This node is not the leader; nothing was submitted.</exception>
    private async Task ProposeAsync(HttpContext context, KvCommand command, Func<object?, Task> onApplied)
    {
        TryGetIdempotencyKey(context.Request, out var key, out _); // checked by OnLeaderAsync
        var bytes = command.Encode();
        object? result = null;
        // With a key, a write this node committed without applying it itself (it got the leader's
        // snapshot) is asked for again: the session answers with the kept first result.
        for (var attempt = 0; attempt < 3 && (attempt == 0 || result is CommittedWithoutResult); attempt++)
        {
            if (!await TryProposeAsync(context, bytes, key, r => result = r))
                return;
        }
        await onApplied(result);
    }

    // Proposes once; false when an error was answered instead.
    private async Task<bool> TryProposeAsync(HttpContext context, byte[] bytes, (long ClientId, long Sequence)? key, Action<object?> done)
    {
        Task<object?> proposal;
        try
        {
            proposal = key is { } k
                ? _node.Raft.ResumeSession(k.ClientId).ProposeAsync(bytes, k.Sequence)
                : _node.Raft.ProposeAsync(bytes).AsTask();
        }
        catch (ObjectDisposedException)
        {
            await ShuttingDownAsync(context);
            return false;
        }
        catch (InvalidCommandException ex)
        {
            await CommandRefusedAsync(context, ex);
            return false;
        }
        object? result;
        try
        {
            result = await proposal.WaitAsync(_node.Options.RequestTimeout, context.RequestAborted);
        }
        catch (NotLeaderException)
        {
            throw;
        }
        catch (InvalidCommandException ex)
        {
            await CommandRefusedAsync(context, ex);
            return false;
        }
        catch (SessionExpiredException ex)
        {
            await WriteErrorAsync(context, StatusCodes.Status410Gone, $"{ex.Message} (POST /sessions opens one.) This write was not applied.");
            return false;
        }
        catch (SessionSequenceException ex)
        {
            await WriteErrorAsync(context, StatusCodes.Status422UnprocessableEntity, ex.Message);
            return false;
        }
        catch (RaftBusyException ex)
        {
            await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, $"{ex.Message} Nothing was submitted.", retryLater: true);
            return false;
        }
        catch (ProposalDroppedException)
        {
            await WriteErrorAsync(context, StatusCodes.Status500InternalServerError,
                "The write was dropped: leadership changed before it committed and another entry took its place, so it did not take effect. It is safe to retry.");
            return false;
        }
        catch (RaftTimeoutException ex) when (ex.OutcomeKnown)
        {
            await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, $"{ex.Message} The write was not applied. Retry shortly.", retryLater: true);
            return false;
        }
        catch (RaftTimeoutException ex)
        {
            await WriteErrorAsync(context, StatusCodes.Status504GatewayTimeout,
                $"{ex.Message} Outcome unknown (it may still be applied)." + RetryAdvice(key));
            return false;
        }
        catch (TimeoutException)
        {
            await WriteErrorAsync(context, StatusCodes.Status504GatewayTimeout,
                $"The write was not committed within {_node.Options.RequestTimeout.TotalSeconds:0.#} s: outcome unknown (it may still be applied)." + RetryAdvice(key));
            return false;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return false; // the client went away; the write may still be applied
        }
#pragma warning disable CA1031 // Anything else after submission (outcome unknown, node stopped or failed): the client must hear that the outcome is unknown.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.WriteOutcomeUnknown(_node.Logger, _node.Id, ex);
            await WriteErrorAsync(context, StatusCodes.Status500InternalServerError,
                $"The write was submitted but its outcome is unknown ({ex.Message})." + RetryAdvice(key));
            return false;
        }
        done(result);
        return true;
    }

    private static string RetryAdvice((long ClientId, long Sequence)? key) => key is { } k
        ? $" Retry with the same {IdempotencyKeyHeader} ({k.ClientId}:{k.Sequence}): it is applied at most once."
        : $" Read the key to find out, or send writes with an {IdempotencyKeyHeader} header (see POST /sessions) to retry them safely.";

    /// <summary>Waits until a read of the local dictionary is linearizable; false when it answered an error instead.</summary>
    /// <exception cref="NotLeaderException">This node is not the leader (or stopped being it).</exception>
    private async Task<bool> ReadBarrierAsync(HttpContext context)
    {
        try
        {
            await _node.Raft.ReadBarrierAsync().WaitAsync(_node.Options.RequestTimeout, context.RequestAborted);
            return true;
        }
        catch (Exception ex) when (ex is TimeoutException or RaftTimeoutException)
        {
            await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable,
                $"The leader could not confirm its leadership with a majority within {_node.Options.RequestTimeout.TotalSeconds:0.#} s. Retry shortly.", retryLater: true);
        }
        catch (ObjectDisposedException)
        {
            await ShuttingDownAsync(context);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
        return false;
    }

    // ------------------------------------------------------------------ status

    internal NodeStatus GetStatus()
    {
        var status = _node.Raft.Status;
        var followers = status.Role == RaftRole.Leader
            ? status.Progress.Where(p => p.Key != status.Id).OrderBy(p => p.Key)
                .Select(p => new FollowerStatus(p.Key, p.Value, Math.Max(0, status.LastLogIndex - p.Value))).ToArray()
            : [];
        var completion = _node.Raft.Completion;
        var failure = completion.IsFaulted ? completion.Exception.GetBaseException().Message : null;
        _node.Directory.TryGet(status.LeaderId, out var leaderUrl);
        _node.Directory.TryGet(status.Id, out var url);
        return new NodeStatus(
            status.Id,
            RoleName(status.Role),
            status.Term,
            status.LeaderId,
            status.CommitIndex,
            status.AppliedIndex,
            status.LastLogIndex,
            status.LastLogTerm,
            url?.ToString(),
            status.LeaderId == 0 ? null : leaderUrl?.ToString(),
            _node.StateMachine.Count,
            failure,
            followers,
            DescribeConfiguration(status),
            status.IsRemoved,
            _node.Options.Join);
    }

    private async Task<ClusterMember> GetMemberAsync(int id, CancellationToken cancellationToken)
    {
        _node.Directory.TryGet(id, out var url);
        if (id == _node.Id)
            return new ClusterMember(id, url?.ToString(), true, JsonSerializer.SerializeToElement(GetStatus(), JsonSerializerOptions.Web), null);
        if (url is null)
            return new ClusterMember(id, null, false, null, "Its HTTP address is not known.");
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(StatusTimeout);
        try
        {
            using var response = await _node.Http.GetAsync(new Uri(url, "status"), deadline.Token);
            if (!response.IsSuccessStatusCode)
                return new ClusterMember(id, url.ToString(), false, null, $"GET /status answered {(int)response.StatusCode}.");
            var status = await response.Content.ReadFromJsonAsync<JsonElement>(deadline.Token);
            return new ClusterMember(id, url.ToString(), true, status, null);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or JsonException or IOException)
        {
            var why = ex is OperationCanceledException ? $"no answer within {StatusTimeout.TotalSeconds} s" : ex.Message;
            return new ClusterMember(id, url.ToString(), false, null, $"Unreachable: {why}.");
        }
    }

    private static string RoleName(RaftRole role) => role switch
    {
        RaftRole.Leader => "leader",
        RaftRole.Follower => "follower",
        RaftRole.Candidate => "candidate",
        RaftRole.PreCandidate => "preCandidate",
        _ => role.ToString(),
    };

    // ------------------------------------------------------------------ input

    /// <summary>Reads the whole body, up to <see cref="KvNodeOptions.MaxBodyBytes"/>; null when an error was answered (missing body, too large, broken).</summary>
    private async Task<byte[]?> ReadBodyAsync(HttpContext context, string missingMessage)
    {
        var request = context.Request;
        var limit = _node.Options.MaxBodyBytes;
        if (request.ContentLength > limit)
        {
            await TooLargeAsync(context, limit);
            return null;
        }
        if (request.ContentLength is null && request.Headers.TransferEncoding.Count == 0)
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, "The request has no body. " + missingMessage);
            return null;
        }
        var buffer = new ArrayBufferWriter<byte>((int)Math.Min(request.ContentLength ?? 4096, limit) + 1);
        try
        {
            while (true)
            {
                var read = await request.Body.ReadAsync(buffer.GetMemory(4096), context.RequestAborted);
                if (read == 0)
                    break;
                buffer.Advance(read);
                if (buffer.WrittenCount > limit)
                {
                    await TooLargeAsync(context, limit);
                    return null;
                }
            }
        }
        catch (BadHttpRequestException ex)
        {
            await WriteErrorAsync(context, ex.StatusCode, $"The request body could not be read: {ex.Message}");
            return null;
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException)
        {
            // Usually the client went away; if it is still there, say what happened.
            if (!context.RequestAborted.IsCancellationRequested)
                await WriteErrorAsync(context, StatusCodes.Status400BadRequest, $"The request body could not be read: {ex.Message}");
            return null;
        }
        return buffer.WrittenSpan.ToArray();
    }

    // ------------------------------------------------------------------ answers

    private static Task NoContent(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status204NoContent;
        return Task.CompletedTask;
    }

    private static Task TooLargeAsync(HttpContext context, int limit) =>
        WriteErrorAsync(context, StatusCodes.Status413PayloadTooLarge, $"The request body is larger than the limit of {limit} bytes.");

    private Task CommandRefusedAsync(HttpContext context, InvalidCommandException ex)
    {
        Log.CommandRefused(_node.Logger, _node.Id, ex.Message);
        var (status, message) = DescribeRefusal(ex);
        return WriteErrorAsync(context, status, message);
    }

    /// <summary>The answer to a command the leader's state machine refused (<see cref="ICommandValidator"/>): nothing was submitted, and retrying the same bytes fails the same way.</summary>
    internal static (int Status, string Message) DescribeRefusal(InvalidCommandException ex) =>
        (StatusCodes.Status400BadRequest, $"The leader refused the command before replicating it ({ex.Message}); nothing was submitted. Retrying the same request fails the same way.");

    private Task ShuttingDownAsync(HttpContext context) =>
        WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, $"Node {_node.Id} is shutting down; nothing was submitted.", retryLater: true);

    /// <summary>The content type of every error body (RFC 9457 problem details).</summary>
    internal const string ProblemContentType = "application/problem+json; charset=utf-8";

    internal static Task WriteErrorAsync(HttpContext context, int status, string message, bool retryLater = false)
    {
        if (context.Response.HasStarted)
            return Task.CompletedTask;
        context.Response.StatusCode = status;
        if (retryLater)
            context.Response.Headers.RetryAfter = RetryAfterSeconds;
        return context.Response.WriteAsJsonAsync(ErrorResponse.For(status, message), options: null, ProblemContentType, context.RequestAborted);
    }

    private static string PathAndQuery(HttpContext context)
    {
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        return raw is { Length: > 0 } && raw[0] == '/' ? raw : context.Request.Path.ToUriComponent() + context.Request.QueryString.ToUriComponent();
    }

    private static byte[] LoadPage()
    {
        using var stream = typeof(KvApi).Assembly.GetManifestResourceStream("Raft.Samples.KeyValueStore.StatusPage.html")
            ?? throw new InvalidOperationException("The status page resource is missing from the assembly.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
