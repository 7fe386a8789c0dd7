using Microsoft.Extensions.Logging;

namespace Raft.Tests.Storage;

/// <summary>A fresh directory under the system temp folder, deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "raft-storage-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>The segment files, in index order.</summary>
    public string[] Segments() => Directory.GetFiles(Path, "*.log").Order(StringComparer.Ordinal).ToArray();

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>Collects log messages so tests can assert on warnings.</summary>
internal sealed class ListLogger : ILogger
{
    public List<(LogLevel Level, EventId EventId, string Message)> Entries { get; } = [];

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (Entries)
            Entries.Add((logLevel, eventId, formatter(state, exception)));
    }

    public bool Has(int eventId) => Entries.Exists(e => e.EventId.Id == eventId);
}

internal static class LogAssert
{
    /// <summary>An entry with a payload derived from its index and term (so a rewritten entry differs).</summary>
    public static LogEntry Entry(long index, long term, int size = 16, EntryKind kind = EntryKind.Command)
    {
        var data = new byte[size];
        for (var i = 0; i < size; i++)
            data[i] = (byte)((index * 31) + (term * 7) + i);
        return new LogEntry(index, term, kind, data);
    }

    public static LogEntry[] Entries(long first, long last, long term, int size = 16)
    {
        var entries = new LogEntry[last - first + 1];
        for (var i = 0; i < entries.Length; i++)
            entries[i] = Entry(first + i, term, size);
        return entries;
    }

    public static List<LogEntry> Read(ILogStore store, long startIndex, long endIndex, long maxBytes = long.MaxValue)
    {
        var list = new List<LogEntry>();
        store.ReadEntries(startIndex, endIndex, maxBytes, list);
        return list;
    }

    public static List<LogEntry> ReadAll(ILogStore store) => Read(store, store.FirstIndex, store.LastIndex + 1);

    /// <summary>Entries compare by content: LogEntry's own equality compares payload references.</summary>
    public static string Describe(LogEntry e) => $"{e.Index}/{e.Term}/{e.Kind}/{Convert.ToHexString(e.Data.Span)}";

    public static void Equal(IEnumerable<LogEntry> expected, IEnumerable<LogEntry> actual) =>
        Assert.Equal(expected.Select(Describe).ToArray(), actual.Select(Describe).ToArray());

    /// <summary>Asserts that two stores hold the same log, terms and hard state.</summary>
    public static void SameState(ILogStore expected, ILogStore actual)
    {
        Assert.Equal(expected.FirstIndex, actual.FirstIndex);
        Assert.Equal(expected.LastIndex, actual.LastIndex);
        Assert.Equal(expected.HardState, actual.HardState);
        for (var i = expected.FirstIndex - 1; i <= expected.LastIndex; i++)
            Assert.Equal(expected.GetTerm(i), actual.GetTerm(i));
        Equal(ReadAll(expected), ReadAll(actual));
    }
}
