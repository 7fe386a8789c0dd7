namespace Raft;

/// <summary>
/// The replicated table of client sessions (dissertation §6.3): per client, the results of its
/// recent commands by sequence number, so that a command applied once is never applied again.
/// </summary>
/// <remarks>
/// Owned by the apply loop, which changes it only while applying session entries, in log order:
/// every replica holds the same table after the same entries. Nothing here reads a clock: time is
/// the log time, the highest timestamp leaders wrote into the session entries applied so far.
/// Invariants: every session in <see cref="_sessions"/> is in <see cref="_byActivity"/> under its
/// LastActivity; a session's results all have sequence numbers at or above its LowestKept, and its
/// Bytes is the sum of their sizes plus <see cref="ResultOverhead"/> each.
/// </remarks>
internal sealed class SessionTable
{
    /// <summary>What each kept result costs against <see cref="SessionOptions.MaxResultBytesPerSession"/> besides its bytes.</summary>
    public const int ResultOverhead = 16;

    private const int FormatVersion = 1;

    private readonly Dictionary<long, ClientSession> _sessions = [];
    private readonly SortedSet<(long LastActivity, long Id)> _byActivity = [];

    /// <summary>Log time, Unix milliseconds: never goes back, even when a new leader's clock is behind.</summary>
    public long LogTime { get; private set; }

    // The limits of the latest registration applied (0 before the first).
    public long TimeoutMs { get; private set; }

    public int MaxSessions { get; private set; }

    public int MaxResultBytes { get; private set; }

    public int Count => _sessions.Count;

    /// <summary>Whether no session entry was ever applied (a snapshot then needs no session section).</summary>
    public bool IsPristine => _sessions.Count == 0 && LogTime == 0 && MaxSessions == 0;

    public enum Verdict
    {
        /// <summary>A new command: apply it, then <see cref="Record"/> its result.</summary>
        Apply,

        /// <summary>Applied before: answer with the kept result.</summary>
        Duplicate,

        /// <summary>The session is unknown or expired.</summary>
        Expired,

        /// <summary>Below the oldest result the session keeps.</summary>
        Stale,
    }

    public void Clear()
    {
        _sessions.Clear();
        _byActivity.Clear();
        LogTime = 0;
        TimeoutMs = 0;
        MaxSessions = 0;
        MaxResultBytes = 0;
    }

    /// <summary>Registers the session opened by the entry at <paramref name="index"/>; its client id is that index.</summary>
    /// <returns>How many live sessions were evicted to make room.</returns>
    public int Open(long index, in SessionEntry entry)
    {
        Advance(entry.Timestamp);
        TimeoutMs = entry.TimeoutMs;
        MaxSessions = entry.MaxSessions;
        MaxResultBytes = entry.MaxResultBytes;
        // Expired sessions go first, so that only live ones count against MaxSessions (a replica
        // that purged them earlier and one that did not evict the same sessions).
        PurgeExpired();
        var evicted = 0;
        while (_sessions.Count >= MaxSessions)
        {
            Remove(_byActivity.Min.Id);
            evicted++;
        }
        var session = new ClientSession(index) { LastActivity = LogTime, LowestKept = 1 };
        _sessions.Add(index, session);
        _byActivity.Add((session.LastActivity, index));
        return evicted;
    }

    /// <summary>Decides what a session command gets; records the client's acknowledgements and its activity.</summary>
    public Verdict Check(in SessionEntry entry, out byte[]? kept, out long lowestKept)
    {
        kept = null;
        lowestKept = 0;
        Advance(entry.Timestamp);
        if (!_sessions.TryGetValue(entry.ClientId, out var session) || IsExpired(session))
        {
            PurgeExpired();
            return Verdict.Expired;
        }
        _byActivity.Remove((session.LastActivity, session.Id));
        session.LastActivity = LogTime;
        _byActivity.Add((session.LastActivity, session.Id));
        PurgeExpired();
        // The client no longer waits for anything below LowestPending: those results can go.
        if (entry.LowestPending > session.LowestKept)
        {
            session.LowestKept = entry.LowestPending;
            while (session.Results.Count > 0 && session.Results.Keys.First() is var first && first < session.LowestKept)
                DropResult(session, first);
        }
        if (session.Results.TryGetValue(entry.Sequence, out kept))
            return Verdict.Duplicate;
        lowestKept = session.LowestKept;
        return entry.Sequence < session.LowestKept ? Verdict.Stale : Verdict.Apply;
    }

    /// <summary>Keeps the result of a command just applied; drops the oldest results beyond the byte limit.</summary>
    public void Record(long clientId, long sequence, byte[] result)
    {
        var session = _sessions[clientId];
        session.Results.Add(sequence, result);
        session.Bytes += result.Length + ResultOverhead;
        while (session.Bytes > MaxResultBytes && session.Results.Count > 0)
        {
            var oldest = session.Results.Keys.First();
            DropResult(session, oldest);
            session.LowestKept = Math.Max(session.LowestKept, oldest + 1);
        }
    }

