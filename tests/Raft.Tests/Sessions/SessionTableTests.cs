using System.Buffers;
using System.Text;

namespace Raft.Tests.Sessions;

/// <summary>The replicated session table on its own: what a command gets, by log time only (dissertation §6.3).</summary>
public sealed class SessionTableTests
{
    private const long Timeout = 5_000;

    private static SessionEntry Open(long timestamp, int maxSessions = 100, int maxResultBytes = 1_000, long timeout = Timeout) =>
        new(SessionOp.Open, timestamp, timeout, maxSessions, maxResultBytes, 0, 0, 0, default);

    private static SessionEntry Command(long client, long sequence, long timestamp, long lowestPending = 1) =>
        new(SessionOp.Command, timestamp, 0, 0, 0, client, sequence, lowestPending, new byte[] { 1 });

    private static byte[] Result(string text) => SessionResultCodec.Encode(text, null, out _);

    [Fact]
    public void A_command_applied_once_is_answered_with_its_first_result_afterwards()
    {
        var table = new SessionTable();
        table.Open(7, Open(1_000));

        Assert.Equal(SessionTable.Verdict.Apply, table.Check(Command(7, 1, 1_001), out _, out _));
        table.Record(7, 1, Result("first"));

        Assert.Equal(SessionTable.Verdict.Duplicate, table.Check(Command(7, 1, 1_002), out var kept, out _));
        Assert.Equal("first", SessionResultCodec.Decode(kept, null));
        Assert.Equal(SessionTable.Verdict.Apply, table.Check(Command(7, 2, 1_003), out _, out _));
    }

    [Fact]
    public void An_unknown_session_is_refused()
    {
        var table = new SessionTable();
        table.Open(7, Open(1_000));
        Assert.Equal(SessionTable.Verdict.Expired, table.Check(Command(8, 1, 1_001), out _, out _));
    }

    [Fact]
    public void A_session_expires_by_log_time_after_its_timeout_without_a_command()
    {
        var table = new SessionTable();
        table.Open(1, Open(1_000));
        table.Open(2, Open(1_000));
        Assert.Equal(SessionTable.Verdict.Apply, table.Check(Command(1, 1, 1_000 + Timeout), out _, out _)); // exactly the timeout: alive
        table.Record(1, 1, Result("x"));

        // Session 2 has been idle for more than the timeout by the next entry's timestamp.
        Assert.Equal(SessionTable.Verdict.Expired, table.Check(Command(2, 1, 1_001 + Timeout), out _, out _));
        Assert.Equal(SessionTable.Verdict.Duplicate, table.Check(Command(1, 1, 1_001 + Timeout), out _, out _));
    }

    [Fact]
    public void Log_time_never_goes_back_when_a_new_leader_clock_is_behind()
    {
        var table = new SessionTable();
        table.Open(1, Open(100_000));
        table.Open(2, Open(100_000));
        // A leader whose clock is far behind stamps later entries: log time stays at 100 s, so
        // session 2 is not kept alive longer than it would have been.
        Assert.Equal(SessionTable.Verdict.Apply, table.Check(Command(1, 1, 10), out _, out _));
        Assert.Equal(100_000, table.LogTime);
        Assert.Equal(SessionTable.Verdict.Expired, table.Check(Command(2, 1, 100_001 + Timeout), out _, out _));
    }

    [Fact]
    public void Results_below_the_lowest_pending_sequence_are_dropped_and_their_retries_refused()
    {
        var table = new SessionTable();
        table.Open(1, Open(0));
        Assert.Equal(SessionTable.Verdict.Apply, table.Check(Command(1, 1, 1), out _, out _));
        table.Record(1, 1, Result("one"));
        // The client no longer waits for 1.
        Assert.Equal(SessionTable.Verdict.Apply, table.Check(Command(1, 2, 2, lowestPending: 2), out _, out _));
        table.Record(1, 2, Result("two"));

        Assert.Equal(SessionTable.Verdict.Stale, table.Check(Command(1, 1, 3), out _, out var lowest));
        Assert.Equal(2, lowest);
        Assert.Equal(SessionTable.Verdict.Duplicate, table.Check(Command(1, 2, 4, lowestPending: 2), out _, out _));
    }

