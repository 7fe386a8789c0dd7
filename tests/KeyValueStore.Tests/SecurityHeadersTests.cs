using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>
/// What the cross-site checks let through (their refusals are cases of <see cref="BadInputTests"/>):
/// JSON with a UTF-8 charset, the node's own pages, programs that send no Origin, reads from anywhere,
/// the loopback names; and <c>X-Content-Type-Options: nosniff</c> on every answer.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class SecurityHeadersTests(ClusterFixture fixture)
{
    [Theory]
    [InlineData("application/json")]
    [InlineData("application/json; charset=utf-8")]
    [InlineData("Application/JSON; Charset=\"UTF-8\"")]
    public async Task A_cas_body_declared_as_json_is_accepted_with_or_without_a_utf8_charset(string contentType)
    {
        var leader = await fixture.LeaderAsync();
        foreach (var node in new[] { leader, fixture.Followers(leader)[0] })
        {
            var key = $"ct-{node.Id}-{contentType.Length}";
            using var content = new StringContent("{\"expected\":null,\"value\":\"v\"}", Encoding.UTF8);
            content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
            using var response = await fixture.Http.PostAsync(node.Url($"kv/{key}/cas"), content);
            Assert.True(response.StatusCode == HttpStatusCode.NoContent, $"{contentType} on node {node.Id}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            Assert.True(node.StateMachine.TryGet(key, out var value) && value == "v");
        }
    }

    [Fact]
    public async Task Writes_from_the_nodes_own_pages_and_from_programs_without_an_origin_are_accepted()
    {
        var leader = await fixture.LeaderAsync();
        var follower = fixture.Followers(leader)[0];
        foreach (var node in new[] { leader, follower })
        {
            var url = node.HttpUrl!;
            // The status page's form: same origin as the node, as the browser states it.
            var sameOrigin = await RawHttp.SendAsync(url, $"PUT /kv/page-{node.Id} HTTP/1.1\r\nOrigin: http://{url.Authority}\r\nContent-Length: 1", "p"u8.ToArray());
            Assert.True(sameOrigin.Status == 204, $"same origin on node {node.Id}: {sameOrigin.Status} {sameOrigin.Body}");
            // The same page opened as localhost.
            var localhost = await RawHttp.SendAsync(url, $"DELETE /kv/page-{node.Id} HTTP/1.1\r\nOrigin: http://localhost:{url.Port}", host: $"localhost:{url.Port}");
            Assert.True(localhost.Status == 204, $"localhost origin on node {node.Id}: {localhost.Status} {localhost.Body}");
            // curl and other programs send no Origin.
            var program = await RawHttp.SendAsync(url, $"PUT /kv/program-{node.Id} HTTP/1.1\r\nContent-Length: 1", "c"u8.ToArray(), host: $"[::1]:{url.Port}");
            Assert.True(program.Status == 204, $"no origin, Host [::1] on node {node.Id}: {program.Status} {program.Body}");
        }
    }

    [Fact]
    public async Task Reads_with_a_foreign_origin_are_answered_without_granting_cross_origin_access()
    {
        var leader = await fixture.LeaderAsync();
        using (var put = await fixture.Http.PutAsync(leader.Url("kv/readable"), new StringContent("r")))
            Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        var read = await RawHttp.SendAsync(leader.HttpUrl!, "GET /kv/readable HTTP/1.1\r\nOrigin: http://attacker.example");
        Assert.Equal(200, read.Status);
        Assert.Equal("r", read.Body);
        // No CORS grant: a browser does not let the foreign page see the answer.
        Assert.False(read.Headers.ContainsKey("Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task Every_answer_says_nosniff()
    {
        var leader = await fixture.LeaderAsync();
        var follower = fixture.Followers(leader)[0];
        using (var put = await fixture.Http.PutAsync(leader.Url("kv/sniffed"), new StringContent("<html><script>alert(1)</script>")))
            AssertNoSniff(put, HttpStatusCode.NoContent);
        using (var get = await fixture.Http.GetAsync(follower.Url("kv/sniffed")))
            AssertNoSniff(get, HttpStatusCode.OK);
        foreach (var (path, status) in new[]
        {
            ("", HttpStatusCode.OK), ("status", HttpStatusCode.OK), ("cluster", HttpStatusCode.OK),
            ("kv/never-written-sniff", HttpStatusCode.NotFound), ("nope", HttpStatusCode.NotFound), ("kv/", HttpStatusCode.BadRequest),
        })
        {
            using var response = await fixture.Http.GetAsync(follower.Url(path));
            AssertNoSniff(response, status);
        }
        using (var wrongMethod = await fixture.Http.DeleteAsync(leader.Url("status")))
            AssertNoSniff(wrongMethod, HttpStatusCode.MethodNotAllowed);

        // Relayed from the leader when the follower forwards over HTTP.
        follower.Forward = ForwardMode.Http;
        try
        {
            using var relayed = await fixture.Http.PutAsync(follower.Url("kv/sniffed"), new StringContent("relayed"));
            AssertNoSniff(relayed, HttpStatusCode.NoContent);
            Assert.Equal(follower.IdText(), relayed.Header(KvApi.ForwardedHeader));
        }
        finally
        {
            follower.Forward = ForwardMode.Raft;
        }
    }

    private static void AssertNoSniff(HttpResponseMessage response, HttpStatusCode status)
    {
        var where = $"{response.RequestMessage?.Method} {response.RequestMessage?.RequestUri}";
        Assert.True(response.StatusCode == status, $"{where}: {(int)response.StatusCode}");
        Assert.True(response.Header("X-Content-Type-Options") == "nosniff", $"{where}: no X-Content-Type-Options: nosniff");
    }
}

/// <summary>The host and origin rules themselves, on options a test cluster does not use.</summary>
public sealed class RequestGuardTests
{
    private static KvNodeOptions Options(EndPoint httpListen, IReadOnlyList<string>? hosts = null, IReadOnlyList<string>? origins = null) => new()
    {
        Id = 2,
        Members = [1, 2, 3],
        RaftListen = new IPEndPoint(IPAddress.Any, 7002),
        HttpListen = httpListen,
        RaftPeers = new Dictionary<int, EndPoint>
        {
            [1] = new DnsEndPoint("node-1.example", 7001),
            [2] = new DnsEndPoint("node-2.example", 7002),
            [3] = new DnsEndPoint("node-3.example", 7003),
        },
        HttpPeers = new Dictionary<int, Uri> { [1] = new("http://web-1.example/"), [3] = new("http://web-3.example/") },
        DataDirectory = "unused",
        AllowedHosts = hosts ?? [],
        AllowedOrigins = origins ?? [],
    };

    [Fact]
    public void By_default_a_node_answers_to_loopback_names_its_listen_address_and_its_own_member_address()
    {
        var guard = new RequestGuard(Options(new IPEndPoint(IPAddress.Parse("10.0.0.5"), 8002)));
        foreach (var host in new[] { "localhost", "LOCALHOST:8002", "127.0.0.1:8002", "[::1]:8002", "10.0.0.5", "10.0.0.5:8002", "node-2.example:8002", "Node-2.Example" })
            Assert.True(guard.IsAllowedHost(new HostString(host)), host);
        foreach (var host in new[] { "node-1.example", "web-1.example", "attacker.example", "10.0.0.6:8002", "127.0.0.2", "0.0.0.0", "localhost.attacker.example" })
            Assert.False(guard.IsAllowedHost(new HostString(host)), host);
        // HTTP/1.0 without Host: not a browser.
        Assert.True(guard.IsAllowedHost(default));
    }

    [Fact]
    public void A_wildcard_listen_address_adds_no_host_and_this_nodes_http_peer_entry_does()
    {
        var options = Options(new IPEndPoint(IPAddress.Any, 8002));
        options = new KvNodeOptions
        {
            Id = options.Id, Members = options.Members, RaftListen = options.RaftListen, HttpListen = options.HttpListen, DataDirectory = options.DataDirectory,
            RaftPeers = options.RaftPeers,
            HttpPeers = new Dictionary<int, Uri> { [2] = new("http://web-2.example:8080/") },
        };
        var guard = new RequestGuard(options);
        Assert.True(guard.IsAllowedHost(new HostString("web-2.example:8080")));
        Assert.False(guard.IsAllowedHost(new HostString("0.0.0.0:8002")));
    }

    [Fact]
    public void Configured_hosts_are_added_and_a_star_allows_any()
    {
        var guard = new RequestGuard(Options(new IPEndPoint(IPAddress.Loopback, 8002), hosts: ["kv.example", "[fd00::5]"]));
        Assert.True(guard.IsAllowedHost(new HostString("KV.example:443")));
        Assert.True(guard.IsAllowedHost(new HostString("[fd00::5]:8002")));
        Assert.True(guard.IsAllowedHost(new HostString("localhost")));
        Assert.False(guard.IsAllowedHost(new HostString("other.example")));
        Assert.True(new RequestGuard(Options(new IPEndPoint(IPAddress.Loopback, 8002), hosts: ["*"])).IsAllowedHost(new HostString("anything.example")));
    }

    [Fact]
    public void Only_the_requests_own_origin_and_configured_ones_may_change_data()
    {
        var guard = new RequestGuard(Options(new IPEndPoint(IPAddress.Loopback, 8002), origins: ["http://app.example:3000"]));
        var request = new DefaultHttpContext().Request;
        request.Scheme = "http";
        request.Host = new HostString("127.0.0.1:8002");
        Assert.True(guard.IsAllowedOrigin("http://127.0.0.1:8002", request));
        Assert.True(guard.IsAllowedOrigin("http://app.example:3000", request));
        foreach (var origin in new[] { "http://127.0.0.1:8003", "https://127.0.0.1:8002", "http://localhost:8002", "http://app.example", "null", "", "http://attacker.example" })
            Assert.False(guard.IsAllowedOrigin(origin, request), origin);
        request.Host = new HostString("localhost"); // port 80
        Assert.True(guard.IsAllowedOrigin("http://localhost", request));
        Assert.True(new RequestGuard(Options(new IPEndPoint(IPAddress.Loopback, 8002), origins: ["*"])).IsAllowedOrigin("http://attacker.example", request));
    }

    [Theory]
    [InlineData("PUT", true)]
    [InlineData("POST", true)]
    [InlineData("DELETE", true)]
    [InlineData("PATCH", true)]
    [InlineData("GET", false)]
    [InlineData("HEAD", false)]
    [InlineData("OPTIONS", false)]
    public void State_changing_methods_are_the_ones_checked_for_origin(string method, bool changes) =>
        Assert.Equal(changes, RequestGuard.IsStateChanging(method));
}

/// <summary>The Raft port's secret: generated for an embedded cluster, required of a node, handed to the transport.</summary>
public sealed class ClusterSecretTests
{
    [Fact]
    public async Task An_embedded_cluster_gives_all_its_nodes_one_new_random_secret_and_the_transport_gets_it()
    {
        await using var first = await EmbeddedCluster.StartAsync(TestCluster.Options());
        await using var second = await EmbeddedCluster.StartAsync(TestCluster.Options());
        var secret = first.Nodes[0].Options.ClusterSecret;
        Assert.NotNull(secret);
        Assert.Equal(KvNodeOptions.GeneratedClusterSecretBytes, secret.Length);
        foreach (var node in first.Nodes)
        {
            Assert.Equal(secret, node.Options.ClusterSecret);
            Assert.Equal(Convert.ToBase64String(secret), node.RaftSettings.ClusterSecret); // what the hosting package gives the transport
        }
        Assert.NotEqual(secret, second.Nodes[0].Options.ClusterSecret);
        Assert.Equal(Convert.ToBase64String(second.Nodes[0].Options.ClusterSecret!), second.Nodes[2].RaftSettings.ClusterSecret);
        await first.WaitForLeaderAsync(TestCluster.LeaderTimeout); // the nodes still form a cluster
    }

    [Fact]
    public async Task A_node_without_a_secret_does_not_start_unless_insecure()
    {
        var folder = Directory.CreateTempSubdirectory("kv-secret-");
        try
        {
            var options = EmbeddedCluster.NodeOptions(TestCluster.Options(), 1, [1], folder.FullName, new byte[KvNodeOptions.MinClusterSecretBytes]);
            var none = await Assert.ThrowsAsync<ArgumentException>(() => KvNode.CreateAsync(Copy(options, secret: null, insecure: false)));
            Assert.Contains("no cluster secret", none.Message, StringComparison.Ordinal);
            var tooShort = await Assert.ThrowsAsync<ArgumentException>(() => KvNode.CreateAsync(Copy(options, secret: new byte[KvNodeOptions.MinClusterSecretBytes - 1], insecure: false)));
            Assert.Contains("at least 16", tooShort.Message, StringComparison.Ordinal);
            await using (var insecure = await KvNode.CreateAsync(Copy(options, secret: null, insecure: true)))
                Assert.Null(insecure.RaftSettings.ClusterSecret);
            await using (var secured = await KvNode.CreateAsync(options))
                Assert.Equal(Convert.ToBase64String(new byte[KvNodeOptions.MinClusterSecretBytes]), secured.RaftSettings.ClusterSecret);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    private static KvNodeOptions Copy(KvNodeOptions o, byte[]? secret, bool insecure) => new()
    {
        Id = o.Id, Members = o.Members, RaftListen = o.RaftListen, HttpListen = o.HttpListen, DataDirectory = o.DataDirectory,
        MinimumLogLevel = o.MinimumLogLevel, ClusterSecret = secret, Insecure = insecure,
    };
}
