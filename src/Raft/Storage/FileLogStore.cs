using System.Buffers;
using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Raft;

/// <summary>
/// A durable <see cref="ILogStore"/> that keeps the log in segmented, append-only files, with a
/// checksum on every record, and the hard state in its own small file.
/// </summary>
/// <remarks>
/// <para><b>Files</b> (all in one directory, which the store locks against a second opener):
/// <c>NNNNNNNNNNNNNNNNNNNN.log</c> segments named by the index of their first record,
/// <c>hardstate</c> (term, vote, commit), <c>meta</c> (the compaction point) and <c>lock</c>. Each
/// segment starts with a header (magic number, format version, first index); each record holds
/// length, index, term, kind, payload and a CRC-32C of all of it, little-endian.</para>
/// <para><b>Durability</b>: with the default <see cref="LogDurability.Fsync"/>, every write
/// completes only after fsync. <see cref="AppendAsync"/> does one write call and one fsync per call,
/// so batching entries into one call is group commit; starting a new segment adds a directory
/// fsync, and an append that truncates a conflicting suffix adds an fsync of the cut (plus one
/// directory fsync per deleted segment). Hard state and metadata are replaced atomically (temporary file, fsync, rename,
/// directory fsync). The directory fsync is a no-op on operating systems other than Linux.</para>
/// <para><b>Reads</b> are synchronous and served from memory: an index with one <see cref="int"/>
/// (the record's offset in its segment) per entry, terms stored as runs, and a cache of the most
/// recent entries (<see cref="FileLogStoreOptions.CacheBytes"/>). Entries older than the cache
/// are read from disk, checksum-verified, into a fresh array per entry.</para>
/// <para><b>Recovery</b> (<see cref="OpenAsync"/>) scans every segment. A torn or corrupt record at
/// the end of the last segment (the trace of a crash during a write that was never acknowledged) is
/// cut off and logged as a warning. Anything else that is wrong (a corrupt record in an earlier
/// segment or followed by a valid record of a later write, a gap between segments, a bad magic
/// number or an unknown format version) throws <see cref="LogCorruptionException"/>: the store
/// refuses to start rather than guess.</para>
/// <para><b>Threading</b>: like every <see cref="ILogStore"/>, the store expects one writer: writes
/// must not overlap (an overlapping write throws <see cref="InvalidOperationException"/>), and reads
/// must not run during a write. The file work of a write runs on the thread pool, so awaiting a write
/// does not block the caller's thread during fsync.</para>
/// <para><b>Failures</b>: when a write fails with an I/O error, the files may no longer match the
/// in-memory state (and after a failed fsync the kernel may have dropped the data), so the store
/// stops: every later call throws <see cref="InvalidOperationException"/> with the original error as
/// the inner exception. Dispose it and open the directory again, which recovers from the files.</para>
/// </remarks>
public sealed partial class FileLogStore : ILogStore, IAsyncDisposable, ICompactionPreparer
{
    // LogEntry.Size counts this much on top of the payload.
    private static readonly int EntrySizeOverhead = (int)default(LogEntry).Size;

    // Cache misses are read from disk in chunks of about this many bytes (at least one record).
    private const int ReadChunkBytes = 1 << 20;

    private readonly string _directory;
    private readonly FileLogStoreOptions _options;
    private readonly ILogger _logger;
    private readonly bool _fsync;
    private readonly EntryCache _cache;
    private readonly IStorageFileSystem _fs;

    // Invariant: sorted by FirstIndex and contiguous: _segments[k + 1].FirstIndex is one past the last
    // record of _segments[k]. The last record of the last segment is _lastIndex. The first segment
    // may start below _firstIndex: entries that were compacted but not deleted are hidden.
    // Invariant: _segments is empty only when the log is empty (_lastIndex == _firstIndex - 1).
    private readonly List<LogSegment> _segments = [];

    // Invariant: _firstIndex >= 1; _lastIndex >= _firstIndex - 1.
    private long _firstIndex = 1;
    // Guards the in-memory index (offsets, terms, cache, segment list, last index) between an append
    // on the write thread and reads on the node's loop (SupportsReadsDuringAppend).
    private readonly Lock _indexLock = new();
    private long _lastIndex;
    // The term of the entry at _firstIndex - 1 (0 for index 0).
    private long _compactedTerm;

    // Invariant: the record of entry i (for i in [_firstIndex, _lastIndex]) starts at byte offset
    // _offsets[_offsetsHead + (i - _firstIndex)] of the segment that holds i. Payload lengths are
    // derived from the next offset (or the segment's length), so no more is kept per entry.
    private int[] _offsets = [];
    private int _offsetsHead;

