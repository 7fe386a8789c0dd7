using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>The HTTP contract of DESIGN.md §8, against a real 3-node cluster on loopback.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ContractTests(ClusterFixture fixture)
{
    private readonly HttpClient _http = fixture.Http;

    [Fact]
    public async Task Put_on_the_leader_is_204_and_every_node_reads_the_value()
    {
        var leader = await fixture.LeaderAsync();
        using var put = await _http.PutAsync(leader.Url("kv/color"), new StringContent("blue"));
        Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        Assert.Equal(leader.IdText(), put.Header(KvApi.NodeHeader));

        foreach (var node in fixture.Cluster.Nodes)
        {
            using var get = await _http.GetAsync(node.Url("kv/color"));
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            Assert.Equal("blue", await get.Content.ReadAsStringAsync());
            Assert.Equal("text/plain", get.Content.Headers.ContentType?.MediaType);
            // Each node answers from its own copy, once it has applied the leader's read index.
            Assert.Equal(node.IdText(), get.Header(KvApi.NodeHeader));
        }
    }

    [Fact]
    public async Task A_put_on_a_follower_goes_through_the_leader_and_the_follower_answers_once_it_applied_it()
    {
        var leader = await fixture.LeaderAsync();
        var follower = fixture.Followers(leader)[0];
        using var put = await _http.PutAsync(follower.Url("kv/via-raft"), new StringContent("via follower"));
        Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        Assert.Equal(follower.IdText(), put.Header(KvApi.NodeHeader));
        Assert.Equal("", put.Header(KvApi.ForwardedHeader));
        // 204 from a follower means the follower applied it: its own copy has it at once.
        Assert.True(follower.StateMachine.TryGet("via-raft", out var applied));
        Assert.Equal("via follower", applied);

        // Committed, so a linearizable read through the other follower sees it at once.
        var other = fixture.Followers(leader)[1];
        using var get = await _http.GetAsync(other.Url("kv/via-raft"));
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Equal("via follower", await get.Content.ReadAsStringAsync());
        Assert.Equal(other.IdText(), get.Header(KvApi.NodeHeader));
        await TestCluster.WaitUntilAsync(
            () => fixture.Cluster.Nodes.All(n => n.StateMachine.TryGet("via-raft", out var v) && v == "via follower"),
            "every node applies the put");
    }

    [Fact]
    public Task With_http_forwarding_a_follower_forwards_a_put_to_the_leader_and_the_write_is_applied_everywhere() =>
        WithForwardModeAsync(ForwardMode.Http, async () =>
    {
        var leader = await fixture.LeaderAsync();
        var follower = fixture.Followers(leader)[0];
        using var put = await _http.PutAsync(follower.Url("kv/forwarded"), new StringContent("via follower"));
        Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        Assert.Equal(leader.IdText(), put.Header(KvApi.NodeHeader));
        Assert.Equal(follower.IdText(), put.Header(KvApi.ForwardedHeader));

        // 204 means committed and applied on the leader: a linearizable read through the other follower sees it at once.
        var other = fixture.Followers(leader)[1];
        using var get = await _http.GetAsync(other.Url("kv/forwarded"));
        Assert.Equal("via follower", await get.Content.ReadAsStringAsync());
        Assert.Equal(other.IdText(), get.Header(KvApi.ForwardedHeader));

        await TestCluster.WaitUntilAsync(
            () => fixture.Cluster.Nodes.All(n => n.StateMachine.TryGet("forwarded", out var v) && v == "via follower"),
            "every node applies the forwarded put");
    });

    [Fact]
    public async Task Get_of_an_absent_key_is_404_with_a_message()
    {
        foreach (var node in fixture.Cluster.Nodes)
        {
            using var get = await _http.GetAsync(node.Url("kv/never-written"));
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
            Assert.Contains("never-written", (await get.ReadJsonAsync()).GetProperty("error").GetString());
        }
    }

    [Fact]
    public async Task Delete_is_204_and_removes_the_key_and_deleting_an_absent_key_is_204_too()
    {
        var leader = await fixture.LeaderAsync();
        var follower = fixture.Followers(leader)[0];
        using (var put = await _http.PutAsync(leader.Url("kv/doomed"), new StringContent("x")))
            Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);

        using (var delete = await _http.DeleteAsync(follower.Url("kv/doomed")))
            Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
        using (var get = await _http.GetAsync(leader.Url("kv/doomed")))
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        using (var again = await _http.DeleteAsync(leader.Url("kv/doomed")))
            Assert.Equal(HttpStatusCode.NoContent, again.StatusCode);
    }

    [Fact]
    public async Task Compare_and_swap_swaps_with_204_and_refuses_with_409_and_the_current_value()
    {
        var leader = await fixture.LeaderAsync();
        var follower = fixture.Followers(leader)[0];
        var url = follower.Url("kv/lock/cas"); // through a follower: forwarded, result relayed

        // expected null: create only if absent.
        using (var create = await PostCasAsync(url, expected: null, value: "owner-1"))
            Assert.Equal(HttpStatusCode.NoContent, create.StatusCode);
        using (var createAgain = await PostCasAsync(url, expected: null, value: "owner-2"))
        {
            Assert.Equal(HttpStatusCode.Conflict, createAgain.StatusCode);
            var body = await createAgain.ReadJsonAsync();
            Assert.Equal("owner-1", body.GetProperty("current").GetString());
            Assert.False(string.IsNullOrEmpty(body.GetProperty("error").GetString()));
            // A problem details object (RFC 9457) with the current value as an extension.
            Assert.StartsWith("application/problem+json", createAgain.Content.Headers.ContentType?.ToString() ?? "", StringComparison.Ordinal);
            Assert.Equal(409, body.GetProperty("status").GetInt32());
            Assert.Equal("Conflict", body.GetProperty("title").GetString());
            Assert.Equal(body.GetProperty("error").GetString(), body.GetProperty("detail").GetString());
        }
        using (var wrong = await PostCasAsync(leader.Url("kv/lock/cas"), expected: "owner-9", value: "owner-2"))
        {
            Assert.Equal(HttpStatusCode.Conflict, wrong.StatusCode);
            Assert.Equal("owner-1", (await wrong.ReadJsonAsync()).GetProperty("current").GetString());
        }
        using (var swap = await PostCasAsync(url, expected: "owner-1", value: "owner-2"))
            Assert.Equal(HttpStatusCode.NoContent, swap.StatusCode);
        using (var get = await _http.GetAsync(leader.Url("kv/lock")))
            Assert.Equal("owner-2", await get.Content.ReadAsStringAsync());

        // A value expected on an absent key: 409 with current null.
        using var absent = await PostCasAsync(leader.Url("kv/no-such-lock/cas"), expected: "x", value: "y");
        Assert.Equal(HttpStatusCode.Conflict, absent.StatusCode);
        Assert.Equal(JsonValueKind.Null, (await absent.ReadJsonAsync()).GetProperty("current").ValueKind);
        using var stillAbsent = await _http.GetAsync(leader.Url("kv/no-such-lock"));
        Assert.Equal(HttpStatusCode.NotFound, stillAbsent.StatusCode);
    }

    [Fact]
    public async Task Values_are_utf8_text_and_keys_may_hold_any_printable_character()
    {
        var leader = await fixture.LeaderAsync();
        var follower = fixture.Followers(leader)[0];
        var cases = new (string Key, string Value)[]
        {
            ("é/ü ünïcödé ✓", "värde — 値 🚀\nline two"),
            ("a/b", "slash in the key (%2F)"),
            ("100%", "percent in the key (%25)"),
            ("empty", ""),
            (new string('é', 128), "a 256-byte key"),
        };
        foreach (var (key, value) in cases)
        {
            using var put = await _http.PutAsync(follower.Url("kv/" + Uri.EscapeDataString(key)), new ByteArrayContent(Encoding.UTF8.GetBytes(value)));
            Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
            using var get = await _http.GetAsync(leader.Url("kv/" + Uri.EscapeDataString(key)));
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            Assert.Equal(Encoding.UTF8.GetBytes(value), await get.Content.ReadAsByteArrayAsync());
            Assert.True(leader.StateMachine.TryGet(key, out var stored));
            Assert.Equal(value, stored);
        }
    }

    [Fact]
    public async Task A_body_of_exactly_the_limit_is_accepted()
    {
        var leader = await fixture.LeaderAsync();
        var value = new string('v', KvNodeOptions.DefaultMaxBodyBytes);
        using var put = await _http.PutAsync(fixture.Followers(leader)[0].Url("kv/big"), new StringContent(value));
        Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        using var get = await _http.GetAsync(leader.Url("kv/big"));
        Assert.Equal(value.Length, (await get.Content.ReadAsStringAsync()).Length);
        using var delete = await _http.DeleteAsync(leader.Url("kv/big"));
        Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
    }

    [Fact]
    public async Task Status_reports_the_node_and_on_the_leader_each_followers_match_and_lag()
    {
        var leader = await fixture.LeaderAsync();
        using (var put = await _http.PutAsync(leader.Url("kv/status-probe"), new StringContent("1")))
            Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        await fixture.WaitForConvergenceAsync();

        foreach (var node in fixture.Cluster.Nodes)
        {
            using var response = await _http.GetAsync(node.Url("status"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            var status = await response.ReadJsonAsync();
            Assert.Equal(node.Id, status.GetProperty("id").GetInt32());
            Assert.Equal(node == leader ? "leader" : "follower", status.GetProperty("role").GetString());
            Assert.True(status.GetProperty("term").GetInt64() >= 1);
            Assert.Equal(leader.Id, status.GetProperty("leaderId").GetInt32());
            Assert.Equal(leader.HttpUrl!.ToString(), status.GetProperty("leaderUrl").GetString());
            Assert.Equal(node.HttpUrl!.ToString(), status.GetProperty("httpUrl").GetString());
            var commit = status.GetProperty("commitIndex").GetInt64();
            var applied = status.GetProperty("lastApplied").GetInt64();
            var last = status.GetProperty("lastLogIndex").GetInt64();
            Assert.True(commit >= 2, $"commitIndex {commit}"); // the leader's no-op and the put
            Assert.True(applied <= commit && commit <= last, $"applied {applied} <= commit {commit} <= last {last}");
            Assert.True(status.GetProperty("lastLogTerm").GetInt64() >= 1);
            Assert.True(status.GetProperty("keys").GetInt32() >= 1);
            Assert.Equal(JsonValueKind.Null, status.GetProperty("failure").ValueKind);

            var followers = status.GetProperty("followers").EnumerateArray().ToList();
            if (node != leader)
            {
                Assert.Empty(followers);
                continue;
            }
            Assert.Equal(fixture.Followers(leader).Select(f => f.Id).Order(), followers.Select(f => f.GetProperty("id").GetInt32()));
            foreach (var follower in followers)
            {
                var match = follower.GetProperty("matchIndex").GetInt64();
                Assert.InRange(match, 0, last);
                Assert.Equal(last - match, follower.GetProperty("lag").GetInt64());
            }
        }
    }

    [Fact]
    public async Task Cluster_gathers_every_nodes_status_on_the_serving_node()
    {
        var leader = await fixture.LeaderAsync();
        var follower = fixture.Followers(leader)[0];
        using var response = await _http.GetAsync(follower.Url("cluster"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var cluster = await response.ReadJsonAsync();
        Assert.Equal(follower.Id, cluster.GetProperty("self").GetInt32());
        var nodes = cluster.GetProperty("nodes").EnumerateArray().ToList();
        Assert.Equal([1, 2, 3], nodes.Select(n => n.GetProperty("id").GetInt32()));
        Assert.All(nodes, n => Assert.True(n.GetProperty("reachable").GetBoolean(), n.ToString()));
        Assert.Single(nodes, n => n.GetProperty("status").GetProperty("role").GetString() == "leader");
        Assert.Equal(leader.Id, nodes.Single(n => n.GetProperty("status").GetProperty("role").GetString() == "leader").GetProperty("id").GetInt32());
    }

    [Fact]
    public async Task The_status_page_loads_from_every_node_self_contained()
    {
        foreach (var node in fixture.Cluster.Nodes)
        {
            using var response = await _http.GetAsync(node.HttpUrl);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
            var html = await response.Content.ReadAsStringAsync();
            foreach (var element in (string[])["<table id=\"nodes\"", "id=\"node-rows\"", "id=\"leader\"", "id=\"key\"", "id=\"value\"", "id=\"put\"", "id=\"get\"", "id=\"result\"", "fetch('/cluster'"])
                Assert.Contains(element, html, StringComparison.Ordinal);
            foreach (var column in (string[])["Role", "Term", "Leader", "Commit", "Applied", "Lag"])
                Assert.Contains($"<th>{column}</th>", html, StringComparison.Ordinal);
            // No external assets.
            Assert.DoesNotContain("src=\"http", html, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain("href=\"http", html, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain("<link", html, StringComparison.OrdinalIgnoreCase);
        }
    }

    [Fact]
    public Task With_http_forwarding_a_forwarded_request_that_reaches_a_non_leader_is_503_and_not_forwarded_again() =>
        WithForwardModeAsync(ForwardMode.Http, async () =>
    {
        var leader = await fixture.LeaderAsync();
        var follower = fixture.Followers(leader)[0];
        var before = await fixture.StateFingerprintAsync();
        using var request = new HttpRequestMessage(HttpMethod.Put, follower.Url("kv/loop")) { Content = new StringContent("x") };
        request.Headers.Add(KvApi.ForwardedHeader, "9");
        using var response = await _http.SendAsync(request);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.NotNull(response.Headers.RetryAfter);
        Assert.Contains("nothing was submitted", (await response.ReadJsonAsync()).GetProperty("error").GetString());
        Assert.Equal(follower.IdText(), response.Header(KvApi.NodeHeader));
        Assert.Equal(before, await fixture.StateFingerprintAsync());
    });

    [Fact]
    public Task With_http_forwarding_an_unreachable_leader_address_is_503_with_retry_after_and_nothing_is_submitted() =>
        WithForwardModeAsync(ForwardMode.Http, async () =>
    {
        var leader = await fixture.LeaderAsync();
        var follower = fixture.Followers(leader)[0];
        var before = await fixture.StateFingerprintAsync();
        // Port 1 on loopback refuses connections: the follower cannot reach the leader over HTTP.
        follower.Directory.Set(leader.Id, new Uri("http://127.0.0.1:1/"));
        try
        {
            using var put = await _http.PutAsync(follower.Url("kv/unreachable"), new StringContent("x"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, put.StatusCode);
            Assert.NotNull(put.Headers.RetryAfter);
            Assert.Contains("could not connect", (await put.ReadJsonAsync()).GetProperty("error").GetString());
            using var get = await _http.GetAsync(follower.Url("kv/unreachable"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, get.StatusCode);
        }
        finally
        {
            follower.Directory.Set(leader.Id, leader.HttpUrl!);
        }
        Assert.Equal(before, await fixture.StateFingerprintAsync());
    });

    /// <summary>Runs <paramref name="body"/> with every node of the shared cluster in <paramref name="mode"/>, then restores the default.</summary>
    private async Task WithForwardModeAsync(ForwardMode mode, Func<Task> body)
    {
        foreach (var node in fixture.Cluster.Nodes)
            node.Forward = mode;
        try
        {
            await body();
        }
        finally
        {
            foreach (var node in fixture.Cluster.Nodes)
                node.Forward = node.Options.Forward;
        }
    }

    private Task<HttpResponseMessage> PostCasAsync(Uri url, string? expected, string value) =>
        _http.PostAsJsonAsync(url, new { expected, value });
}