    [Fact]
    public void The_oldest_results_go_beyond_the_byte_limit_and_their_retries_are_refused_not_reapplied()
    {
        var table = new SessionTable();
        // Room for two 10-byte results (each counts 16 more).
        table.Open(1, Open(0, maxResultBytes: 2 * (10 + SessionTable.ResultOverhead)));
        for (var sequence = 1; sequence <= 3; sequence++)
        {
            Assert.Equal(SessionTable.Verdict.Apply, table.Check(Command(1, sequence, sequence), out _, out _));
            table.Record(1, sequence, new byte[10]);
        }
        Assert.Equal(SessionTable.Verdict.Stale, table.Check(Command(1, 1, 10), out _, out _));
        Assert.Equal(SessionTable.Verdict.Duplicate, table.Check(Command(1, 2, 11), out _, out _));
        Assert.Equal(SessionTable.Verdict.Duplicate, table.Check(Command(1, 3, 12), out _, out _));
    }

    [Fact]
    public void A_registration_over_the_session_limit_evicts_the_least_recently_active_session()
    {
        var table = new SessionTable();
        table.Open(1, Open(0, maxSessions: 2));
        table.Open(2, Open(1, maxSessions: 2));
        Assert.Equal(SessionTable.Verdict.Apply, table.Check(Command(1, 1, 2), out _, out _)); // 1 is now the more recent
        table.Record(1, 1, Result("x"));

        Assert.Equal(1, table.Open(3, Open(3, maxSessions: 2)));

        Assert.Equal(2, table.Count);
        Assert.True(table.Contains(1));
        Assert.False(table.Contains(2));
        Assert.True(table.Contains(3));
    }

    [Fact]
    public void A_registration_drops_expired_sessions_before_it_evicts_a_live_one()
    {
        var table = new SessionTable();
        table.Open(1, Open(0, maxSessions: 2));
        table.Open(2, Open(Timeout, maxSessions: 2));
        // At Timeout + 1, session 1 has expired (idle since 0); session 2 is live.
        Assert.Equal(0, table.Open(3, Open(Timeout + 1, maxSessions: 2)));
        Assert.True(table.Contains(2));
        Assert.True(table.Contains(3));
    }

    [Fact]
    public void The_table_survives_a_round_trip_through_its_snapshot_bytes()
    {
        var table = new SessionTable();
        table.Open(1, Open(1_000));
        table.Open(2, Open(1_000));
        table.Check(Command(1, 1, 1_001), out _, out _);
        table.Record(1, 1, Result("one"));
        table.Check(Command(1, 2, 1_002, lowestPending: 2), out _, out _);
        table.Record(1, 2, Result("two"));

        using var buffer = new MemoryStream();
        table.WriteTo(buffer);
        var copy = new SessionTable();
        copy.ReadFrom(buffer.ToArray());

        Assert.Equal(table.LogTime, copy.LogTime);
        Assert.Equal(2, copy.Count);
        Assert.Equal(SessionTable.Verdict.Duplicate, copy.Check(Command(1, 2, 1_003, lowestPending: 2), out var kept, out _));
        Assert.Equal("two", SessionResultCodec.Decode(kept, null));
        Assert.Equal(SessionTable.Verdict.Stale, copy.Check(Command(1, 1, 1_004, lowestPending: 1), out _, out _));
        Assert.Equal(SessionTable.Verdict.Apply, copy.Check(Command(2, 1, 1_005), out _, out _));
    }