    // Invariant: runs of equal terms covering [_firstIndex, _lastIndex]: Start strictly increasing,
    // _terms[0].Start <= _firstIndex, adjacent runs differ in term. Empty iff the log is empty.
    private readonly List<TermRun> _terms = [];

    private HardState _hardState;
    private IStorageFile? _lockHandle;
    private bool _disposed;
    private Exception? _failure;
    private int _writing;

    private FileLogStore(string directory, FileLogStoreOptions options, ILogger logger)
    {
        _directory = directory;
        _options = options;
        _logger = logger;
        _fsync = options.Durability == LogDurability.Fsync;
#if RAFT_MUTANTS
        // The mutant claims durability (no warning) but never fsyncs a file or the directory.
        if ((options.Mutations & Mutation.FileLogNoFsync) != 0)
            _fsync = false;
#endif
        _cache = new EntryCache(options.CacheBytes);
        _fs = options.FileSystem ?? RealStorageFileSystem.Instance;
    }

    /// <summary>The full path of the directory that holds the store's files.</summary>
    public string DirectoryPath => _directory;

    /// <inheritdoc />
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    public HardState HardState
    {
        get
        {
            ThrowIfUnusable();
            return _hardState;
        }
    }

    /// <inheritdoc />
    /// <remarks>True: an append updates the in-memory index under a lock that reads take too, after its data is written and fsynced.</remarks>
    public bool SupportsReadsDuringAppend => true;

    /// <inheritdoc />
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    public long FirstIndex
    {
        get
        {
            ThrowIfUnusable();
            return Volatile.Read(ref _firstIndex);
        }
    }

    /// <inheritdoc />
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    public long LastIndex
    {
        get
        {
            ThrowIfUnusable();
            return Volatile.Read(ref _lastIndex);
        }
    }

    // Test hooks.
    internal int SegmentCount => _segments.Count;

    internal int CachedEntryCount => _cache.Count;

    // Work units (bytes fed to a checksum, candidate records) spent by recovery looking for a valid
    // record after a damaged one; tests bound it by the tail's length.
    internal long RecoveryWork => _recoveryWork;

    private long _recoveryWork;

    /// <inheritdoc />
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    public long GetTerm(long index)
    {
        ThrowIfUnusable();
        lock (_indexLock)
            return GetTermLocked(index);
    }

    private long GetTermLocked(long index)
    {
        if (index == _firstIndex - 1)
            return _compactedTerm;
        if (index < _firstIndex - 1 || index > _lastIndex)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"Index {index} is outside the log [{_firstIndex - 1}, {_lastIndex}].");
        return TermAt(index);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Entries in the cache are returned as appended. Older ones are read from disk, one read call
    /// per chunk of about 1 MiB within a segment, each record checked against its checksum, and each
    /// payload copied into a new array that the caller may keep.
    /// </remarks>
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    /// <exception cref="LogCorruptionException">A record read from disk no longer matches what was written.</exception>
    public void ReadEntries(long startIndex, long endIndex, long maxBytes, List<LogEntry> destination)
    {
        ThrowIfUnusable();
        ArgumentNullException.ThrowIfNull(destination);
        lock (_indexLock)
            ReadEntriesLocked(startIndex, endIndex, maxBytes, destination);
    }

    private void ReadEntriesLocked(long startIndex, long endIndex, long maxBytes, List<LogEntry> destination)
    {
        if (startIndex < _firstIndex || endIndex > _lastIndex + 1 || startIndex > endIndex)
            throw new ArgumentOutOfRangeException(nameof(startIndex), $"Range [{startIndex}, {endIndex}) is outside the log [{_firstIndex}, {_lastIndex + 1}).");

        long bytes = 0;
        var index = startIndex;
        // Entries below the cache come from disk, a chunk of one segment at a time.
        var diskEnd = Math.Min(endIndex, _cache.FirstIndex);
        while (index < diskEnd)
        {
            var k = FindSegment(index);
            var runEnd = k + 1 < _segments.Count ? Math.Min(diskEnd, _segments[k + 1].FirstIndex) : diskEnd;
            var full = false;
            long chunkBytes = 0;
            var next = index;
            while (next < runEnd)
            {
                var length = PayloadLength(next, k);
                bytes += length + EntrySizeOverhead;
                if (bytes > maxBytes && next > startIndex)
                {
                    full = true;
                    break;
                }
                chunkBytes += length + LogFormat.RecordOverhead;
                next++;
                if (chunkBytes >= ReadChunkBytes)
                    break;
            }
            if (next > index)
                ReadFromDisk(k, index, next, destination);
            index = next;
            if (full)
                return;
        }
        for (; index < endIndex; index++)
        {
            ref readonly var entry = ref _cache.Get(index);
            bytes += entry.Size;
            if (bytes > maxBytes && index > startIndex)
                return;
            destination.Add(entry);
        }
    }

