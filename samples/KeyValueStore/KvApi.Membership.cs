using System.Globalization;
using System.Text.Json;

namespace Raft.Samples.KeyValueStore;

// Membership changes over HTTP: POST /cluster/members (add, remove, promote) and GET /cluster/members.
// The leader runs them with RaftNode.ChangeMembershipAsync (docs/membership.md); a follower forwards
// the request to the leader's HTTP address (the library forwards proposals, not membership changes).
internal sealed partial class KvApi
{
    private const string MembershipShape =
        "Send JSON {\"action\": \"add\", \"id\": N, \"address\": \"host:port\"} (the new node's Raft address; optional \"role\": \"learner\" stops before promotion), " +
        "{\"action\": \"promote\", \"id\": N} or {\"action\": \"remove\", \"id\": N}.";

    private static readonly TimeSpan CatchUpPoll = TimeSpan.FromMilliseconds(50);

    /// <summary>A parsed <c>POST /cluster/members</c> body.</summary>
    internal sealed record MembershipRequest(string Action, int Id, string? Address, bool StopAtLearner);

    private static void MapMembership(WebApplication app, KvApi api)
    {
        app.MapGet("/cluster/members", api.GetMembersAsync);
        app.MapPost("/cluster/members", api.ChangeMembersAsync);
    }

    private Task GetMembersAsync(HttpContext context) =>
        context.Response.WriteAsJsonAsync(DescribeConfiguration(_node.Raft.Status), context.RequestAborted);

    private async Task ChangeMembersAsync(HttpContext context)
    {
        // Before the body is read: a cross-site form or text/plain fetch is refused unread.
        if (!RequestGuard.IsJson(context.Request.ContentType, out var error))
        {
            await RefuseMembershipAsync(context, StatusCodes.Status415UnsupportedMediaType, error + " " + MembershipShape);
            return;
        }
        var body = await ReadBodyAsync(context, "POST /cluster/members needs a JSON body. " + MembershipShape);
        if (body is null)
            return;
        if (!TryParseMembership(body, out var request, out error))
        {
            await RefuseMembershipAsync(context, StatusCodes.Status400BadRequest, error + " " + MembershipShape);
            return;
        }
        await OnMembershipLeaderAsync(context, body, () => RunMembershipChangeAsync(context, request));
    }

    private Task RefuseMembershipAsync(HttpContext context, int status, string message)
    {
        Log.RequestRefused(_node.Logger, _node.Id, context.Request.Method, context.Request.Path, message);
        return WriteErrorAsync(context, status, message);
    }

