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
    /// <param name="Headers">Extra header lines ("Name: value", CRLF-separated), e.g. Content-Type or Origin.</param>
    /// <param name="Host">The Host header; null: the node's own address.</param>
    public sealed record Case(string Method, string Target, byte[]? Body, int Status, string? Message, bool Chunked = false, string? Headers = null, string? Host = null);

    private const string Json = "Content-Type: application/json";

    /// <summary>A compare-and-swap that declares its body as JSON (so what is tested is the body).</summary>
    private static Case Cas(string target, byte[]? body, int status, string message) => new("POST", target, body, status, message, Headers: Json);

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
        ["cas-malformed-json"] = Cas("/kv/guarded/cas", Utf8("{\"expected\":"), 400, "not valid JSON"),
        ["cas-missing-body"] = Cas("/kv/guarded/cas", null, 400, "no body"),
        ["cas-empty-body"] = Cas("/kv/guarded/cas", [], 400, "empty"),
        ["cas-array"] = Cas("/kv/guarded/cas", Utf8("[\"original\",\"x\"]"), 400, "array"),
        ["cas-string"] = Cas("/kv/guarded/cas", Utf8("\"x\""), 400, "not an object"),
        ["cas-missing-expected"] = Cas("/kv/guarded/cas", Utf8("{\"value\":\"x\"}"), 400, "\"expected\" is missing"),
        ["cas-missing-value"] = Cas("/kv/guarded/cas", Utf8("{\"expected\":\"original\"}"), 400, "\"value\" is missing"),
        ["cas-value-number"] = Cas("/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":1}"), 400, "must be a string"),
        ["cas-value-null"] = Cas("/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":null}"), 400, "must be a string"),
        ["cas-expected-object"] = Cas("/kv/guarded/cas", Utf8("{\"expected\":{},\"value\":\"x\"}"), 400, "string or null"),
        ["cas-unknown-property"] = Cas("/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"x\",\"ttl\":5}"), 400, "Unknown property \"ttl\""),
        ["cas-duplicate-property"] = Cas("/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"x\",\"value\":\"y\"}"), 400, "appears twice"),
        ["cas-lone-surrogate"] = Cas("/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"\\ud800\"}"), 400, "JSON"),
        ["cas-not-utf8"] = Cas("/kv/guarded/cas", [.. Utf8("{\"expected\":\"original\",\"value\":\""), 0xFF, .. Utf8("\"}")], 400, "not valid JSON"),
        ["cas-body-over-limit"] = Cas("/kv/guarded/cas", new byte[Limit + 1], 413, "larger than the limit"),
        ["cas-key-too-long"] = Cas("/kv/" + new string('k', 300) + "/cas", Utf8("{\"expected\":null,\"value\":\"x\"}"), 400, "300 UTF-8 bytes"),
        // Compare-and-swap bodies must be declared as JSON (a cross-site form or text/plain fetch cannot).
        ["cas-text-plain"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"x\"}"), 415, "Content-Type is 'text/plain'", Headers: "Content-Type: text/plain"),
        ["cas-no-content-type"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"x\"}"), 415, "no Content-Type"),
        ["cas-form"] = new("POST", "/kv/guarded/cas", Utf8("expected=original&value=x"), 415, "application/x-www-form-urlencoded", Headers: "Content-Type: application/x-www-form-urlencoded"),
        ["cas-json-latin1"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"x\"}"), 415, "must be UTF-8", Headers: "Content-Type: application/json; charset=iso-8859-1"),
        ["cas-json-lookalike"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"x\"}"), 415, "send Content-Type: application/json", Headers: "Content-Type: application/jsonx"),
        // Host names other than this node's (DNS rebinding): refused for reads too.
        ["put-foreign-host"] = new("PUT", "/kv/guarded", Utf8("x"), 421, "does not answer to the host 'attacker.example'", Host: "attacker.example"),
        ["get-foreign-host"] = new("GET", "/kv/guarded", null, 421, "does not answer to the host", Host: "attacker.example:80"),
        ["status-foreign-host"] = new("GET", "/status", null, 421, "Allowed hosts: 127.0.0.1, ::1, localhost", Host: "rebind.attacker.example"),
        ["cas-foreign-host"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"x\"}"), 421, "does not answer to the host", Headers: Json, Host: "10.9.8.7"),
        // Cross-origin writes (cross-site request forgery from a page in a browser).
        ["put-cross-origin"] = new("PUT", "/kv/guarded", Utf8("x"), 403, "Cross-origin PUT from 'http://attacker.example' refused", Headers: "Origin: http://attacker.example"),
        ["delete-cross-origin"] = new("DELETE", "/kv/guarded", null, 403, "Cross-origin DELETE", Headers: "Origin: https://attacker.example"),
        ["cas-cross-origin"] = new("POST", "/kv/guarded/cas", Utf8("{\"expected\":\"original\",\"value\":\"x\"}"), 403, "Cross-origin POST", Headers: Json + "\r\nOrigin: http://attacker.example"),
        ["put-origin-null"] = new("PUT", "/kv/guarded", Utf8("x"), 403, "from 'null'", Headers: "Origin: null"),
        ["put-origin-other-port"] = new("PUT", "/kv/guarded", Utf8("x"), 403, "Cross-origin", Headers: "Origin: http://127.0.0.1:1"),
        ["put-origin-https-same-host"] = new("PUT", "/kv/guarded", Utf8("x"), 403, "Cross-origin", Headers: "Origin: https://{host}"),
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
                // An RFC 9457 problem: type, title, status and detail, plus "error" (the same text) for older clients.
                Assert.StartsWith("application/problem+json", response.Headers.GetValueOrDefault("Content-Type", ""));
                Assert.Equal("nosniff", response.Headers.GetValueOrDefault("X-Content-Type-Options"));
                var problem = JsonDocument.Parse(response.Body).RootElement;
                Assert.Equal("about:blank", problem.GetProperty("type").GetString());
                Assert.Equal(c.Status, problem.GetProperty("status").GetInt32());
                Assert.False(string.IsNullOrEmpty(problem.GetProperty("title").GetString()), where);
                var error = problem.GetProperty("error").GetString();
                Assert.Equal(error, problem.GetProperty("detail").GetString());
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
        if (c.Headers is not null)
            head += "\r\n" + c.Headers.Replace("{host}", node.HttpUrl!.Authority, StringComparison.Ordinal);
        if (c.Body is null)
            return RawHttp.SendAsync(node.HttpUrl!, head, host: c.Host);
        if (!c.Chunked)
            return RawHttp.SendAsync(node.HttpUrl!, head + $"\r\nContent-Length: {c.Body.Length}", c.Body, c.Host);
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
        return RawHttp.SendAsync(node.HttpUrl!, head + "\r\nTransfer-Encoding: chunked", chunked.ToArray(), c.Host);
    }

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);
}
