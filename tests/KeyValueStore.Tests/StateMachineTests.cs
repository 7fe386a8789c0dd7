using System.Text;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>The command encoding and the dictionary state machine, without a cluster.</summary>
public sealed class StateMachineTests
{
    public static TheoryData<KvCommand> Commands =>
    [
        KvCommand.Put("k", "v"),
        KvCommand.Put("ünïcödé/✓", "värde 🚀\n"),
        KvCommand.Put("empty", ""),
        KvCommand.Put(new string('k', KvCommand.MaxKeyBytes), new string('v', 100_000)),
        KvCommand.Delete("k"),
        KvCommand.CompareAndSwap("k", null, "new"),
        KvCommand.CompareAndSwap("k", "", "new"),
        KvCommand.CompareAndSwap("k", "old", ""),
    ];

    [Theory]
    [MemberData(nameof(Commands))]
    public void Commands_round_trip_through_their_encoding(KvCommand command)
    {
        var bytes = command.Encode();
        Assert.Equal(command, KvCommand.Decode(bytes));
        Assert.Equal(bytes, command.Encode()); // deterministic
    }

    [Fact]
    public void The_encoding_is_the_documented_layout()
    {
        Assert.Equal([1, 1, 0, (byte)'k', 1, 0, 0, 0, (byte)'v'], KvCommand.Put("k", "v").Encode());
        Assert.Equal([2, 1, 0, (byte)'k'], KvCommand.Delete("k").Encode());
        Assert.Equal([3, 1, 0, (byte)'k', 0, 0, 0, 0, 0, 1, 0, 0, 0, (byte)'v'], KvCommand.CompareAndSwap("k", null, "v").Encode());
        Assert.Equal([3, 1, 0, (byte)'k', 1, 1, 0, 0, 0, (byte)'e', 1, 0, 0, 0, (byte)'v'], KvCommand.CompareAndSwap("k", "e", "v").Encode());
    }

    public static TheoryData<string, byte[]> Garbage => new()
    {
        { "empty", [] },
        { "unknown operation", [9, 1, 0, (byte)'k'] },
        { "zero-length key", [2, 0, 0] },
        { "key cut off", [2, 5, 0, (byte)'k'] },
        { "trailing bytes", [2, 1, 0, (byte)'k', 0] },
        { "value length past the end", [1, 1, 0, (byte)'k', 9, 0, 0, 0, (byte)'v'] },
        { "value length missing", [1, 1, 0, (byte)'k', 1, 0] },
        { "key not UTF-8", [2, 1, 0, 0xFF] },
        { "cas flag 2", [3, 1, 0, (byte)'k', 2, 0, 0, 0, 0, 1, 0, 0, 0, (byte)'v'] },
        { "cas absent expected with a length", [3, 1, 0, (byte)'k', 0, 1, 0, 0, 0, (byte)'e', 1, 0, 0, 0, (byte)'v'] },
    };

    [Theory]
    [MemberData(nameof(Garbage))]
    public void Decoding_refuses_anything_that_is_not_exactly_a_command(string why, byte[] bytes)
    {
        var error = Assert.Throws<InvalidDataException>(() => KvCommand.Decode(bytes));
        Assert.StartsWith("Not a key-value command", error.Message, StringComparison.Ordinal);
        Assert.NotNull(why);
    }

    [Fact]
    public void Encoding_refuses_empty_and_overlong_keys_and_lone_surrogates()
    {
        Assert.Throws<ArgumentException>(() => KvCommand.Put("", "v").Encode());
        Assert.Throws<ArgumentException>(() => KvCommand.Put(new string('é', 129), "v").Encode()); // 258 bytes
        Assert.ThrowsAny<ArgumentException>(() => KvCommand.Put("k", "\ud800").Encode());
    }

