using System.Buffers.Binary;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Raft;

/// <summary>
/// A durable <see cref="ISnapshotStore"/>: one file per snapshot in a directory, written to a
/// temporary file, fsynced, renamed into place and made durable with a directory fsync; each file
/// carries a header (magic, format version, index, term, configuration) and a CRC32C over all of it.
/// </summary>
/// <remarks>
/// <para>File layout (little-endian): magic <c>RSNP</c>, format version (u16), reserved (u16),
/// index (i64), term (i64), configuration length (i32), the configuration
/// (<see cref="ClusterConfiguration.Encode"/>), then the data, then a footer: data length (i64) and
/// CRC32C (u32) of everything before the CRC. Files of format version 1 (member count (i32) and
/// member ids (i32 each) where the configuration is now, all voters) are still read.</para>
/// <para>The newest valid file is the latest snapshot; the one before it is kept so a leader still
/// streaming it can finish; older files are deleted. A corrupt newest file refuses to open with a
/// <see cref="LogCorruptionException"/> naming the file and offset (the log was compacted on the
/// strength of it, so an older snapshot cannot stand in). Leftover temporary files from a crash are
/// deleted.</para>
/// </remarks>
public sealed class FileSnapshotStore : ISnapshotStore, IAsyncDisposable, IDisposable
{
    private const uint Magic = 0x504E5352; // "RSNP"
    private const ushort FormatVersion = 2;
    private const ushort MembersFormatVersion = 1; // read only: a list of voter ids
    private const string Extension = ".snap";
    private const string TempExtension = ".snap.tmp";
    private const int FooterSize = 12;

    private readonly string _directory;
    private readonly ILogger _logger;
    private readonly IStorageFileSystem _fs;
    private readonly Lock _gate = new();
    // Serializes whole commits (rename, directory fsync, publication), which the apply loop (own
    // snapshots) and the event loop (snapshots from the leader) may attempt at once. Readers never take it.
    private readonly Lock _installGate = new();
    private Snapshot? _latest;
    private Snapshot? _previous;
    private bool _disposed;

    private FileSnapshotStore(string directory, ILogger logger, IStorageFileSystem fileSystem)
    {
        _directory = directory;
        _logger = logger;
        _fs = fileSystem;
    }

    /// <summary>Opens (or creates) the snapshot store in <paramref name="directory"/>, validating the newest snapshot.</summary>
    /// <param name="directory">The directory; created when missing. Give each store its own.</param>
    /// <param name="loggerFactory">Creates the store's logger, which receives warnings; the default, null, logs nothing.</param>
    /// <param name="cancellationToken">Cancels the open before the newest snapshot is read.</param>
    /// <returns>The open store.</returns>
    /// <remarks>Validating the newest snapshot reads it whole (its checksum), so the work runs off the caller's thread.</remarks>
    /// <exception cref="ArgumentException"><paramref name="directory"/> is null or empty.</exception>
    /// <exception cref="LogCorruptionException">The newest snapshot file is corrupt or of an unknown format version.</exception>
    public static async ValueTask<FileSnapshotStore> OpenAsync(string directory, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        cancellationToken.ThrowIfCancellationRequested();
        var logger = loggerFactory?.CreateLogger<FileSnapshotStore>();
        return await Task.Run(() => Open(directory, logger, RealStorageFileSystem.Instance), cancellationToken).ConfigureAwait(false);
    }

