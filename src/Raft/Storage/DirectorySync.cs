using System.Runtime.InteropServices;

namespace Raft;

/// <summary>
/// Makes a directory's entries (created, renamed and deleted files) durable.
/// </summary>
/// <remarks>
/// .NET has no API for this. On Linux the directory is opened with
/// <c>open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)</c> and <c>fsync</c>ed through libc. On other
/// operating systems this is a no-op: Windows (NTFS) journals metadata and cannot open a directory
/// for flushing through these calls, and macOS would need <c>F_FULLFSYNC</c>, which this library does
/// not do yet. On those systems a power loss right after a segment is created or a file is renamed
/// may lose that directory change.
/// </remarks>
internal static partial class DirectorySync
{
    private const int ORdOnly = 0;
    private const int OCloExec = 0x80000;
    private const int EIntr = 4;

    public static void Sync(string directory)
    {
        if (!OperatingSystem.IsLinux())
            return;
        var flags = ORdOnly | OCloExec | ODirectory;
        int fd;
        do
        {
            fd = Open(directory, flags);
        }
        while (fd < 0 && Marshal.GetLastPInvokeError() == EIntr);
        if (fd < 0)
            throw Error("open", directory);
        try
        {
            int result;
            do
            {
                result = FSync(fd);
            }
            while (result < 0 && Marshal.GetLastPInvokeError() == EIntr);
            if (result < 0)
                throw Error("fsync", directory);
        }
        finally
        {
            _ = Close(fd);
        }
    }

    // O_DIRECTORY differs by architecture: 0x10000 on x86/x64 (and most others), 0x4000 on ARM.
    // 0 (plain O_RDONLY) still opens a directory; O_DIRECTORY only adds the "is a directory" check.
    private static int ODirectory => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 or Architecture.X86 => 0x10000,
        Architecture.Arm or Architecture.Arm64 or Architecture.Armv6 => 0x4000,
        _ => 0,
    };

    private static IOException Error(string call, string directory)
    {
        var errno = Marshal.GetLastPInvokeError();
        return new IOException($"{call}() on directory '{directory}' failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FSync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
