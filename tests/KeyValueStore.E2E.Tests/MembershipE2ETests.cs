using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Xunit.Abstractions;

namespace Raft.Samples.KeyValueStore.E2E.Tests;

/// <summary>
/// Growing and shrinking a running cluster of sample processes, as the README tells an operator to:
/// three nodes; a fourth started with <c>--join</c> and added with one <c>POST /cluster/members</c>;
/// the leader of the moment removed with another (it commits C(new), hands over and steps down). A writer keeps writing through the change
/// (retrying 503s and unknown outcomes with the same value); afterwards every acknowledged key is
/// readable on the remaining nodes, and after they restart their configuration is the final one.
/// </summary>
public sealed class MembershipE2ETests(ITestOutputHelper output)
{
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);

    [E2EFact]
    public async Task A_fourth_node_joins_the_leader_is_removed_and_no_acknowledged_write_is_lost()
    {
        var (executable, prefix) = E2EKit.LocateSample();
        var root = Path.Combine(Path.GetTempPath(), "raft-kv-member-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        var ports = NodeProcess.FreePorts(8);
        string Raft(int id) => $"127.0.0.1:{ports[id - 1]}";
        var peers = string.Join(',', Enumerable.Range(1, 3).Select(i => $"{i}={Raft(i)}"));
        var httpPeers = string.Join(',', Enumerable.Range(1, 3).Select(i => $"{i}=127.0.0.1:{ports[3 + i]}"));
        var secretFile = NodeProcess.WriteSecretFile(Path.Combine(root, "cluster.secret"));
        NodeProcess Make(int id, string[] extra) => new(id, executable, prefix, ports[id - 1], ports[3 + id], peers, httpPeers,
            Path.Combine(root, "data" + id), Path.Combine(root, $"node{id}.log"), secretFile) { ExtraArgs = extra };
        // Node 4 knows nodes 1-3 from --peers only to reach them; --join: no configuration until it is added.
        var nodes = new[] { Make(1, []), Make(2, []), Make(3, []), Make(4, ["--join"]) };
        var failed = true;
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, ConnectTimeout = TimeSpan.FromSeconds(2) })
        {
            Timeout = RequestTimeout + TimeSpan.FromSeconds(5),
        };
        try
        {
            foreach (var n in nodes[..3])
                n.Start();
            Assert.True(await WaitForLeaderAsync(http, nodes[..3], TimeSpan.FromSeconds(30)) is not null, "no leader within 30 s of start\n" + E2EKit.Tails(nodes));

            // Writes go on through the whole change, to every member but the one about to be removed.
            var targets = new ConcurrentDictionary<int, NodeProcess>(nodes[..3].ToDictionary(n => n.Id));
            var acknowledged = new ConcurrentDictionary<string, string>(StringComparer.Ordinal);
            var retries = 0;
            using var stopWriting = new CancellationTokenSource();
            var writer = Task.Run(async () =>
            {
                var rng = new Random(12);
                for (var i = 0; !stopWriting.IsCancellationRequested; i++)
                {
                    var key = "m" + i.ToString(CultureInfo.InvariantCulture);
                    var value = "v" + i.ToString(CultureInfo.InvariantCulture);
                    var clock = Stopwatch.StartNew();
                    while (true)
                    {
                        var list = targets.Values.ToArray();
                        var node = list[rng.Next(list.Length)];
                        var status = await SendAsync(http, HttpMethod.Put, node, "kv/" + key, value);
                        if (status == HttpStatusCode.NoContent)
                        {
                            acknowledged[key] = value;
                            break;
                        }
                        // 503: nothing submitted; 5xx/timeout: outcome unknown, and writing the same value again is harmless.
                        Assert.True(status is null || (int)status >= 500, $"PUT {key} through node {node.Id} answered {(int?)status}");
                        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"PUT {key} kept failing for 30 s (last: {(int?)status})");
                        Interlocked.Increment(ref retries);
                        await Task.Delay(100);
                    }
                }
            });

            // Command 1 of the README: start node 4 with --join. Command 2: POST the add to any node (here the leader).
            nodes[3].Start();
            Assert.True(await WaitAsync(async () => await StatusAsync(http, nodes[3]) is { } s && s.GetProperty("join").GetBoolean(), TimeSpan.FromSeconds(30)),
                "node 4 did not start\n" + E2EKit.Tails(nodes));
            var added = await ChangeAsync(http, nodes, $"{{\"action\":\"add\",\"id\":4,\"address\":\"{Raft(4)}\"}}");
            Say("add: " + added);
            if (added.GetProperty("result").GetString()!.Contains("not promoted", StringComparison.Ordinal))
                added = await ChangeAsync(http, nodes, "{\"action\":\"promote\",\"id\":4}"); // a slow machine: it caught up after the request's deadline
            Assert.Equal([1, 2, 3, 4], Ids(added.GetProperty("configuration"), "voters"));
            targets[4] = nodes[3];

            // Remove the leader: it commits C(new), hands leadership over and steps down.
            var gone = await WaitForLeaderAsync(http, nodes, TimeSpan.FromSeconds(30));
            Assert.True(gone is not null, "no leader before the removal\n" + E2EKit.Tails(nodes));
            targets.TryRemove(gone.Id, out _);
            var removed = await ChangeAsync(http, nodes, $"{{\"action\":\"remove\",\"id\":{gone.Id}}}");
            Say($"remove node {gone.Id}: {removed}");
            var remaining = nodes.Where(n => n != gone).ToArray();
            Assert.Equal(remaining.Select(n => n.Id), Ids(removed.GetProperty("configuration"), "voters"));
            Assert.True(await WaitAsync(async () => await StatusAsync(http, gone) is { } s && s.GetProperty("isRemoved").GetBoolean() && s.GetProperty("role").GetString() != "leader", TimeSpan.FromSeconds(20)),
                $"node {gone.Id} never reported isRemoved as a follower\n" + E2EKit.Tails(nodes));
            Assert.True(await WaitForLeaderAsync(http, remaining, TimeSpan.FromSeconds(30)) is not null, "no leader among the remaining nodes\n" + E2EKit.Tails(nodes));

            await Task.Delay(TimeSpan.FromSeconds(1)); // a few more writes under the final configuration
            await stopWriting.CancelAsync();
            await writer;
            Say($"{acknowledged.Count} writes acknowledged, {retries} retries");
            Assert.False(acknowledged.IsEmpty, "no write was acknowledged");
            Assert.True(gone.Terminate(TimeSpan.FromSeconds(10), out _), $"node {gone.Id} did not stop on SIGTERM");
            await AssertEveryKeyReadableAsync(http, remaining, acknowledged);

            // Restart the remaining nodes (node 4, if it remains, again with --join): the configuration comes from their logs.
            foreach (var n in remaining)
                Assert.True(n.Terminate(TimeSpan.FromSeconds(10), out _), $"node {n.Id} did not stop on SIGTERM");
            foreach (var n in remaining)
                n.Start();
            Assert.True(await WaitForLeaderAsync(http, remaining, TimeSpan.FromSeconds(30)) is not null, "no leader after the restart\n" + E2EKit.Tails(nodes));
            foreach (var n in remaining)
            {
                var status = await StatusAsync(http, n);
                Assert.True(status is not null, $"node {n.Id} gave no status after the restart");
                var configuration = status.Value.GetProperty("configuration");
                Assert.Equal(remaining.Select(n => n.Id), Ids(configuration, "voters"));
                Assert.Empty(Ids(configuration, "learners"));
                // Every member's Raft address is in the configuration (the bootstrap members' from --peers, node 4's from the add).
                Assert.Equal(remaining.Select(r => Raft(r.Id)), configuration.GetProperty("members").EnumerateArray().Select(m => m.GetProperty("address").GetString()));
                Assert.False(configuration.GetProperty("joint").GetBoolean());
                Assert.False(status.Value.GetProperty("isRemoved").GetBoolean());
            }
            await AssertEveryKeyReadableAsync(http, remaining, acknowledged);
            foreach (var n in nodes)
                Assert.True(n.UnexpectedExits == 0, $"node {n.Id} exited unexpectedly\n" + n.Tail(40));
            failed = false;
        }
        finally
        {
            foreach (var n in nodes)
                n.Dispose();
            if (failed)
                Say($"logs kept in {root}");
            else
                Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>Posts a membership change to the leader (found through /status), retrying while none is known or an earlier change is still committing.</summary>
    private async Task<JsonElement> ChangeAsync(HttpClient http, NodeProcess[] nodes, string body)
    {
        var clock = Stopwatch.StartNew();
        var last = "";
        while (clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            var leader = await FindLeaderAsync(http, nodes);
            if (leader is not null)
            {
                using var content = new StringContent(body, Encoding.UTF8, "application/json");
                try
                {
                    using var response = await http.PostAsync(new Uri(leader.BaseUri, "cluster/members"), content);
                    last = $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
                    if (response.StatusCode is HttpStatusCode.OK or HttpStatusCode.Accepted)
                        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
                    Assert.True(response.StatusCode is HttpStatusCode.ServiceUnavailable or HttpStatusCode.Conflict, $"POST {body} to node {leader.Id}: {last}");
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
                {
                    last = ex.Message;
                }
            }
            await Task.Delay(250);
        }
        Assert.Fail($"POST /cluster/members {body} did not succeed within 30 s (last: {last})\n" + E2EKit.Tails(nodes));
        return default;
    }

    private static async Task AssertEveryKeyReadableAsync(HttpClient http, NodeProcess[] nodes, IReadOnlyDictionary<string, string> acknowledged)
    {
        foreach (var n in nodes)
        {
            foreach (var (key, value) in acknowledged)
            {
                string? read = null;
                for (var attempt = 0; attempt < 60 && read is null; attempt++)
                {
                    using var response = await TrySendAsync(http, HttpMethod.Get, n, "kv/" + key, null);
                    if (response?.StatusCode == HttpStatusCode.OK)
                        read = await response.Content.ReadAsStringAsync();
                    else if (response?.StatusCode == HttpStatusCode.NotFound)
                        Assert.Fail($"acknowledged key {key} is missing on node {n.Id}");
                    else
                        await Task.Delay(250);
                }
                Assert.True(read == value, $"node {n.Id}: {key} = {read ?? "(no answer)"}, expected {value}");
            }
        }
    }

    private static async Task<HttpStatusCode?> SendAsync(HttpClient http, HttpMethod method, NodeProcess node, string path, string? body)
    {
        using var response = await TrySendAsync(http, method, node, path, body);
        return response?.StatusCode;
    }

    private static async Task<HttpResponseMessage?> TrySendAsync(HttpClient http, HttpMethod method, NodeProcess node, string path, string? body)
    {
        using var request = new HttpRequestMessage(method, new Uri(node.BaseUri, path));
        if (body is not null)
            request.Content = new StringContent(body, Encoding.UTF8, "text/plain");
        try
        {
            var response = await http.SendAsync(request);
            await response.Content.LoadIntoBufferAsync();
            return response;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
    }

    private static async Task<JsonElement?> StatusAsync(HttpClient http, NodeProcess node)
    {
        using var response = await TrySendAsync(http, HttpMethod.Get, node, "status", null);
        if (response?.StatusCode != HttpStatusCode.OK)
            return null;
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    private static async Task<NodeProcess?> FindLeaderAsync(HttpClient http, NodeProcess[] nodes)
    {
        foreach (var n in nodes.Where(n => n.IsRunning))
        {
            if (await StatusAsync(http, n) is { } s && s.GetProperty("role").GetString() == "leader")
                return n;
        }
        return null;
    }

    private static async Task<NodeProcess?> WaitForLeaderAsync(HttpClient http, NodeProcess[] nodes, TimeSpan timeout)
    {
        NodeProcess? leader = null;
        await WaitAsync(async () => (leader = await FindLeaderAsync(http, nodes)) is not null, timeout);
        return leader;
    }

    private static async Task<bool> WaitAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (await condition())
                return true;
            await Task.Delay(200);
        }
        return false;
    }

    private static int[] Ids(JsonElement configuration, string property) =>
        [.. configuration.GetProperty(property).EnumerateArray().Select(e => e.GetInt32())];

    private void Say(string line)
    {
        output.WriteLine(line);
        Console.WriteLine(line);
    }
}
