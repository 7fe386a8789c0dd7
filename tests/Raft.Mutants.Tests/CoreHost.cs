using Raft.Testing;

namespace Raft.Mutants.Tests;

/// <summary>One core and its store, driven as a host drives it (persist, send, apply, advance) until nothing is ready.</summary>
internal sealed class CoreHost(RaftOptions options, InMemoryLogStore store)
{
    public RaftCore Core { get; } = new(options, store);

    public InMemoryLogStore Store { get; } = store;

    public List<LogEntry> Applied { get; } = [];

    public List<ReadState> Reads { get; } = [];

    public List<RaftMessage> Drain()
    {
        var sent = new List<RaftMessage>();
        while (Core.HasReady)
        {
            var ready = Core.GetReady();
            if (ready.HardState is { } hs)
                Store.SaveHardStateAsync(hs).AsTask().GetAwaiter().GetResult();
            if (ready.Entries.Count > 0)
                Store.AppendAsync(ready.Entries).AsTask().GetAwaiter().GetResult();
            sent.AddRange(ready.Messages);
            sent.AddRange(ready.MessagesAfterPersist);
            Applied.AddRange(ready.CommittedEntries);
            Reads.AddRange(ready.ReadStates);
            Core.Advance(ready);
            if (ready.CommittedEntries.Count > 0)
                Core.ReportApplied(ready.CommittedEntries[^1].Index);
        }
        return sent;
    }
}