    /// <summary>Parses and checks a membership request strictly: an object with known properties only, each of the right type, each once.</summary>
    internal static bool TryParseMembership(ReadOnlySpan<byte> body, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out MembershipRequest? request, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        request = null;
        if (body.IsEmpty)
        {
            error = "The body is empty.";
            return false;
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body.ToArray(), new JsonDocumentOptions { MaxDepth = 4 });
        }
        catch (JsonException ex)
        {
            error = $"The body is not valid JSON ({ex.Message}).";
            return false;
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                error = $"The body must be a JSON object, not {root.ValueKind.ToString().ToLowerInvariant()}.";
                return false;
            }
            string? action = null, address = null, role = null;
            int? id = null;
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                {
                    error = $"The property \"{property.Name}\" appears twice.";
                    return false;
                }
                var value = property.Value;
                switch (property.Name)
                {
                    case "action" when value.ValueKind == JsonValueKind.String:
                        action = value.GetString();
                        break;
                    case "address" when value.ValueKind == JsonValueKind.String:
                        address = value.GetString();
                        break;
                    case "role" when value.ValueKind == JsonValueKind.String:
                        role = value.GetString();
                        break;
                    case "id" when value.ValueKind == JsonValueKind.Number:
                        if (!value.TryGetInt32(out var number) || number <= 0)
                        {
                            error = $"\"id\" must be a positive 32-bit integer, not {value.GetRawText()}.";
                            return false;
                        }
                        id = number;
                        break;
                    case "action" or "address" or "role" or "id":
                        error = $"\"{property.Name}\" must be a {(property.Name == "id" ? "number" : "string")}, not {value.ValueKind.ToString().ToLowerInvariant()}.";
                        return false;
                    default:
                        error = $"Unknown property \"{property.Name}\" (known: action, id, address, role).";
                        return false;
                }
            }
            if (action is null)
            {
                error = "\"action\" is missing.";
                return false;
            }
            if (action is not ("add" or "remove" or "promote"))
            {
                error = $"Unknown action \"{action}\": use add, remove or promote.";
                return false;
            }
            if (id is null)
            {
                error = "\"id\" (the node's id, a positive integer) is missing.";
                return false;
            }
            if (action != "add")
            {
                if (address is not null || role is not null)
                {
                    error = $"\"{action}\" takes only an \"id\"; \"{(address is not null ? "address" : "role")}\" belongs to \"add\".";
                    return false;
                }
                request = new MembershipRequest(action, id.Value, null, false);
                error = null;
                return true;
            }
            if (string.IsNullOrWhiteSpace(address))
            {
                error = "\"add\" needs the new node's Raft \"address\" (its --listen host:port).";
                return false;
            }
            if (System.Text.Encoding.UTF8.GetByteCount(address) > ClusterConfiguration.MaxAddressBytes)
            {
                error = $"\"address\" is longer than {ClusterConfiguration.MaxAddressBytes} bytes.";
                return false;
            }
            try
            {
                _ = TcpTransportOptions.ParseEndPoint(address);
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException)
            {
                error = $"\"address\" '{address}' is not host:port ({ex.Message}).";
                return false;
            }
            if (role is not (null or "voter" or "learner"))
            {
                error = $"Unknown role \"{role}\": use voter (the default: added as a learner, promoted once caught up) or learner.";
                return false;
            }
            request = new MembershipRequest(action, id.Value, address, role == "learner");
            error = null;
            return true;
        }
    }

    /// <summary>Runs <paramref name="local"/> when this node leads; otherwise forwards the request to the leader over HTTP (whatever <see cref="KvNode.Forward"/> says), or answers 503.</summary>
    private Task OnMembershipLeaderAsync(HttpContext context, byte[] body, Func<Task> local) =>
        OnLeaderOrRelayAsync(context, isRead: false, body, local, nothingWas: "changed", addressHint: " (give it in --http-peers, or send the request to the leader)");

    private async Task RunMembershipChangeAsync(HttpContext context, MembershipRequest request)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        var timeout = _node.Options.RequestTimeout;
        deadline.CancelAfter(timeout);
        Log.MembershipRequested(_node.Logger, _node.Id, request.Action, request.Id, request.Address);
        switch (request.Action)
        {
            case "remove":
            {
                var configuration = await ChangeAsync(context, MembershipChange.Remove(request.Id), promotingAfterAdd: false, deadline.Token);
                if (configuration is not null)
                    await AnswerMembershipAsync(context, StatusCodes.Status200OK, $"Node {request.Id} was removed.", configuration);
                return;
            }
            case "promote":
            {
                var configuration = await ChangeAsync(context, MembershipChange.Promote(request.Id), promotingAfterAdd: false, deadline.Token);
                if (configuration is not null)
                    await AnswerMembershipAsync(context, StatusCodes.Status200OK, $"Node {request.Id} was promoted to voter.", configuration);
                return;
            }
        }
        // Add: the same Raft address twice would make two ids one process; the library cannot tell.
        var clash = _node.Raft.Configuration.Members.Concat(_node.Raft.Configuration.Outgoing)
            .FirstOrDefault(m => m.Id != request.Id && string.Equals(m.Address, request.Address, StringComparison.OrdinalIgnoreCase));
        if (clash is not null)
        {
            await RefuseMembershipAsync(context, StatusCodes.Status400BadRequest, $"Node {clash.Id} already has the address {request.Address}; nothing was changed.");
            return;
        }
        var added = await ChangeAsync(context, MembershipChange.AddLearner(request.Id, request.Address), promotingAfterAdd: false, deadline.Token);
        if (added is null)
            return;
        if (request.StopAtLearner)
        {
            await AnswerMembershipAsync(context, StatusCodes.Status200OK, $"Node {request.Id} was added as a learner; promote it with {{\"action\":\"promote\",\"id\":{request.Id}}} once it has caught up.", added);
            return;
        }
        // The learner has caught up once it holds the entry that added it (the library also checks MaxPromotionLag).
        var target = _node.Raft.Status.CommitIndex;
        string? notYet = null;
        while (true)
        {
            var status = _node.Raft.Status;
            if (status.Role != RaftRole.Leader)
            {
                notYet = $"node {_node.Id} lost the leadership";
                break;
            }
            if (status.Progress.TryGetValue(request.Id, out var match) && match >= target)
                break;
            try
            {
                await Task.Delay(CatchUpPoll, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                if (context.RequestAborted.IsCancellationRequested)
                    return;
                notYet = $"it had replicated up to index {match} of {target} after {timeout.TotalSeconds:0.#} s";
                break;
            }
        }
        if (notYet is null)
        {
            var promoted = await ChangeAsync(context, MembershipChange.Promote(request.Id), promotingAfterAdd: true, deadline.Token);
            if (promoted is not null)
                await AnswerMembershipAsync(context, StatusCodes.Status200OK, $"Node {request.Id} was added as a learner, caught up and was promoted to voter.", promoted);
            return;
        }
        await AnswerMembershipAsync(context, StatusCodes.Status202Accepted,
            $"Node {request.Id} was added as a learner but not promoted: {notYet}. Check that it runs with --join and can reach the cluster, then POST {{\"action\":\"promote\",\"id\":{request.Id}}} to the leader.",
            _node.Raft.Configuration);
    }

    /// <summary>Runs one change; null when an error was answered instead. Throws <see cref="NotLeaderException"/> only when nothing was changed by this request.</summary>
    private async Task<ClusterConfiguration?> ChangeAsync(HttpContext context, MembershipChange change, bool promotingAfterAdd, CancellationToken deadline)
    {
        var what = promotingAfterAdd ? "The node was added as a learner, but its promotion failed: " : "";
        var retry = promotingAfterAdd ? $" POST {{\"action\":\"promote\",\"id\":{change.Operations[0].Id}}} to the leader to finish." : "";
        while (true)
        {
            try
            {
                // The token bounds the wait only: once proposed, the change goes on whether or not this request waits.
                var configuration = await _node.Raft.ChangeMembershipAsync(change, CancellationToken.None).WaitAsync(deadline);
                Log.MembershipChanged(_node.Logger, _node.Id, change, configuration);
                return configuration;
            }
            catch (NotLeaderException ex) when (promotingAfterAdd)
            {
                await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, what + ex.Message + retry, retryLater: true);
                return null;
            }
            catch (NotLeaderException)
            {
                throw;
            }
            catch (MembershipChangeException ex) when (promotingAfterAdd && !deadline.IsCancellationRequested)
            {
                // The add's final configuration is committing, or the learner is still catching up: retry within the deadline.
                try
                {
                    await Task.Delay(CatchUpPoll, deadline);
                }
                catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
                {
                    await WriteErrorAsync(context, StatusCodes.Status409Conflict, what + ex.Message + retry);
                    return null;
                }
            }
            catch (MembershipChangeException ex)
            {
                await RefuseMembershipAsync(context, StatusCodes.Status409Conflict, what + ex.Message + " Nothing was changed." + retry);
                return null;
            }
            catch (ArgumentException ex)
            {
                await RefuseMembershipAsync(context, StatusCodes.Status400BadRequest, what + ex.Message + " Nothing was changed." + retry);
                return null;
            }
            catch (RaftBusyException ex)
            {
                await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, what + ex.Message + " Nothing was changed; retry shortly." + retry, retryLater: true);
                return null;
            }
            catch (ProposalDroppedException)
            {
                await WriteErrorAsync(context, StatusCodes.Status500InternalServerError,
                    what + "The change was dropped: leadership changed before it committed, so it did not take effect. Read GET /cluster/members, then retry." + retry);
                return null;
            }
            catch (ObjectDisposedException)
            {
                await ShuttingDownAsync(context);
                return null;
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                return null; // the client went away; the change may still take effect
            }
            catch (OperationCanceledException)
            {
                await WriteErrorAsync(context, StatusCodes.Status504GatewayTimeout,
                    what + $"The change {change} did not complete within {_node.Options.RequestTimeout.TotalSeconds:0.#} s: outcome unknown (it may still take effect). Read GET /cluster/members to find out.");
                return null;
            }
