using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Raft;

public sealed partial class FileLogStore
{
    /// <summary>
    /// Opens (creating it if needed) the store in <paramref name="directory"/> and recovers its
    /// state from the files.
    /// </summary>
    /// <param name="directory">The directory of the store's files; created when missing. One store at a time may use it.</param>
    /// <param name="options">The options, or null for the defaults.</param>
    /// <param name="loggerFactory">Creates the store's logger, which receives recovery warnings and write failures; null logs nothing.</param>
    /// <param name="cancellationToken">Cancels the recovery between segments.</param>
    /// <returns>The open store.</returns>
    /// <remarks>
    /// <para>Recovery deletes temporary files left by an interrupted hard-state or metadata write,
    /// reads the hard state (a missing file means the default state) and the compaction point,
    /// deletes segments left entirely below the compaction point by an interrupted compaction, and
    /// scans every remaining segment, checking each record's checksum and index.</para>
    /// <para>A torn or corrupt record at the end of the last segment is cut off (the file is
    /// truncated and fsynced) and logged as a warning; so is a last segment whose header was never
    /// completely written. Records that follow a bad one in the same write batch are cut with it: a
    /// batch that was torn by a crash was never acknowledged.</para>
    /// <para>Recovery reads every segment once; expect it to take about as long as reading the log
    /// from disk. Deciding whether a damaged record at the end is followed by a valid record of a
    /// later write takes one more pass over the damaged tail, whatever its content. The in-memory index costs 4 bytes per entry plus one element per term change.</para>
    /// </remarks>
    /// <exception cref="ArgumentException"><paramref name="directory"/> is null or empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is invalid.</exception>
    /// <exception cref="LogCorruptionException">
    /// The files are damaged in a way a crash cannot explain: a corrupt record in a segment other than
    /// the last, or followed by a valid record of a later write; a gap or overlap between segments or
    /// below the compaction point; a bad magic number, an unknown format version or a bad header; a
    /// corrupt hard-state or metadata file. The message names the file and the byte offset.
    /// </exception>
    /// <exception cref="IOException">The directory is in use by another store, or an I/O operation failed.</exception>
    public static async ValueTask<FileLogStore> OpenAsync(string directory, FileLogStoreOptions? options = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        options = options is null ? new FileLogStoreOptions() : options with { }; // the store's own copy
        options.Validate();
        cancellationToken.ThrowIfCancellationRequested();
        var store = new FileLogStore(Path.GetFullPath(directory), options, loggerFactory?.CreateLogger<FileLogStore>() ?? (ILogger)NullLogger.Instance);
        try
        {
            await store.RunIo(() => store.Recover(cancellationToken), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            store.CloseFiles();
            throw;
        }
        return store;
    }

    private void Recover(CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        if (!_fs.DirectoryExists(_directory))
        {
            _fs.CreateDirectory(_directory);
            var parent = Path.GetDirectoryName(_directory);
            if (_fsync && parent is not null)
                _fs.SyncDirectory(parent);
        }
        var lockPath = Path.Combine(_directory, LogFormat.LockFileName);
        try
        {
            _lockHandle = _fs.OpenFile(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException ex)
        {
            throw new IOException($"The log directory '{_directory}' is in use by another FileLogStore (in this or another process).", ex);
        }
        if (_options.Durability != LogDurability.Fsync)
            FileLogStoreLog.UnsafeNoFsync(_logger, _directory);

        var directoryChanged = false;
        directoryChanged |= DeleteTempFile(LogFormat.HardStateFileName + LogFormat.TempSuffix);
        directoryChanged |= DeleteTempFile(LogFormat.MetaFileName + LogFormat.TempSuffix);
        foreach (var retired in _fs.EnumerateFiles(_directory, LogFormat.RetiredExtension).ToList())
        {
            // A segment a compaction dropped; the process stopped before it was deleted.
            _fs.DeleteFile(retired);
            FileLogStoreLog.RetiredSegmentDeleted(_logger, retired);
            directoryChanged = true;
        }
        _hardState = ReadHardState();
        var (compactIndex, compactTerm) = ReadMeta();

        var files = ListSegmentFiles();
        // Segments wholly below the compaction point are left over from an interrupted compaction
        // (the point is recorded before segments are deleted). The last one is judged after its scan.
        var start = 0;
        while (start < files.Count - 1 && files[start + 1].FirstIndex <= compactIndex + 1)
        {
            _fs.DeleteFile(files[start].Path);
            FileLogStoreLog.LeftoverSegmentDeleted(_logger, files[start].Path, compactIndex);
            directoryChanged = true;
            start++;
        }

        var scan = new ScanState();
        long physicalFirst = -1;
        long next = -1; // the index the next segment must start at
        string? previousPath = null;
        for (var s = start; s < files.Count; s++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (first, path) = files[s];
            var isLast = s == files.Count - 1;
            var segment = ScanSegment(path, first, isLast, next, previousPath, compactIndex, scan, ref directoryChanged);
            if (segment is null)
                continue; // a last segment whose creation was torn; deleted
            _segments.Add(segment);
            if (physicalFirst < 0)
                physicalFirst = first;
            next = first + scan.CountInSegment;
            previousPath = path;
        }

        var physicalLast = next - 1;
        if (_segments.Count > 0 && physicalLast < compactIndex)
        {
            // Everything left is below the compaction point: entries were lost (only possible
            // without fsync). The compaction point still stands; the log is empty after it.
            foreach (var segment in _segments)
            {
                segment.Dispose();
                _fs.DeleteFile(segment.Path);
                FileLogStoreLog.SegmentBelowCompactionPointDeleted(_logger, segment.Path, physicalLast, compactIndex);
            }
            _segments.Clear();
            directoryChanged = true;
        }
        if (directoryChanged && _fsync)
            _fs.SyncDirectory(_directory);

        _firstIndex = compactIndex + 1;
        _compactedTerm = compactTerm;
        if (_segments.Count == 0)
        {
            _lastIndex = compactIndex;
        }
        else
        {
            _lastIndex = physicalLast;
            _offsets = scan.Offsets;
            _offsetsHead = (int)(_firstIndex - physicalFirst);
            var terms = scan.Terms;
            var keepFrom = 0;
            while (keepFrom + 1 < terms.Count && terms[keepFrom + 1].Start <= _firstIndex)
                keepFrom++;
            _terms.AddRange(terms.Skip(keepFrom));
        }
        FileLogStoreLog.Opened(_logger, _directory, _firstIndex, _lastIndex, _segments.Count, stopwatch.ElapsedMilliseconds);
    }

    private bool DeleteTempFile(string fileName)
    {
        var path = Path.Combine(_directory, fileName);
        if (!_fs.FileExists(path))
            return false;
        _fs.DeleteFile(path);
        FileLogStoreLog.TempFileDeleted(_logger, path);
        return true;
    }

    private HardState ReadHardState()
    {
        var path = Path.Combine(_directory, LogFormat.HardStateFileName);
        if (!_fs.FileExists(path))
            return default;
        var error = LogFormat.TryReadHardState(ReadSmallFile(path), out var state);
        if (error is not null)
            throw new LogCorruptionException(path, 0, error);
        return state;
    }

    private (long Index, long Term) ReadMeta()
    {
        var path = Path.Combine(_directory, LogFormat.MetaFileName);
        if (!_fs.FileExists(path))
            return (0, 0);
        var error = LogFormat.TryReadMeta(ReadSmallFile(path), out var index, out var term);
        if (error is not null)
            throw new LogCorruptionException(path, 0, error);
        return (index, term);
    }

    private byte[] ReadSmallFile(string path)
    {
        using var file = _fs.OpenFile(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var length = file.GetLength();
        var bytes = new byte[Math.Min(length, 4096)];
        var read = 0;
        while (read < bytes.Length)
        {
            var n = file.Read(bytes.AsSpan(read), read);
            if (n == 0)
                break;
            read += n;
        }
        return bytes.AsSpan(0, read).ToArray();
    }

    private List<(long FirstIndex, string Path)> ListSegmentFiles()
    {
        var files = new List<(long FirstIndex, string Path)>();
        foreach (var path in _fs.EnumerateFiles(_directory, LogFormat.SegmentExtension))
        {
            if (LogFormat.TryParseSegmentFileName(Path.GetFileName(path), out var first))
                files.Add((first, path));
            else
                FileLogStoreLog.UnknownFileIgnored(_logger, path);
        }
        files.Sort((a, b) => a.FirstIndex.CompareTo(b.FirstIndex));
        return files;
    }

    // Validates one segment and indexes its records into scan. Returns null when the segment was a
    // torn creation (the last segment, its header incomplete or all zeros) and has been deleted.
    private LogSegment? ScanSegment(string path, long first, bool isLast, long expectedFirst, string? previousPath, long compactIndex, ScanState scan, ref bool directoryChanged)
    {
        var handle = _fs.OpenFile(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            var length = handle.GetLength();
            using var reader = new SegmentReader(handle, length);

            // The header.
            if (!reader.TryGet(0, LogFormat.SegmentHeaderSize, out var header) || (isLast && !header.ContainsAnyExcept((byte)0)))
            {
                if (!isLast)
                    throw new LogCorruptionException(path, 0, $"the segment is {length} bytes long, shorter than its {LogFormat.SegmentHeaderSize}-byte header");
                // Created by an append that crashed before its fsync: nothing in it was acknowledged.
                handle.Dispose();
                _fs.DeleteFile(path);
                FileLogStoreLog.TornSegmentDeleted(_logger, path);
                directoryChanged = true;
                return null;
            }
            if (!header[..4].SequenceEqual(LogFormat.SegmentMagic))
                throw new LogCorruptionException(path, 0, "bad magic number: this is not a segment file of this log store");
            if (System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(header[20..]) != LogFormat.Crc32C(header[..20]))
                throw new LogCorruptionException(path, 0, "the segment header's checksum does not match");
            var version = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(header[4..]);
            if (version != LogFormat.Version)
                throw new LogCorruptionException(path, 4, $"unknown format version {version} (this build reads version {LogFormat.Version})");
            var headerFirst = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(header[8..]);
            if (headerFirst != first)
                throw new LogCorruptionException(path, 8, $"the header says the segment starts at index {headerFirst}, but its name says {first}");

            // Its place in the log.
            if (expectedFirst < 0 && first > compactIndex + 1)
                throw new LogCorruptionException(path, 0, $"the log starts at index {first}, but the compaction point is index {compactIndex}: entries [{compactIndex + 1}, {first - 1}] are missing (a deleted segment?)");
            if (expectedFirst >= 0 && first > expectedFirst)
                throw new LogCorruptionException(path, 0, $"gap in the log: the previous segment '{previousPath}' ends at index {expectedFirst - 1}, but this one starts at index {first}: entries [{expectedFirst}, {first - 1}] are missing (a deleted segment?)");
            if (expectedFirst >= 0 && first < expectedFirst)
                throw new LogCorruptionException(path, 0, $"overlap in the log: the previous segment '{previousPath}' ends at index {expectedFirst - 1}, but this one starts at index {first}");
            if (length > int.MaxValue)
                throw new LogCorruptionException(path, int.MaxValue, $"the segment is {length} bytes long; segments over 2 GiB are not written by this store");

            // The records.
            scan.BeginSegment();
            long offset = LogFormat.SegmentHeaderSize;
            var index = first;
            while (offset < length)
            {
                var status = ReadRecord(reader, offset, length, index, out var record, out var recordLength, out var problem);
                if (status == RecordStatus.Valid)
                {
                    scan.Add(index, (int)offset, record.Term);
                    offset += recordLength;
                    index++;
                    continue;
                }
                if (status == RecordStatus.Inconsistent)
                    throw new LogCorruptionException(path, offset, problem);
                if (!isLast)
                    throw new LogCorruptionException(path, offset, $"{problem}, in a segment that is not the last one (only the end of the log can be torn by a crash)");
                var later = FindLaterBatch(reader, offset, length, index, ref _recoveryWork);
                if (later >= 0)
                    throw new LogCorruptionException(path, offset, $"{problem}, but a valid record of a later write follows at byte offset {later}, so data that was already acknowledged is damaged");

                // A torn or corrupt tail of the last, unacknowledged write: cut it off.
                handle.SetLength(offset);
                if (_fsync)
                    handle.FlushToDisk();
                FileLogStoreLog.TornTailCut(_logger, path, offset, length - offset, problem, index - 1);
                length = offset;
                break;
            }
            return new LogSegment(path, first, handle, length);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private enum RecordStatus
    {
        Valid,
        // Torn (runs past the end of the file) or failing its checksum.
        Bad,
        // Intact (checksum matches) but not what belongs here: never the result of a crash.
        Inconsistent,
    }

    private static RecordStatus ReadRecord(SegmentReader reader, long offset, long length, long expectedIndex, out LogFormat.RecordHeader header, out int recordLength, out string problem)
    {
        header = default;
        recordLength = 0;
        problem = string.Empty;
        var remaining = length - offset;
        if (remaining < LogFormat.RecordOverhead)
        {
            problem = $"the file ends {remaining} bytes into a record (a torn write)";
            return RecordStatus.Bad;
        }
        reader.TryGet(offset, LogFormat.RecordHeaderSize, out var headerBytes);
        header = LogFormat.RecordHeader.Read(headerBytes);
        if (header.PayloadLength > remaining - LogFormat.RecordOverhead)
        {
            problem = $"the record's length field ({header.PayloadLength} bytes) runs past the end of the file (a torn write or a corrupt length)";
            return RecordStatus.Bad;
        }
        recordLength = LogFormat.RecordOverhead + (int)header.PayloadLength;
        reader.TryGet(offset, recordLength, out var recordBytes);
        if (!LogFormat.ChecksumMatches(recordBytes))
        {
            problem = $"the record for index {expectedIndex} does not match its checksum";
            return RecordStatus.Bad;
        }
        if (!header.ReservedBitsClear)
        {
            problem = $"the record for index {expectedIndex} has reserved bits set (written by a newer format?)";
            return RecordStatus.Inconsistent;
        }
        if (header.Index != expectedIndex)
        {
            problem = $"the record holds index {header.Index}, but index {expectedIndex} belongs here";
            return RecordStatus.Inconsistent;
        }
        return RecordStatus.Valid;
    }

    // Looks for a valid record after a bad one at badOffset (which should have held badIndex) that
    // was written by a later append call than the bad one. Appends are sequential and each waits for
    // its fsync, so such a record proves that the bad one had been acknowledged. Records of the same
    // batch as the bad one prove nothing: a crash can tear a batch's pages in any order. Returns the
    // offset of the first such record, or -1.
    //
    // Every byte offset is a possible record start, and a crafted (or unlucky) tail can make every
    // one of them look like a record header whose length field reaches far ahead. Checksumming each
    // such candidate separately costs O(n^2). Instead one forward pass keeps the running CRC register
    // of the tail; a candidate's checksum is then a combination of the register at its start (moved
    // forward over the record's length by one modular multiplication per set bit of that length,
    // LogFormat.Crc32CShift) and the register at its end, so each byte costs O(1) and each candidate
    // O(log length). work counts the bytes fed to the CRC plus the candidates (a test bounds it).
    // Memory: one queued entry per candidate whose trailer is still ahead (none on a merely torn tail;
    // on a crafted one, at most one per byte of the tail, 24 bytes each).
    internal static long FindLaterBatch(SegmentReader reader, long badOffset, long length, long badIndex, ref long work)
    {
        long best = -1;
        // Candidates waiting for the register at their trailer's offset, ordered by that offset.
        // Expected: the register value at the trailer for which the stored checksum matches, before
        // the stored value is folded in (see below).
        PriorityQueue<(long Start, uint Expected), long>? pending = null;
        // The CRC register (no initial value, no final inversion) of the bytes [badOffset + 1, p).
        uint register = 0;
        for (var p = badOffset + 1; p < length; p++)
        {
            // Records whose trailer starts here: the checksum stored at p matches the record's bytes
            // [start, p) iff ~stored == Shift(~0 ^ R(start), p - start) ^ R(p), where R is the
            // running register (CRC is linear: feeding bytes from register r gives the shift of r
            // xor the register of the bytes fed from 0).
            while (pending is not null && pending.TryPeek(out var waiting, out var end) && end == p)
            {
                pending.Dequeue();
                work++;
                reader.TryGet(p, LogFormat.RecordTrailerSize, out var trailer);
                var stored = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(trailer);
                if ((~stored ^ register) == waiting.Expected && (best < 0 || waiting.Start < best))
                    best = waiting.Start;
            }
            if (best >= 0 && (pending is null || pending.Count == 0))
                return best;

            if (best < 0 && p + LogFormat.RecordOverhead <= length)
            {
                reader.TryGet(p, LogFormat.RecordHeaderSize, out var bytes);
                if (IsLaterBatchCandidate(LogFormat.RecordHeader.Read(bytes), p, badOffset, length, badIndex, out var payloadLength))
                {
                    work++;
                    var trailerAt = p + LogFormat.RecordHeaderSize + payloadLength;
                    pending ??= new PriorityQueue<(long, uint), long>();
                    pending.Enqueue((p, LogFormat.Crc32CShift(~0u ^ register, trailerAt - p)), trailerAt);
                }
                register = System.Numerics.BitOperations.Crc32C(register, bytes[0]);
            }
            else
            {
                if (pending is null || pending.Count == 0)
                    break;
                reader.TryGet(p, 1, out var one);
                register = System.Numerics.BitOperations.Crc32C(register, one[0]);
            }
            work++;
        }
        return best;
    }

    // The header tests of FindLaterBatch, before the checksum: plausible as a record of a later batch.
    private static bool IsLaterBatchCandidate(in LogFormat.RecordHeader header, long p, long badOffset, long length, long badIndex, out long payloadLength)
    {
        payloadLength = header.PayloadLength;
        if (!header.ReservedBitsClear || header.Index <= badIndex || header.BatchPosition >= header.Index)
            return false;
        // Each record takes at least RecordOverhead bytes, which bounds how far indexes can advance.
        if (header.Index > badIndex + ((p - badOffset) / LogFormat.RecordOverhead) + 1)
            return false;
        if (header.Index - header.BatchPosition <= badIndex)
            return false; // same batch as the bad record
        return header.PayloadLength <= length - p - LogFormat.RecordOverhead;
    }

    // Offsets and term runs of every record scanned so far, over all segments, in index order.
    private sealed class ScanState
    {
        private int _count;
        private int _segmentStart;

        public int[] Offsets { get; private set; } = new int[1024];

        public List<TermRun> Terms { get; } = [];

        public void BeginSegment() => _segmentStart = _count;

        // The records added since the last BeginSegment.
        public int CountInSegment => _count - _segmentStart;

        public void Add(long index, int offset, long term)
        {
            if (_count == Offsets.Length)
            {
                if (_count == Array.MaxLength)
                    throw new InvalidOperationException($"The log holds more than {Array.MaxLength} entries; the store's in-memory index cannot hold them.");
                var bigger = new int[(int)Math.Min(Array.MaxLength, (long)Offsets.Length * 2)];
                Array.Copy(Offsets, bigger, _count);
                Offsets = bigger;
            }
            Offsets[_count++] = offset;
            if (Terms.Count == 0 || Terms[^1].Term != term)
                Terms.Add(new TermRun(index, term));
        }
    }
}
