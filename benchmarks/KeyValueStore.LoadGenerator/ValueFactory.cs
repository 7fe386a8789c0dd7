using System.Globalization;
using System.Text;

namespace Raft.Benchmarks.LoadGenerator;

/// <summary>
/// Makes the written values: <see cref="Size"/> bytes of ASCII, starting with the write's id as 16
/// hexadecimal digits and a '-', then filler drawn once from the seed. The id makes every value
/// unique, so the final check can tell which write a key's value came from.
/// </summary>
internal sealed class ValueFactory
{
    /// <summary>Length of the id prefix: 16 hex digits and '-'.</summary>
    public const int IdPrefixLength = 17;

    private static ReadOnlySpan<byte> HexDigits => "0123456789abcdef"u8;

    private readonly byte[] _filler;

    public ValueFactory(int size, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, IdPrefixLength + 1);
        Size = size;
        var random = new Random(seed);
        _filler = new byte[size];
        for (var i = 0; i < size; i++)
            _filler[i] = (byte)('a' + random.Next(26));
    }

    public int Size { get; }

    /// <summary>The value of write <paramref name="id"/>: a fresh array (the request owns it until it completes).</summary>
    public byte[] Create(long id)
    {
        var value = (byte[])_filler.Clone();
        for (var i = 15; i >= 0; i--)
        {
            value[i] = HexDigits[(int)(id & 0xF)];
            id >>= 4;
        }
        value[16] = (byte)'-';
        return value;
    }

    /// <summary>The id of the write that produced <paramref name="value"/>, when it is exactly such a value.</summary>
    public bool TryGetId(ReadOnlySpan<byte> value, out long id)
    {
        id = 0;
        if (value.Length != Size || value[16] != (byte)'-'
            || !long.TryParse(Encoding.ASCII.GetString(value[..16]), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out id))
        {
            return false;
        }
        return value.SequenceEqual(Create(id));
    }
}
