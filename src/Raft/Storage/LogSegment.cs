namespace Raft;

/// <summary>One open segment file of a <see cref="FileLogStore"/>.</summary>
internal sealed class LogSegment : IDisposable
{
    public LogSegment(string path, long firstIndex, IStorageFile file, long length)
    {
        Path = path;
        FirstIndex = firstIndex;
        File = file;
        Length = length;
    }

    public string Path { get; }

    /// <summary>The index of the segment's first record (also in its name and header).</summary>
    public long FirstIndex { get; }

    /// <summary>Open for reading and writing while the segment belongs to the store.</summary>
    public IStorageFile File { get; }

    /// <summary>
    /// The byte length of the valid data: the header plus whole records. Invariant: equals the file
    /// length except while an append to this segment is in progress.
    /// </summary>
    public long Length { get; set; }

    public void Dispose() => File.Dispose();
}
