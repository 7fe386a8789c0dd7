using System.Buffers.Binary;
using static Raft.Tests.SnapshotStore.SnapshotData;

namespace Raft.Tests.SnapshotStore;

/// <summary>
/// What only the durable <see cref="FileSnapshotStore"/> promises: restarts, crashes in the middle of
/// a write, corruption detection, the file format and large snapshots.
/// </summary>
public sealed class FileSnapshotStoreTests : IDisposable
{
    // The layout of a snapshot file with the default members (1, 2, 3): see FileSnapshotStore.
    private static readonly int HeaderSize = 28 + ClusterConfiguration.FromVoters([1, 2, 3]).Encode().Length;
    private const int FooterSize = 12;

    private readonly SnapshotTempDirectory _directory = new();
    private readonly List<FileSnapshotStore> _opened = [];

    public void Dispose()
    {
        foreach (var store in _opened)
            store.Dispose();
        _directory.Dispose();
    }

    // The synchronous core of OpenAsync (the tests that reopen a store many times stay synchronous).
    private FileSnapshotStore Open(Microsoft.Extensions.Logging.ILogger? logger = null)
    {
        var store = FileSnapshotStore.Open(_directory.Path, logger, RealStorageFileSystem.Instance);
        _opened.Add(store);
        return store;
    }

    private string FileOf(long index) => Path.Combine(_directory.Path, $"{index:D20}.snap");

    private static void Close(FileSnapshotStore store) => store.Dispose();

    /// <summary>Commits snapshots 10 (kept as the previous one) and 20 (the newest), then closes the store; returns the newest's path.</summary>
    private async Task<string> TwoSnapshotsAsync(int dataLength = 6000)
    {
        var store = Open();
        await CommitAsync(store, Metadata(10), Bytes(10, 5000));
        await CommitAsync(store, Metadata(20), Bytes(20, dataLength));
        Close(store);
        Assert.Equal([FileOf(10), FileOf(20)], _directory.SnapshotFiles());
        return FileOf(20);
    }

    private LogCorruptionException AssertRefused(string corruptFile, string what = "the corrupt file")
    {
        var opened = Record.Exception(() => Open());
        var error = Assert.IsType<LogCorruptionException>(opened ?? new InvalidOperationException($"the store opened despite {what}"));
        Assert.Equal(corruptFile, error.FilePath);
        Assert.Contains(corruptFile, error.Message, StringComparison.Ordinal);
        Assert.Contains($"offset {error.Offset}", error.Message, StringComparison.Ordinal);
        Assert.InRange(error.Offset, 0, Math.Max(0, new FileInfo(corruptFile).Length));
        // Nothing is deleted: the operator gets the evidence, and the older snapshot is not promoted.
        Assert.Equal([FileOf(10), corruptFile], _directory.SnapshotFiles());
        return error;
    }

    [Fact]
    public async Task OpenAsync_creates_a_missing_directory()
    {
        var path = Path.Combine(_directory.Path, "a", "b");
        await using var store = await FileSnapshotStore.OpenAsync(path);
        Assert.True(Directory.Exists(path));
        Assert.Equal(Path.GetFullPath(path), store.DirectoryPath);
        Assert.Null(store.Latest);
    }

    [Fact]
    public async Task A_snapshot_survives_reopening_and_only_the_latest_and_previous_files_are_kept()
    {
        var store = Open();
        for (long index = 10; index <= 40; index += 10)
            await CommitAsync(store, Metadata(index, term: index / 10), Bytes(index, 1000 + (int)index));
        // The previous snapshot stays for a leader still streaming it; older ones go.
        Assert.Equal([FileOf(30), FileOf(40)], _directory.SnapshotFiles());
        Close(store);

        store = Open();
        AssertLatest(store, Metadata(40, term: 4), Bytes(40, 1040));
        Assert.Equal(FileOf(40), _directory.SnapshotFiles()[^1]);
        Close(store);

        store = Open();
        AssertLatest(store, Metadata(40, term: 4), Bytes(40, 1040));
        await CommitAsync(store, Metadata(50), Bytes(50, 10));
        AssertLatest(store, Metadata(50), Bytes(50, 10));
        Assert.Empty(_directory.TempFiles());
    }

