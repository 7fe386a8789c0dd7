using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>
/// <c>POST /cluster/members</c>: strict validation (4xx with a reason, nothing changed, on the leader
/// and on a follower, which refuses it itself), the library's refusals mapped to HTTP, forwarding
/// from a follower, and the configuration in <c>GET /status</c>.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class MembershipEndpointTests(ClusterFixture fixture)
{
    private const string Json = "Content-Type: application/json";

    public static TheoryData<string, string?, int, string> BadRequests() => new()
    {
        { "", Json, 400, "The body is empty" },
        { "{\"action\":", Json, 400, "not valid JSON" },
        { "[\"add\",4]", Json, 400, "must be a JSON object, not array" },
        { "{\"id\":4}", Json, 400, "\"action\" is missing" },
        { "{\"action\":\"replace\",\"id\":4}", Json, 400, "Unknown action \"replace\"" },
        { "{\"action\":\"remove\"}", Json, 400, "\"id\" (the node's id, a positive integer) is missing" },
        { "{\"action\":\"remove\",\"id\":0}", Json, 400, "positive 32-bit integer, not 0" },
        { "{\"action\":\"remove\",\"id\":-3}", Json, 400, "positive 32-bit integer" },
        { "{\"action\":\"remove\",\"id\":4.5}", Json, 400, "positive 32-bit integer, not 4.5" },
        { "{\"action\":\"remove\",\"id\":4294967296}", Json, 400, "positive 32-bit integer" },
        { "{\"action\":\"remove\",\"id\":\"4\"}", Json, 400, "\"id\" must be a number, not string" },
        { "{\"action\":4,\"id\":4}", Json, 400, "\"action\" must be a string, not number" },
        { "{\"action\":\"remove\",\"id\":4,\"id\":5}", Json, 400, "appears twice" },
        { "{\"action\":\"remove\",\"id\":4,\"force\":true}", Json, 400, "Unknown property \"force\"" },
        { "{\"action\":\"remove\",\"id\":4,\"address\":\"127.0.0.1:7004\"}", Json, 400, "\"remove\" takes only an \"id\"" },
        { "{\"action\":\"promote\",\"id\":4,\"role\":\"learner\"}", Json, 400, "\"promote\" takes only an \"id\"" },
        { "{\"action\":\"add\",\"id\":4}", Json, 400, "\"add\" needs the new node's Raft \"address\"" },
        { "{\"action\":\"add\",\"id\":4,\"address\":\"  \"}", Json, 400, "\"add\" needs the new node's Raft \"address\"" },
        { "{\"action\":\"add\",\"id\":4,\"address\":\"127.0.0.1\"}", Json, 400, "is not host:port" },
        { "{\"action\":\"add\",\"id\":4,\"address\":\"127.0.0.1:99999\"}", Json, 400, "is not host:port" },
        { "{\"action\":\"add\",\"id\":4,\"address\":\"" + new string('h', 1100) + ":1\"}", Json, 400, "longer than 1024 bytes" },
        { "{\"action\":\"add\",\"id\":4,\"address\":\"127.0.0.1:7004\",\"role\":\"observer\"}", Json, 400, "Unknown role \"observer\"" },
        { "{\"action\":\"remove\",\"id\":4}", "Content-Type: text/plain", 415, "Content-Type is 'text/plain'" },
        { "{\"action\":\"remove\",\"id\":4}", null, 415, "no Content-Type" },
        { "action=remove&id=1", "Content-Type: application/x-www-form-urlencoded", 415, "application/x-www-form-urlencoded" },
        { "{\"action\":\"remove\",\"id\":1}", Json + "\r\nOrigin: http://attacker.example", 403, "Cross-origin POST from 'http://attacker.example' refused" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task A_bad_request_is_refused_with_a_reason_on_the_leader_and_on_a_follower_and_changes_nothing(string body, string? headers, int status, string message)
    {
        var before = await fixture.StateFingerprintAsync();
        var leader = await fixture.LeaderAsync();
        var configuration = leader.Raft.Configuration;
        foreach (var node in (KvNode[])[leader, fixture.Followers(leader)[0]])
        {
            var bytes = Encoding.UTF8.GetBytes(body);
            var head = $"POST /cluster/members HTTP/1.1\r\nContent-Length: {bytes.Length}" + (headers is null ? "" : "\r\n" + headers);
            var response = await RawHttp.SendAsync(node.HttpUrl!, head, bytes);
            Assert.True(response.Status == status, $"node {node.Id}: expected {status}, got {response.Status} {response.Body}");
            var error = JsonDocument.Parse(response.Body).RootElement.GetProperty("error").GetString();
            Assert.Contains(message, error, StringComparison.Ordinal);
            Assert.Equal(node.IdText(), response.Headers["X-Raft-Node"]); // refused where it arrived, not forwarded
        }
        Assert.Equal(before, await fixture.StateFingerprintAsync());
        Assert.Equal(configuration, leader.Raft.Configuration);
    }

    [Fact]
    public async Task A_foreign_host_is_refused_with_421()
    {
        var leader = await fixture.LeaderAsync();
        var bytes = "{\"action\":\"remove\",\"id\":1}"u8.ToArray();
        var response = await RawHttp.SendAsync(leader.HttpUrl!, $"POST /cluster/members HTTP/1.1\r\n{Json}\r\nContent-Length: {bytes.Length}", bytes, host: "attacker.example");
        Assert.Equal(421, response.Status);
        Assert.Equal(ClusterConfiguration.FromVoters([1, 2, 3]).Voters, leader.Raft.Configuration.Voters);
    }

    public static TheoryData<string, string> RefusedByTheLibrary() => new()
    {
        { "{\"action\":\"remove\",\"id\":9}", "9" },
        { "{\"action\":\"promote\",\"id\":2}", "2" },
        { "{\"action\":\"add\",\"id\":2,\"address\":\"127.0.0.1:1\"}", "2" },
    };

    [Theory]
    [MemberData(nameof(RefusedByTheLibrary))]
    public async Task A_change_that_does_not_fit_the_configuration_is_a_400_from_the_leader_even_when_sent_to_a_follower(string body, string id)
    {
        var before = await fixture.StateFingerprintAsync();
        var leader = await fixture.LeaderAsync();
        foreach (var node in (KvNode[])[leader, fixture.Followers(leader)[0]])
        {
            using var response = await fixture.Http.PostAsync(node.Url("cluster/members"), new StringContent(body, Encoding.UTF8, "application/json"));
            var json = await response.ReadJsonAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"node {node.Id}: {(int)response.StatusCode} {json}");
            Assert.Contains(id, json.GetProperty("error").GetString(), StringComparison.Ordinal);
            Assert.Contains("Nothing was changed", json.GetProperty("error").GetString(), StringComparison.Ordinal);
            Assert.Equal(leader.IdText(), response.Header(KvApi.NodeHeader)); // the leader decided
        }
        Assert.Equal(before, await fixture.StateFingerprintAsync());
    }

    [Fact]
    public async Task Status_and_cluster_members_show_the_configuration_with_the_leaders_match_indexes()
    {
        var leader = await fixture.LeaderAsync();
        await fixture.WaitForConvergenceAsync();
        using var status = await fixture.Http.GetAsync(leader.Url("status"));
        var json = await status.ReadJsonAsync();
        // The existing fields stay.
        foreach (var field in (string[])["id", "role", "term", "leaderId", "commitIndex", "lastApplied", "followers"])
            Assert.True(json.TryGetProperty(field, out _), $"GET /status lacks {field}: {json}");
        Assert.False(json.GetProperty("isRemoved").GetBoolean());
        var configuration = json.GetProperty("configuration");
        Assert.False(configuration.GetProperty("joint").GetBoolean());
        Assert.Equal([1, 2, 3], configuration.GetProperty("voters").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Empty(configuration.GetProperty("learners").EnumerateArray());
        var members = configuration.GetProperty("members").EnumerateArray().ToList();
        Assert.Equal(["voter", "voter", "voter"], members.Select(m => m.GetProperty("role").GetString()));
        Assert.All(members, m => Assert.True(m.GetProperty("matchIndex").GetInt64() > 0, m.ToString()));

        var follower = fixture.Followers(leader)[0];
        using var members2 = await fixture.Http.GetAsync(follower.Url("cluster/members"));
        var followerView = await members2.ReadJsonAsync();
        Assert.Equal([1, 2, 3], followerView.GetProperty("voters").EnumerateArray().Select(e => e.GetInt32()));
        Assert.All(followerView.GetProperty("members").EnumerateArray(), m => Assert.Equal(JsonValueKind.Null, m.GetProperty("matchIndex").ValueKind));
    }

    [Fact]
    public void The_parser_accepts_the_documented_shapes()
    {
        Assert.True(KvApi.TryParseMembership("{\"action\":\"add\",\"id\":4,\"address\":\"127.0.0.1:7004\"}"u8, out var add, out var error), error);
        Assert.Equal(new KvApi.MembershipRequest("add", 4, "127.0.0.1:7004", false), add);
        Assert.True(KvApi.TryParseMembership("{\"role\":\"learner\",\"address\":\"node4.example:7000\",\"id\":4,\"action\":\"add\"}"u8, out var learner, out error), error);
        Assert.Equal(new KvApi.MembershipRequest("add", 4, "node4.example:7000", true), learner);
        Assert.True(KvApi.TryParseMembership("{\"action\":\"add\",\"id\":4,\"address\":\"[::1]:7004\",\"role\":\"voter\"}"u8, out var voter, out error), error);
        Assert.False(voter!.StopAtLearner);
        Assert.True(KvApi.TryParseMembership("{\"action\":\"remove\",\"id\":1}"u8, out var remove, out error), error);
        Assert.Equal(new KvApi.MembershipRequest("remove", 1, null, false), remove);
        Assert.True(KvApi.TryParseMembership("{\"action\":\"promote\",\"id\":4}"u8, out var promote, out error), error);
        Assert.Equal(new KvApi.MembershipRequest("promote", 4, null, false), promote);
    }
}

/// <summary>
/// The happy paths of <c>POST /cluster/members</c> on a cluster of its own: a fourth node started with
/// <see cref="KvNodeOptions.Join"/> is added (as a learner, then promoted; or in one request), an
/// unreachable node stays a learner (202), and the leader is removed while writes go on.
/// </summary>
public sealed class MembershipHappyPathTests : IAsyncLifetime
{
    private readonly byte[] _secret = RandomNumberGenerator.GetBytes(KvNodeOptions.GeneratedClusterSecretBytes);
    private readonly HttpClient _http = TestCluster.CreateClient();
    private readonly List<KvNode> _joiners = [];
    private EmbeddedCluster? _cluster;

    public Task InitializeAsync() => Task.CompletedTask;

    /// <summary>Starts this test's 3-node cluster and returns its leader.</summary>
    private async Task<KvNode> StartClusterAsync(long maxPromotionLag = 1000)
    {
        _cluster = await EmbeddedCluster.StartAsync(new EmbeddedClusterOptions
        {
            MinimumLogLevel = LogLevel.Error,
            RequestTimeout = TimeSpan.FromSeconds(3),
            ClusterSecret = _secret,
            MaxPromotionLag = maxPromotionLag,
        });
        return await _cluster.WaitForLeaderAsync(TestCluster.LeaderTimeout);
    }

    private EmbeddedCluster Cluster => _cluster ?? throw new InvalidOperationException("StartClusterAsync first");

    public async Task DisposeAsync()
    {
        foreach (var joiner in _joiners)
            await joiner.DisposeAsync();
        _http.Dispose();
        if (_cluster is not null)
            await _cluster.DisposeAsync();
    }

    /// <summary>Starts a node with <see cref="KvNodeOptions.Join"/>, which knows the running members' Raft addresses (as <c>--peers</c> gives them) and nothing else.</summary>
    private async Task<KvNode> StartJoinerAsync(int id)
    {
        var node = await KvNode.CreateAsync(new KvNodeOptions
        {
            Id = id,
            Members = [1, 2, 3],
            Join = true,
            RaftListen = EmbeddedCluster.FreeEndPoints([id])[id],
            RaftPeers = Cluster.Nodes.ToDictionary(member => member.Id, member => (EndPoint)member.RaftEndPoint!),
            HttpListen = new IPEndPoint(IPAddress.Loopback, 0),
            DataDirectory = Path.Combine(Cluster.DataDirectory, $"node-{id}"),
            MinimumLogLevel = LogLevel.Error,
            RequestTimeout = TimeSpan.FromSeconds(3),
            ClusterSecret = _secret,
        });
        _joiners.Add(node);
        await node.StartAsync();
        foreach (var member in Cluster.Nodes)
            node.Directory.Set(member.Id, member.HttpUrl!);
        // Only the HTTP address (as --http-peers would give it): the Raft address must come from the configuration.
        foreach (var member in Cluster.Nodes)
            member.Directory.Set(id, node.HttpUrl!);
        return node;
    }

    private async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(KvNode node, object body)
    {
        using var response = await _http.PostAsync(node.Url("cluster/members"), JsonContent.Create(body));
        return (response.StatusCode, await response.ReadJsonAsync());
    }

    private static IEnumerable<int> Ids(JsonElement configuration, string property) =>
        configuration.GetProperty(property).EnumerateArray().Select(e => e.GetInt32());

    [Fact]
    public async Task A_joining_node_is_added_as_learner_promoted_then_the_leader_is_removed_and_writes_go_on()
    {
        var leader = await StartClusterAsync();
        var follower = Cluster.Nodes.First(n => n != leader);
        using (var put = await _http.PutAsync(leader.Url("kv/before"), new StringContent("1")))
            Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);

        var joiner = await StartJoinerAsync(4);
        Assert.True(joiner.Raft.Configuration.IsEmpty);
        await Task.Delay(TimeSpan.FromMilliseconds(600)); // several election timeouts: a joiner never campaigns
        Assert.Equal(RaftRole.Follower, joiner.Raft.Status.Role);
        Assert.Equal(0, joiner.Raft.Status.Term);

        using (var joining = await _http.GetAsync(joiner.Url("status")))
        {
            var json = await joining.ReadJsonAsync();
            Assert.True(json.GetProperty("join").GetBoolean());
            Assert.Empty(json.GetProperty("configuration").GetProperty("members").EnumerateArray());
        }
        using (var joiningCluster = await _http.GetAsync(joiner.Url("cluster")))
        {
            // The running members (as --peers gives them) and the joiner itself, which no configuration lists yet.
            var ids = (await joiningCluster.ReadJsonAsync()).GetProperty("nodes").EnumerateArray().Select(n => n.GetProperty("id").GetInt32());
            Assert.Equal([1, 2, 3, 4], ids);
        }

        // Sent to a follower: forwarded to the leader over HTTP.
        var address = ClusterDirectory.ToRaftAddress(joiner.RaftEndPoint!);
        var (status, body) = await PostAsync(follower, new { action = "add", id = 4, address, role = "learner" });
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        Assert.Contains("added as a learner", body.GetProperty("result").GetString(), StringComparison.Ordinal);
        var configuration = body.GetProperty("configuration");
        Assert.Equal([1, 2, 3], Ids(configuration, "voters"));
        Assert.Equal([4], Ids(configuration, "learners"));
        Assert.Equal(address, configuration.GetProperty("members").EnumerateArray().Single(m => m.GetProperty("id").GetInt32() == 4).GetProperty("address").GetString());

        // The learner catches up through the configuration's address, then is promoted.
        await TestCluster.WaitUntilAsync(() => joiner.StateMachine.TryGet("before", out _), "the learner has the data written before it joined");
        (status, body) = await PostAsync(leader, new { action = "promote", id = 4 });
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        Assert.Equal([1, 2, 3, 4], Ids(body.GetProperty("configuration"), "voters"));
        Assert.False(body.GetProperty("configuration").GetProperty("joint").GetBoolean());

        // Another node with the joiner's address: refused before the library sees it.
        (status, body) = await PostAsync(leader, new { action = "add", id = 5, address });
        Assert.True(status == HttpStatusCode.BadRequest, body.ToString());
        Assert.Contains("Node 4 already has the address", body.GetProperty("error").GetString(), StringComparison.Ordinal);

        // GET /cluster lists the new member wherever it is served.
        foreach (var node in (KvNode[])[joiner, follower])
        {
            using var cluster = await _http.GetAsync(node.Url("cluster"));
            var nodes = (await cluster.ReadJsonAsync()).GetProperty("nodes").EnumerateArray().ToList();
            Assert.Equal([1, 2, 3, 4], nodes.Select(n => n.GetProperty("id").GetInt32()));
            Assert.All(nodes, n => Assert.True(n.GetProperty("reachable").GetBoolean(), n.ToString()));
        }

        // The joiner's status shows it is a voter now.
        using (var joinerStatus = await _http.GetAsync(joiner.Url("status")))
        {
            var json = await joinerStatus.ReadJsonAsync();
            Assert.False(json.GetProperty("isRemoved").GetBoolean());
            Assert.True(json.GetProperty("join").GetBoolean());
            Assert.Equal([1, 2, 3, 4], Ids(json.GetProperty("configuration"), "voters"));
        }

        // Remove the leader: it commits C(new), hands over and steps down; writes keep working.
        (status, body) = await PostAsync(leader, new { action = "remove", id = leader.Id });
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        var remaining = new[] { 1, 2, 3, 4 }.Where(i => i != leader.Id).ToArray();
        Assert.Equal(remaining, Ids(body.GetProperty("configuration"), "voters"));
        var survivors = Cluster.Nodes.Where(n => n != leader).Append(joiner).ToList();
        await TestCluster.WaitUntilAsync(() => survivors.Count(n => n.Raft.Status.Role == RaftRole.Leader) == 1, "a new leader among the remaining voters", TestCluster.LeaderTimeout);
        await TestCluster.WaitUntilAsync(() => leader.Raft.Status.IsRemoved, "the old leader knows it was removed");
        var newLeader = survivors.Single(n => n.Raft.Status.Role == RaftRole.Leader);
        using (var put = await _http.PutAsync(newLeader.Url("kv/after"), new StringContent("2")))
            Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        foreach (var node in survivors)
        {
            using var get = await _http.GetAsync(node.Url("kv/after"));
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            using var before = await _http.GetAsync(node.Url("kv/before"));
            Assert.Equal("1", await before.Content.ReadAsStringAsync());
        }
        using (var removedStatus = await _http.GetAsync(leader.Url("status")))
            Assert.True((await removedStatus.ReadJsonAsync()).GetProperty("isRemoved").GetBoolean());
    }

    [Fact]
    public async Task Add_in_one_request_promotes_a_caught_up_node_and_leaves_an_unreachable_one_a_learner_with_202()
    {
        var leader = await StartClusterAsync();
        var joiner = await StartJoinerAsync(4);
        var (status, body) = await PostAsync(leader, new { action = "add", id = 4, address = ClusterDirectory.ToRaftAddress(joiner.RaftEndPoint!) });
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        Assert.Contains("caught up and was promoted", body.GetProperty("result").GetString(), StringComparison.Ordinal);
        Assert.Equal([1, 2, 3, 4], Ids(body.GetProperty("configuration"), "voters"));

        // Nothing listens at this address: the node is added as a learner, never catches up, is not promoted.
        var nobody = new TcpListenerPort();
        (status, body) = await PostAsync(leader, new { action = "add", id = 5, address = $"127.0.0.1:{nobody.Port}" });
        Assert.True(status == HttpStatusCode.Accepted, body.ToString());
        Assert.Contains("added as a learner but not promoted", body.GetProperty("result").GetString(), StringComparison.Ordinal);
        Assert.Equal([5], Ids(body.GetProperty("configuration"), "learners"));
        Assert.Equal([1, 2, 3, 4], leader.Raft.Configuration.Voters);

        // A learner that never caught up is removed as any member is.
        (status, body) = await PostAsync(leader, new { action = "remove", id = 5 });
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        Assert.Empty(Ids(body.GetProperty("configuration"), "learners"));
    }

    [Fact]
    public async Task Promoting_a_learner_that_lags_beyond_the_limit_is_a_409_with_the_reason_and_changes_nothing()
    {
        var leader = await StartClusterAsync(maxPromotionLag: 1);
        var nobody = new TcpListenerPort();
        var (status, body) = await PostAsync(leader, new { action = "add", id = 5, address = $"127.0.0.1:{nobody.Port}", role = "learner" });
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        var before = leader.Raft.Configuration;
        Assert.True(leader.Raft.Status.LastLogIndex > 1, "the leader's log is longer than the lag limit");

        (status, body) = await PostAsync(leader, new { action = "promote", id = 5 });
        Assert.True(status == HttpStatusCode.Conflict, body.ToString());
        var error = body.GetProperty("error").GetString();
        Assert.Contains("learner 5 holds entries up to index 0", error, StringComparison.Ordinal);
        Assert.Contains("Nothing was changed", error, StringComparison.Ordinal);
        Assert.Equal(before, leader.Raft.Configuration);
        Assert.Equal([5], leader.Raft.Configuration.Learners);
    }

    /// <summary>A loopback port that was free a moment ago (nothing listens there).</summary>
    private sealed class TcpListenerPort
    {
        public TcpListenerPort()
        {
            var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            Port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
        }

        public int Port { get; }
    }
}
