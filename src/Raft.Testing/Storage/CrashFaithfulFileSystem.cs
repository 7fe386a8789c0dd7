namespace Raft.Testing.Storage;

/// <summary>The exception every operation throws once a simulated crash has struck (until <see cref="CrashFaithfulFileSystem.Crash"/>).</summary>
internal sealed class SimulatedCrashException : IOException
{
    public SimulatedCrashException()
        : base("Simulated crash: the machine lost power.")
    {
    }

    public SimulatedCrashException(string message)
        : base(message)
    {
    }

    public SimulatedCrashException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// An in-memory file system that models what survives a power loss, for <see cref="FileLogStore"/>'s
/// crash tests. Data written to a file is volatile until that file is fsynced; creating, renaming or
/// deleting a file is volatile until its directory is fsynced. <see cref="Crash"/> keeps, per file,
/// the fsynced content plus (seeded) none, all, or a prefix of the later writes followed by a torn part
/// of the next one (a prefix of its bytes, or any subset of its 32-byte aligned blocks); and per
/// directory the fsynced entries plus none, all, a prefix, or any subset (in order) of the later
/// operations. A file's content survives independently of its names: a file whose creation
/// is lost is gone with its data, and a rename that survives carries whatever of the file's data survives.
/// </summary>
/// <remarks>
/// <see cref="CrashAfter"/> arms a crash that strikes just before the n-th later mutating operation
/// (write, set length, fsync, create, rename, delete, directory fsync): that operation and every
/// later one throws <see cref="SimulatedCrashException"/>, as if the machine stopped there. Handles
/// opened before <see cref="Crash"/> are dead afterwards. Creating a directory is durable at once (not
/// modelled). Not thread-safe beyond what one <see cref="FileLogStore"/> does (one operation at a time).
/// </remarks>
internal sealed class CrashFaithfulFileSystem : IStorageFileSystem
{
    private readonly Dictionary<string, DirectoryState> _directories = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private int _generation;
    private long _countdown = -1;
    private bool _crashed;

    /// <summary>Mutating operations performed so far (for choosing a crash point).</summary>
    public long Operations { get; private set; }

    /// <summary>fsyncs of files so far.</summary>
    public long FileSyncs { get; private set; }

    /// <summary>Unsynced file writes and length changes that crashes dropped or tore (so far).</summary>
    public long LostFileOperations { get; private set; }

    /// <summary>Unsynced directory operations (create, rename, delete) that crashes dropped (so far).</summary>
    public long LostDirectoryOperations { get; private set; }

    /// <summary>fsyncs of directories so far.</summary>
    public long DirectorySyncs { get; private set; }

    /// <summary>Whether an armed crash has struck (and <see cref="Crash"/> has not run since).</summary>
    public bool HasCrashed
    {
        get
        {
            lock (_lock)
                return _crashed;
        }
    }

    /// <summary>Arms a crash before the <paramref name="operations"/>-th next mutating operation (1 = the very next one).</summary>
    public void CrashAfter(long operations)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(operations);
        lock (_lock)
            _countdown = operations;
    }

    /// <summary>Disarms a pending crash.</summary>
    public void Disarm()
    {
        lock (_lock)
            _countdown = -1;
    }

    /// <summary>
    /// Power loss: decides, with <paramref name="random"/>, what of the unsynced data and directory
    /// operations survives, makes that the durable state, and kills every open handle.
    /// </summary>
    public void Crash(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        lock (_lock)
        {
            var survivors = new HashSet<Node>();
            foreach (var directory in _directories.Values)
            {
                LostDirectoryOperations += directory.Crash(random);
                foreach (var node in directory.Current.Values)
                    survivors.Add(node);
            }
            // Only files that still have a name matter; their order must not depend on hashing.
            foreach (var node in survivors.OrderBy(n => n.Id))
                LostFileOperations += node.Crash(random);
            _generation++;
            _countdown = -1;
            _crashed = false;
        }
    }

    /// <summary>The current (not necessarily durable) content of a file, for tests that craft damage.</summary>
    public byte[] ReadAllBytes(string path)
    {
        lock (_lock)
        {
            var node = Find(path) ?? throw new FileNotFoundException($"Could not find file '{path}'.", path);
            return node.Content.AsSpan(0, (int)node.Length).ToArray();
        }
    }

    /// <summary>Replaces a file's content durably (creating it if needed, and making its whole directory durable), for tests that craft damage.</summary>
    public void WriteAllBytesDurably(string path, ReadOnlySpan<byte> content)
    {
        lock (_lock)
        {
            path = Path.GetFullPath(path);
            var directory = GetDirectory(Path.GetDirectoryName(path)!);
            if (!directory.Current.TryGetValue(path, out var node))
            {
                node = new Node(NextId());
                directory.Create(path, node);
            }
            node.SetLength(0);
            node.Write(content, 0);
            node.Sync();
            directory.Sync();
        }
    }

