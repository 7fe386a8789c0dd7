using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>Shared settings and helpers of the tests.</summary>
internal static class TestCluster
{
    /// <summary>Generous: a loaded CI machine may be slow to elect.</summary>
    public static readonly TimeSpan LeaderTimeout = TimeSpan.FromSeconds(20);

    public static EmbeddedClusterOptions Options(long snapshotInterval = 1000, long trailing = 100, TimeSpan? requestTimeout = null, string? dataDirectory = null, bool deleteData = true) => new()
    {
        MinimumLogLevel = LogLevel.Error,
        SnapshotInterval = snapshotInterval,
        SnapshotTrailingEntries = trailing,
        RequestTimeout = requestTimeout ?? TimeSpan.FromSeconds(5),
        DataDirectory = dataDirectory,
        DeleteDataOnDispose = deleteData,
    };

    public static HttpClient CreateClient() => new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false })
    {
        Timeout = TimeSpan.FromSeconds(30),
    };

    public static Uri Url(this KvNode node, string relative) => new(node.HttpUrl!, relative);

    public static string IdText(this KvNode node) => node.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Polls <paramref name="condition"/> until it holds; fails with <paramref name="what"/> after <paramref name="timeout"/> (default 15 s).</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var limit = timeout ?? TimeSpan.FromSeconds(15);
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > limit)
                Assert.Fail($"Timed out after {limit.TotalSeconds} s waiting for: {what}");
            await Task.Delay(10);
        }
    }

    public static async Task<JsonElement> ReadJsonAsync(this HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        try
        {
            return JsonDocument.Parse(text).RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw new Xunit.Sdk.XunitException($"Expected JSON from {response.RequestMessage?.Method} {response.RequestMessage?.RequestUri} ({(int)response.StatusCode}), got: {text} ({ex.Message})");
        }
    }

    public static string Header(this HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : "";
}

/// <summary>An HTTP/1.1 exchange over a raw socket, for requests HttpClient will not send (malformed percent-encoding, no body at all).</summary>
internal static class RawHttp
{
    public sealed record Response(int Status, IReadOnlyDictionary<string, string> Headers, string Body);

    /// <param name="head">The request line and headers, without the final blank line; "Host" and "Connection: close" are added.</param>
    /// <param name="host">The Host header; null: <paramref name="baseUrl"/>'s authority.</param>
    public static async Task<Response> SendAsync(Uri baseUrl, string head, byte[]? body = null, string? host = null)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(baseUrl.Host, baseUrl.Port);
        await using var stream = client.GetStream();
        var request = Encoding.ASCII.GetBytes($"{head}\r\nHost: {host ?? baseUrl.Authority}\r\nConnection: close\r\n\r\n");
        // Written while the answer is read: a server may answer (413) before it reads a large body.
        var writing = Task.Run(async () =>
        {
            try
            {
                await stream.WriteAsync(request);
                if (body is not null)
                    await stream.WriteAsync(body);
            }
            catch (IOException)
            {
                // The server closed the connection before taking the whole body.
            }
        });
        using var received = new MemoryStream();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await stream.CopyToAsync(received, timeout.Token);
        }
        catch (IOException) when (received.Length > 0)
        {
            // The server may reset after answering (unread request body); the answer is complete.
        }
        await writing;
        return Parse(received.ToArray());
    }

    private static Response Parse(byte[] data)
    {
        var split = data.AsSpan().IndexOf("\r\n\r\n"u8);
        Assert.True(split > 0, $"No complete HTTP response: '{Encoding.UTF8.GetString(data)}'");
        var lines = Encoding.ASCII.GetString(data, 0, split).Split("\r\n");
        var status = int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
        }
        var body = data.AsSpan(split + 4).ToArray();
        if (headers.TryGetValue("Transfer-Encoding", out var te) && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
            body = Dechunk(body);
        return new Response(status, headers, Encoding.UTF8.GetString(body));
    }

    private static byte[] Dechunk(byte[] chunked)
    {
        using var result = new MemoryStream();
        var position = 0;
        while (position < chunked.Length)
        {
            var lineEnd = chunked.AsSpan(position).IndexOf("\r\n"u8);
            if (lineEnd < 0)
                break;
            var size = Convert.ToInt32(Encoding.ASCII.GetString(chunked, position, lineEnd).Split(';')[0], 16);
            if (size == 0)
                break;
            result.Write(chunked, position + lineEnd + 2, size);
            position += lineEnd + 2 + size + 2;
        }
        return result.ToArray();
    }
}

/// <summary>One cluster shared by the tests of the "cluster" collection (they run one at a time, so each can check that nothing else changed the state).</summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public EmbeddedCluster Cluster { get; private set; } = null!;

    public HttpClient Http { get; } = TestCluster.CreateClient();

    public async Task InitializeAsync()
    {
        Cluster = await EmbeddedCluster.StartAsync(TestCluster.Options());
        await Cluster.WaitForLeaderAsync(TestCluster.LeaderTimeout);
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Cluster.DisposeAsync();
    }

    public Task<KvNode> LeaderAsync() => Cluster.WaitForLeaderAsync(TestCluster.LeaderTimeout);

    public IReadOnlyList<KvNode> Followers(KvNode leader) => [.. Cluster.Nodes.Where(n => n != leader)];

    /// <summary>
    /// Every node's dictionary and last log index, once the cluster is quiet: to check that a refused
    /// request changed nothing (anything it had submitted would show up by then).
    /// </summary>
    public async Task<string> StateFingerprintAsync()
    {
        await WaitForConvergenceAsync();
        return string.Join(" | ", Cluster.Nodes.Select(n =>
            $"node {n.Id}: last {n.Raft.Status.LastLogIndex}: " + string.Join(",", n.StateMachine.ToList().Select(p => $"{p.Key}={p.Value}"))));
    }

    /// <summary>Waits until the cluster is quiet: every node has the leader's whole log, committed and applied.</summary>
    public async Task WaitForConvergenceAsync()
    {
        var leader = await LeaderAsync();
        await TestCluster.WaitUntilAsync(
            () =>
            {
                var last = leader.Raft.Status.LastLogIndex;
                return Cluster.Nodes.All(n => n.Raft.Status is var s && s.LastLogIndex == last && s.CommitIndex == last && s.AppliedIndex == last);
            },
            "every node has the leader's log, committed and applied");
    }
}

[CollectionDefinition(Name)]
public sealed class ClusterCollection : ICollectionFixture<ClusterFixture>
{
    public const string Name = "cluster";
}
