using System.Numerics;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace Raft.Benchmarks;

/// <summary>
/// The log record checksum: <c>LogFormat.Crc32CUpdate</c> (three interleaved lanes on long inputs)
/// against one chain of CRC instructions, the way it was computed before. Every node checksums
/// every entry it appends, so at 4 KiB entries this is a visible share of the CPU.
/// </summary>
/// <remarks>Run: dotnet run -c Release --project benchmarks/Raft.Benchmarks -- --filter '*Crc32C*' --job short</remarks>
public class Crc32CBenchmarks
{
    private byte[] _data = null!;

    /// <summary>A record of a 100 B and of a 4 KiB payload (28 B header included).</summary>
    [Params(128, 4124)]
    public int Length { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = new byte[Length];
        new Random(42).NextBytes(_data);
    }

    [Benchmark(Baseline = true)]
    public uint OneChain()
    {
        var crc = ~0u;
        var words = MemoryMarshal.Cast<byte, ulong>(_data);
        foreach (var word in words)
            crc = BitOperations.Crc32C(crc, word);
        foreach (var b in _data.AsSpan(words.Length * sizeof(ulong)))
            crc = BitOperations.Crc32C(crc, b);
        return ~crc;
    }

    [Benchmark]
    public uint ThreeLanes() => LogFormat.Crc32C(_data);
}
