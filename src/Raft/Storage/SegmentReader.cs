using System.Buffers;

namespace Raft;

/// <summary>
/// Reads a segment file forward in large chunks for recovery. A span returned by
/// <see cref="TryGet"/> stays valid until the next call.
/// </summary>
internal sealed class SegmentReader : IDisposable
{
    private const int ChunkSize = 4 << 20;

    private readonly IStorageFile _file;
    private readonly long _fileLength;
    private byte[] _buffer;
    // Invariant: _buffer[0, _count) holds the file's bytes [_start, _start + _count).
    private long _start;
    private int _count;

    public SegmentReader(IStorageFile file, long fileLength)
    {
        _file = file;
        _fileLength = fileLength;
        _buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(ChunkSize, Math.Max(fileLength, 64)));
    }

    /// <summary>Returns the file's bytes [offset, offset + count), or false when the file is shorter.</summary>
    public bool TryGet(long offset, int count, out ReadOnlySpan<byte> bytes)
    {
        bytes = default;
        if (offset < 0 || count < 0 || offset + count > _fileLength)
            return false;
        if (offset < _start || offset + count > _start + _count)
            Fill(offset, count);
        bytes = _buffer.AsSpan((int)(offset - _start), count);
        return true;
    }

    private void Fill(long offset, int count)
    {
        // Keep what is buffered from offset on, then read ahead as far as the buffer allows.
        var keep = offset >= _start && offset < _start + _count ? (int)(_start + _count - offset) : 0;
        if (count > _buffer.Length)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(count);
            _buffer.AsSpan((int)(offset - _start), keep).CopyTo(bigger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }
        else if (keep > 0)
        {
            _buffer.AsSpan((int)(offset - _start), keep).CopyTo(_buffer);
        }
        _start = offset;
        _count = keep;
        var wanted = (int)Math.Min(_buffer.Length, _fileLength - offset);
        while (_count < wanted)
        {
            var n = _file.Read(_buffer.AsSpan(_count, wanted - _count), _start + _count);
            if (n == 0)
                throw new IOException($"The file ended at byte {_start + _count} while {_fileLength} bytes were expected; was it changed during recovery?");
            _count += n;
        }
    }

    public void Dispose()
    {
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }
}
