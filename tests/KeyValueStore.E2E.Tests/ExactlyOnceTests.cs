using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Xunit.Abstractions;

namespace Raft.Samples.KeyValueStore.E2E.Tests;

/// <summary>
/// Exactly-once writes end to end: three sample processes, clients that increment a counter each
/// through an exactly-once session (<c>POST /sessions</c>, <c>Idempotency-Key</c>) and retry every
/// increment whose outcome is unknown (5xx, timeout, broken connection) with the same key on any
/// node, while the leader is killed (SIGKILL, restarted) and paused (SIGSTOP / SIGCONT). At the end
/// each counter must equal its client's acknowledged increments, and every answer must have been
/// the count so far: no increment applied twice, none lost.
/// Environment: <c>RAFT_E2E_EXACTLY_ONCE_SECONDS</c> (client run time, default 10), <c>RAFT_E2E_SEED</c>.
/// </summary>
public sealed class ExactlyOnceTests(ITestOutputHelper output)
{
    private const int NodeCount = 3;
    private const int ClientCount = 4;
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan GiveUpOnOneWrite = TimeSpan.FromSeconds(60);

    [E2EFact]
    public async Task Counters_equal_acknowledged_increments_under_leader_kills_and_pauses()
    {
        var seconds = int.TryParse(Environment.GetEnvironmentVariable("RAFT_E2E_EXACTLY_ONCE_SECONDS"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) && s > 0 ? s : 10;
        var seed = int.TryParse(Environment.GetEnvironmentVariable("RAFT_E2E_SEED"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var sd) ? sd : Random.Shared.Next();
        Say($"seed {seed} (RAFT_E2E_SEED={seed} replays the schedule), {seconds} s of clients");
        var (executable, prefix) = E2EKit.LocateSample();
        var root = Path.Combine(Path.GetTempPath(), "raft-kv-once-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        var ports = NodeProcess.FreePorts(2 * NodeCount);
        var peers = string.Join(',', Enumerable.Range(1, NodeCount).Select(i => $"{i}=127.0.0.1:{ports[i - 1]}"));
        var httpPeers = string.Join(',', Enumerable.Range(1, NodeCount).Select(i => $"{i}=127.0.0.1:{ports[NodeCount + i - 1]}"));
        var secretFile = NodeProcess.WriteSecretFile(Path.Combine(root, "cluster.secret"));
        var nodes = Enumerable.Range(1, NodeCount)
            .Select(i => new NodeProcess(i, executable, prefix, ports[i - 1], ports[NodeCount + i - 1], peers, httpPeers,
                Path.Combine(root, "data" + i), Path.Combine(root, $"node{i}.log"), secretFile))
            .ToArray();
        var failed = true;
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, ConnectTimeout = RequestTimeout }) { Timeout = RequestTimeout };
        try
        {
            foreach (var n in nodes)
                n.Start();
            Assert.True(await WaitForLeaderAsync(http, nodes, TimeSpan.FromSeconds(30)) is not null, "no leader within 30 s of start\n" + E2EKit.Tails(nodes));

            var rng = new Random(seed);
            var stats = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
            var problems = new ConcurrentQueue<string>();
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
            var clients = Enumerable.Range(0, ClientCount)
                .Select(c => new Client(c, new Random(rng.Next())))
                .ToArray();
            var running = clients.Select(c => Task.Run(() => ClientLoopAsync(c, http, nodes, stats, problems, stop.Token))).ToArray();
            var faults = await FaultLoopAsync(new Random(rng.Next()), http, nodes, TimeSpan.FromSeconds(Math.Max(3, seconds - 3)));
            await Task.WhenAll(running);
            foreach (var f in faults)
                Say("  " + f);
            Say("answers: " + string.Join(", ", stats.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}")));

            foreach (var n in nodes)
            {
                n.Resume();
                if (!n.IsRunning)
                    n.Start();
            }
            Assert.True(await WaitForLeaderAsync(http, nodes, TimeSpan.FromSeconds(30)) is not null, "no leader after the faults\n" + E2EKit.Tails(nodes));

            // Every counter, read (linearizably) through every node, equals its acknowledged increments.
            foreach (var client in clients)
            {
                Say($"client {client.Index} (session {client.ClientId}): {client.Acknowledged} increments acknowledged, {client.Retries} retries");
                foreach (var n in nodes)
                {
                    var value = await ReadWithRetriesAsync(http, n, client.Key);
                    Assert.True(value == client.Acknowledged.ToString(CultureInfo.InvariantCulture),
                        $"counter {client.Key} reads {value ?? "(absent)"} through node {n.Id}, but {client.Acknowledged} increments were acknowledged\n" + E2EKit.Tails(nodes));
                }
            }
            Assert.True(problems.IsEmpty, "unexpected answers:\n" + string.Join('\n', problems.Take(20)));
            Assert.True(clients.Sum(c => c.Acknowledged) > 0, "no increment was acknowledged");
            Assert.True(clients.Sum(c => c.Retries) > 0, "no write was retried: the faults did not reach the clients");
            Assert.All(nodes, n => Assert.True(n.UnexpectedExits == 0, $"node {n.Id} exited on its own\n" + E2EKit.Tails(nodes)));
            failed = false;
        }
        finally
        {
            foreach (var n in nodes)
                n.Dispose();
            if (failed || Environment.GetEnvironmentVariable("RAFT_E2E_KEEP_LOGS") == "1")
            {
                Say("node logs kept in " + root);
            }
            else
            {
                try
                {
                    Directory.Delete(root, recursive: true);
                }
                catch (IOException)
                {
                }
            }
        }
    }

    private sealed class Client(int index, Random random)
    {
        public int Index { get; } = index;

        public Random Random { get; } = random;

        public string Key => "once-" + Index.ToString(CultureInfo.InvariantCulture);

        public long ClientId { get; set; }

        public long Acknowledged { get; set; }

        public int Retries { get; set; }
    }

    // One increment at a time; a write whose outcome is unknown is sent again, with the same key, to
    // a random node, until it is answered. The answer must be the count so far.
    private static async Task ClientLoopAsync(Client client, HttpClient http, NodeProcess[] nodes, ConcurrentDictionary<string, int> stats,
        ConcurrentQueue<string> problems, CancellationToken stop)
    {
        while (client.ClientId == 0)
        {
            var node = nodes[client.Random.Next(nodes.Length)];
            var (status, body) = await SendAsync(http, HttpMethod.Post, node, "sessions");
            if (status == HttpStatusCode.Created)
                client.ClientId = JsonDocument.Parse(body!).RootElement.GetProperty("clientId").GetInt64();
            else
                await Task.Delay(100, CancellationToken.None);
            if (stop.IsCancellationRequested && client.ClientId == 0)
                return;
        }
        for (var sequence = 1L; !stop.IsCancellationRequested; sequence++)
        {
            var started = Stopwatch.StartNew();
            for (var attempt = 0; ; attempt++)
            {
                if (started.Elapsed > GiveUpOnOneWrite)
                {
                    problems.Enqueue($"client {client.Index}: increment {sequence} was not answered within {GiveUpOnOneWrite.TotalSeconds} s of retries");
                    return;
                }
                var node = nodes[client.Random.Next(nodes.Length)];
                var (status, body) = await SendAsync(http, HttpMethod.Post, node, $"kv/{client.Key}/incr", $"{client.ClientId}:{sequence}");
                stats.AddOrUpdate(status is null ? "no answer" : ((int)status).ToString(CultureInfo.InvariantCulture), 1, (_, n) => n + 1);
                if (status == HttpStatusCode.OK)
                {
                    client.Acknowledged++;
                    if (body != client.Acknowledged.ToString(CultureInfo.InvariantCulture))
                        problems.Enqueue($"client {client.Index}: increment {sequence} answered {body} through node {node.Id}, but it is the client's increment number {client.Acknowledged}");
                    break;
                }
                if (status is null or HttpStatusCode.ServiceUnavailable or HttpStatusCode.InternalServerError or HttpStatusCode.BadGateway or HttpStatusCode.GatewayTimeout)
                {
                    client.Retries++;
                    await Task.Delay(50 + client.Random.Next(150), CancellationToken.None);
                    continue; // outcome unknown or nothing submitted: the same key again
                }
                problems.Enqueue($"client {client.Index}: increment {sequence} through node {node.Id} answered {(int)status} {body}");
                return;
            }
        }
    }

    private static async Task<List<string>> FaultLoopAsync(Random rng, HttpClient http, NodeProcess[] nodes, TimeSpan end)
    {
        var faults = new List<string>();
        var clock = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        var kill = rng.Next(2) == 0;
        while (clock.Elapsed < end)
        {
            var leaderId = await FindLeaderAsync(http, nodes);
            if (leaderId is null)
            {
                await Task.Delay(300);
                continue;
            }
            var target = nodes[leaderId.Value - 1];
            var t = clock.Elapsed.TotalSeconds;
            if (kill)
            {
                var down = TimeSpan.FromMilliseconds(rng.Next(300, 1500));
                target.Kill9();
                await Task.Delay(down);
                E2EKit.StartWithRetry(target);
                faults.Add(string.Create(CultureInfo.InvariantCulture, $"t={t:0.0}s SIGKILL leader {target.Id}, restarted after {down.TotalSeconds:0.0}s"));
            }
            else
            {
                var pause = TimeSpan.FromMilliseconds(rng.Next(1000, 2500));
                target.Suspend();
                try
                {
                    await Task.Delay(pause);
                }
                finally
                {
                    target.Resume();
                }
                faults.Add(string.Create(CultureInfo.InvariantCulture, $"t={t:0.0}s SIGSTOP leader {target.Id} for {pause.TotalSeconds:0.0}s, SIGCONT"));
            }
            kill = !kill; // both kinds, alternating
            await Task.Delay(rng.Next(1000, 2500));
        }
        return faults;
    }

    private static async Task<(HttpStatusCode? Status, string? Body)> SendAsync(HttpClient http, HttpMethod method, NodeProcess node, string path, string? idempotencyKey = null)
    {
        try
        {
            using var request = new HttpRequestMessage(method, new Uri(node.BaseUri, path));
            if (idempotencyKey is not null)
                request.Headers.TryAddWithoutValidation("Idempotency-Key", idempotencyKey);
            using var response = await http.SendAsync(request);
            return (response.StatusCode, await response.Content.ReadAsStringAsync());
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
        {
            return (null, null); // refused, reset or timed out: outcome unknown
        }
    }

    private static async Task<string?> ReadWithRetriesAsync(HttpClient http, NodeProcess node, string key)
    {
        for (var attempt = 0; attempt < 60; attempt++)
        {
            var (status, body) = await SendAsync(http, HttpMethod.Get, node, "kv/" + key);
            if (status == HttpStatusCode.OK)
                return body;
            if (status == HttpStatusCode.NotFound)
                return null;
            await Task.Delay(250);
        }
        throw new TimeoutException($"GET {key} through node {node.Id} kept failing");
    }

    private static async Task<int?> FindLeaderAsync(HttpClient http, NodeProcess[] nodes)
    {
        foreach (var n in nodes)
        {
            var (status, body) = await SendAsync(http, HttpMethod.Get, n, "status");
            if (status != HttpStatusCode.OK || body is null)
                continue;
            try
            {
                var root = JsonDocument.Parse(body).RootElement;
                if (root.GetProperty("role").GetString() == "leader")
                    return root.GetProperty("id").GetInt32();
            }
            catch (JsonException)
            {
            }
        }
        return null;
    }

    private static async Task<int?> WaitForLeaderAsync(HttpClient http, NodeProcess[] nodes, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout)
        {
            if (await FindLeaderAsync(http, nodes) is { } id)
                return id;
            await Task.Delay(200);
        }
        return null;
    }

    private void Say(string line)
    {
        output.WriteLine(line);
        Console.WriteLine(line);
    }
}
