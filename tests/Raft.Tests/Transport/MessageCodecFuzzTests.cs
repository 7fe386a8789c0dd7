using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using Xunit.Abstractions;

namespace Raft.Tests.Transport;

/// <summary>
/// Feeds the decoder random bytes and mutated valid frames: only <see cref="RaftProtocolException"/>
/// (or "need more data") may come out, never an IndexOutOfRange, Overflow, OutOfMemory or the like.
/// </summary>
public class MessageCodecFuzzTests(ITestOutputHelper output)
{
    private const int MaxFrame = 64 * 1024;
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(3);

    [Fact]
    public void Random_and_mutated_frames_only_ever_raise_the_protocol_exception()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed} (set it in this test to replay)");
        var rng = new Random(seed);
        var clock = Stopwatch.StartNew();
        long cases = 0, decoded = 0, rejected = 0, partial = 0;

        while (clock.Elapsed < Budget)
        {
            byte[] input = rng.Next(4) == 0 ? RandomBytes(rng) : MutatedFrames(rng);
            var sequence = rng.Next(2) == 0
                ? new ReadOnlySequence<byte>(input)
                : Sequences.Split(input, rng, maxSegment: rng.Next(1, 40));
            cases++;
            try
            {
                while (true)
                {
                    long before = sequence.Length;
                    if (!MessageCodec.TryReadFrame(ref sequence, MaxFrame, out var message))
                    {
                        partial++;
                        break;
                    }
                    Assert.NotNull(message);
                    Assert.True(sequence.Length < before, "a decoded frame must consume bytes");
                    decoded++;
                }
            }
            catch (RaftProtocolException)
            {
                rejected++;
            }
            catch (Exception ex)
            {
                Assert.Fail($"seed {seed}, case {cases}: {ex.GetType().Name}: {ex.Message}\ninput: {Convert.ToHexString(input)}\n{ex}");
            }
        }

        output.WriteLine($"{cases} inputs: {decoded} frames decoded, {rejected} rejected, {partial} incomplete");
        Assert.True(cases > 1000, $"only {cases} cases ran");
        Assert.True(rejected > 0 && decoded > 0);
    }

    [Fact]
    public void Random_and_mutated_prefaces_only_ever_raise_the_protocol_exception()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var rng = new Random(seed);
        var clock = Stopwatch.StartNew();
        int cases = 0, parsed = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(1))
        {
            var bytes = RawPeer.Preface(new string('c', rng.Next(1, 40)), rng.Next(), rng.Next(), (byte)rng.Next(3));
            for (int i = rng.Next(0, 4); i > 0; i--)
                bytes[rng.Next(bytes.Length)] = (byte)rng.Next(256);
            bytes = bytes[..rng.Next(bytes.Length + 1)];
            var sequence = Sequences.Split(bytes, rng);
            cases++;
            try
            {
                if (ConnectionPreface.TryParse(ref sequence, out var preface))
                {
                    parsed++;
                    Assert.NotNull(preface.ClusterId);
                }
            }
            catch (RaftProtocolException)
            {
            }
            catch (Exception ex)
            {
                Assert.Fail($"seed {seed}: {ex.GetType().Name}: {ex.Message}\ninput: {Convert.ToHexString(bytes)}");
            }
        }
        output.WriteLine($"{cases} prefaces, {parsed} parsed");
        Assert.True(parsed > 0);
    }

    private static byte[] RandomBytes(Random rng)
    {
        var bytes = new byte[rng.Next(0, 300)];
        rng.NextBytes(bytes);
        if (bytes.Length >= MessageCodec.HeaderSize && rng.Next(2) == 0)
        {
            // A plausible header, so the payload parsers see the garbage too.
            BinaryPrimitives.WriteInt32LittleEndian(bytes, bytes.Length - MessageCodec.HeaderSize);
            bytes[4] = (byte)rng.Next(1, 10);
            bytes[5] = (byte)rng.Next(0, 4);
            bytes[6] = 0;
            bytes[7] = 0;
        }
        return bytes;
    }

    private static byte[] MutatedFrames(Random rng)
    {
        var writer = new ArrayBufferWriter<byte>();
        int frames = rng.Next(1, 4);
        for (int i = 0; i < frames; i++)
            MessageCodec.Write(writer, RandomMessage(rng));
        var bytes = writer.WrittenSpan.ToArray();

        int mutations = rng.Next(0, 4);
        for (int i = 0; i < mutations && bytes.Length > 0; i++)
        {
            switch (rng.Next(6))
            {
                case 0: // flip a byte
                    bytes[rng.Next(bytes.Length)] ^= (byte)rng.Next(1, 256);
                    break;
                case 1: // plant an extreme 32-bit value (a length or count) anywhere
                    if (bytes.Length >= 4)
                    {
                        int[] extremes = [-1, int.MinValue, int.MaxValue, MaxFrame, MaxFrame + 1, 0, 1, 4, 21, bytes.Length];
                        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(rng.Next(bytes.Length - 3)), extremes[rng.Next(extremes.Length)]);
                    }
                    break;
                case 2: // truncate
                    bytes = bytes[..rng.Next(bytes.Length)];
                    break;
                case 3: // append junk
                    var junk = new byte[rng.Next(1, 30)];
                    rng.NextBytes(junk);
                    bytes = [.. bytes, .. junk];
                    break;
                case 4: // corrupt the first frame's length by a little
                    if (bytes.Length >= 4)
                        BinaryPrimitives.WriteInt32LittleEndian(bytes, BinaryPrimitives.ReadInt32LittleEndian(bytes) + rng.Next(-30, 30));
                    break;
                default: // change the type
                    if (bytes.Length > 4)
                        bytes[4] = (byte)rng.Next(0, 12);
                    break;
            }
        }
        return bytes;
    }

    internal static RaftMessage RandomMessage(Random rng)
    {
        long L() => rng.Next(3) == 0 ? rng.NextInt64(long.MinValue, long.MaxValue) : rng.Next(0, 1000);
        int I() => rng.Next(4) == 0 ? rng.Next(int.MinValue, int.MaxValue) : rng.Next(1, 8);
        bool B() => rng.Next(2) == 0;
        byte[] Data(int max)
        {
            var data = new byte[rng.Next(0, max)];
            rng.NextBytes(data);
            return data;
        }

        ReadOnlyMemory<byte>[] Commands()
        {
            var commands = new ReadOnlyMemory<byte>[rng.Next(0, 6)];
            for (int i = 0; i < commands.Length; i++)
                commands[i] = Data(40);
            return commands;
        }

        return rng.Next(9) switch
        {
            0 => new RequestVote(I(), I(), L(), L(), L(), B(), B()),
            1 => new RequestVoteResponse(I(), I(), L(), B(), B()),
            2 => new AppendEntries(I(), I(), L(), L(), L(),
                Enumerable.Range(0, rng.Next(0, 6)).Select(_ => new LogEntry(L(), L(), (EntryKind)rng.Next(3), Data(40))).ToArray(),
                L(), L()),
            3 => new AppendEntriesResponse(I(), I(), L(), B(), L(), L(), L(), L()),
            4 => new TimeoutNow(I(), I(), L()),
            5 => new InstallSnapshot(I(), I(), L(), L(), L(), Enumerable.Range(1, rng.Next(1, 5)).Select(i => i * 1000 + rng.Next(1000)).ToArray(), L(), Data(100), B()),
            6 => new InstallSnapshotResponse(I(), I(), L(), L(), L(), B(), B()),
            7 => B()
                ? new ForwardRequest(I(), I(), L(), L(), IsRead: true, [])
                : new ForwardRequest(I(), I(), L(), L(), IsRead: false, Commands()),
            _ => new ForwardResponse(I(), I(), L(), L(), (ForwardStatus)rng.Next(1, 5), L(), rng.Next(0, 100), I()),
        };
    }
}
