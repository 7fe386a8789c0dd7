using Raft.Testing;
using Raft.Tests.Node;
using Raft.Tests.Transport;

namespace Raft.Tests.Diagnostics;

/// <summary>
/// A <see cref="TcpTransport"/> and a <see cref="FileLogStore"/> given to a node report to that
/// node's meter: messages and bytes per peer, drops with their reason, fsync times.
/// </summary>
[Collection(nameof(TelemetryCollection))]
public sealed class TransportAndStorageMetricsTests
{
    private static RaftNodeOptions Options(int id) => new()
    {
        NodeId = id,
        Members = [1, 2],
    };

    [Fact]
    public async Task The_TCP_transport_counts_messages_and_frame_bytes_per_peer_on_the_nodes_meter()
    {
        using var meters = new TestMeterFactory();
        using var recorder = new MetricsRecorder(meters);
        var (a, _, b, sinkB) = await TcpTransportLoopbackTests.StartPairAsync(TcpTransportLoopbackTests.Options(), TcpTransportLoopbackTests.Options());
        await using (a)
        await using (b)
        {
            // The nodes are never started: creating them hands their meters to the transports.
            await using var node1 = new RaftNode(Options(1), a, new InMemoryLogStore(), new ListStateMachine(), meterFactory: meters);
            await using var node2 = new RaftNode(Options(2), b, new InMemoryLogStore(), new ListStateMachine(), meterFactory: meters);

            var messages = MessageGenerators.OneOfEach(1, 2);
            foreach (var message in messages)
                a.Send(message);
            for (var i = 0; i < messages.Count; i++)
                await sinkB.NextAsync();

            var bytes = messages.Sum(RaftMessageSerializer.GetSerializedLength);
            Assert.Equal(messages.Count, Total(recorder.Of("raft.transport.messages.sent", 1), peer: 2));
            Assert.Equal(bytes, Total(recorder.Of("raft.transport.bytes.sent", 1), peer: 2));
            Assert.Equal(messages.Count, Total(recorder.Of("raft.transport.messages.received", 2), peer: 1));
            Assert.Equal(bytes, Total(recorder.Of("raft.transport.bytes.received", 2), peer: 1));
            Assert.All(recorder.Of("raft.transport.bytes.sent"), m => Assert.Equal("By", m.Unit));

            // Drops carry the peer and the reason.
            a.Send(new TimeoutNow(1, 99, 1));
            a.Send(new AppendEntries(1, 2, 1, 0, 0, [new LogEntry(1, 1, EntryKind.Command, new byte[TcpTransportOptions.DefaultMaxFrameBytes])], 0));
            var drops = recorder.Of("raft.transport.messages.dropped", 1);
            Assert.Contains(drops, d => Equals(d.Tag("raft.peer.id"), 99) && Equals(d.Tag("raft.drop.reason"), "unknown_peer") && d.Value == 1);
            Assert.Contains(drops, d => Equals(d.Tag("raft.peer.id"), 2) && Equals(d.Tag("raft.drop.reason"), "too_large") && d.Value == 1);
        }
    }

    [Fact]
    public async Task The_file_log_store_reports_each_fsync_to_the_nodes_meter()
    {
        using var meters = new TestMeterFactory();
        using var recorder = new MetricsRecorder(meters);
        var directory = Directory.CreateTempSubdirectory("raft-fsync-metrics-");
        try
        {
            await using var store = await FileLogStore.OpenAsync(directory.FullName);
            await using var node = new RaftNode(Options(1), new InMemoryNetwork().CreateTransport(1), store, new ListStateMachine(), meterFactory: meters);

            await store.AppendAsync([new LogEntry(1, 1, EntryKind.Command, new byte[] { 1 })]);
            var afterAppend = recorder.Of("raft.storage.fsync.duration", 1);
            await store.SaveHardStateAsync(new HardState(1, 1, 0));
            var afterHardState = recorder.Of("raft.storage.fsync.duration", 1);

            Assert.Single(afterAppend); // the segment's data (its directory fsync is timed with it)
            Assert.Equal(3, afterHardState.Count); // and the hard-state file, then the directory after the rename
            Assert.All(afterHardState, m => Assert.True(m.Value >= 0 && m.Unit == "s", $"{m.Value} {m.Unit}"));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static double Total(IReadOnlyList<Recorded> measurements, int peer) =>
        measurements.Where(m => Equals(m.Tag("raft.peer.id"), peer)).Sum(m => m.Value);
}
