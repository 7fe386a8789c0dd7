using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Raft;

// Turns a session command's result into the bytes a session keeps (in memory and in snapshots), and
// back. One tag byte, then the value. The host's ISessionResultSerializer, when its state machine
// implements one, is asked first.
internal static class SessionResultCodec
{
    private const byte Null = 0;
    private const byte Bytes = 1;
    private const byte Utf8 = 2;
    private const byte Bool = 3;
    private const byte Int32 = 4;
    private const byte Int64 = 5;
    private const byte Double = 6;
    private const byte Uuid = 7;
    private const byte Committed = 8;
    private const byte NotSaved = 9;
    private const byte Custom = 10;

    /// <summary>Encodes <paramref name="result"/>; <paramref name="saved"/> is false when no encoding knows its type (then only "not saved" is kept).</summary>
    public static byte[] Encode(object? result, ISessionResultSerializer? serializer, out bool saved)
    {
        saved = true;
        if (serializer is not null)
        {
            var buffer = new ArrayBufferWriter<byte>();
            buffer.Write([Custom]);
            if (serializer.TryWriteResult(result, buffer))
                return buffer.WrittenSpan.ToArray();
            if (buffer.WrittenCount != 1)
                throw new InvalidOperationException($"{serializer.GetType().Name}.TryWriteResult wrote {buffer.WrittenCount - 1} bytes and then returned false; it must write nothing when it declines a result.");
        }
        switch (result)
        {
            case null:
                return [Null];
            case byte[] bytes:
                return [Bytes, .. bytes];
            case ReadOnlyMemory<byte> memory:
                return [Bytes, .. memory.Span];
            case Memory<byte> memory:
                return [Bytes, .. memory.Span];
            case string text:
            {
                var data = new byte[1 + Encoding.UTF8.GetByteCount(text)];
                data[0] = Utf8;
                Encoding.UTF8.GetBytes(text, data.AsSpan(1));
                return data;
            }
            case bool value:
                return [Bool, value ? (byte)1 : (byte)0];
            case int value:
            {
                var data = new byte[5];
                data[0] = Int32;
                BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(1), value);
                return data;
            }
            case long value:
            {
                var data = new byte[9];
                data[0] = Int64;
                BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(1), value);
                return data;
            }
            case double value:
            {
                var data = new byte[9];
                data[0] = Double;
                BinaryPrimitives.WriteDoubleLittleEndian(data.AsSpan(1), value);
                return data;
            }
            case Guid value:
            {
                var data = new byte[17];
                data[0] = Uuid;
                value.TryWriteBytes(data.AsSpan(1));
                return data;
            }
            case CommittedWithoutResult:
                return [Committed];
            default:
                saved = false;
                return [NotSaved];
        }
    }

    public static object? Decode(ReadOnlySpan<byte> data, ISessionResultSerializer? serializer)
    {
        if (data.IsEmpty)
            throw new InvalidDataException("A saved session result is empty (it has no tag byte).");
        var value = data[1..];
        return data[0] switch
        {
            Null => null,
            Bytes => value.ToArray(),
            Utf8 => Encoding.UTF8.GetString(value),
            Bool => value.Length == 1 ? value[0] != 0 : Bad(data),
            Int32 => value.Length == 4 ? BinaryPrimitives.ReadInt32LittleEndian(value) : Bad(data),
            Int64 => value.Length == 8 ? BinaryPrimitives.ReadInt64LittleEndian(value) : Bad(data),
            Double => value.Length == 8 ? BinaryPrimitives.ReadDoubleLittleEndian(value) : Bad(data),
            Uuid => value.Length == 16 ? new Guid(value) : Bad(data),
            Committed or NotSaved => CommittedWithoutResult.Instance,
            Custom => serializer is not null
                ? serializer.ReadResult(value)
                : throw new InvalidOperationException("A saved session result was written by the state machine's ISessionResultSerializer, but this state machine does not implement ISessionResultSerializer."),
            _ => Bad(data),
        };
    }

    private static object Bad(ReadOnlySpan<byte> data) =>
        throw new InvalidDataException($"A saved session result has tag {data[0]} and {data.Length - 1} value bytes, which no encoding writes.");
}
