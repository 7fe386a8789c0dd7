namespace Raft.Tests.Storage;

/// <summary>The CRC-32C of the file formats, against a plain bit-at-a-time reference, across the lengths where its fast path (three interleaved lanes of 256 bytes) starts and ends.</summary>
public sealed class Crc32CTests
{
    // Bit-at-a-time CRC-32C over the reflected polynomial, running register (not inverted).
    private static uint Reference(uint register, ReadOnlySpan<byte> data)
    {
        foreach (var b in data)
        {
            register ^= b;
            for (var bit = 0; bit < 8; bit++)
                register = (register & 1) != 0 ? (register >> 1) ^ 0x82F63B78u : register >> 1;
        }
        return register;
    }

    [Fact]
    public void Every_length_up_to_three_blocks_matches_the_reference()
    {
        var random = new Random(15);
        var data = new byte[3 * 768 + 17];
        random.NextBytes(data);
        for (var length = 0; length <= data.Length; length++)
        {
            var register = (uint)random.Next() ^ ((uint)random.Next() << 16);
            var span = data.AsSpan(0, length);
            Assert.Equal(Reference(register, span), LogFormat.Crc32CUpdate(register, span));
        }
    }

    [Fact]
    public void Large_and_unaligned_inputs_match_the_reference_and_feed_in_pieces()
    {
        var random = new Random(4096);
        var data = new byte[70_000];
        random.NextBytes(data);
        foreach (var (offset, length) in new[] { (0, 4124), (1, 4124), (3, 65_536), (7, 69_000), (5, 768), (9, 767) })
        {
            var span = data.AsSpan(offset, length);
            Assert.Equal(~Reference(~0u, span), LogFormat.Crc32C(span));
            var cut = length / 3;
            Assert.Equal(LogFormat.Crc32C(span), ~LogFormat.Crc32CUpdate(LogFormat.Crc32CUpdate(~0u, span[..cut]), span[cut..]));
        }
    }
}
