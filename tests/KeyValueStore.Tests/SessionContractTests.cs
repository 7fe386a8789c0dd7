using System.Buffers;
using System.Net;
using System.Net.Http.Json;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>Exactly-once writes over HTTP: <c>POST /sessions</c>, the <c>Idempotency-Key</c> header and <c>POST /kv/{key}/incr</c>.</summary>
[Collection(ClusterCollection.Name)]
public sealed class SessionContractTests(ClusterFixture fixture)
{
    private readonly HttpClient _http = fixture.Http;

    private async Task<long> OpenSessionAsync(KvNode node)
    {
        using var response = await _http.PostAsync(node.Url("sessions"), null);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var body = await response.ReadJsonAsync();
        Assert.Contains("Idempotency-Key", body.GetProperty("usage").GetString(), StringComparison.Ordinal);
        return body.GetProperty("clientId").GetInt64();
    }

    private async Task<(HttpStatusCode Status, string Body)> IncrementAsync(KvNode node, string key, string? idempotencyKey, string? body = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, node.Url($"kv/{key}/incr"));
        if (idempotencyKey is not null)
            request.Headers.TryAddWithoutValidation(KvApi.IdempotencyKeyHeader, idempotencyKey);
        if (body is not null)
            request.Content = new StringContent(body);
        using var response = await _http.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static string Value(KvNode node, string key) => node.StateMachine.TryGet(key, out var value) ? value! : "(absent)";

    [Fact]
    public async Task A_retried_increment_with_the_same_key_is_applied_once_and_answered_with_its_first_result()
    {
        var leader = await fixture.LeaderAsync();
        var client = await OpenSessionAsync(leader);

        Assert.Equal((HttpStatusCode.OK, "1"), await IncrementAsync(leader, "s-counter", $"{client}:1"));
        Assert.Equal((HttpStatusCode.OK, "1"), await IncrementAsync(leader, "s-counter", $"{client}:1"));
        foreach (var follower in fixture.Followers(leader))
            Assert.Equal((HttpStatusCode.OK, "1"), await IncrementAsync(follower, "s-counter", $"{client}:1")); // forwarded by the library
        Assert.Equal((HttpStatusCode.OK, "6"), await IncrementAsync(leader, "s-counter", $"{client}:2", "5"));

        Assert.Equal("6", Value(leader, "s-counter"));
        // Without a key, a retry is a new write.
        Assert.Equal((HttpStatusCode.OK, "7"), await IncrementAsync(leader, "s-counter", null));
    }

    [Fact]
    public Task With_http_forwarding_the_key_travels_to_the_leader() =>
        WithForwardModeAsync(ForwardMode.Http, async () =>
        {
            var leader = await fixture.LeaderAsync();
            var follower = fixture.Followers(leader)[0];
            var client = await OpenSessionAsync(follower);
            Assert.Equal((HttpStatusCode.OK, "1"), await IncrementAsync(follower, "s-http", $"{client}:1"));
            Assert.Equal((HttpStatusCode.OK, "1"), await IncrementAsync(follower, "s-http", $"{client}:1"));
            Assert.Equal((HttpStatusCode.OK, "1"), await IncrementAsync(leader, "s-http", $"{client}:1"));
            Assert.Equal("1", Value(leader, "s-http"));
        });

    [Fact]
    public async Task A_retried_compare_and_swap_gets_its_first_answer_not_a_conflict()
    {
        var leader = await fixture.LeaderAsync();
        var client = await OpenSessionAsync(leader);
        HttpRequestMessage Make()
        {
            var message = new HttpRequestMessage(HttpMethod.Post, leader.Url("kv/s-cas/cas")) { Content = JsonContent.Create(new { expected = (string?)null, value = "mine" }) };
            message.Headers.TryAddWithoutValidation(KvApi.IdempotencyKeyHeader, $"{client}:1");
            return message;
        }
        using var firstRequest = Make();
        using var retryRequest = Make();
        using var first = await _http.SendAsync(firstRequest);
        using var retry = await _http.SendAsync(retryRequest);
        Assert.Equal(HttpStatusCode.NoContent, first.StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, retry.StatusCode); // applied again, it would be 409: the key exists
    }