    public bool Contains(long clientId) => _sessions.ContainsKey(clientId);

    private static void DropResult(ClientSession session, long sequence)
    {
        session.Bytes -= session.Results[sequence].Length + ResultOverhead;
        session.Results.Remove(sequence);
    }

    private void Advance(long timestamp) => LogTime = Math.Max(LogTime, timestamp);

    private bool IsExpired(ClientSession session) => LogTime - session.LastActivity > TimeoutMs;

    private void PurgeExpired()
    {
        while (_byActivity.Count > 0 && LogTime - _byActivity.Min.LastActivity > TimeoutMs)
            Remove(_byActivity.Min.Id);
    }

    private void Remove(long id)
    {
        var session = _sessions[id];
        _sessions.Remove(id);
        _byActivity.Remove((session.LastActivity, id));
    }

    // ------------------------------------------------------------------ snapshots

    public void WriteTo(Stream destination)
    {
        using var writer = new BinaryWriter(destination, System.Text.Encoding.UTF8, leaveOpen: true);
        writer.Write(FormatVersion);
        writer.Write(LogTime);
        writer.Write(TimeoutMs);
        writer.Write(MaxSessions);
        writer.Write(MaxResultBytes);
        writer.Write(_sessions.Count);
        foreach (var (id, session) in _sessions.OrderBy(p => p.Key))
        {
            writer.Write(id);
            writer.Write(session.LastActivity);
            writer.Write(session.LowestKept);
            writer.Write(session.Results.Count);
            foreach (var (sequence, result) in session.Results)
            {
                writer.Write(sequence);
                writer.Write(result.Length);
                writer.Write(result);
            }
        }
    }

    /// <summary>Replaces the table with one written by <see cref="WriteTo"/>.</summary>
    /// <exception cref="InvalidDataException">The bytes are not a session table this version reads.</exception>
    public void ReadFrom(ReadOnlySpan<byte> data)
    {
        Clear();
        var reader = new SpanReader(data);
        var version = reader.Int32();
        if (version != FormatVersion)
            throw new InvalidDataException($"The snapshot's session table has format version {version}; this library reads version {FormatVersion}.");
        LogTime = reader.Int64();
        TimeoutMs = reader.Int64();
        MaxSessions = reader.Int32();
        MaxResultBytes = reader.Int32();
        var count = reader.Count("sessions");
        for (var i = 0; i < count; i++)
        {
            var session = new ClientSession(reader.Int64()) { LastActivity = reader.Int64(), LowestKept = reader.Int64() };
            var results = reader.Count("results");
            for (var j = 0; j < results; j++)
            {
                var sequence = reader.Int64();
                var result = reader.Bytes(reader.Count("result bytes"));
                if (!session.Results.TryAdd(sequence, result) || sequence < session.LowestKept)
                    throw new InvalidDataException($"The snapshot's session table holds sequence {sequence} of session {session.Id} twice, or below its lowest kept sequence {session.LowestKept}.");
                session.Bytes += result.Length + ResultOverhead;
            }
            if (!_sessions.TryAdd(session.Id, session))
                throw new InvalidDataException($"The snapshot's session table holds session {session.Id} twice.");
            _byActivity.Add((session.LastActivity, session.Id));
        }
        if (!reader.AtEnd)
            throw new InvalidDataException("The snapshot's session table has trailing bytes.");
    }

    private ref struct SpanReader(ReadOnlySpan<byte> data)
    {
        private ReadOnlySpan<byte> _data = data;

        public readonly bool AtEnd => _data.IsEmpty;

        public int Int32() => System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(Take(4));

        public long Int64() => System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(Take(8));

        public int Count(string what)
        {
            var count = Int32();
            if (count < 0 || count > _data.Length)
                throw new InvalidDataException($"The snapshot's session table claims {count} {what} with {_data.Length} bytes left.");
            return count;
        }

        public byte[] Bytes(int length) => Take(length).ToArray();

        private ReadOnlySpan<byte> Take(int length)
        {
            if (_data.Length < length)
                throw new InvalidDataException("The snapshot's session table is truncated.");
            var taken = _data[..length];
            _data = _data[length..];
            return taken;
        }
    }

    private sealed class ClientSession(long id)
    {
        public long Id { get; } = id;

        public long LastActivity { get; set; }

        // Sequence numbers below it are not applied again (acknowledged by the client, or their
        // results dropped for the byte limit).
        public long LowestKept { get; set; }

        public SortedDictionary<long, byte[]> Results { get; } = [];

        public long Bytes { get; set; }
    }
}
