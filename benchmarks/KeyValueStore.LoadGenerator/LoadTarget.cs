using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>How one request ended.</summary>
internal enum Outcome
{
    /// <summary>PUT 204, or GET 200 with a value of the expected size.</summary>
    Ok,

    /// <summary>GET 404: the key does not exist (yet). Counts as a completed operation.</summary>
    NotFound,

    /// <summary>Nothing was submitted (503, or no connection could be made): safe to retry.</summary>
    Unavailable,

    /// <summary>Anything else (other status, timeout, connection error): for a PUT, its outcome is unknown.</summary>
    Failed,
}

/// <summary>
/// The cluster as the load sees it: one shared HTTP client, the request URIs of every key on every
/// node (built once), the values, and the record of acknowledged writes.
/// </summary>
internal sealed class LoadTarget : IDisposable
{
    /// <summary>Per-request deadline.</summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(10);

    private readonly Uri[][] _keyUris;
    private long _lastWriteId;

    public LoadTarget(IReadOnlyList<Uri> nodes, int keyCount, ValueFactory values)
    {
        Nodes = nodes;
        Values = values;
        Tracker = new KeyTracker(keyCount);
        _keyUris = [.. nodes.Select(node => Enumerable.Range(0, keyCount).Select(key => new Uri(node, KeyPath(key))).ToArray())];
        Http = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            UseCookies = false,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            MaxConnectionsPerServer = 4096,
            ConnectTimeout = TimeSpan.FromSeconds(5),
        })
        {
            Timeout = RequestTimeout,
        };
    }

    public IReadOnlyList<Uri> Nodes { get; }

    public ValueFactory Values { get; }

    public KeyTracker Tracker { get; }

    public HttpClient Http { get; }

    public int KeyCount => Tracker.Count;

    public static string KeyName(int key) => "k" + key.ToString(CultureInfo.InvariantCulture);

    public static string KeyPath(int key) => "kv/" + KeyName(key);

    /// <summary>
    /// <c>PUT /kv/{key}</c> on <paramref name="node"/> with a fresh value, and records the result in
    /// <see cref="Tracker"/>: acknowledged (with its send and acknowledgement times), or of unknown
    /// outcome (any error but 503 or a failed connect).
    /// </summary>
    /// <param name="node">The node's position in <see cref="Nodes"/>.</param>
    /// <param name="key">The key's number.</param>
    /// <param name="connection">The client's own connection to <paramref name="node"/> (<c>--client raw</c>), or null for the shared <see cref="Http"/> client.</param>
    /// <param name="idempotencyKey">With <c>--exactly-once</c>: the write's <c>Idempotency-Key</c> (<c>clientId:sequence</c>); such a write is not recorded here but by its caller, once its retries made its outcome known.</param>
    /// <param name="writeId">The write's id, to send the same value again (a retry); 0 for a new one.</param>
    public async Task<(Outcome Outcome, string? Error, long Start, long End)> PutAsync(int node, int key, RawHttpConnection? connection = null, string? idempotencyKey = null, long writeId = 0)
    {
        var id = writeId != 0 ? writeId : NextWriteId();
        var body = Values.Create(id);
        var start = Stopwatch.GetTimestamp();
        (Outcome, string?) result;
        try
        {
            HttpStatusCode status;
            if (connection is not null)
            {
                status = (HttpStatusCode)(await connection.SendAsync("PUT", KeyPath(key), body, idempotencyKey)).Status;
            }
            else
            {
                using var request = new HttpRequestMessage(HttpMethod.Put, _keyUris[node][key]) { Content = new ByteArrayContent(body) };
                if (idempotencyKey is not null)
                    request.Headers.TryAddWithoutValidation("Idempotency-Key", idempotencyKey);
                using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseContentRead);
                status = response.StatusCode;
            }
            result = status == HttpStatusCode.NoContent ? (Outcome.Ok, null) : FromStatus(status);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException or TimeoutException or SocketException)
        {
            result = FromException(ex);
        }
        var end = Stopwatch.GetTimestamp();
        if (idempotencyKey is not null)
            return (result.Item1, result.Item2, start, end);
        switch (result.Item1)
        {
            case Outcome.Ok:
                Tracker.Acknowledged(key, id, start, end);
                break;
            case Outcome.Failed:
                Tracker.OutcomeUnknown(key);
                break;
        }
        return (result.Item1, result.Item2, start, end);
    }

    /// <summary>A new write id (its value starts with it).</summary>
    public long NextWriteId() => Interlocked.Increment(ref _lastWriteId);

    /// <summary><c>POST /sessions</c> on <paramref name="node"/>: an exactly-once session's client id, or null when none was opened.</summary>
    public async Task<long?> OpenSessionAsync(int node)
    {
        try
        {
            using var response = await Http.PostAsync(new Uri(Nodes[node], "sessions"), null);
            if (response.StatusCode != HttpStatusCode.Created)
                return null;
            using var json = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return json.RootElement.GetProperty("clientId").GetInt64();
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException or System.Text.Json.JsonException or KeyNotFoundException)
        {
            return null;
        }
    }

    /// <summary><c>GET /kv/{key}</c> on <paramref name="node"/> (a linearizable read on the leader).</summary>
    /// <param name="node">The node's position in <see cref="Nodes"/>.</param>
    /// <param name="key">The key's number.</param>
    /// <param name="connection">The client's own connection to <paramref name="node"/> (<c>--client raw</c>), or null for the shared <see cref="Http"/> client.</param>
    public async Task<(Outcome Outcome, string? Error, long Start, long End)> GetAsync(int node, int key, RawHttpConnection? connection = null)
    {
        var start = Stopwatch.GetTimestamp();
        (Outcome, string?) result;
        try
        {
            if (connection is not null)
            {
                var (status, length) = await connection.SendAsync("GET", KeyPath(key), ReadOnlyMemory<byte>.Empty);
                result = status switch
                {
                    (int)HttpStatusCode.OK => length != Values.Size ? (Outcome.Failed, "GET value of wrong size") : (Outcome.Ok, null),
                    (int)HttpStatusCode.NotFound => (Outcome.NotFound, null),
                    _ => FromStatus((HttpStatusCode)status),
                };
                return (result.Item1, result.Item2, start, Stopwatch.GetTimestamp());
            }
            using var request = new HttpRequestMessage(HttpMethod.Get, _keyUris[node][key]);
            using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseContentRead);
            switch (response.StatusCode)
            {
                case HttpStatusCode.OK:
                    // The content is buffered already: its length is the value's.
                    result = response.Content.Headers.ContentLength is { } length && length != Values.Size
                        ? (Outcome.Failed, "GET value of wrong size")
                        : (Outcome.Ok, null);
                    break;
                case HttpStatusCode.NotFound:
                    result = (Outcome.NotFound, null);
                    break;
                default:
                    result = FromStatus(response.StatusCode);
                    break;
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException or TimeoutException or SocketException)
        {
            result = FromException(ex);
        }
        return (result.Item1, result.Item2, start, Stopwatch.GetTimestamp());
    }

    private static (Outcome, string?) FromStatus(HttpStatusCode status) => status switch
    {
        HttpStatusCode.ServiceUnavailable => (Outcome.Unavailable, "503"),
        _ => (Outcome.Failed, ((int)status).ToString(CultureInfo.InvariantCulture)),
    };

    private static (Outcome, string?) FromException(Exception ex) => ex switch
    {
        TaskCanceledException or TimeoutException => (Outcome.Failed, "timeout"),
        SocketException => (Outcome.Unavailable, "connect failed"), // the raw client: nothing was sent
        HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError } => (Outcome.Unavailable, "connect failed"),
        _ => (Outcome.Failed, "connection error"),
    };

    public void Dispose() => Http.Dispose();
}
