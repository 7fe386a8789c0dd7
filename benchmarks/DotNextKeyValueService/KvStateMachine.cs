using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text;
using DotNext.IO;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;

namespace Raft.Benchmarks.KeyValueServices;

/// <summary>
/// The key-value state machine over DotNext's <see cref="SimpleStateMachine"/>: commands are
/// <c>[op u8][keyLen u16][key][rest]</c> (PUT rest = value; DELETE no rest; CAS rest =
/// <c>[hasExpected u8][expectedLen u32][expected][value]</c>). The whole dictionary is the snapshot,
/// taken every <see cref="SnapshotEvery"/> entries.
/// </summary>
internal sealed class KvStateMachine(DirectoryInfo location) : SimpleStateMachine(location)
{
    public const byte Put = 1;
    public const byte Delete = 2;
    public const byte Cas = 3;

    /// <summary>Entries between snapshots (the cluster benchmark's DotNext setting).</summary>
    public const long SnapshotEvery = 10_000;

    private long _lastApplied;

    public ConcurrentDictionary<string, byte[]> Store { get; } = new(StringComparer.Ordinal);

    /// <summary>The index of the last entry applied (or restored from a snapshot).</summary>
    public long LastApplied => Interlocked.Read(ref _lastApplied);

    public static byte[] Encode(byte op, string key, ReadOnlySpan<byte> rest)
    {
        var keyBytes = Encoding.UTF8.GetBytes(key);
        var buffer = new byte[3 + keyBytes.Length + rest.Length];
        buffer[0] = op;
        BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(1), (ushort)keyBytes.Length);
        keyBytes.CopyTo(buffer.AsSpan(3));
        rest.CopyTo(buffer.AsSpan(3 + keyBytes.Length));
        return buffer;
    }

    public static byte[] EncodeCas(string key, CasRequest cas)
    {
        var expected = cas.Expected ?? [];
        var rest = new byte[5 + expected.Length + cas.Value.Length];
        rest[0] = cas.Expected is null ? (byte)0 : (byte)1;
        BinaryPrimitives.WriteUInt32LittleEndian(rest.AsSpan(1), (uint)expected.Length);
        expected.CopyTo(rest.AsSpan(5));
        cas.Value.CopyTo(rest.AsSpan(5 + expected.Length));
        return Encode(Cas, key, rest);
    }

    protected override async ValueTask<bool> ApplyAsync(LogEntry entry, CancellationToken token)
    {
        if (!entry.IsConfiguration && entry.Length is > 0)
        {
            ReadOnlyMemory<byte> command = await entry.ToByteArrayAsync(null, token).ConfigureAwait(false);
            var result = Apply(command.Span);
            // On the leader, the proposer's completion source travels with the entry (ReplicateAsync's context).
            if (entry.Context is TaskCompletionSource<CasOutcome> waiter)
                waiter.TrySetResult(result);
        }
        Interlocked.Exchange(ref _lastApplied, entry.Index);
        return entry.Index % SnapshotEvery == 0;
    }

    private CasOutcome Apply(ReadOnlySpan<byte> command)
    {
        var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(command[1..]);
        var key = Encoding.UTF8.GetString(command.Slice(3, keyLength));
        var rest = command[(3 + keyLength)..];
        switch (command[0])
        {
            case Put:
                Store[key] = rest.ToArray();
                return new CasOutcome(true, null);
            case Delete:
                Store.TryRemove(key, out _);
                return new CasOutcome(true, null);
            case Cas:
                var expectedLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(rest[1..]);
                var expected = rest.Slice(5, expectedLength);
                var current = Store.GetValueOrDefault(key);
                var swapped = rest[0] == 0 ? current is null : current is not null && current.AsSpan().SequenceEqual(expected);
                if (swapped)
                    Store[key] = rest[(5 + expectedLength)..].ToArray();
                return new CasOutcome(swapped, current);
            default:
                throw new InvalidDataException($"unknown command {command[0]}");
        }
    }

    protected override ValueTask PersistAsync(IAsyncBinaryWriter writer, CancellationToken token)
    {
        using var buffer = new MemoryStream();
        using (var binary = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
        {
            var items = Store.ToArray();
            binary.Write(items.Length);
            foreach (var (key, value) in items)
            {
                binary.Write(key);
                binary.Write(value.Length);
                binary.Write(value);
            }
        }
        return writer.WriteAsync(buffer.ToArray(), lengthFormat: null, token);
    }

    protected override async ValueTask RestoreAsync(FileInfo snapshotFile, CancellationToken token)
    {
        var bytes = await File.ReadAllBytesAsync(snapshotFile.FullName, token).ConfigureAwait(false);
        using var binary = new BinaryReader(new MemoryStream(bytes), Encoding.UTF8);
        Store.Clear();
        var count = binary.ReadInt32();
        for (var i = 0; i < count; i++)
        {
            var key = binary.ReadString();
            Store[key] = binary.ReadBytes(binary.ReadInt32());
        }
    }
}

/// <summary>Whether a command took effect (a CAS may not), and for a CAS the value it found.</summary>
internal sealed record CasOutcome(bool Swapped, byte[]? Current);