    [Fact]
    public async Task The_file_holds_the_documented_header_data_and_footer()
    {
        var store = Open();
        var data = Bytes(77, 333);
        var configuration = new ClusterConfiguration([ClusterMember.Voter(4, "a:1"), ClusterMember.Learner(5)]);
        await CommitAsync(store, new SnapshotMetadata(77, 9, configuration), data);
        var bytes = await File.ReadAllBytesAsync(FileOf(77));
        var encoded = configuration.Encode();
        var header = 28 + encoded.Length;
        Assert.Equal(header + data.Length + FooterSize, bytes.Length);
        Assert.Equal("RSNP"u8.ToArray(), bytes[..4]);
        Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(4)));
        Assert.Equal(77, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(8)));
        Assert.Equal(9, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(16)));
        Assert.Equal(encoded.Length, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(24)));
        Assert.Equal(encoded, bytes[28..header]);
        Assert.Equal(data, bytes[header..^FooterSize]);
        Assert.Equal(data.Length, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(bytes.Length - FooterSize)));
        Assert.Equal(LogFormat.Crc32C(bytes.AsSpan(0, bytes.Length - 4)), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4)));
    }

    [Fact]
    public async Task A_crash_in_the_middle_of_a_write_leaves_the_previous_snapshot_and_reopening_deletes_the_temporary_files()
    {
        var store = Open();
        var kept = Bytes(10, 4000);
        await CommitAsync(store, Metadata(10), kept);

        // A writer whose process "died": neither committed nor disposed.
        var abandoned = await store.CreateAsync(Metadata(30));
        await abandoned.Stream.WriteAsync(Bytes(30, 100_000));
        await abandoned.Stream.FlushAsync();
        Assert.Single(_directory.TempFiles());
        Close(store);

        // What a crash can leave at other moments: an empty file just created, a torn write, and a
        // complete, fsynced file that was not renamed yet (never acknowledged, so never the latest).
        var complete = await CompleteSnapshotBytesAsync(Metadata(20), Bytes(20, 8000));
        await File.WriteAllBytesAsync(TempName(20), []);
        await File.WriteAllBytesAsync(TempName(20), complete[..(complete.Length / 2)]);
        await File.WriteAllBytesAsync(TempName(20), complete);
        Assert.Equal(4, _directory.TempFiles().Length);

        var logger = new RecordingLogger();
        store = await FileSnapshotStore.OpenAsync(_directory.Path, logger.AsFactory());
        _opened.Add(store);
        Assert.Empty(_directory.TempFiles());
        Assert.Equal([FileOf(10)], _directory.SnapshotFiles());
        AssertLatest(store, Metadata(10), kept);
        Assert.Equal(4, logger.Entries.Count(e => e.EventId == 2100));

        await abandoned.DisposeAsync(); // its file is already gone: nothing to do, nothing thrown
        await CommitAsync(store, Metadata(20), Bytes(20, 8000));
        AssertLatest(store, Metadata(20), Bytes(20, 8000));
    }

    [Fact]
    public async Task Reopening_a_directory_with_only_temporary_files_gives_an_empty_store()
    {
        await File.WriteAllBytesAsync(TempName(5), await CompleteSnapshotBytesAsync(Metadata(5), Bytes(5, 10)));
        var store = Open();
        Assert.Null(store.Latest);
        Assert.Empty(_directory.TempFiles());
    }

    public static TheoryData<string, int> BitFlips => new()
    {
        { "magic", 0 },
        { "magic", 3 },
        { "format version", 4 },
        { "reserved", 6 },
        { "index (low byte)", 8 },
        { "index (sign bit)", 15 },
        { "term", 16 },
        { "term (sign bit)", 23 },
        { "configuration length", 24 },
        { "configuration length (sign bit)", 27 },
        { "configuration version", 28 },
        { "first member", 31 },
        { "last member's flags", HeaderSize - 3 },
        { "first data byte", HeaderSize },
        { "middle data byte", HeaderSize + 3000 },
        { "last data byte", HeaderSize + 5999 },
        { "footer data length", HeaderSize + 6000 },
        { "footer data length (high byte)", HeaderSize + 6000 + 7 },
        { "footer CRC", HeaderSize + 6000 + 8 },
        { "last byte of the file", HeaderSize + 6000 + FooterSize - 1 },
    };

    [Theory]
    [MemberData(nameof(BitFlips))]
    public async Task A_flipped_bit_in_the_newest_file_refuses_to_open_naming_the_file_and_offset(string where, int offset)
    {
        var newest = await TwoSnapshotsAsync(dataLength: 6000);
        var bytes = await File.ReadAllBytesAsync(newest);
        Assert.Equal(HeaderSize + 6000 + FooterSize, bytes.Length);
        foreach (var bit in new[] { 0, 7, offset % 8 }.Distinct())
        {
            bytes[offset] ^= (byte)(1 << bit);
            await File.WriteAllBytesAsync(newest, bytes);
            AssertRefused(newest, $"bit {bit} of the {where} (byte {offset}) flipped");
            bytes[offset] ^= (byte)(1 << bit);
        }

        // Repaired, it opens again.
        await File.WriteAllBytesAsync(newest, bytes);
        var store = Open();
        AssertLatest(store, Metadata(20), Bytes(20, 6000));
    }

    public static TheoryData<int> Truncations => new()
    {
        0,
        1,
        27,
        HeaderSize - 1,
        HeaderSize,
        HeaderSize + FooterSize - 1,
        HeaderSize + 3000,
        HeaderSize + 6000, // the footer is missing
        HeaderSize + 6000 + 4, // a torn footer
        HeaderSize + 6000 + FooterSize - 1,
    };

    [Theory]
    [MemberData(nameof(Truncations))]
    public async Task A_truncated_newest_file_refuses_to_open(int length)
    {
        var newest = await TwoSnapshotsAsync(dataLength: 6000);
        await using (var file = new FileStream(newest, FileMode.Open, FileAccess.Write))
            file.SetLength(length);
        AssertRefused(newest);
    }

    [Fact]
    public async Task An_extended_newest_file_refuses_to_open()
    {
        var newest = await TwoSnapshotsAsync();
        await using (var file = new FileStream(newest, FileMode.Append, FileAccess.Write))
            file.Write(new byte[100]);
        AssertRefused(newest);
    }

    [Fact]
    public async Task A_file_of_format_version_1_with_a_member_list_still_opens_as_a_configuration_of_voters()
    {
        // Version 1 (before membership changes): member count and member ids where the configuration is now.
        var data = Bytes(30, 100);
        var bytes = new byte[28 + 12 + data.Length + FooterSize];
        "RSNP"u8.CopyTo(bytes);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), 1);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8), 30);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(16), 4);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(24), 3);
        for (var i = 0; i < 3; i++)
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(28 + (4 * i)), new[] { 3, 1, 2 }[i]);
        data.CopyTo(bytes.AsSpan(40));
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(bytes.Length - FooterSize), data.Length);
        Reseal(bytes);
        await File.WriteAllBytesAsync(Path.Combine(_directory.Path, "00000000000000000030.snap"), bytes);

        var store = Open();
        Assert.Equal(new SnapshotMetadata(30, 4, ClusterConfiguration.FromVoters([3, 1, 2])), store.Latest);
        AssertLatest(store, new SnapshotMetadata(30, 4, [3, 1, 2]), data);
    }

    [Theory]
    [InlineData((ushort)0)]
    [InlineData((ushort)3)]
    [InlineData(ushort.MaxValue)]
    public async Task An_unknown_format_version_refuses_to_open_even_with_a_valid_checksum(ushort version)
    {
        var newest = await TwoSnapshotsAsync();
        var bytes = await File.ReadAllBytesAsync(newest);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), version);
        Reseal(bytes);
        await File.WriteAllBytesAsync(newest, bytes);
        var error = AssertRefused(newest);
        Assert.Contains("version", error.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains(version.ToString(System.Globalization.CultureInfo.InvariantCulture), error.Message, StringComparison.Ordinal);
        Assert.Equal(4, error.Offset);
    }

    [Fact]
    public async Task A_bad_magic_number_refuses_to_open_even_with_a_valid_checksum()
    {
        var newest = await TwoSnapshotsAsync();
        var bytes = await File.ReadAllBytesAsync(newest);
        "SNAP"u8.CopyTo(bytes);
        Reseal(bytes);
        await File.WriteAllBytesAsync(newest, bytes);
        var error = AssertRefused(newest);
        Assert.Equal(0, error.Offset);
    }

    [Fact]
    public async Task A_resealed_file_opens_so_the_tests_above_fail_for_the_reason_they_name()
    {
        // Reseal recomputes the checksum the way the store does: an untouched file resealed is unchanged.
        var newest = await TwoSnapshotsAsync();
        var bytes = await File.ReadAllBytesAsync(newest);
        var copy = bytes.ToArray();
        Reseal(copy);
        Assert.Equal(bytes, copy);
    }

    [Fact]
    public async Task Only_the_newest_file_is_validated_a_corrupt_older_one_is_dropped()
    {
        await TwoSnapshotsAsync();
        var older = await File.ReadAllBytesAsync(FileOf(10));
        older[HeaderSize + 10] ^= 1;
        await File.WriteAllBytesAsync(FileOf(10), older);
        var store = Open();
        AssertLatest(store, Metadata(20), Bytes(20, 6000));
        Assert.Equal([FileOf(20)], _directory.SnapshotFiles());
    }

    [Fact]
    public async Task A_20_MB_snapshot_streams_through_Read_in_chunks_and_OpenLatest()
    {
        const int length = 20 * 1024 * 1024;
        var data = Bytes(123, length);
        var store = Open();
        await using (var writer = await store.CreateAsync(Metadata(123)))
        {
            // Odd-sized writes, as a state machine serializing records would make.
            var offset = 0;
            var size = 1;
            while (offset < length)
            {
                var count = Math.Min(size, length - offset);
                await writer.Stream.WriteAsync(data.AsMemory(offset, count));
                offset += count;
                size = (size * 7 % 200_003) + 1;
            }
            await writer.CommitAsync();
        }
        Assert.Equal(HeaderSize + length + FooterSize, new FileInfo(FileOf(123)).Length);

        for (var round = 0; round < 2; round++)
        {
            Assert.Equal(length, store.LatestLength);
            // As a leader streams it: MaxSnapshotChunkBytes-sized chunks (1 MiB by default), and an odd size.
            foreach (var chunk in new[] { 1 << 20, 999_983 })
            {
                var buffer = new byte[chunk];
                long position = 0;
                var chunks = 0;
                while (true)
                {
                    var read = store.Read(123, position, buffer);
                    Assert.True(read >= 0);
                    AssertSameBytes(data.AsSpan((int)position, read), buffer.AsSpan(0, read));
                    position += read;
                    chunks++;
                    if (read < chunk)
                        break;
                }
                Assert.Equal(length, position);
                Assert.Equal((length / chunk) + 1, chunks);
            }

            await using (var stream = store.OpenLatest()!)
            {
                var buffer = new byte[65_537];
                long position = 0;
                int read;
                while ((read = await stream.ReadAsync(buffer)) > 0)
                {
                    AssertSameBytes(data.AsSpan((int)position, read), buffer.AsSpan(0, read));
                    position += read;
                }
                Assert.Equal(length, position);
            }

            Close(store);
            store = Open();
        }
    }

    [Fact]
    public async Task A_closed_store_refuses_reads_and_writers()
    {
        var store = Open();
        await CommitAsync(store, Metadata(1), Bytes(1, 10));
        Close(store);
        Close(store); // idempotent
        Assert.Throws<ObjectDisposedException>(() => store.Read(1, 0, new byte[4]));
        Assert.Throws<ObjectDisposedException>(() => store.OpenLatest());
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await store.CreateAsync(Metadata(2)));
    }

    [Fact]
    public async Task Overlapping_commits_of_an_older_and_a_newer_snapshot_keep_the_newer()
    {
        // RaftNode commits its own snapshots on the apply loop and snapshots received from the leader
        // on the event loop, so two commits can overlap. FileSnapshotStore.Install checks "is a newer
        // one already there?" under its lock, then releases it to rename, fsync the directory and
        // re-validate the whole file, and only then publishes the snapshot as Latest, without
        // checking again. A newer snapshot committed inside that window is overwritten by the older.
        var store = Open();
        await using var older = await store.CreateAsync(Metadata(10));
        // Large, so that re-validating it after the rename (a full CRC pass) takes a while.
        var block = Bytes(10, 1 << 20);
        for (var i = 0; i < 128; i++)
            await older.Stream.WriteAsync(block);
        await using var newer = await store.CreateAsync(Metadata(20));
        await newer.Stream.WriteAsync(Bytes(20, 100));

        var olderCommit = Task.Run(async () => await older.CommitAsync());
        // The older snapshot's file appears once it has passed the check.
        while (!File.Exists(FileOf(10)) && !olderCommit.IsCompleted)
            Thread.SpinWait(100);
        await newer.CommitAsync();
        Assert.Equal(20, store.Latest!.Index);
        await olderCommit;

        Assert.Equal(20, store.Latest!.Index); // fails: 10
        AssertLatest(store, Metadata(20), Bytes(20, 100));
    }

    [Fact]
    public async Task Reads_racing_commits_never_hit_a_closed_file_handle()
    {
        // ISnapshotStore: "implementations must keep the snapshot being read readable until the reader
        // moves on". FileSnapshotStore.Read takes _latest under its lock but reads through its file
        // handle after releasing it; two commits in between (the second one drops the snapshot two
        // back and disposes its handle) make RandomAccess.Read throw ObjectDisposedException. In a
        // node that exception comes out of the event loop, which stops the node.
        var store = Open();
        await CommitAsync(store, Metadata(1), Bytes(1, 64));
        using var stop = new CancellationTokenSource();
        var readers = Enumerable.Range(0, 2 * Environment.ProcessorCount).Select(_ => Task.Factory.StartNew(
            () =>
            {
                var buffer = new byte[1];
                while (!stop.IsCancellationRequested)
                    _ = store.Read(store.Latest!.Index, 0, buffer); // 1, or -1 once replaced; never an exception
            },
            stop.Token,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default)).ToArray();
        for (long index = 2; index <= 500 && !readers.Any(r => r.IsFaulted); index++)
            await CommitAsync(store, Metadata(index), Bytes(index, 64));
        await stop.CancelAsync();
        await Task.WhenAll(readers).ContinueWith(_ => { }, TaskScheduler.Default);
        var errors = readers.Where(r => r.IsFaulted).Select(r => r.Exception!.InnerException!).ToList();
        Assert.True(errors.Count == 0, string.Join("\n", errors.Select(e => $"{e.GetType().Name}: {e.Message}")));
    }

    [Fact]
    public async Task A_commit_retried_after_a_cancelled_one_does_not_change_the_data()
    {
        // CommitAsync writes the footer's data-length field through the checksumming stream, which
        // also counts it as data, before the cancellable write of the CRC. When that write is
        // cancelled the writer stays usable, and a second CommitAsync commits a snapshot whose data
        // ends with the first attempt's 8-byte length field: valid checksum, wrong content. The
        // contract says a cancelled commit discards the snapshot, so a retry must either throw or
        // commit exactly what was written.
        var store = Open();
        var data = Bytes(1, 1000);
        await using var writer = await store.CreateAsync(Metadata(1));
        await writer.Stream.WriteAsync(data);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await writer.CommitAsync(new CancellationToken(canceled: true)));
        try
        {
            await writer.CommitAsync();
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            Assert.Null(store.Latest);
            return;
        }
        Assert.Equal(data.Length, store.LatestLength); // fails: 1008
        AssertLatest(store, Metadata(1), data);
    }

    private string TempName(long index) => Path.Combine(_directory.Path, $"{index:D20}.{Guid.NewGuid():N}.snap.tmp");

    /// <summary>The bytes of a complete, valid snapshot file, made by a store in another directory.</summary>
    private static async Task<byte[]> CompleteSnapshotBytesAsync(SnapshotMetadata metadata, byte[] data)
    {
        using var scratch = new SnapshotTempDirectory();
        await using (var store = await FileSnapshotStore.OpenAsync(scratch.Path))
            await CommitAsync(store, metadata, data);
        return await File.ReadAllBytesAsync(scratch.SnapshotFiles().Single());
    }

    /// <summary>Recomputes the footer's CRC, so a test changes one field without breaking the checksum.</summary>
    private static void Reseal(byte[] file) =>
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(file.Length - 4), LogFormat.Crc32C(file.AsSpan(0, file.Length - 4)));
}