    [Fact]
    public async Task Bad_keys_unknown_sessions_and_acknowledged_sequences_are_refused_with_reasons()
    {
        var leader = await fixture.LeaderAsync();
        foreach (var bad in (string[])["abc", "1", "1:", ":1", "0:1", "1:0", "-1:2", "1:2:3", "1: 2"])
        {
            var (status, body) = await IncrementAsync(leader, "s-bad", bad);
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Contains("Idempotency-Key", body, StringComparison.Ordinal);
        }
        Assert.Equal("(absent)", Value(leader, "s-bad"));

        var unknown = await IncrementAsync(leader, "s-bad", "999999999:1");
        Assert.Equal(HttpStatusCode.Gone, unknown.Status);
        Assert.Contains("POST /sessions", unknown.Body, StringComparison.Ordinal);

        var client = await OpenSessionAsync(leader);
        Assert.Equal(HttpStatusCode.OK, (await IncrementAsync(leader, "s-bad", $"{client}:1")).Status);
        Assert.Equal(HttpStatusCode.OK, (await IncrementAsync(leader, "s-bad", $"{client}:2")).Status); // 1 is acknowledged now
        var stale = await IncrementAsync(leader, "s-bad", $"{client}:1");
        Assert.Equal((HttpStatusCode)422, stale.Status);
        Assert.Contains("not applied again", stale.Body, StringComparison.Ordinal);
        Assert.Equal("2", Value(leader, "s-bad"));
    }

    [Fact]
    public async Task Increment_refuses_a_non_integer_value_and_a_bad_body()
    {
        var leader = await fixture.LeaderAsync();
        using (var put = await _http.PutAsync(leader.Url("kv/s-text"), new StringContent("hello")))
            Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        var conflict = await IncrementAsync(leader, "s-text", null);
        Assert.Equal(HttpStatusCode.Conflict, conflict.Status);
        Assert.Contains("not a 64-bit integer", conflict.Body, StringComparison.Ordinal);
        Assert.Equal("hello", Value(leader, "s-text"));

        var bad = await IncrementAsync(leader, "s-num", null, "one");
        Assert.Equal(HttpStatusCode.BadRequest, bad.Status);
        Assert.Equal((HttpStatusCode.OK, "-3"), await IncrementAsync(leader, "s-num", null, "-3"));
        using (var put = await _http.PutAsync(leader.Url("kv/s-max"), new StringContent(long.MaxValue.ToString(System.Globalization.CultureInfo.InvariantCulture))))
            Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, (await IncrementAsync(leader, "s-max", null)).Status);
    }

    [Fact]
    public void Increment_commands_round_trip_and_results_are_saved_for_retries()
    {
        var command = KvCommand.Increment("k", -42);
        Assert.Equal(command, KvCommand.Decode(command.Encode()));
        Assert.False(KvCommand.TryDecode(command.Encode().AsSpan(0, 3 + 1 + 7), out _, out var error));
        Assert.Contains("delta is cut off", error, StringComparison.Ordinal);

        var machine = new KeyValueStateMachine();
        foreach (object result in (object[])[new CasResult(true, "v"), new CasResult(false, null), new IncrementResult(true, "5"), new IncrementResult(false, "x")])
        {
            var buffer = new ArrayBufferWriter<byte>();
            Assert.True(machine.TryWriteResult(result, buffer));
            Assert.Equal(result, machine.ReadResult(buffer.WrittenSpan));
        }
        Assert.False(machine.TryWriteResult(null, new ArrayBufferWriter<byte>()));
        Assert.Throws<InvalidDataException>(() => machine.ReadResult([9]));
    }

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
}
