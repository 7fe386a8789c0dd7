using System.Text;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>
/// <see cref="KeyValueStateMachine"/> as an <see cref="ICommandValidator"/>: the leader refuses, before
/// replication, exactly the byte strings <see cref="KeyValueStateMachine.ApplyAsync"/> would reject
/// (a committed one would stop every replica that applies it, after every restart).
/// </summary>
public sealed class CommandValidatorTests
{
    /// <summary>Every malformed shape the decoder knows, beyond <see cref="StateMachineTests.Garbage"/>.</summary>
    public static TheoryData<string, byte[]> Malformed
    {
        get
        {
            var data = new TheoryData<string, byte[]>();
            foreach (var row in StateMachineTests.Garbage)
                data.Add((string)row[0], (byte[])row[1]);
            data.Add("one garbage byte (the issue's poison pill)", [0x2A]);
            data.Add("two bytes", [2, 1]);
            data.Add("operation 0", [0, 1, 0, (byte)'k']);
            data.Add("operation 4", [4, 1, 0, (byte)'k']);
            data.Add("key of 257 bytes", [2, 1, 1, .. new byte[257].Select(_ => (byte)'k')]);
            data.Add("put without a value length", [1, 1, 0, (byte)'k']);
            data.Add("put value not UTF-8", [1, 1, 0, (byte)'k', 1, 0, 0, 0, 0xC3]);
            data.Add("put value overlong UTF-8", [1, 1, 0, (byte)'k', 2, 0, 0, 0, 0xC0, 0xAF]);
            data.Add("put value UTF-8-encoded surrogate", [1, 1, 0, (byte)'k', 3, 0, 0, 0, 0xED, 0xA0, 0x80]);
            data.Add("put value length 4 GiB - 1", [1, 1, 0, (byte)'k', 0xFF, 0xFF, 0xFF, 0xFF, (byte)'v']);
            data.Add("put with trailing byte", [1, 1, 0, (byte)'k', 1, 0, 0, 0, (byte)'v', 0]);
            data.Add("cas without flag", [3, 1, 0, (byte)'k']);
            data.Add("cas expected cut off", [3, 1, 0, (byte)'k', 1, 5, 0, 0, 0, (byte)'e']);
            data.Add("cas value missing", [3, 1, 0, (byte)'k', 1, 1, 0, 0, 0, (byte)'e']);
            data.Add("cas expected not UTF-8", [3, 1, 0, (byte)'k', 1, 1, 0, 0, 0, 0xFF, 1, 0, 0, 0, (byte)'v']);
            data.Add("cas value not UTF-8", [3, 1, 0, (byte)'k', 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x80]);
            data.Add("cas with trailing bytes", [3, 1, 0, (byte)'k', 0, 0, 0, 0, 0, 1, 0, 0, 0, (byte)'v', 1, 2]);
            data.Add("delete key not UTF-8 (lone continuation)", [2, 2, 0, (byte)'k', 0xBF]);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Malformed))]
    public async Task TryValidate_refuses_every_shape_ApplyAsync_rejects_with_the_same_reason(string why, byte[] bytes)
    {
        var machine = new KeyValueStateMachine();
        Assert.False(machine.TryValidate(bytes, out var error), why);
        Assert.StartsWith("Not a key-value command", error, StringComparison.Ordinal);
        var applied = await Assert.ThrowsAsync<InvalidDataException>(() => machine.ApplyAsync(new LogEntry(1, 1, EntryKind.Command, bytes)).AsTask());
        Assert.Equal(applied.Message, error);
        Assert.Equal(0, machine.Count);
    }

    public static TheoryData<KvCommand> SampleCommands
    {
        get
        {
            var data = new TheoryData<KvCommand>();
            foreach (var row in StateMachineTests.Commands)
                data.Add(row);
            // What the HTTP API builds: any key of 1 to 256 UTF-8 bytes, any valid text as a value.
            data.Add(KvCommand.Put(new string('é', KvCommand.MaxKeyBytes / 2), "x"));
            data.Add(KvCommand.Put("🚀", new string('v', KvNodeOptions.DefaultMaxBodyBytes)));
            data.Add(KvCommand.Delete(new string('k', KvCommand.MaxKeyBytes)));
            data.Add(KvCommand.CompareAndSwap("a/b%c", "\u0000 nul is text", "\uFFFF"));
            data.Add(KvCommand.CompareAndSwap("k", null, ""));
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(SampleCommands))]
    public async Task Every_command_the_sample_encodes_is_accepted_and_applies(KvCommand command)
    {
        var machine = new KeyValueStateMachine();
        var bytes = command.Encode();
        Assert.True(machine.TryValidate(bytes, out var error), error);
        Assert.Null(error);
        await machine.ApplyAsync(new LogEntry(1, 1, EntryKind.Command, bytes));
    }

    /// <summary>
    /// Random byte strings, valid encodings, and valid encodings with a few bytes changed, cut or
    /// added (where the interesting boundaries are): TryValidate accepts exactly what ApplyAsync
    /// applies, and an accepted command is the one canonical encoding of what it decodes to.
    /// Seeded, so a failure names a case that can be replayed.
    /// </summary>
    [Fact]
    public async Task TryValidate_accepts_exactly_what_ApplyAsync_applies_on_random_and_mutated_bytes()
    {
        const int Seed = 20261203;
        const int Cases = 20_000;
        var random = new Random(Seed);
        var machine = new KeyValueStateMachine();
        int accepted = 0, refused = 0;
        for (var i = 0; i < Cases; i++)
        {
            var bytes = NextCandidate(random);
            var valid = machine.TryValidate(bytes, out var error);
            Exception? failure = null;
            try
            {
                await machine.ApplyAsync(new LogEntry(i + 1, 1, EntryKind.Command, bytes));
            }
            catch (InvalidDataException ex)
            {
                failure = ex;
            }
            var where = $"case {i} (seed {Seed}): {Convert.ToHexString(bytes)}";
            if (valid)
            {
                Assert.True(failure is null, $"TryValidate accepted what ApplyAsync rejects ({failure?.Message}): {where}");
                Assert.Equal(bytes, KvCommand.Decode(bytes).Encode());
                accepted++;
            }
            else
            {
                Assert.True(failure is not null, $"TryValidate refused ({error}) what ApplyAsync applies: {where}");
                refused++;
            }
        }
        // Both sides of the property were exercised.
        Assert.True(accepted > Cases / 10 && refused > Cases / 10, $"accepted {accepted}, refused {refused}");
    }

    [Fact]
    public void A_refused_command_is_a_400_that_says_nothing_was_submitted_and_why()
    {
        var (status, message) = KvApi.DescribeRefusal(new InvalidCommandException("Not a key-value command: operation byte 42 is unknown."));
        Assert.Equal(400, status);
        Assert.Contains("operation byte 42 is unknown", message, StringComparison.Ordinal);
        Assert.Contains("nothing was submitted", message, StringComparison.Ordinal);
    }

    private static readonly string[] Texts = ["", "k", "é", "🚀", "\u0085", "a/b", "\u0000", "value", new string('x', 300)];

    private static readonly byte[] Interesting = [0, 1, 2, 3, 4, 0x7F, 0x80, 0xBF, 0xC0, 0xC3, 0xED, 0xF4, 0xF5, 0xFF];

    private static byte[] NextCandidate(Random random)
    {
        switch (random.Next(4))
        {
            case 0:
                {
                    var bytes = new byte[random.Next(0, 24)];
                    random.NextBytes(bytes);
                    if (bytes.Length > 0 && random.Next(2) == 0)
                        bytes[0] = (byte)random.Next(0, 5); // a plausible operation byte
                    return bytes;
                }
            case 1:
                return NextCommand(random).Encode();
            default:
                {
                    var bytes = new List<byte>(NextCommand(random).Encode());
                    var mutations = random.Next(1, 4);
                    for (var m = 0; m < mutations; m++)
                    {
                        var b = random.Next(3) == 0 ? (byte)random.Next(256) : Interesting[random.Next(Interesting.Length)];
                        switch (random.Next(5))
                        {
                            case 0 when bytes.Count > 0: // change a byte
                                bytes[random.Next(bytes.Count)] = b;
                                break;
                            case 1 when bytes.Count > 0: // drop a byte
                                bytes.RemoveAt(random.Next(bytes.Count));
                                break;
                            case 2: // insert a byte
                                bytes.Insert(random.Next(bytes.Count + 1), b);
                                break;
                            case 3 when bytes.Count > 0: // cut the tail off
                                var keep = random.Next(bytes.Count);
                                bytes.RemoveRange(keep, bytes.Count - keep);
                                break;
                            default: // append a byte
                                bytes.Add(b);
                                break;
                        }
                    }
                    return [.. bytes];
                }
        }
    }

    private static KvCommand NextCommand(Random random)
    {
        string Text() => Texts[random.Next(Texts.Length)];
        string Key()
        {
            var key = Text();
            return key.Length == 0 || Encoding.UTF8.GetByteCount(key) > KvCommand.MaxKeyBytes ? "k" : key;
        }
        return random.Next(3) switch
        {
            0 => KvCommand.Put(Key(), Text()),
            1 => KvCommand.Delete(Key()),
            _ => KvCommand.CompareAndSwap(Key(), random.Next(2) == 0 ? null : Text(), Text()),
        };
    }
}

