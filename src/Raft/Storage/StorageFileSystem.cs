using Microsoft.Win32.SafeHandles;

namespace Raft;

/// <summary>
/// The file operations <see cref="FileLogStore"/> needs, so that tests can run the store over a file
/// system that simulates crashes (losing or tearing whatever was not fsynced). Production uses
/// <see cref="RealStorageFileSystem"/>.
/// </summary>
/// <remarks>
/// The durability contract the store relies on, and that a simulating implementation models: data
/// written to a file is durable only once <see cref="IStorageFile.FlushToDisk"/> returns; a file's
/// creation, rename or deletion is durable only once <see cref="SyncDirectory"/> of its directory
/// returns.
/// </remarks>
internal interface IStorageFileSystem
{
    bool DirectoryExists(string path);

    void CreateDirectory(string path);

    bool FileExists(string path);

    /// <summary>Opens a file like <see cref="File.OpenHandle"/>; throws <see cref="IOException"/> when the sharing mode forbids it.</summary>
    IStorageFile OpenFile(string path, FileMode mode, FileAccess access, FileShare share);

    /// <summary>Renames <paramref name="source"/> to <paramref name="destination"/>, replacing it if it exists.</summary>
    void MoveFile(string source, string destination);

    void DeleteFile(string path);

    /// <summary>The full paths of the files directly in <paramref name="directory"/> whose names end with <paramref name="extension"/>.</summary>
    IEnumerable<string> EnumerateFiles(string directory, string extension);

    /// <summary>Makes the directory's entries (created, renamed, deleted files) durable.</summary>
    void SyncDirectory(string directory);

    /// <summary>Opens a file as a stream, like the <see cref="FileStream"/> constructor.</summary>
    Stream OpenStream(string path, FileMode mode, FileAccess access, FileShare share, int bufferSize, FileOptions options);

    /// <summary>fsync of a stream from <see cref="OpenStream"/> (flushed first by the caller).</summary>
    void FlushToDisk(Stream stream);
}

/// <summary>An open file of an <see cref="IStorageFileSystem"/>.</summary>
internal interface IStorageFile : IDisposable
{
    long GetLength();

    /// <summary>Reads up to <paramref name="destination"/>'s length at <paramref name="offset"/>; returns the count read, 0 at the end of the file.</summary>
    int Read(Span<byte> destination, long offset);

    void Write(ReadOnlySpan<byte> source, long offset);

    void SetLength(long length);

    /// <summary>fsync: makes the file's data durable.</summary>
    void FlushToDisk();
}

/// <summary>The operating system's file system: <see cref="File"/>, <see cref="RandomAccess"/> and <see cref="DirectorySync"/>.</summary>
internal sealed class RealStorageFileSystem : IStorageFileSystem
{
    public static readonly RealStorageFileSystem Instance = new();

    private RealStorageFileSystem()
    {
    }

    public bool DirectoryExists(string path) => Directory.Exists(path);

    public void CreateDirectory(string path) => Directory.CreateDirectory(path);

    public bool FileExists(string path) => File.Exists(path);

    public IStorageFile OpenFile(string path, FileMode mode, FileAccess access, FileShare share) =>
        new RealStorageFile(File.OpenHandle(path, mode, access, share));

    public void MoveFile(string source, string destination) => File.Move(source, destination, overwrite: true);

    public void DeleteFile(string path) => File.Delete(path);

    public IEnumerable<string> EnumerateFiles(string directory, string extension) => Directory.EnumerateFiles(directory, "*" + extension);

    public void SyncDirectory(string directory) => DirectorySync.Sync(directory);

    public Stream OpenStream(string path, FileMode mode, FileAccess access, FileShare share, int bufferSize, FileOptions options) =>
        new FileStream(path, mode, access, share, bufferSize, options);

    public void FlushToDisk(Stream stream) => RandomAccess.FlushToDisk(((FileStream)stream).SafeFileHandle);

    private sealed class RealStorageFile(SafeFileHandle handle) : IStorageFile
    {
        public long GetLength() => RandomAccess.GetLength(handle);

        public int Read(Span<byte> destination, long offset) => RandomAccess.Read(handle, destination, offset);

        public void Write(ReadOnlySpan<byte> source, long offset) => RandomAccess.Write(handle, source, offset);

        public void SetLength(long length) => RandomAccess.SetLength(handle, length);

        public void FlushToDisk() => RandomAccess.FlushToDisk(handle);

        public void Dispose() => handle.Dispose();
    }
}