    /// <summary>The names of the files in <paramref name="directory"/> (current, not necessarily durable), sorted.</summary>
    public string[] FileNames(string directory)
    {
        lock (_lock)
        {
            return _directories.TryGetValue(Path.GetFullPath(directory), out var state)
                ? state.Current.Keys.Select(p => Path.GetFileName(p)).Order(StringComparer.Ordinal).ToArray()
                : [];
        }
    }

    public bool DirectoryExists(string path)
    {
        lock (_lock)
        {
            ThrowIfCrashed();
            return _directories.ContainsKey(Path.GetFullPath(path));
        }
    }

    public void CreateDirectory(string path)
    {
        lock (_lock)
        {
            ThrowIfCrashed();
            GetDirectory(Path.GetFullPath(path));
        }
    }

    public bool FileExists(string path)
    {
        lock (_lock)
        {
            ThrowIfCrashed();
            return Find(path) is not null;
        }
    }

    public IStorageFile OpenFile(string path, FileMode mode, FileAccess access, FileShare share)
    {
        lock (_lock)
        {
            ThrowIfCrashed();
            path = Path.GetFullPath(path);
            var directoryPath = Path.GetDirectoryName(path)!;
            if (!_directories.TryGetValue(directoryPath, out var directory))
                throw new DirectoryNotFoundException($"Could not find a part of the path '{path}'.");
            directory.Current.TryGetValue(path, out var node);
            if (node is null && mode is FileMode.Open or FileMode.Truncate)
                throw new FileNotFoundException($"Could not find file '{path}'.", path);
            if (node is not null && mode == FileMode.CreateNew)
                throw new IOException($"The file '{path}' already exists.");
            if (node is not null)
            {
                foreach (var other in node.Open)
                {
                    if (other.Share == FileShare.None || share == FileShare.None)
                        throw new IOException($"The process cannot access the file '{path}' because it is being used by another process.");
                }
            }
            if (node is null)
            {
                Tick();
                var created = new Node(NextId());
                directory.Create(path, created);
                node = created;
            }
            else if (mode is FileMode.Create or FileMode.Truncate)
            {
                Tick();
                node.SetLength(0);
            }
            var handle = new Handle(this, node, share, access, _generation);
            node.Open.Add(handle);
            return handle;
        }
    }

    public void MoveFile(string source, string destination)
    {
        lock (_lock)
        {
            ThrowIfCrashed();
            source = Path.GetFullPath(source);
            destination = Path.GetFullPath(destination);
            var directory = _directories[Path.GetDirectoryName(source)!];
            if (Path.GetDirectoryName(destination) != Path.GetDirectoryName(source))
                throw new NotSupportedException("Renames across directories are not modelled.");
            if (!directory.Current.TryGetValue(source, out var node))
                throw new FileNotFoundException($"Could not find file '{source}'.", source);
            Tick();
            directory.Rename(source, destination, node);
        }
    }

    public void DeleteFile(string path)
    {
        lock (_lock)
        {
            ThrowIfCrashed();
            path = Path.GetFullPath(path);
            if (!_directories.TryGetValue(Path.GetDirectoryName(path)!, out var directory) || !directory.Current.ContainsKey(path))
                return; // File.Delete ignores a missing file
            Tick();
            directory.Delete(path);
        }
    }

