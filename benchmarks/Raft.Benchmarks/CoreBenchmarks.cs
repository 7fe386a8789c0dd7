using BenchmarkDotNet.Attributes;
using Raft.Testing;

namespace Raft.Benchmarks;

/// <summary>
/// The consensus core alone, without I/O or threads: three <see cref="RaftCore"/>s over
/// <see cref="InMemoryLogStore"/>s, one of them elected leader by stepping messages between them.
/// Each invocation proposes a batch of 1 or 64 commands of 100 B on the leader, then pumps
/// <c>GetReady</c> / persist / <c>Advance</c> on every core and delivers every message, until the
/// cluster is quiet again: the batch is committed on the leader, every follower has learnt the
/// new commit index, and every core has applied it.
/// </summary>
/// <remarks>
/// <para>Every number is per entry (<c>OperationsPerInvoke</c> = batch size): Mean is ns/entry, the
/// Op/s column is entries per second, Allocated is bytes per entry (all three cores together:
/// proposal, AppendEntries to two followers, their responses, Ready batches, the commit round).</para>
/// <para>The in-memory stores complete writes synchronously, and the benchmark "applies" committed
/// entries by reporting them applied. To keep memory flat the stores are compacted to the applied
/// index once they hold 4,096 entries (a <c>List.RemoveRange</c>, amortized over thousands of
/// entries).</para>
/// <para>Run: <c>dotnet run -c Release --project benchmarks/Raft.Benchmarks -- --filter '*CoreBenchmarks*'</c></para>
/// </remarks>
[MemoryDiagnoser]
[Config(typeof(EntriesPerSecondConfig))]
public class CoreBenchmarks
{
    private const int PayloadBytes = 100;
    private const int CompactAbove = 4096;

    private readonly Queue<RaftMessage> _network = new(64);
    private readonly byte[] _payload = new byte[PayloadBytes];
    private RaftCore[] _cores = [];
    private InMemoryLogStore[] _stores = [];
    private RaftCore _leader = null!;

    [GlobalSetup]
    public void Setup()
    {
        Random.Shared.NextBytes(_payload);
        int[] members = [1, 2, 3];
        _stores = [new(), new(), new()];
        _cores = new RaftCore[3];
        for (var i = 0; i < 3; i++)
        {
            // Seeded, and election timeouts far away: only the explicit campaign below elects anyone.
            var options = new RaftOptions { NodeId = members[i], Members = members, Random = new Random(i + 1) };
            _cores[i] = new RaftCore(options, _stores[i]);
        }
        _cores[0].Campaign();
        PumpUntilQuiet();
        _leader = _cores.Single(c => c.Role == RaftRole.Leader);
        if (_leader.CommitIndex < _leader.LastIndex)
            throw new InvalidOperationException("The new leader did not commit its no-op.");
        // Reach the steady state (lists and queues at their working capacity) before measuring.
        for (var i = 0; i < 100; i++)
            ProposeAndCommit(64);
    }

    [Benchmark(OperationsPerInvoke = 1)]
    public long ProposeToCommit_Batch1() => ProposeAndCommit(1);

    [Benchmark(OperationsPerInvoke = 64)]
    public long ProposeToCommit_Batch64() => ProposeAndCommit(64);

    private long ProposeAndCommit(int count)
    {
        long last = 0;
        for (var i = 0; i < count; i++)
        {
            if (_leader.Propose(_payload, out last) != ProposeResult.Accepted)
                throw new InvalidOperationException("The leader refused a proposal.");
        }
        PumpUntilQuiet();
        if (_leader.CommitIndex < last)
            throw new InvalidOperationException($"Index {last} did not commit (commit index {_leader.CommitIndex}).");
        if (_stores[0].LastIndex - _stores[0].FirstIndex > CompactAbove)
            Compact();
        return last;
    }

    /// <summary>Runs every core's Ready loop and delivers every message until nothing is left to do.</summary>
    private void PumpUntilQuiet()
    {
        bool busy;
        do
        {
            busy = false;
            for (var i = 0; i < _cores.Length; i++)
            {
                var core = _cores[i];
                while (core.HasReady)
                {
                    busy = true;
                    Process(core, _stores[i]);
                }
            }
            while (_network.TryDequeue(out var message))
            {
                busy = true;
                _cores[message.To - 1].Step(message);
            }
        }
        while (busy);
    }

    /// <summary>What a host does with one Ready, in the order <see cref="Ready"/> prescribes (the in-memory store completes at once).</summary>
    private void Process(RaftCore core, InMemoryLogStore store)
    {
        var ready = core.GetReady();
        for (var i = 0; i < ready.Messages.Count; i++)
            _network.Enqueue(ready.Messages[i]);
        if (ready.HardState is { } hardState)
            Complete(store.SaveHardStateAsync(hardState));
        if (ready.Entries.Count > 0)
            Complete(store.AppendAsync(ready.Entries));
        for (var i = 0; i < ready.MessagesAfterPersist.Count; i++)
            _network.Enqueue(ready.MessagesAfterPersist[i]);
        var applied = ready.CommittedEntries.Count > 0 ? ready.CommittedEntries[^1].Index : 0;
        core.Advance(ready);
        if (applied > 0)
            core.ReportApplied(applied);
    }

    private static void Complete(ValueTask write)
    {
        if (!write.IsCompletedSuccessfully)
            throw new InvalidOperationException("The in-memory store is expected to complete writes synchronously.");
    }

    private void Compact()
    {
        // Quiet cluster: every follower matches the leader and every core applied everything.
        for (var i = 0; i < _cores.Length; i++)
            Complete(_stores[i].CompactAsync(_cores[i].AppliedIndex));
    }
}
