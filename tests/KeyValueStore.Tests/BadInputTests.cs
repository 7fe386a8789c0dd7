using System.Net;
using System.Text;
using System.Text.Json;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>
/// Every kind of bad request: a 4xx with a JSON message (never a 500), and no change to any node's
/// dictionary or log. Each case is sent to the leader and to a follower (which must refuse it
/// itself, not forward it). Requests go over a raw socket so the bytes are exactly as written.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class BadInputTests(ClusterFixture fixture)
{
    private const int Limit = KvNodeOptions.DefaultMaxBodyBytes;

    /// <param name="Body">Null: no body at all (no Content-Length). Otherwise sent with Content-Length, or chunked.</param>
    /// <param name="Message">A part of the expected "error" message; null when the server itself refuses the request before the API sees it.</param>
    public sealed record Case(string Method, string Target, byte[]? Body, int Status, string? Message, bool Chunked = false);

    private static readonly Dictionary<string, Case> Cases = new()
    {
        // Bodies.
        ["put-missing-body"] = new("PUT", "/kv/guarded", null, 400, "no body"),
        ["put-body-over-limit"] = new("PUT", "/kv/guarded", new byte[Limit + 1], 413, "larger than the limit"),
        ["put-chunked-body-over-limit"] = new("PUT", "/kv/guarded", new byte[Limit + 1], 413, "larger than the limit", Chunked: true),
        ["put-value-not-utf8"] = new("PUT", "/kv/guarded", [0xFF, 0xFE, 0x41], 400, "not valid UTF-8"),
        // Keys.
        ["put-key-257-bytes"] = new("PUT", "/kv/" + new string('k', 257), Utf8("x"), 400, "257 UTF-8 bytes"),
        ["put-key-258-bytes-multibyte"] = new("PUT", "/kv/" + string.Concat(Enumerable.Repeat("%C3%A9", 129)), Utf8("x"), 400, "258 UTF-8 bytes"),
        ["get-key-257-bytes"] = new("GET", "/kv/" + new string('k', 257), null, 400, "at most 256"),
        ["put-empty-key"] = new("PUT", "/kv/", Utf8("x"), 400, "missing or empty"),
        ["put-no-key"] = new("PUT", "/kv", Utf8("x"), 400, "missing or empty"),
        ["get-empty-key"] = new("GET", "/kv/", null, 400, "missing or empty"),
        ["delete-empty-key"] = new("DELETE", "/kv/", null, 400, "missing or empty"),
        ["put-key-control-char"] = new("PUT", "/kv/a%01b", Utf8("x"), 400, "control character U+0001"),
        ["put-key-newline"] = new("PUT", "/kv/a%0Ab", Utf8("x"), 400, "control character U+000A"),
        ["put-key-del"] = new("PUT", "/kv/a%7Fb", Utf8("x"), 400, "control character U+007F"),
        ["delete-key-c1-control"] = new("DELETE", "/kv/a%C2%85b", null, 400, "control character U+0085"),
        ["put-key-nul"] = new("PUT", "/kv/a%00b", Utf8("x"), 400, null), // Kestrel refuses %00 in a path itself
        ["put-key-bad-percent"] = new("PUT", "/kv/a%ZZ", Utf8("x"), 400, "percent-encoding"),
        ["put-key-truncated-percent"] = new("PUT", "/kv/a%F", Utf8("x"), 400, "percent-encoding"),
        ["put-key-not-utf8"] = new("PUT", "/kv/a%FF", Utf8("x"), 400, "not valid UTF-8"),
        ["put-key-dot-dot"] = new("PUT", "/kv/..", Utf8("x"), 400, "cannot be used"),
        ["delete-key-encoded-dot"] = new("DELETE", "/kv/%2E", null, 400, "cannot be used"),
        // Compare-and-swap bodies.
        ["cas-malformed-json"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":"), 400, "not valid JSON"),
        ["cas-missing-body"] = new("POST", "/kv/guarded/cas", null, 400, "no body"),
        ["cas-empty-body"] = new("POST", "/kv/guarded/cas", [], 400, "empty"),
        ["cas-array"] = new("POST", "/kv/guarded/cas", Utf8("[\"original\",\"x\"]"), 400, "array"),
        ["cas-string"] = new("POST", "/kv/guarded/cas", Utf8("\"x\""), 400, "not an object"),
        ["cas-missing-expected"] = new("POST", "/kv/guarded/cas", Utf8("{\"value\":\"x\"}"), 400, "\"expected\" is missing"),
        ["cas-missing-value"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\"}"), 400, "\"value\" is missing"),
        ["cas-value-number"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":1}"), 400, "must be a string"),
        ["cas-value-null"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":null}"), 400, "must be a string"),
        ["cas-expected-object"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":{},\"value\":\"x\"}"), 400, "string or null"),
        ["cas-unknown-property"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"x\",\"ttl\":5}"), 400, "Unknown property \"ttl\""),
        ["cas-duplicate-property"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"x\",\"value\":\"y\"}"), 400, "appears twice"),
        ["cas-lone-surrogate"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"\\ud800\"}"), 400, "JSON"),
        ["cas-not-utf8"] = new("POST", "/kv/guarded/cas", [.. Utf8("{\"expected\":\"original\",\"value\":\""), 0xFF, .. Utf8("\"}")], 400, "not valid JSON"),
        ["cas-body-over-limit"] = new("POST", "/kv/guarded/cas", new byte[Limit + 1], 413, "larger than the limit"),
        ["cas-key-too-long"] = new("POST", "/kv/" + new string('k', 300) + "/cas", Utf8("{\"expected\":null,\"value\":\"x\"}"), 400, "300 UTF-8 bytes"),
        // Routes and methods.
        ["unknown-route"] = new("GET", "/nope", null, 404, "no route GET /nope"),
        ["unknown-nested-route"] = new("PUT", "/kv/a/b", Utf8("x"), 404, "no route"),
        ["unknown-cas-suffix"] = new("POST", "/kv/guarded/swap", Utf8("{}"), 404, "no route"),
        ["patch-kv"] = new("PATCH", "/kv/guarded", Utf8("x"), 405, "allowed: DELETE, GET, PUT"),
        ["post-kv"] = new("POST", "/kv/guarded", Utf8("x"), 405, "not allowed"),
        ["get-cas"] = new("GET", "/kv/guarded/cas", null, 405, "allowed: POST"),
        ["put-cas"] = new("PUT", "/kv/guarded/cas", Utf8("x"), 405, "allowed: POST"),
        ["delete-status"] = new("DELETE", "/status", null, 405, "allowed: GET"),
        ["post-root"] = new("POST", "/", Utf8("x"), 405, "allowed: GET"),
        ["put-cluster"] = new("PUT", "/cluster", Utf8("x"), 405, "allowed: GET"),
    };

    public static TheoryData<string> CaseNames => [.. Cases.Keys];

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task Bad_input_is_a_4xx_with_a_message_and_changes_nothing(string name)
    {
        var c = Cases[name];
        var leader = await fixture.LeaderAsync();
        using (var put = await fixture.Http.PutAsync(leader.Url("kv/guarded"), new StringContent("original")))
            Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        var before = await fixture.StateFingerprintAsync();

        foreach (var node in new[] { leader, fixture.Followers(leader)[0] })
        {
            var response = await SendAsync(node, c);
            var where = $"{c.Method} {c.Target} on node {node.Id} ({(node == leader ? "leader" : "follower")}): {response.Status} {response.Body}";
            Assert.True(response.Status == c.Status, $"expected {c.Status}: {where}");
            if (c.Message is not null)
            {
                Assert.StartsWith("application/json", response.Headers.GetValueOrDefault("Content-Type", ""));
                var error = JsonDocument.Parse(response.Body).RootElement.GetProperty("error").GetString();
                Assert.True(error?.Contains(c.Message, StringComparison.OrdinalIgnoreCase) == true, $"message should contain '{c.Message}': {where}");
            }
            // Answered by the node that was asked: refused before anything was forwarded or submitted.
            if (c.Message is not null)
                Assert.Equal(node.IdText(), response.Headers.GetValueOrDefault(KvApi.NodeHeader));
        }

        Assert.Equal(before, await fixture.StateFingerprintAsync());
        using var get = await fixture.Http.GetAsync(leader.Url("kv/guarded"));
        Assert.Equal("original", await get.Content.ReadAsStringAsync());
    }

    private static Task<RawHttp.Response> SendAsync(KvNode node, Case c)
    {
        var head = $"{c.Method} {c.Target} HTTP/1.1";
        if (c.Body is null)
            return RawHttp.SendAsync(node.HttpUrl!, head);
        if (!c.Chunked)
            return RawHttp.SendAsync(node.HttpUrl!, head + $"\r\nContent-Length: {c.Body.Length}", c.Body);
        // Two chunks, then the terminator.
        var half = c.Body.Length / 2;
        var chunked = new MemoryStream();
        foreach (var part in new[] { c.Body[..half], c.Body[half..] })
        {
            chunked.Write(Encoding.ASCII.GetBytes($"{part.Length:X}\r\n"));
            chunked.Write(part);
            chunked.Write("\r\n"u8);
        }
        chunked.Write("0\r\n\r\n"u8);
        return RawHttp.SendAsync(node.HttpUrl!, head + "\r\nTransfer-Encoding: chunked", chunked.ToArray());
    }

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);
}
