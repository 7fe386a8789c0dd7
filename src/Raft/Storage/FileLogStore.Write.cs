using System.Buffers;
using System.Diagnostics;

namespace Raft;

public sealed partial class FileLogStore
{
    /// <summary>Told the seconds each fsync took (from the write thread); the node given this store sets it to its fsync histogram.</summary>
    internal Action<double>? FsyncObserved { get; set; }

    /// <inheritdoc />
    /// <remarks>
    /// <para>The whole batch is encoded into one pooled buffer and written with one write call,
    /// followed by one fsync (plus a directory fsync when the batch starts a new segment). A segment
    /// rolls over before a batch once it has reached <see cref="FileLogStoreOptions.SegmentSize"/>;
    /// a batch is never split across segments.</para>
    /// <para>A conflicting suffix is removed first, never rewritten: the later segments are deleted
    /// (one directory fsync each) and the segment holding the first new index is truncated and
    /// fsynced before the new records are written, so a truncating append costs one more fsync.</para>
    /// <para>Cancellation is observed only before the write starts. The list and the entries'
    /// buffers must not change until the task completes; the buffers are then kept in the cache,
    /// not copied.</para>
    /// </remarks>
    /// <exception cref="ArgumentNullException"><paramref name="entries"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="entries"/> is empty, not contiguous, or over 1 GiB encoded.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The first entry's index is outside [<see cref="FirstIndex"/>, <see cref="LastIndex"/> + 1].</exception>
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    /// <exception cref="InvalidOperationException">Another write is in progress, or an earlier write failed.</exception>
    public async ValueTask AppendAsync(IReadOnlyList<LogEntry> entries, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        ArgumentNullException.ThrowIfNull(entries);
        cancellationToken.ThrowIfCancellationRequested();
        if (entries.Count == 0)
            throw new ArgumentException("Nothing to append.", nameof(entries));
        var first = entries[0].Index;
        if (first < _firstIndex || first > _lastIndex + 1)
            throw new ArgumentOutOfRangeException(nameof(entries), first, $"The first entry's index {first} is outside [{_firstIndex}, {_lastIndex + 1}].");
        long recordBytes = 0;
        for (var i = 0; i < entries.Count; i++)
        {
            var entry = entries[i];
            if (entry.Index != first + i)
                throw new ArgumentException($"Entries are not contiguous: index {entry.Index} follows {entries[i - 1].Index}.", nameof(entries));
            recordBytes += LogFormat.RecordOverhead + entry.Data.Length;
        }
        if (recordBytes > LogFormat.MaxBatchBytes)
            throw new ArgumentException($"The batch takes {recordBytes} bytes on disk; at most {LogFormat.MaxBatchBytes} fit in one append.", nameof(entries));

        await RunWriteAsync(() => AppendCore(entries, (int)recordBytes), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    /// <remarks>The state is written to a temporary file, fsynced, renamed over <c>hardstate</c>, and the directory is fsynced.</remarks>
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    /// <exception cref="InvalidOperationException">Another write is in progress, or an earlier write failed.</exception>
    public async ValueTask SaveHardStateAsync(HardState state, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        cancellationToken.ThrowIfCancellationRequested();
        await RunWriteAsync(
            () =>
            {
                Span<byte> bytes = stackalloc byte[LogFormat.HardStateSize];
                LogFormat.WriteHardState(bytes, state);
                ReplaceFile(LogFormat.HardStateFileName, bytes);
                _hardState = state;
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    /// <remarks>
    /// The compaction point is recorded first (atomically, in <c>meta</c>); then every segment that
    /// lies entirely at or below <paramref name="index"/> is taken out of the log: renamed to
    /// <c>.retired</c> at once, and deleted (then the directory fsynced) in the background, because
    /// unlinking a large file takes long and the node waits for this call. Entries of the remaining
    /// segment that are below the new <see cref="FirstIndex"/> stay on disk but are hidden. Nothing is
    /// rewritten. A crash in between leaves segments or retired files that the next open deletes.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is outside [<see cref="FirstIndex"/> - 1, <see cref="LastIndex"/>].</exception>
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    /// <exception cref="InvalidOperationException">Another write is in progress, or an earlier write failed.</exception>
    public async ValueTask CompactAsync(long index, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        cancellationToken.ThrowIfCancellationRequested();
        if (index < _firstIndex - 1 || index > _lastIndex)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"Index {index} is outside [{_firstIndex - 1}, {_lastIndex}].");
        if (index == _firstIndex - 1)
            return;
        await RunWriteAsync(() => CompactCore(index), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Every segment is deleted, last first, each deletion made durable before the next, so that a
    /// crash leaves a prefix of the old log; only then is the new point recorded in <c>meta</c>.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> or <paramref name="term"/> is negative.</exception>
    /// <exception cref="ObjectDisposedException">The store was disposed.</exception>
    /// <exception cref="InvalidOperationException">Another write is in progress, or an earlier write failed.</exception>
    public async ValueTask ResetAsync(long index, long term, CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        cancellationToken.ThrowIfCancellationRequested();
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfNegative(term);
        await RunWriteAsync(() => ResetCore(index, term), cancellationToken).ConfigureAwait(false);
    }

    // Runs the file work of a write on the thread pool (fsync blocks), one write at a time. A failure
    // poisons the store: the files may no longer match the in-memory state.
    private async Task RunWriteAsync(Action write, CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _writing, 1) != 0)
            throw new InvalidOperationException("Another write to this log store is still in progress; ILogStore writes must not overlap.");
        try
        {
            await RunIo(
                () =>
                {
                    try
                    {
                        write();
                    }
                    catch (Exception ex)
                    {
                        _failure = ex;
                        FileLogStoreLog.WriteFailed(_logger, _directory, ex);
                        throw;
                    }
                },
                cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Volatile.Write(ref _writing, 0);
        }
    }

    private void AppendCore(IReadOnlyList<LogEntry> entries, int recordBytes)
    {
        var first = entries[0].Index;
        if (first <= _lastIndex)
        {
            lock (_indexLock)
                TruncateSuffix(first);
        }

        var active = _segments.Count == 0 ? null : _segments[^1];
        var newSegment = active is null || active.Length >= _options.SegmentSize;

        var total = recordBytes + (newSegment ? LogFormat.SegmentHeaderSize : 0);
        var fileOffset = newSegment ? 0 : active!.Length;
        // Only this thread changes the index; readers (SupportsReadsDuringAppend) see it under the
        // lock: before this append, or after it.
        lock (_indexLock)
            EnsureOffsetCapacity(entries.Count);
        var slot = _offsetsHead + (int)(_lastIndex + 1 - _firstIndex);
        var buffer = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            var span = buffer.AsSpan(0, total);
            var position = 0;
            if (newSegment)
            {
                LogFormat.WriteSegmentHeader(span, first);
                position = LogFormat.SegmentHeaderSize;
            }
            for (var i = 0; i < entries.Count; i++)
            {
                _offsets[slot + i] = checked((int)(fileOffset + position));
                position += LogFormat.WriteRecord(span[position..], entries[i], (uint)i);
            }
            Debug.Assert(position == total);

            if (newSegment)
            {
                lock (_indexLock)
                    active = CreateSegment(first);
            }
            active!.File.Write(span, fileOffset);
            if (_fsync)
            {
                var syncStarted = Stopwatch.GetTimestamp();
                active.File.FlushToDisk();
                if (newSegment)
                    _fs.SyncDirectory(_directory);
                FsyncObserved?.Invoke(Stopwatch.GetElapsedTime(syncStarted).TotalSeconds);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        lock (_indexLock)
        {
            active.Length = fileOffset + total;
            for (var i = 0; i < entries.Count; i++)
            {
                var entry = entries[i];
                AddTerm(entry.Index, entry.Term);
                _cache.Add(entry);
            }
            Volatile.Write(ref _lastIndex, first + entries.Count - 1);
        }
    }

    // Removes the entries from index on: deletes the later segments (last first, each deletion
    // durable before the next, so that a crash leaves a prefix of the log) and cuts the segment
    // holding index. The cut is fsynced before anything new is written: otherwise a crash could
    // persist the new records but not the cut, and recovery would find the new records followed by
    // intact records of the old suffix, with the right indexes and checksums, and keep both.
    private void TruncateSuffix(long index)
    {
        Debug.Assert(index >= _firstIndex && index <= _lastIndex);
        var oldLast = _lastIndex;
        var k = FindSegment(index);
        var deleted = 0;
        for (var j = _segments.Count - 1; j > k; j--)
        {
            DeleteSegment(j);
            if (_fsync)
                _fs.SyncDirectory(_directory);
            deleted++;
        }
        var holder = _segments[k];
        var cut = OffsetOf(index);
        holder.File.SetLength(cut);
        if (_fsync)
            holder.File.FlushToDisk();
        holder.Length = cut;

        _lastIndex = index - 1;
        while (_terms.Count > 0 && _terms[^1].Start >= index)
            _terms.RemoveAt(_terms.Count - 1);
        _cache.RemoveFrom(index);
        FileLogStoreLog.SuffixTruncated(_logger, index - 1, oldLast, deleted);
    }

    private void CompactCore(long index)
    {
        lock (_metaLock)
            CompactCoreLocked(index);
    }

    // The compaction point PrepareCompaction made durable ahead of CompactAsync, or -1. Guarded by _metaLock.
    private long _preparedIndex = -1;
    private long _preparedTerm;
    // Serializes the writes of meta (and the compaction point they record) between the write thread and PrepareCompaction.
    private readonly Lock _metaLock = new();

    /// <summary>
    /// Records (index, its term) as the compaction point in <c>meta</c>, durably, without changing
    /// the log: a later <see cref="CompactAsync"/> at that index then only drops segments. Unlike the
    /// writes, it may run while an append is in progress and while the log is read, so a node runs
    /// the two fsyncs of the metadata file off its loop. Does nothing when <paramref name="index"/> is
    /// not in the log (a reset or a compaction moved past it).
    /// </summary>
    /// <remarks>
    /// Safe because everything at or below a compaction point is either hidden or deleted by
    /// recovery: a crash after this call opens the log at <paramref name="index"/> + 1, as if the
    /// compaction had finished. The caller must pass an index it will never truncate (committed),
    /// covered by a durable snapshot.
    /// </remarks>
    void ICompactionPreparer.PrepareCompaction(long index) => PrepareCompaction(index);

    /// <inheritdoc cref="ICompactionPreparer.PrepareCompaction"/>
    internal void PrepareCompaction(long index)
    {
        ThrowIfUnusable();
        lock (_metaLock)
        {
            long term;
            lock (_indexLock)
            {
                if (index < _firstIndex || index > _lastIndex)
                    return;
                term = TermAt(index);
            }
            Span<byte> meta = stackalloc byte[LogFormat.MetaSize];
            LogFormat.WriteMeta(meta, index, term);
            try
            {
                ReplaceFile(LogFormat.MetaFileName, meta);
            }
            catch (Exception ex)
            {
                _failure = ex;
                FileLogStoreLog.WriteFailed(_logger, _directory, ex);
                throw;
            }
            _preparedIndex = index;
            _preparedTerm = term;
        }
    }

    private void CompactCoreLocked(long index)
    {
        var term = TermAt(index);
        if (_preparedIndex != index || _preparedTerm != term)
        {
            Span<byte> meta = stackalloc byte[LogFormat.MetaSize];
            LogFormat.WriteMeta(meta, index, term);
            ReplaceFile(LogFormat.MetaFileName, meta);
        }
        _preparedIndex = -1;

        // From here on the point is durable: recovery hides or deletes everything at or below it.
        var newFirst = index + 1;
        var deleted = 0;
        List<string>? retired = null;
        while (_segments.Count > 1 && _segments[1].FirstIndex <= newFirst)
        {
            if (_fs is RealStorageFileSystem)
                (retired ??= []).Add(RetireSegment(0));
            else
                DeleteSegment(0);
            deleted++;
        }
        if (retired is not null)
            _retiring = DeleteRetiredAsync(_retiring, retired);
        else if (deleted > 0 && _fsync)
            _fs.SyncDirectory(_directory);

        _offsetsHead += (int)(newFirst - _firstIndex);
        _firstIndex = newFirst;
        _compactedTerm = term;
        if (_lastIndex < _firstIndex)
        {
            _offsetsHead = 0;
            _terms.Clear();
        }
        else
        {
            var keepFrom = 0;
            while (keepFrom + 1 < _terms.Count && _terms[keepFrom + 1].Start <= newFirst)
                keepFrom++;
            _terms.RemoveRange(0, keepFrom);
        }
        _cache.RemoveBefore(newFirst);
        FileLogStoreLog.Compacted(_logger, index, term, deleted);
    }

    private void ResetCore(long index, long term)
    {
        var deleted = 0;
        for (var j = _segments.Count - 1; j >= 0; j--)
        {
            DeleteSegment(j);
            if (_fsync)
                _fs.SyncDirectory(_directory);
            deleted++;
        }
        // Until this point a crash leaves the old compaction point and a prefix of the old log.
        Span<byte> meta = stackalloc byte[LogFormat.MetaSize];
        LogFormat.WriteMeta(meta, index, term);
        lock (_metaLock)
        {
            ReplaceFile(LogFormat.MetaFileName, meta);
            _preparedIndex = -1;
            lock (_indexLock)
            {
                _firstIndex = index + 1;
                _lastIndex = index;
                _compactedTerm = term;
                _offsetsHead = 0;
                _terms.Clear();
                _cache.Clear();
            }
        }
        FileLogStoreLog.Reset(_logger, index, term, deleted);
    }

    private LogSegment CreateSegment(long firstIndex)
    {
        var path = Path.Combine(_directory, LogFormat.SegmentFileName(firstIndex));
        var file = _fs.OpenFile(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read);
        var segment = new LogSegment(path, firstIndex, file, 0);
        _segments.Add(segment);
        FileLogStoreLog.SegmentCreated(_logger, path);
        return segment;
    }

    // Segments dropped by compaction are deleted off the write path: unlinking a 64 MiB segment takes
    // tens of milliseconds (the kernel drops its cached pages and frees its blocks), and the node waits
    // for CompactAsync before it handles anything else. Chained: one deletion at a time, in order.
    private Task _retiring = Task.CompletedTask;

    // Takes segment k out of the log and renames it (cheap) so that it no longer looks like a segment;
    // returns the new path, which DeleteRetiredAsync deletes. The compaction point is durable already:
    // a crash that undoes the rename leaves a segment below it, which recovery deletes, and a crash
    // before the deletion leaves a retired file, which the next open deletes.
    private string RetireSegment(int k)
    {
        var segment = _segments[k];
        _segments.RemoveAt(k);
        segment.Dispose();
        var retired = Path.ChangeExtension(segment.Path, LogFormat.RetiredExtension);
        _fs.MoveFile(segment.Path, retired);
        return retired;
    }

    private async Task DeleteRetiredAsync(Task previous, List<string> paths)
    {
        await previous.ConfigureAwait(false);
        await Task.Yield(); // off the write thread, which returns to the node at once
        foreach (var path in paths)
        {
            try
            {
                _fs.DeleteFile(path);
                FileLogStoreLog.RetiredSegmentDeleted(_logger, path);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                FileLogStoreLog.RetiredSegmentDeleteFailed(_logger, path, ex);
            }
        }
        if (_fsync)
        {
            try
            {
                _fs.SyncDirectory(_directory);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                FileLogStoreLog.RetiredSegmentDeleteFailed(_logger, _directory, ex);
            }
        }
    }

    /// <summary>Completes once the segments retired by compactions so far are deleted (tests).</summary>
    internal Task RetiredSegmentsDeleted => _retiring;

    private void DeleteSegment(int k)
    {
        var segment = _segments[k];
        _segments.RemoveAt(k);
        segment.Dispose();
        _fs.DeleteFile(segment.Path);
    }

    // Atomically replaces a small file: write a temporary file, fsync it, rename it over the
    // target, fsync the directory. A crash leaves the old or the new content, never a mix.
    private void ReplaceFile(string fileName, ReadOnlySpan<byte> content)
    {
        var path = Path.Combine(_directory, fileName);
        var temp = path + LogFormat.TempSuffix;
        using (var file = _fs.OpenFile(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            file.Write(content, 0);
            if (_fsync)
            {
                var syncStarted = Stopwatch.GetTimestamp();
                file.FlushToDisk();
                FsyncObserved?.Invoke(Stopwatch.GetElapsedTime(syncStarted).TotalSeconds);
            }
        }
        _fs.MoveFile(temp, path);
        if (_fsync)
        {
            var syncStarted = Stopwatch.GetTimestamp();
            _fs.SyncDirectory(_directory);
            FsyncObserved?.Invoke(Stopwatch.GetElapsedTime(syncStarted).TotalSeconds);
        }
    }

    private void AddTerm(long index, long term)
    {
        if (_terms.Count == 0 || _terms[^1].Term != term)
            _terms.Add(new TermRun(index, term));
    }

    // Makes room in _offsets for count more entries after _lastIndex.
    private void EnsureOffsetCapacity(int count)
    {
        var held = (int)(_lastIndex + 1 - _firstIndex);
        var needed = (long)held + count;
        if (_offsetsHead + needed <= _offsets.Length)
            return;
        if (needed <= _offsets.Length / 2)
        {
            Array.Copy(_offsets, _offsetsHead, _offsets, 0, held);
            _offsetsHead = 0;
            return;
        }
        var capacity = Math.Max(1024, Math.Max(needed, (long)_offsets.Length * 2));
        if (capacity > Array.MaxLength)
        {
            capacity = Array.MaxLength;
            if (needed > capacity)
                throw new InvalidOperationException($"The log would hold {needed} entries; the store's in-memory index holds at most {Array.MaxLength}. Compact the log.");
        }
        var bigger = new int[capacity];
        Array.Copy(_offsets, _offsetsHead, bigger, 0, held);
        _offsets = bigger;
        _offsetsHead = 0;
    }
}