    // Opens the store over another file system (tests simulate crashes with one).
    internal static FileSnapshotStore Open(string directory, ILogger? logger, IStorageFileSystem fileSystem)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        directory = Path.GetFullPath(directory);
        fileSystem.CreateDirectory(directory);
        var store = new FileSnapshotStore(directory, logger ?? NullLogger.Instance, fileSystem);
        store.Recover();
        return store;
    }

    /// <summary>The directory holding the snapshots.</summary>
    public string DirectoryPath => _directory;

    /// <inheritdoc />
    public SnapshotMetadata? Latest
    {
        get
        {
            lock (_gate)
                return _latest?.Metadata;
        }
    }

    /// <inheritdoc />
    public long LatestLength
    {
        get
        {
            lock (_gate)
                return _latest?.DataLength ?? 0;
        }
    }

    /// <inheritdoc />
    public int Read(long index, long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        Snapshot? snapshot;
        var referenced = false;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            snapshot = _latest?.Metadata.Index == index ? _latest : null;
            // Keep the file open while reading, even if commits replace this snapshot meanwhile.
            snapshot?.File.AddReference();
            referenced = snapshot is not null;
        }
        if (snapshot is null)
            return -1;
        try
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, snapshot.DataLength);
            var count = (int)Math.Min(destination.Length, snapshot.DataLength - offset);
            var total = 0;
            while (total < count)
            {
                var read = snapshot.File.File.Read(destination[total..count], snapshot.DataOffset + offset + total);
                if (read == 0)
                    throw new LogCorruptionException(snapshot.Path, snapshot.DataOffset + offset + total, "the snapshot file ended early");
                total += read;
            }
            return total;
        }
        finally
        {
            if (referenced)
                snapshot.File.Release();
        }
    }

    /// <inheritdoc />
    public Stream? OpenLatest()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_latest is not { } snapshot)
                return null;
            // Opened under the lock, so a commit cannot delete the file first; the open stream keeps it readable.
            var stream = _fs.OpenStream(snapshot.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 16, FileOptions.None);
            stream.Position = snapshot.DataOffset;
            return new BoundedReadStream(stream, snapshot.DataLength);
        }
    }

    /// <inheritdoc />
    public ValueTask<ISnapshotWriter> CreateAsync(SnapshotMetadata metadata, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
            ObjectDisposedException.ThrowIf(_disposed, this);
        var temp = System.IO.Path.Combine(_directory, $"{FileName(metadata.Index)}.{Guid.NewGuid():N}{TempExtension}");
        return ValueTask.FromResult<ISnapshotWriter>(new Writer(this, metadata, temp));
    }

    /// <summary>Closes the open snapshot files (the same as <see cref="Dispose"/>: nothing is left to flush).</summary>
    /// <returns>A completed task.</returns>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>Closes the open snapshot files.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
            _latest?.File.Release();
            _previous?.File.Release();
        }
    }

    private static string FileName(long index) => index.ToString("D20", CultureInfo.InvariantCulture);

    private static byte[] EncodeHeader(SnapshotMetadata metadata)
    {
        var configuration = (metadata.Configuration ?? throw new ArgumentException("The snapshot metadata has no configuration.", nameof(metadata))).Encode();
        var header = new byte[4 + 2 + 2 + 8 + 8 + 4 + configuration.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(4), FormatVersion);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(8), metadata.Index);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(16), metadata.Term);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(24), configuration.Length);
        configuration.CopyTo(header.AsSpan(28));
        return header;
    }

    private void Recover()
    {
        foreach (var temp in _fs.EnumerateFiles(_directory, TempExtension).ToList())
        {
            _fs.DeleteFile(temp);
            FileSnapshotStoreLog.TempDeleted(_logger, temp);
        }
        var files = _fs.EnumerateFiles(_directory, Extension).Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0)
            return;
        _latest = Validate(files[^1]);
        for (var i = 0; i < files.Count - 1; i++)
            _fs.DeleteFile(files[i]);
        if (files.Count > 1)
            _fs.SyncDirectory(_directory);
    }

    private Snapshot Validate(string path)
    {
        var handle = _fs.OpenFile(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        try
        {
            var length = handle.GetLength();
            var fixedHeader = new byte[28];
            if (length < fixedHeader.Length + FooterSize || handle.Read(fixedHeader, 0) != fixedHeader.Length)
                throw new LogCorruptionException(path, 0, $"the file is {length} bytes, too short for a snapshot");
            if (BinaryPrimitives.ReadUInt32LittleEndian(fixedHeader) != Magic)
                throw new LogCorruptionException(path, 0, "bad magic: not a snapshot file");
            var version = BinaryPrimitives.ReadUInt16LittleEndian(fixedHeader.AsSpan(4));
            if (version is not (FormatVersion or MembersFormatVersion))
                throw new LogCorruptionException(path, 4, $"unknown snapshot format version {version} (this library reads versions {MembersFormatVersion} and {FormatVersion})");
            var index = BinaryPrimitives.ReadInt64LittleEndian(fixedHeader.AsSpan(8));
            var term = BinaryPrimitives.ReadInt64LittleEndian(fixedHeader.AsSpan(16));
            var count = BinaryPrimitives.ReadInt32LittleEndian(fixedHeader.AsSpan(24));
            // Version 1: count member ids of 4 bytes; version 2: a configuration of count bytes.
            var metadataBytes = version == MembersFormatVersion ? 4L * count : count;
            if (index < 0 || term < 0 || count < 0 || count > (version == MembersFormatVersion ? 100_000 : 8 << 20) || 28 + metadataBytes + FooterSize > length)
                throw new LogCorruptionException(path, 8, "the header's index, term or configuration size is impossible");
            var members = new byte[metadataBytes];
            ReadFully(handle, members, 28, path);
            var dataOffset = 28 + metadataBytes;
            var footer = new byte[FooterSize];
            ReadFully(handle, footer, length - FooterSize, path);
            var dataLength = BinaryPrimitives.ReadInt64LittleEndian(footer);
            if (dataLength != length - FooterSize - dataOffset)
                throw new LogCorruptionException(path, length - FooterSize, $"the footer says {dataLength} data bytes but the file holds {length - FooterSize - dataOffset}");
            // The CRC covers everything before it: header, data and the length field.
            var crc = ~0u;
            var buffer = new byte[1 << 16];
            long position = 0;
            var end = length - 4;
            while (position < end)
            {
                var read = handle.Read(buffer.AsSpan(0, (int)Math.Min(buffer.Length, end - position)), position);
                if (read == 0)
                    throw new LogCorruptionException(path, position, "the file ended early");
                crc = LogFormat.Crc32CUpdate(crc, buffer.AsSpan(0, read));
                position += read;
            }
            crc = ~crc;
            var stored = BinaryPrimitives.ReadUInt32LittleEndian(footer.AsSpan(8));
            if (crc != stored)
                throw new LogCorruptionException(path, length - 4, $"checksum mismatch (stored {stored:x8}, computed {crc:x8})");
            ClusterConfiguration configuration;
            if (version == MembersFormatVersion)
            {
                var ids = new int[count];
                for (var i = 0; i < count; i++)
                    ids[i] = BinaryPrimitives.ReadInt32LittleEndian(members.AsSpan(4 * i));
                try
                {
                    configuration = ClusterConfiguration.FromVoters(ids);
                }
                catch (ArgumentException ex)
                {
                    throw new LogCorruptionException(path, 28, $"the member list is invalid: {ex.Message}");
                }
            }
            else if (!ClusterConfiguration.TryDecode(members, out configuration!, out var problem))
            {
                throw new LogCorruptionException(path, 28, $"the configuration cannot be decoded: {problem}");
            }
            return new Snapshot(new SnapshotMetadata(index, term, configuration), path, new SharedFile(handle), dataOffset, dataLength);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private void Install(string temp, SnapshotMetadata metadata)
    {
        lock (_installGate)
            InstallLocked(temp, metadata);
    }

    private void InstallLocked(string temp, SnapshotMetadata metadata)
    {
        var final = System.IO.Path.Combine(_directory, FileName(metadata.Index) + Extension);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_latest is { } latest && latest.Metadata.Index >= metadata.Index)
            {
                // A newer (or equal) snapshot is already in place: this one adds nothing.
                _fs.DeleteFile(temp);
                return;
            }
        }
        _fs.MoveFile(temp, final);
        _fs.SyncDirectory(_directory);
        var snapshot = Validate(final);
        Snapshot? drop;
        lock (_gate)
        {
            drop = _previous;
            _previous = _latest;
            _latest = snapshot;
        }
        if (drop is not null)
        {
            drop.File.Release();
            _fs.DeleteFile(drop.Path);
        }
        FileSnapshotStoreLog.Committed(_logger, final, metadata.Index, snapshot.DataLength);
    }

    private static void ReadFully(IStorageFile file, Span<byte> destination, long offset, string path)
    {
        var total = 0;
        while (total < destination.Length)
        {
            var read = file.Read(destination[total..], offset + total);
            if (read == 0)
                throw new LogCorruptionException(path, offset + total, "the file ended early");
            total += read;
        }
    }

    private sealed record Snapshot(SnapshotMetadata Metadata, string Path, SharedFile File, long DataOffset, long DataLength);

    // An open snapshot file that readers keep open while the store replaces (and releases) it: closed
    // when the store and every reader have released it. References are only added while the store
    // still holds its own (under _gate, to the latest snapshot).
    private sealed class SharedFile(IStorageFile file)
    {
        private int _references = 1;

        public IStorageFile File => file;

        public void AddReference() => Interlocked.Increment(ref _references);

        public void Release()
        {
            if (Interlocked.Decrement(ref _references) == 0)
                file.Dispose();
        }
    }

    private sealed class Writer : ISnapshotWriter
    {
        private readonly FileSnapshotStore _store;
        private readonly string _temp;
        private readonly Stream _file;
        private readonly CrcStream _stream;
        private bool _committed;
        private bool _failed;

        public Writer(FileSnapshotStore store, SnapshotMetadata metadata, string temp)
        {
            _store = store;
            _temp = temp;
            Metadata = metadata;
            _file = store._fs.OpenStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
            _stream = new CrcStream(_file);
            _stream.Write(EncodeHeader(metadata));
            _stream.ResetDataLength();
        }

        public SnapshotMetadata Metadata { get; }

        public Stream Stream => _stream;

        public async ValueTask CommitAsync(CancellationToken cancellationToken = default)
        {
            ObjectDisposedException.ThrowIf(_committed, this);
            if (_failed)
                throw new InvalidOperationException("An earlier commit of this snapshot failed or was cancelled; the snapshot was discarded. Write it again with a new writer.");
            try
            {
                await CommitCoreAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                _failed = true;
                throw;
            }
        }

        private async ValueTask CommitCoreAsync(CancellationToken cancellationToken)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var footer = new byte[FooterSize];
            BinaryPrimitives.WriteInt64LittleEndian(footer, _stream.DataLength);
            _stream.Write(footer.AsSpan(0, 8));
            BinaryPrimitives.WriteUInt32LittleEndian(footer.AsSpan(8), _stream.Crc);
            await _file.WriteAsync(footer.AsMemory(8, 4), cancellationToken).ConfigureAwait(false);
            await _file.FlushAsync(cancellationToken).ConfigureAwait(false);
            _store._fs.FlushToDisk(_file);
            await _file.DisposeAsync().ConfigureAwait(false);
            _store.Install(_temp, Metadata);
            _committed = true;
        }

        public async ValueTask DisposeAsync()
        {
            await _file.DisposeAsync().ConfigureAwait(false);
            if (!_committed && _store._fs.FileExists(_temp))
                _store._fs.DeleteFile(_temp);
        }
    }

    /// <summary>Writes through to a file while computing the CRC32C and counting the data bytes.</summary>
    private sealed class CrcStream(Stream inner) : Stream
    {
        private uint _state = ~0u;

        /// <summary>The standard CRC-32C of everything written so far.</summary>
        public uint Crc => ~_state;

        public long DataLength { get; private set; }

        public void ResetDataLength() => DataLength = 0;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Flush() => inner.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _state = LogFormat.Crc32CUpdate(_state, buffer);
            DataLength += buffer.Length;
            inner.Write(buffer);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            _state = LogFormat.Crc32CUpdate(_state, buffer.Span);
            DataLength += buffer.Length;
            return inner.WriteAsync(buffer, cancellationToken);
        }
    }

    /// <summary>Reads at most a given number of bytes of an inner stream, then owns and disposes it.</summary>
    private sealed class BoundedReadStream(Stream inner, long length) : Stream
    {
        private readonly long _length = length;
        private long _remaining = length;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => _length;

        public override long Position
        {
            get => _length - _remaining;
            set => throw new NotSupportedException();
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_remaining <= 0)
                return 0;
            var read = inner.Read(buffer[..(int)Math.Min(buffer.Length, _remaining)]);
            _remaining -= read;
            return read;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_remaining <= 0)
                return 0;
            var read = await inner.ReadAsync(buffer[..(int)Math.Min(buffer.Length, _remaining)], cancellationToken).ConfigureAwait(false);
            _remaining -= read;
            return read;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                inner.Dispose();
            base.Dispose(disposing);
        }

        public override async ValueTask DisposeAsync()
        {
            await inner.DisposeAsync().ConfigureAwait(false);
            await base.DisposeAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>Log messages of <see cref="FileSnapshotStore"/>; EventIds 2100–2119.</summary>
internal static partial class FileSnapshotStoreLog
{
    [LoggerMessage(EventId = 2100, Level = LogLevel.Warning, Message = "Deleted the unfinished snapshot file {Path} left by a crash")]
    public static partial void TempDeleted(ILogger logger, string path);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Information, Message = "Committed snapshot {Path} at index {Index} ({Length} bytes)")]
    public static partial void Committed(ILogger logger, string path, long index, long length);
}
