namespace Raft;

/// <summary>How a <see cref="FileLogStore"/> makes its writes durable.</summary>
public enum LogDurability
{
    /// <summary>
    /// Every write is flushed to stable storage (fsync) before its task completes, and so is the
    /// directory after files are created, renamed or deleted. The default, and the only mode in which
    /// the store keeps Raft's safety guarantees across power loss.
    /// </summary>
    Fsync = 0,

    /// <summary>
    /// <b>Unsafe.</b> Writes complete once they are handed to the operating system, without fsync.
    /// A process crash loses nothing, but a power loss or kernel crash loses writes the store has
    /// already acknowledged, which can make the cluster lose committed entries or let a node vote
    /// twice in a term. Recovery may also refuse to start after such a loss, since the surviving
    /// data can then have holes. For tests and throw-away clusters only.
    /// </summary>
    UnsafeNoFsync = 1,
}

/// <summary>Options for <see cref="FileLogStore.OpenAsync"/>: settings only, copied by the store when it opens (changing them afterwards has no effect).</summary>
public sealed record FileLogStoreOptions
{
    /// <summary>The default <see cref="SegmentSize"/>: 64 MiB.</summary>
    public const long DefaultSegmentSize = 64L * 1024 * 1024;

    /// <summary>The default <see cref="CacheBytes"/>: 64 MiB.</summary>
    public const long DefaultCacheBytes = 64L * 1024 * 1024;

    /// <summary>The smallest accepted <see cref="SegmentSize"/>: 64 bytes (useful in tests only).</summary>
    public const long MinSegmentSize = 64;

    /// <summary>The largest accepted <see cref="SegmentSize"/>: 1 GiB.</summary>
    public const long MaxSegmentSize = 1L << 30;

    /// <summary>
    /// The size in bytes after which the store starts a new segment file. The default is 64 MiB
    /// (<see cref="DefaultSegmentSize"/>); accepted values are in [<see cref="MinSegmentSize"/>,
    /// <see cref="MaxSegmentSize"/>].
    /// </summary>
    /// <remarks>
    /// A segment rolls over once it has reached this size: an append batch is never split, so a
    /// segment can exceed the size by up to one batch. Smaller segments make compaction free disk
    /// space sooner and suffix truncation cheaper; larger ones mean fewer files and handles (the
    /// store keeps one open handle per segment).
    /// </remarks>
    public long SegmentSize { get; set; } = DefaultSegmentSize;

    /// <summary>
    /// How many bytes of the most recent entries (counted as <see cref="LogEntry.Size"/>) are kept in
    /// memory so that a leader sending them to followers rarely reads the disk. The default is
    /// 64 MiB (<see cref="DefaultCacheBytes"/>); 0 disables the cache.
    /// </summary>
    /// <remarks>The cache holds the appended entries' own buffers, which entries promise never to change.</remarks>
    public long CacheBytes { get; set; } = DefaultCacheBytes;

    /// <summary>
    /// Whether writes are fsynced. The default is <see cref="LogDurability.Fsync"/>;
    /// <see cref="LogDurability.UnsafeNoFsync"/> loses acknowledged writes on power loss.
    /// </summary>
    public LogDurability Durability { get; set; } = LogDurability.Fsync;

    /// <summary>The file system the store works on: null (the default) for the operating system's; tests pass one that simulates crashes.</summary>
    internal IStorageFileSystem? FileSystem { get; init; }

    /// <summary>
    /// Whether the file work of writes and of recovery runs inline on the caller's thread (the returned
    /// tasks are complete when the calls return) instead of on the thread pool. False (the default) for
    /// hosts; the deterministic simulator sets it, since it runs every node on one thread.
    /// </summary>
    internal bool InlineIo { get; init; }

#if RAFT_MUTANTS
    /// <summary>Deliberate bugs for the mutant build's tests (only <see cref="Mutation.FileLogNoFsync"/> applies to this store).</summary>
    public Mutation Mutations { get; set; }

#endif

    /// <summary>Checks every option and throws on the first invalid one.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is outside its accepted range.</exception>
    public void Validate()
    {
        if (SegmentSize is < MinSegmentSize or > MaxSegmentSize)
            throw new ArgumentOutOfRangeException(nameof(SegmentSize), SegmentSize, $"SegmentSize is {SegmentSize} bytes; it must be in [{MinSegmentSize}, {MaxSegmentSize}].");
        if (CacheBytes < 0)
            throw new ArgumentOutOfRangeException(nameof(CacheBytes), CacheBytes, $"CacheBytes is {CacheBytes}; it must be at least 0.");
        if (!Enum.IsDefined(Durability))
            throw new ArgumentOutOfRangeException(nameof(Durability), Durability, $"Durability {(int)Durability} is not a defined {nameof(LogDurability)} value.");
    }
}