    [Fact]
    public void Malformed_snapshot_bytes_are_refused_with_a_reason()
    {
        var table = new SessionTable();
        table.Open(1, Open(1_000));
        table.Check(Command(1, 1, 1_001), out _, out _);
        table.Record(1, 1, Result("one"));
        using var buffer = new MemoryStream();
        table.WriteTo(buffer);
        var bytes = buffer.ToArray();

        Assert.Throws<InvalidDataException>(() => new SessionTable().ReadFrom(bytes.AsSpan(0, bytes.Length - 1)));
        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => new SessionTable().ReadFrom(bytes.AsSpan(0, 10))).Message, StringComparison.Ordinal);
        var version = (byte[])bytes.Clone();
        version[0] = 9;
        Assert.Contains("version 9", Assert.Throws<InvalidDataException>(() => new SessionTable().ReadFrom(version)).Message, StringComparison.Ordinal);
        Assert.Throws<InvalidDataException>(() => new SessionTable().ReadFrom([.. bytes, 0]));
    }
}

public sealed class SessionEntryTests
{
    [Fact]
    public void A_command_payload_round_trips_and_the_leader_stamps_time_and_limits()
    {
        var payload = SessionEntry.EncodeCommand(5, 9, 7, "abc"u8);
        Assert.True(SessionEntry.TryParse(payload, stamped: false, out var entry, out _));
        Assert.Equal((SessionOp.Command, 5L, 9L, 7L, 0L), (entry.Op, entry.ClientId, entry.Sequence, entry.LowestPending, entry.Timestamp));
        Assert.Equal("abc", Encoding.UTF8.GetString(entry.Command.Span));

        var stamped = SessionEntry.Stamp(payload, 123, new SessionOptions());
        Assert.True(SessionEntry.TryParse(stamped, stamped: true, out entry, out _));
        Assert.Equal(123, entry.Timestamp);
        Assert.Equal(0, payload[1]); // the proposer's buffer is left alone

        var open = SessionEntry.Stamp(SessionEntry.EncodeOpen(), 456, new SessionOptions { Timeout = TimeSpan.FromSeconds(30), MaxSessions = 3, MaxResultBytesPerSession = 99 });
        Assert.True(SessionEntry.TryParse(open, stamped: true, out entry, out _));
        Assert.Equal((SessionOp.Open, 456L, 30_000L, 3, 99), (entry.Op, entry.Timestamp, entry.TimeoutMs, entry.MaxSessions, entry.MaxResultBytes));
    }

