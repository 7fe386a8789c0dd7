using System.Net;
using DotNext.Net.Cluster.Consensus.Raft;
using Microsoft.AspNetCore.Http;

namespace Raft.Benchmarks.KeyValueServices;

/// <summary>
/// A follower's way to the leader: finds the leader's HTTP address from DotNext's <see cref="RaftCluster.Leader"/>
/// (its Raft end point, mapped through <c>--peers</c> and <c>--http-peers</c>) and relays a write request there,
/// answering with the leader's status and body. One hop: the leader does not forward again.
/// </summary>
internal sealed class LeaderForwarder : IDisposable
{
    /// <summary>The header a forwarded request carries; a node that is not the leader answers it 503 instead of forwarding again.</summary>
    public const string ForwardedHeader = "X-Forwarded-By-Follower";

    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    private readonly RaftCluster _cluster;
    private readonly Dictionary<EndPoint, int> _idByRaft;
    private readonly SortedDictionary<int, IPEndPoint> _httpPeers;
    private readonly HttpClient _http = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        PooledConnectionLifetime = System.Threading.Timeout.InfiniteTimeSpan,
        MaxConnectionsPerServer = 1024,
        ConnectTimeout = TimeSpan.FromSeconds(2),
    })
    {
        Timeout = System.Threading.Timeout.InfiniteTimeSpan,
    };

    public LeaderForwarder(RaftCluster cluster, SortedDictionary<int, IPEndPoint> peers, SortedDictionary<int, IPEndPoint> httpPeers)
    {
        _cluster = cluster;
        _idByRaft = peers.ToDictionary(p => (EndPoint)p.Value, p => p.Key);
        _httpPeers = httpPeers;
    }

    /// <summary>The current leader's id, or 0 when none is known.</summary>
    public int LeaderId => _cluster.Leader?.EndPoint is { } endPoint && _idByRaft.TryGetValue(endPoint, out var id) ? id : 0;

    /// <summary>
    /// Sends <paramref name="method"/> <paramref name="path"/> with <paramref name="body"/> to the leader and copies its
    /// answer. 503 when no leader is known or it cannot be reached (nothing sent); 504 when it does not answer within
    /// <see cref="Timeout"/>, 502 when the connection breaks after sending (outcome unknown).
    /// </summary>
    public async Task ForwardAsync(HttpContext context, HttpMethod method, string path, byte[] body, string? contentType)
    {
        var leader = LeaderId;
        if (leader == 0 || !_httpPeers.TryGetValue(leader, out var target))
        {
            await KvHttp.ErrorAsync(context, StatusCodes.Status503ServiceUnavailable, "no leader known");
            return;
        }
        using var request = new HttpRequestMessage(method, new Uri($"http://{target}{path}")) { Content = new ByteArrayContent(body) };
        if (contentType is not null)
            request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        request.Headers.TryAddWithoutValidation(ForwardedHeader, "1");
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        deadline.CancelAfter(Timeout);
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token);
            context.Response.StatusCode = (int)response.StatusCode;
            if (response.Content.Headers.ContentType is { } type)
                context.Response.ContentType = type.ToString();
            if (response.Headers.RetryAfter is { } retry)
                context.Response.Headers.RetryAfter = retry.ToString();
            var answer = await response.Content.ReadAsByteArrayAsync(deadline.Token);
            if (answer.Length > 0)
                await context.Response.Body.WriteAsync(answer, context.RequestAborted);
        }
        catch (HttpRequestException ex) when (ex.HttpRequestError == HttpRequestError.ConnectionError)
        {
            await KvHttp.ErrorAsync(context, StatusCodes.Status503ServiceUnavailable, $"the leader (node {leader}) cannot be reached: {ex.Message}");
        }
        catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
        {
            await KvHttp.ErrorAsync(context, StatusCodes.Status504GatewayTimeout, $"the leader (node {leader}) did not answer within {Timeout.TotalSeconds:0} s: outcome unknown");
        }
        catch (HttpRequestException ex)
        {
            await KvHttp.ErrorAsync(context, StatusCodes.Status502BadGateway, $"the connection to the leader (node {leader}) broke: outcome unknown ({ex.Message})");
        }
    }

    public void Dispose() => _http.Dispose();
}