/// <summary>The poison pill, end to end: one garbage byte proposed on the leader, or through a follower, is refused and no node stops.</summary>
public sealed class PoisonPillTests
{
    [Fact]
    public async Task A_malformed_command_is_refused_on_the_leader_and_through_a_follower_and_no_node_stops()
    {
        // Its own cluster: were the command committed, every node that applies it would stop.
        await using var cluster = await EmbeddedCluster.StartAsync(TestCluster.Options());
        var leader = await cluster.WaitForLeaderAsync(TestCluster.LeaderTimeout);
        var follower = cluster.Nodes.First(n => n != leader);
        foreach (var node in new[] { leader, follower })
        {
            var refused = await Assert.ThrowsAsync<InvalidCommandException>(() => node.Raft.ProposeAsync(new byte[] { 0x2A }).AsTask());
            Assert.Contains("Not a key-value command", refused.Message, StringComparison.Ordinal); // the validator's reason reaches the proposer
        }
        // A write after it is applied everywhere: nothing before it in the log stopped a node.
        using var http = TestCluster.CreateClient();
        using (var put = await http.PutAsync(follower.Url("kv/after-poison"), new StringContent("ok")))
            Assert.Equal(System.Net.HttpStatusCode.NoContent, put.StatusCode);
        await TestCluster.WaitUntilAsync(
            () => cluster.Nodes.All(n => n.StateMachine.TryGet("after-poison", out var v) && v == "ok"),
            "every node applied the write made after the refused command");
        Assert.All(cluster.Nodes, n => Assert.False(n.Raft.Completion.IsCompleted, $"node {n.Id} stopped"));
    }
}