#pragma warning disable CA1031 // Anything else (node stopped or failed): the client must hear that the outcome is unknown.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Log.MembershipOutcomeUnknown(_node.Logger, _node.Id, change, ex);
                await WriteErrorAsync(context, StatusCodes.Status500InternalServerError,
                    what + $"The change {change} failed and its outcome is unknown ({ex.Message}). Read GET /cluster/members to find out.");
                return null;
            }
        }
    }

    private Task AnswerMembershipAsync(HttpContext context, int status, string result, ClusterConfiguration configuration)
    {
        context.Response.StatusCode = status;
        var view = DescribeConfiguration(_node.Raft.Status with { Configuration = configuration });
        return context.Response.WriteAsJsonAsync(new MembershipResult(result, view), context.RequestAborted);
    }

    /// <summary>The configuration in <paramref name="status"/>, with each member's address and, on the leader, its match index and lag.</summary>
    internal static ConfigurationView DescribeConfiguration(RaftStatus status)
    {
        var configuration = status.Configuration;
        var leader = status.Role == RaftRole.Leader;
        var members = new List<MemberView>();
        foreach (var member in configuration.Members.Concat(configuration.Outgoing.Where(m => configuration.Members.All(n => n.Id != m.Id))).OrderBy(m => m.Id))
        {
            var incoming = configuration.Members.FirstOrDefault(m => m.Id == member.Id);
            var role = incoming is null ? "outgoing voter" : incoming.Role == MemberRole.Learner ? "learner" : "voter";
            long? match = null, lag = null;
            if (leader && status.Progress.TryGetValue(member.Id, out var m))
            {
                match = m;
                lag = Math.Max(0, status.LastLogIndex - m);
            }
            members.Add(new MemberView(member.Id, role, member.Address, configuration.OutgoingVoters.Contains(member.Id), match, lag));
        }
        return new ConfigurationView(configuration.IsJoint, configuration.Voters, configuration.Learners, configuration.OutgoingVoters, members);
    }
}

internal static partial class Log
{
    [LoggerMessage(EventId = 9010, Level = LogLevel.Information, Message = "Node {NodeId}: membership change requested: {Action} node {MemberId} (address {Address})")]
    public static partial void MembershipRequested(ILogger logger, int nodeId, string action, int memberId, string? address);

    [LoggerMessage(EventId = 9011, Level = LogLevel.Information, Message = "Node {NodeId}: membership change {Change} done; configuration {Configuration}")]
    public static partial void MembershipChanged(ILogger logger, int nodeId, MembershipChange change, ClusterConfiguration configuration);

    [LoggerMessage(EventId = 9012, Level = LogLevel.Warning, Message = "Node {NodeId}: membership change {Change} failed; its outcome is unknown")]
    public static partial void MembershipOutcomeUnknown(ILogger logger, int nodeId, MembershipChange change, Exception exception);
}