    public static TheoryData<byte[], string> Malformed => new()
    {
        { [], "shorter than its 9-byte header" },
        { [3, 0, 0, 0, 0, 0, 0, 0, 0], "unknown operation 3" },
        { [1, 0, 0, 0, 0, 0, 0, 0, 0], "not 25" },
        { SessionEntry.EncodeCommand(5, 9, 7, "abc"u8)[..20], "shorter than its 33-byte header" },
        { SessionEntry.EncodeCommand(0, 9, 7, [])[..], "all must be positive" },
        { SessionEntry.EncodeCommand(5, 0, 0, []), "all must be positive" },
        { SessionEntry.EncodeCommand(5, 3, 4, []), "lowest pending at most the sequence" },
        { SessionEntry.EncodeOpen(), "invalid limits" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void A_malformed_payload_is_refused_with_its_reason(byte[] payload, string reason)
    {
        Assert.False(SessionEntry.TryParse(payload, stamped: true, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }
}

public sealed class SessionResultCodecTests
{
    public static TheoryData<object?> Builtin => new() { null, "text", true, 42, 42L, 1.5, Guid.Parse("9a3c1f0e-0000-4000-8000-000000000001"), CommittedWithoutResult.Instance };

    [Theory]
    [MemberData(nameof(Builtin))]
    public void Built_in_results_round_trip(object? result)
    {
        var bytes = SessionResultCodec.Encode(result, null, out var saved);
        Assert.True(saved);
        Assert.Equal(result, SessionResultCodec.Decode(bytes, null));
    }

    [Fact]
    public void Byte_results_come_back_as_arrays()
    {
        Assert.Equal(new byte[] { 1, 2 }, SessionResultCodec.Decode(SessionResultCodec.Encode(new ReadOnlyMemory<byte>([1, 2]), null, out _), null));
        Assert.Equal(new byte[] { 3 }, SessionResultCodec.Decode(SessionResultCodec.Encode(new byte[] { 3 }, null, out _), null));
    }

    [Fact]
    public void A_result_no_encoding_knows_is_kept_as_committed_without_result()
    {
        var bytes = SessionResultCodec.Encode(new object(), null, out var saved);
        Assert.False(saved);
        Assert.Same(CommittedWithoutResult.Instance, SessionResultCodec.Decode(bytes, null));
    }

    [Fact]
    public void The_state_machine_serializer_is_asked_first()
    {
        var serializer = new PointSerializer();
        var bytes = SessionResultCodec.Encode(new Point(3, 4), serializer, out var saved);
        Assert.True(saved);
        Assert.Equal(new Point(3, 4), SessionResultCodec.Decode(bytes, serializer));
        Assert.Equal("still built in", SessionResultCodec.Decode(SessionResultCodec.Encode("still built in", serializer, out _), serializer));
        Assert.Throws<InvalidOperationException>(() => SessionResultCodec.Decode(bytes, null));
    }

    private sealed record Point(int X, int Y);

    private sealed class PointSerializer : ISessionResultSerializer
    {
        public bool TryWriteResult(object? result, IBufferWriter<byte> destination)
        {
            if (result is not Point p)
                return false;
            destination.Write([(byte)p.X, (byte)p.Y]);
            return true;
        }

        public object? ReadResult(ReadOnlySpan<byte> data) => new Point(data[0], data[1]);
    }
}

public sealed class SessionSnapshotTests
{
    [Fact]
    public async Task A_snapshot_written_before_sessions_existed_reaches_the_state_machine_whole()
    {
        var old = Encoding.UTF8.GetBytes("a snapshot from before sessions, longer than the magic");
        var table = new SessionTable();
        table.Open(1, new SessionEntry(SessionOp.Open, 5, 1000, 10, 10, 0, 0, 0, default));

        var data = await SessionSnapshot.ReadAsync(new MemoryStream(old), table, CancellationToken.None);

        Assert.Equal(old, await ReadAllAsync(data));
        Assert.True(table.IsPristine);
    }

    [Fact]
    public async Task A_short_snapshot_without_sessions_is_handed_on_whole()
    {
        var data = await SessionSnapshot.ReadAsync(new MemoryStream([1, 2, 3]), new SessionTable(), CancellationToken.None);
        Assert.Equal(new byte[] { 1, 2, 3 }, await ReadAllAsync(data));
    }

    [Fact]
    public async Task The_session_section_comes_back_ahead_of_the_state_machine_data()
    {
        var table = new SessionTable();
        table.Open(1, new SessionEntry(SessionOp.Open, 5, 1000, 10, 100, 0, 0, 0, default));
        using var buffer = new MemoryStream();
        await SessionSnapshot.WriteAsync(buffer, table, CancellationToken.None);
        buffer.Write("state"u8);
        buffer.Position = 0;

        var restored = new SessionTable();
        var data = await SessionSnapshot.ReadAsync(buffer, restored, CancellationToken.None);

        Assert.Equal("state", Encoding.UTF8.GetString(await ReadAllAsync(data)));
        Assert.True(restored.Contains(1));
        Assert.Equal(5, restored.LogTime);
    }

    [Fact]
    public async Task A_truncated_session_section_is_refused()
    {
        var table = new SessionTable();
        table.Open(1, new SessionEntry(SessionOp.Open, 5, 1000, 10, 100, 0, 0, 0, default));
        using var buffer = new MemoryStream();
        await SessionSnapshot.WriteAsync(buffer, table, CancellationToken.None);
        var bytes = buffer.ToArray();

        await Assert.ThrowsAsync<InvalidDataException>(async () => await SessionSnapshot.ReadAsync(new MemoryStream(bytes[..^2]), new SessionTable(), CancellationToken.None));
        await Assert.ThrowsAsync<InvalidDataException>(async () => await SessionSnapshot.ReadAsync(new MemoryStream(bytes[..18]), new SessionTable(), CancellationToken.None));
    }

    private static async Task<byte[]> ReadAllAsync(Stream stream)
    {
        using var copy = new MemoryStream();
        await stream.CopyToAsync(copy);
        return copy.ToArray();
    }
}