    [Fact]
    public async Task Apply_puts_deletes_and_compares_and_swaps()
    {
        var machine = new KeyValueStateMachine();
        long index = 0;
        Task<object?> Apply(KvCommand command) => machine.ApplyAsync(new LogEntry(++index, 1, EntryKind.Command, command.Encode())).AsTask();

        Assert.Null(await Apply(KvCommand.Put("a", "1")));
        Assert.True(machine.TryGet("a", out var a) && a == "1");
        Assert.Equal(new CasResult(false, "1"), await Apply(KvCommand.CompareAndSwap("a", null, "x")));
        Assert.Equal(new CasResult(false, "1"), await Apply(KvCommand.CompareAndSwap("a", "2", "x")));
        Assert.Equal(new CasResult(true, "3"), await Apply(KvCommand.CompareAndSwap("a", "1", "3")));
        Assert.Equal(new CasResult(false, null), await Apply(KvCommand.CompareAndSwap("b", "1", "x")));
        Assert.False(machine.TryGet("b", out _));
        Assert.Equal(new CasResult(true, "new"), await Apply(KvCommand.CompareAndSwap("b", null, "new")));
        Assert.Null(await Apply(KvCommand.Delete("a")));
        Assert.Null(await Apply(KvCommand.Delete("a")));
        Assert.False(machine.TryGet("a", out _));
        Assert.Equal([new("b", "new")], machine.ToList());
        await Assert.ThrowsAsync<InvalidDataException>(() => machine.ApplyAsync(new LogEntry(++index, 1, EntryKind.Command, new byte[] { 42 })).AsTask());
    }

    [Fact]
    public async Task Snapshots_are_deterministic_and_restore_the_whole_dictionary()
    {
        var pairs = Enumerable.Range(0, 5000).Select(i => ($"key-{i:D5}-{(char)('a' + (i % 26))}é", $"value {i} 🚀")).ToList();
        var forward = await FillAsync(pairs);
        var backward = await FillAsync(Enumerable.Reverse(pairs));
        var first = await SnapshotAsync(forward);
        Assert.Equal(first, await SnapshotAsync(backward)); // insertion order does not matter
        Assert.True(first.Length > 64 * 1024, "big enough to be written in several pieces");

        var restored = new KeyValueStateMachine();
        await restored.ApplyAsync(new LogEntry(1, 1, EntryKind.Command, KvCommand.Put("stale", "gone after restore").Encode()));
        await restored.RestoreSnapshotAsync(new MemoryStream(first));
        Assert.Equal(forward.ToList(), restored.ToList());
        Assert.False(restored.TryGet("stale", out _));
        Assert.Equal(first, await SnapshotAsync(restored));

        var empty = await SnapshotAsync(new KeyValueStateMachine());
        await restored.RestoreSnapshotAsync(new MemoryStream(empty));
        Assert.Equal(0, restored.Count);
    }

    [Fact]
    public async Task Restoring_a_damaged_snapshot_throws_and_keeps_the_state()
    {
        var machine = await FillAsync([("k", "v")]);
        var good = await SnapshotAsync(machine);
        foreach (var bad in new[] { Array.Empty<byte>(), Encoding.ASCII.GetBytes("nope"), good[..^1], [.. good, 0], [.. good[..4], 0xFF, 0xFF, 0xFF, 0x7F] })
        {
            await Assert.ThrowsAsync<InvalidDataException>(() => machine.RestoreSnapshotAsync(new MemoryStream(bad)).AsTask());
            Assert.Equal([new("k", "v")], machine.ToList());
        }
    }

    private static async Task<KeyValueStateMachine> FillAsync(IEnumerable<(string Key, string Value)> pairs)
    {
        var machine = new KeyValueStateMachine();
        long index = 0;
        foreach (var (key, value) in pairs)
            await machine.ApplyAsync(new LogEntry(++index, 1, EntryKind.Command, KvCommand.Put(key, value).Encode()));
        return machine;
    }

    private static async Task<byte[]> SnapshotAsync(KeyValueStateMachine machine)
    {
        using var stream = new MemoryStream();
        await machine.WriteSnapshotAsync(stream);
        return stream.ToArray();
    }
}