    /// <summary>Closes the store's files and releases the directory lock. Idempotent.</summary>
    /// <returns>A task that completes once the files are closed (after the segments that compactions retired are deleted).</returns>
    /// <remarks>Must not be called while a write is in progress. Every member throws <see cref="ObjectDisposedException"/> afterwards.</remarks>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
            return;
        _disposed = true;
        await _retiring.ConfigureAwait(false); // never faults: failures are logged
        CloseFiles();
    }

    private void CloseFiles()
    {
        foreach (var segment in _segments)
            segment.Dispose();
        _segments.Clear();
        _cache.Clear();
        _lockHandle?.Dispose();
        _lockHandle = null;
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_failure is not null)
            throw new InvalidOperationException($"An earlier write to the log store in '{_directory}' failed, so its files may not match its state; dispose it and open the directory again.", _failure);
    }

    private long TermAt(long index)
    {
        Debug.Assert(index >= _firstIndex && index <= _lastIndex);
        var count = _terms.Count;
        if (_terms[count - 1].Start <= index)
            return _terms[count - 1].Term;
        // Find the last run that starts at or before index.
        int lo = 0, hi = count - 2;
        while (lo < hi)
        {
            var mid = (lo + hi + 1) >>> 1;
            if (_terms[mid].Start <= index)
                lo = mid;
            else
                hi = mid - 1;
        }
        return _terms[lo].Term;
    }

    private int FindSegment(long index)
    {
        var count = _segments.Count;
        Debug.Assert(count > 0 && _segments[0].FirstIndex <= index);
        if (_segments[count - 1].FirstIndex <= index)
            return count - 1;
        int lo = 0, hi = count - 2;
        while (lo < hi)
        {
            var mid = (lo + hi + 1) >>> 1;
            if (_segments[mid].FirstIndex <= index)
                lo = mid;
            else
                hi = mid - 1;
        }
        return lo;
    }

    private int OffsetOf(long index) => _offsets[_offsetsHead + (int)(index - _firstIndex)];

    // The payload length of entry index, held by segment k.
    private int PayloadLength(long index, int k)
    {
        var end = index < _lastIndex && (k == _segments.Count - 1 || index + 1 < _segments[k + 1].FirstIndex)
            ? OffsetOf(index + 1)
            : _segments[k].Length;
        return (int)(end - OffsetOf(index) - LogFormat.RecordOverhead);
    }

    // Reads the entries [from, to), all in segment k, with one read call, and verifies each record.
    private void ReadFromDisk(int k, long from, long to, List<LogEntry> destination)
    {
        var segment = _segments[k];
        long start = OffsetOf(from);
        var end = OffsetOf(to - 1) + (long)LogFormat.RecordOverhead + PayloadLength(to - 1, k);
        var total = (int)(end - start);
        var buffer = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            var span = buffer.AsSpan(0, total);
            var read = 0;
            while (read < total)
            {
                var n = segment.File.Read(span[read..], start + read);
                if (n == 0)
                    throw new LogCorruptionException(segment.Path, start + read, $"the segment ends before the records of indexes [{from}, {to}) are complete; the file was cut short while the store was open");
                read += n;
            }
            var position = 0;
            for (var index = from; index < to; index++)
            {
                var expectedLength = PayloadLength(index, k);
                var header = LogFormat.RecordHeader.Read(span[position..]);
                var recordLength = LogFormat.RecordOverhead + expectedLength;
                if (header.PayloadLength != (uint)expectedLength || header.Index != index || header.Term != TermAt(index)
                    || !LogFormat.ChecksumMatches(span.Slice(position, recordLength)))
                {
                    throw new LogCorruptionException(segment.Path, start + position, $"the record of index {index} no longer matches what was written (checksum, length, index or term); the file changed while the store was open");
                }
                var payload = expectedLength == 0
                    ? ReadOnlyMemory<byte>.Empty
                    : span.Slice(position + LogFormat.RecordHeaderSize, expectedLength).ToArray();
                destination.Add(new LogEntry(index, header.Term, (EntryKind)header.Kind, payload));
                position += recordLength;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private readonly record struct TermRun(long Start, long Term);
}