    public IEnumerable<string> EnumerateFiles(string directory, string extension)
    {
        lock (_lock)
        {
            ThrowIfCrashed();
            if (!_directories.TryGetValue(Path.GetFullPath(directory), out var state))
                throw new DirectoryNotFoundException($"Could not find a part of the path '{directory}'.");
            return state.Current.Keys.Where(p => p.EndsWith(extension, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
        }
    }

    public void SyncDirectory(string directory)
    {
        lock (_lock)
        {
            ThrowIfCrashed();
            Tick();
            DirectorySyncs++;
            if (_directories.TryGetValue(Path.GetFullPath(directory), out var state))
                state.Sync();
        }
    }

    public Stream OpenStream(string path, FileMode mode, FileAccess access, FileShare share, int bufferSize, FileOptions options) =>
        new FileStreamAdapter(OpenFile(path, mode, access, share), access);

    public void FlushToDisk(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ((FileStreamAdapter)stream).File.FlushToDisk();
    }

    private int _nextId;

    private int NextId() => _nextId++;

    private Node? Find(string path)
    {
        path = Path.GetFullPath(path);
        return _directories.TryGetValue(Path.GetDirectoryName(path)!, out var directory) && directory.Current.TryGetValue(path, out var node) ? node : null;
    }

    private DirectoryState GetDirectory(string path)
    {
        if (!_directories.TryGetValue(path, out var directory))
        {
            directory = new DirectoryState();
            _directories.Add(path, directory);
        }
        return directory;
    }

    private void ThrowIfCrashed()
    {
        if (_crashed)
            throw new SimulatedCrashException();
    }

    // Counts a mutating operation; strikes the armed crash before it happens.
    private void Tick()
    {
        if (_countdown > 0 && --_countdown == 0)
        {
            _crashed = true;
            _countdown = -1;
            throw new SimulatedCrashException();
        }
        Operations++;
    }

    // A directory: its durable entries and the operations since its last fsync.
    private sealed class DirectoryState
    {
        private Dictionary<string, Node> _durable = new(StringComparer.Ordinal);
        private readonly List<(string? Removed, string? Added, Node? Node)> _unsynced = [];

        public Dictionary<string, Node> Current { get; private set; } = new(StringComparer.Ordinal);

        public void Create(string name, Node node) => Apply((null, name, node));

        public void Delete(string name) => Apply((name, null, null));

        public void Rename(string source, string destination, Node node) => Apply((source, destination, node));

        public void Sync()
        {
            _durable = new Dictionary<string, Node>(Current, StringComparer.Ordinal);
            _unsynced.Clear();
        }

        public int Crash(Random random)
        {
            // None, all, a prefix, or any subset (applied in order) of the unsynced operations
            // survives: POSIX promises nothing about directory changes before the directory's fsync.
            var kept = new bool[_unsynced.Count];
            var mode = random.Next(4);
            var prefix = random.Next(_unsynced.Count + 1);
            for (var i = 0; i < kept.Length; i++)
                kept[i] = mode switch { 0 => false, 1 => true, 2 => i < prefix, _ => random.Next(2) == 0 };
            var operations = _unsynced.ToArray();
            Current = new Dictionary<string, Node>(_durable, StringComparer.Ordinal);
            var lost = 0;
            for (var i = 0; i < operations.Length; i++)
            {
                if (kept[i])
                    Replay(Current, operations[i]);
                else
                    lost++;
            }
            Sync();
            return lost;
        }

        private void Apply((string? Removed, string? Added, Node? Node) operation)
        {
            _unsynced.Add(operation);
            Replay(Current, operation);
        }

        // A rename whose source is not there (its creation was lost) does not happen.
        private static void Replay(Dictionary<string, Node> entries, (string? Removed, string? Added, Node? Node) operation)
        {
            var (removed, added, node) = operation;
            if (removed is not null && added is not null)
            {
                if (!entries.TryGetValue(removed, out var present) || present != node)
                    return;
                entries.Remove(removed);
                entries[added] = node;
            }
            else if (removed is not null)
            {
                entries.Remove(removed);
            }
            else
            {
                entries[added!] = node!;
            }
        }
    }

    // A file's content (an inode): durable bytes plus the unsynced operations on top of them.
    private sealed class Node(int id)
    {
        // The unit a torn write keeps or loses whole when its blocks reach the disk out of order.
        private const int BlockSize = 32;

        private byte[] _durable = [];
        private readonly List<(long Offset, byte[]? Data, long NewLength)> _unsynced = [];

        public int Id { get; } = id;

        public byte[] Content { get; private set; } = new byte[256];

        public long Length { get; private set; }

        public List<Handle> Open { get; } = [];

        public void Write(ReadOnlySpan<byte> data, long offset)
        {
            _unsynced.Add((offset, data.ToArray(), -1));
            ApplyWrite(data, offset);
        }

        public void SetLength(long length)
        {
            _unsynced.Add((0, null, length));
            ApplySetLength(length);
        }

        public void Sync()
        {
            _durable = Content.AsSpan(0, (int)Length).ToArray();
            _unsynced.Clear();
        }

        public int Read(Span<byte> destination, long offset)
        {
            if (offset >= Length)
                return 0;
            var n = (int)Math.Min(destination.Length, Length - offset);
            Content.AsSpan((int)offset, n).CopyTo(destination);
            return n;
        }

        public int Crash(Random random)
        {
            var operations = _unsynced.ToArray();
            // None, all, or a prefix of the unsynced operations, the last one of a prefix possibly torn.
            // Modes: none, all, a prefix with the next write torn after a random byte, or a prefix
            // with a random subset of the next write's aligned blocks (pages written back out of
            // order; a block, like a disk sector, is written whole or not at all).
            var mode = operations.Length == 0 ? 1 : random.Next(4);
            var kept = mode switch
            {
                0 => 0,
                1 => operations.Length,
                _ => random.Next(operations.Length),
            };
            Content = new byte[Math.Max(256, _durable.Length)];
            Length = 0;
            ApplyWrite(_durable, 0);
            for (var i = 0; i < kept; i++)
                Replay(operations[i]);
            if (mode == 2 && operations[kept].Data is { Length: > 1 } torn)
            {
                ApplyWrite(torn.AsSpan(0, random.Next(1, torn.Length)), operations[kept].Offset);
            }
            else if (mode == 3 && operations[kept].Data is { } scattered)
            {
                var offset = operations[kept].Offset;
                for (var block = offset - (offset % BlockSize); block < offset + scattered.Length; block += BlockSize)
                {
                    var from = Math.Max(block, offset);
                    var to = Math.Min(block + BlockSize, offset + scattered.Length);
                    if (random.Next(2) == 0)
                        ApplyWrite(scattered.AsSpan((int)(from - offset), (int)(to - from)), from);
                }
            }
            Sync();
            Open.Clear();
            return operations.Length - kept;
        }

        private void Replay((long Offset, byte[]? Data, long NewLength) operation)
        {
            if (operation.Data is null)
                ApplySetLength(operation.NewLength);
            else
                ApplyWrite(operation.Data, operation.Offset);
        }

        private void ApplyWrite(ReadOnlySpan<byte> data, long offset)
        {
            var end = offset + data.Length;
            EnsureCapacity(end);
            if (offset > Length)
                Content.AsSpan((int)Length, (int)(offset - Length)).Clear();
            data.CopyTo(Content.AsSpan((int)offset));
            Length = Math.Max(Length, end);
        }

        private void ApplySetLength(long length)
        {
            EnsureCapacity(length);
            if (length > Length)
                Content.AsSpan((int)Length, (int)(length - Length)).Clear();
            Length = length;
        }

        private void EnsureCapacity(long length)
        {
            if (length <= Content.Length)
                return;
            var bigger = new byte[Math.Max(length, Content.Length * 2L)];
            Content.AsSpan(0, (int)Length).CopyTo(bigger);
            Content = bigger;
        }
    }

    private sealed class Handle(CrashFaithfulFileSystem fileSystem, Node node, FileShare share, FileAccess access, int generation) : IStorageFile
    {
        private bool _disposed;

        public FileShare Share => share;

        public long GetLength()
        {
            lock (fileSystem._lock)
            {
                Check();
                return node.Length;
            }
        }

        public int Read(Span<byte> destination, long offset)
        {
            lock (fileSystem._lock)
            {
                Check();
                if ((access & FileAccess.Read) == 0)
                    throw new UnauthorizedAccessException("The file was not opened for reading.");
                return node.Read(destination, offset);
            }
        }

        public void Write(ReadOnlySpan<byte> source, long offset)
        {
            lock (fileSystem._lock)
            {
                Check();
                if ((access & FileAccess.Write) == 0)
                    throw new UnauthorizedAccessException("The file was not opened for writing.");
                fileSystem.Tick();
                node.Write(source, offset);
            }
        }

        public void SetLength(long length)
        {
            lock (fileSystem._lock)
            {
                Check();
                fileSystem.Tick();
                node.SetLength(length);
            }
        }

        public void FlushToDisk()
        {
            lock (fileSystem._lock)
            {
                Check();
                fileSystem.Tick();
                fileSystem.FileSyncs++;
                node.Sync();
            }
        }

        public void Dispose()
        {
            lock (fileSystem._lock)
            {
                if (_disposed)
                    return;
                _disposed = true;
                node.Open.Remove(this);
            }
        }

        private void Check()
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (generation != fileSystem._generation)
                throw new SimulatedCrashException("This handle was opened before a simulated crash.");
            fileSystem.ThrowIfCrashed();
        }
    }

    // A seekable, unbuffered stream over an open file of this file system.
    private sealed class FileStreamAdapter(IStorageFile file, FileAccess access) : Stream
    {
        private long _position;

        public IStorageFile File => file;

        public override bool CanRead => (access & FileAccess.Read) != 0;

        public override bool CanSeek => true;

        public override bool CanWrite => (access & FileAccess.Write) != 0;

        public override long Length => file.GetLength();

        public override long Position
        {
            get => _position;
            set => _position = value;
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var read = file.Read(buffer, _position);
            _position += read;
            return read;
        }

        public override long Seek(long offset, SeekOrigin origin) => _position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => file.GetLength() + offset,
        };

        public override void SetLength(long value) => file.SetLength(value);

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            file.Write(buffer, _position);
            _position += buffer.Length;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                file.Dispose();
            base.Dispose(disposing);
        }
    }
}
