using BenchmarkDotNet.Attributes;
using Raft.Testing;

namespace Raft.Benchmarks;

/// <summary>
/// Linearizable reads on the leader of three <see cref="RaftNode"/>s over an
/// <see cref="InMemoryNetwork"/>: the ReadIndex protocol (a heartbeat round to a majority per read
/// batch, then wait for apply) against a lease read (<see cref="RaftNodeOptions.LeaseReads"/>: no
/// round while the lease holds, then wait for apply), with a one-way network delay of 0 (only the
/// loops' hand-offs) or 1 ms (a round trip of about 2 ms, a LAN under load).
/// </summary>
/// <remarks>
/// <para>Mean is the latency of one read (one at a time: <c>ReadBarrierAsync</c> or
/// <c>QueryAsync</c> awaited before the next). Real threads and the system clock: the numbers move
/// with the machine's load; compare the two modes within one run.</para>
/// <para>Election timeouts are long (1 to 2 s, heartbeats every 100 ms) so the leader stays put;
/// the lease is then 1 s × 0.9 − 2 ticks = 880 ms and renews with every acknowledged heartbeat.</para>
/// <para>Run: <c>dotnet run -c Release --project benchmarks/Raft.Benchmarks -- --filter '*ReadBenchmarks*'</c></para>
/// </remarks>
[MemoryDiagnoser]
public class ReadBenchmarks
{
    private readonly List<RaftNode> _nodes = [];
    private RaftNode _leader = null!;

    /// <summary>Lease reads on (true) or the ReadIndex protocol (false).</summary>
    [Params(false, true)]
    public bool Lease { get; set; }

    /// <summary>One-way delay of every message, in milliseconds.</summary>
    [Params(0, 1)]
    public int DelayMs { get; set; }

    [GlobalSetup]
    public async Task SetupAsync()
    {
        int[] members = [1, 2, 3];
        var network = new InMemoryNetwork(seed: 1);
        if (DelayMs > 0)
            network.SetDelay(TimeSpan.FromMilliseconds(DelayMs), TimeSpan.FromMilliseconds(DelayMs));
        foreach (var id in members)
        {
            var options = new RaftNodeOptions
            {
                NodeId = id,
                Members = members,
                HeartbeatInterval = TimeSpan.FromMilliseconds(100),
                ElectionTimeoutMin = TimeSpan.FromSeconds(1),
                ElectionTimeoutMax = TimeSpan.FromSeconds(2),
                LeaseReads = Lease,
                RandomSeed = id,
            };
            _nodes.Add(new RaftNode(options, network.CreateTransport(id), new InMemoryLogStore(), new Register()));
        }
        foreach (var node in _nodes)
            await node.StartAsync();
        var leaderId = await _nodes[0].WaitForLeaderAsync().WaitAsync(TimeSpan.FromSeconds(60));
        _leader = _nodes.Single(n => n.Id == leaderId);
        await _leader.ProposeAsync(new byte[] { 42 }).AsTask().WaitAsync(TimeSpan.FromSeconds(60));
        for (var i = 0; i < 100; i++)
            await _leader.ReadBarrierAsync(); // warm up, and the lease is acknowledged
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        foreach (var node in _nodes)
            await node.DisposeAsync();
        _nodes.Clear();
    }

    [Benchmark]
    public Task ReadBarrier() => _leader.ReadBarrierAsync();

    [Benchmark]
    public Task<byte> Query() => _leader.QueryAsync((Register r) => r.Value);

    /// <summary>One byte of state: the last command's first byte.</summary>
    private sealed class Register : IStateMachine
    {
        public byte Value { get; private set; }

        public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
        {
            Value = entry.Data.Span[0];
            return ValueTask.FromResult<object?>(null);
        }

        public ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default) =>
            destination.WriteAsync(new[] { Value }, cancellationToken);

        public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
        {
            var buffer = new byte[1];
            await source.ReadExactlyAsync(buffer, cancellationToken);
            Value = buffer[0];
        }
    }
}
