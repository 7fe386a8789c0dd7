using System.Text.Json;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>The fields of a node's <c>GET /status</c> answer the load generator uses.</summary>
internal sealed record NodeStatus(int Id, string Role, long Term, int LeaderId, long CommitIndex, long LastApplied)
{
    public bool IsLeader => string.Equals(Role, "leader", StringComparison.Ordinal);
}

/// <summary>Reads <c>GET /status</c> from the nodes (control traffic, on its own connections).</summary>
internal sealed class ClusterStatus : IDisposable
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(2);
    private readonly HttpClient _http;

    public ClusterStatus(IReadOnlyList<Uri> urls)
    {
        Urls = urls;
        _http = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            UseCookies = false,
            ConnectTimeout = DefaultTimeout,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan, // every call has its own deadline
        };
    }

    public IReadOnlyList<Uri> Urls { get; }

    /// <summary>The client for control requests (status, the final reads).</summary>
    public HttpClient Http => _http;

    /// <summary>Every node's status, in <see cref="Urls"/> order; a node that did not answer has a null status and the reason.</summary>
    public async Task<(NodeStatus? Status, string? Error)[]> GetAllAsync(TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        await Task.WhenAll(Urls.Select(url => GetAsync(url, timeout ?? DefaultTimeout, cancellationToken)));

    /// <summary>One node's status, or why there is none.</summary>
    public async Task<(NodeStatus? Status, string? Error)> GetAsync(Uri url, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            using var response = await _http.GetAsync(new Uri(url, "status"), deadline.Token);
            if (!response.IsSuccessStatusCode)
                return (null, $"GET /status answered {(int)response.StatusCode}");
            await using var body = await response.Content.ReadAsStreamAsync(deadline.Token);
            using var json = await JsonDocument.ParseAsync(body, cancellationToken: deadline.Token);
            var root = json.RootElement;
            return (new NodeStatus(
                root.GetProperty("id").GetInt32(),
                root.GetProperty("role").GetString() ?? "",
                root.GetProperty("term").GetInt64(),
                root.GetProperty("leaderId").GetInt32(),
                root.GetProperty("commitIndex").GetInt64(),
                root.GetProperty("lastApplied").GetInt64()), null);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return (null, $"no answer to GET /status within {timeout.TotalSeconds:0.#} s");
        }
        catch (HttpRequestException ex)
        {
            return (null, ex.Message);
        }
        catch (IOException ex)
        {
            return (null, ex.Message);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return (null, $"GET /status did not answer the expected JSON ({ex.Message})");
        }
    }

    public void Dispose() => _http.Dispose();
}
