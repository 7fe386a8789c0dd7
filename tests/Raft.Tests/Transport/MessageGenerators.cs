using FsCheck;
using FsCheck.Fluent;

namespace Raft.Tests.Transport;

/// <summary>FsCheck generators for every wire message, with edge values mixed in.</summary>
public static class MessageGenerators
{
    public static readonly Gen<int> AnyInt = Gen.Frequency(
        (1, Gen.Elements(0, 1, -1, int.MaxValue, int.MinValue)),
        (3, Gen.Choose(int.MinValue, int.MaxValue)),
        (2, Gen.Choose(1, 7)));

    public static readonly Gen<long> AnyLong = Gen.Frequency(
        (1, Gen.Elements(0L, 1L, -1L, long.MaxValue, long.MinValue)),
        (3, from hi in Gen.Choose(int.MinValue, int.MaxValue)
            from lo in Gen.Choose(int.MinValue, int.MaxValue)
            select ((long)hi << 32) | (uint)lo),
        (2, Gen.Choose(0, 10_000).Select(i => (long)i)));

    public static readonly Gen<bool> AnyBool = Gen.Elements(true, false);

    public static readonly Gen<byte[]> Payload = Gen.Sized(size =>
        from length in Gen.Frequency((1, Gen.Constant(0)), (4, Gen.Choose(0, Math.Max(1, size) * 8)))
        from bytes in Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b), length)
        select bytes);

    public static readonly Gen<LogEntry> Entry =
        from index in AnyLong
        from term in AnyLong
        from kind in Gen.Elements(EntryKind.Command, EntryKind.NoOp, EntryKind.Configuration)
        from data in Payload
        select new LogEntry(index, term, kind, data);

    public static readonly Gen<RequestVote> RequestVote =
        from sender in AnyInt
        from receiver in AnyInt
        from term in AnyLong
        from lastIndex in AnyLong
        from lastTerm in AnyLong
        from preVote in AnyBool
        from transfer in AnyBool
        select new RequestVote(sender, receiver, term, lastIndex, lastTerm, preVote, transfer);

    public static readonly Gen<RequestVoteResponse> RequestVoteResponse =
        from sender in AnyInt
        from receiver in AnyInt
        from term in AnyLong
        from granted in AnyBool
        from preVote in AnyBool
        select new RequestVoteResponse(sender, receiver, term, granted, preVote);

    public static readonly Gen<AppendEntries> AppendEntries =
        from sender in AnyInt
        from receiver in AnyInt
        from term in AnyLong
        from prevIndex in AnyLong
        from prevTerm in AnyLong
        from count in Gen.Frequency((1, Gen.Constant(0)), (4, Gen.Choose(1, 20)))
        from entries in Gen.ArrayOf(Entry, count)
        from commit in AnyLong
        from readSequence in AnyLong
        select new AppendEntries(sender, receiver, term, prevIndex, prevTerm, entries, commit, readSequence);

    public static readonly Gen<AppendEntriesResponse> AppendEntriesResponse =
        from sender in AnyInt
        from receiver in AnyInt
        from term in AnyLong
        from success in AnyBool
        from match in AnyLong
        from hintIndex in AnyLong
        from hintTerm in AnyLong
        from readSequence in AnyLong
        select new AppendEntriesResponse(sender, receiver, term, success, match, hintIndex, hintTerm, readSequence);

    public static readonly Gen<TimeoutNow> TimeoutNow =
        from sender in AnyInt
        from receiver in AnyInt
        from term in AnyLong
        select new TimeoutNow(sender, receiver, term);

    /// <summary>Valid configurations: 1 to 9 distinct positive ids, some learners, some addresses (non-ASCII too), sometimes joint.</summary>
    public static readonly Gen<ClusterConfiguration> Configuration =
        from count in Gen.Choose(1, 9)
        from ids in Gen.ArrayOf(Gen.Choose(1, int.MaxValue), count)
        from learner in Gen.ArrayOf(AnyBool, count)
        from addressed in Gen.ArrayOf(Gen.Elements(0, 1, 2), count)
        from outgoingCount in Gen.Frequency((3, Gen.Constant(0)), (1, Gen.Choose(1, 5)))
        select MakeConfiguration(ids, learner, addressed, outgoingCount);

    private static ClusterConfiguration MakeConfiguration(int[] ids, bool[] learner, int[] addressed, int outgoingCount)
    {
        var distinct = ids.Distinct().ToArray();
        var members = distinct.Select((id, i) => new ClusterMember(
            id,
            addressed[i] switch { 0 => null, 1 => $"10.0.0.{i}:{7000 + i}", _ => $"nœud-{id}.example:9" },
            i == 0 || !learner[i] ? MemberRole.Voter : MemberRole.Learner));
        var outgoing = distinct.Take(outgoingCount).Select(id => ClusterMember.Voter(id, $"old-{id}:1"));
        return new ClusterConfiguration(members, outgoing);
    }

    public static readonly Gen<InstallSnapshot> InstallSnapshot =
        from sender in AnyInt
        from receiver in AnyInt
        from term in AnyLong
        from snapshotIndex in AnyLong
        from snapshotTerm in AnyLong
        from configuration in Configuration
        from offset in AnyLong
        from data in Payload
        from done in AnyBool
        select new InstallSnapshot(sender, receiver, term, snapshotIndex, snapshotTerm, configuration, offset, data, done);

    public static readonly Gen<InstallSnapshotResponse> InstallSnapshotResponse =
        from sender in AnyInt
        from receiver in AnyInt
        from term in AnyLong
        from snapshotIndex in AnyLong
        from nextOffset in AnyLong
        from success in AnyBool
        from done in AnyBool
        select new InstallSnapshotResponse(sender, receiver, term, snapshotIndex, nextOffset, success, done);

    public static readonly Gen<ForwardRequest> ForwardRequest =
        from sender in AnyInt
        from receiver in AnyInt
        from term in AnyLong
        from requestId in AnyLong
        from isRead in Gen.Frequency((1, Gen.Constant(true)), (3, Gen.Constant(false)))
        from count in isRead ? Gen.Constant(0) : Gen.Frequency((1, Gen.Constant(0)), (4, Gen.Choose(1, 20)))
        from commands in Gen.ArrayOf(Payload, count)
        from traced in AnyBool
        from traceSeed in Gen.Choose(0, int.MaxValue)
        from withKinds in AnyBool
        from kinds in Gen.ArrayOf(Gen.Elements(EntryKind.Command, EntryKind.Session), count)
        select new ForwardRequest(sender, receiver, term, requestId, isRead, commands.Select(c => (ReadOnlyMemory<byte>)c).ToArray())
        {
            TraceParent = traced ? TraceParentFrom(traceSeed) : null,
            Kinds = withKinds && !isRead ? kinds : null,
        };

    /// <summary>A valid W3C traceparent (version 00, ids not all zero), derived from <paramref name="seed"/>.</summary>
    public static string TraceParentFrom(int seed)
    {
        var random = new Random(seed);
        var bytes = new byte[25];
        random.NextBytes(bytes);
        bytes[0] |= 1; // never an all-zero trace id
        bytes[16] |= 1; // nor span id
        return $"00-{Convert.ToHexStringLower(bytes.AsSpan(0, 16))}-{Convert.ToHexStringLower(bytes.AsSpan(16, 8))}-{bytes[24] & 1:x2}";
    }

    public static readonly Gen<ForwardResponse> ForwardResponse =
        from sender in AnyInt
        from receiver in AnyInt
        from term in AnyLong
        from requestId in AnyLong
        from status in Gen.Elements(ForwardStatus.Accepted, ForwardStatus.NotLeader, ForwardStatus.Busy, ForwardStatus.Transferring)
        from index in AnyLong
        from count in Gen.Frequency((1, Gen.Elements(0, int.MaxValue)), (3, Gen.Choose(0, 100)))
        from leaderId in AnyInt
        select new ForwardResponse(sender, receiver, term, requestId, status, index, count, leaderId);

    public static readonly Gen<RaftMessage> Any = Gen.OneOf(
        RequestVote.Select(m => (RaftMessage)m),
        RequestVoteResponse.Select(m => (RaftMessage)m),
        AppendEntries.Select(m => (RaftMessage)m),
        AppendEntriesResponse.Select(m => (RaftMessage)m),
        TimeoutNow.Select(m => (RaftMessage)m),
        InstallSnapshot.Select(m => (RaftMessage)m),
        InstallSnapshotResponse.Select(m => (RaftMessage)m),
        ForwardRequest.Select(m => (RaftMessage)m),
        ForwardResponse.Select(m => (RaftMessage)m));

    /// <summary>One sample of every message type, addressed from <paramref name="from"/> to <paramref name="to"/>.</summary>
    public static IReadOnlyList<RaftMessage> OneOfEach(int from, int to)
    {
        RaftMessage[] samples =
        [
            RequestVote.Sample(10, 1)[0],
            RequestVoteResponse.Sample(10, 1)[0],
            AppendEntries.Sample(10, 1)[0],
            AppendEntriesResponse.Sample(10, 1)[0],
            TimeoutNow.Sample(10, 1)[0],
            InstallSnapshot.Sample(10, 1)[0],
            InstallSnapshotResponse.Sample(10, 1)[0],
            ForwardRequest.Sample(10, 1)[0],
            ForwardResponse.Sample(10, 1)[0],
        ];
        return samples.Select(m => m with { From = from, To = to }).ToArray();
    }
}

/// <summary>Registers the generators with FsCheck.Xunit's <c>[Property(Arbitrary = ...)]</c>.</summary>
public static class MessageArbitraries
{
    public static Arbitrary<RequestVote> RequestVote() => MessageGenerators.RequestVote.ToArbitrary();

    public static Arbitrary<RequestVoteResponse> RequestVoteResponse() => MessageGenerators.RequestVoteResponse.ToArbitrary();

    public static Arbitrary<AppendEntries> AppendEntries() => MessageGenerators.AppendEntries.ToArbitrary();

    public static Arbitrary<AppendEntriesResponse> AppendEntriesResponse() => MessageGenerators.AppendEntriesResponse.ToArbitrary();

    public static Arbitrary<TimeoutNow> TimeoutNow() => MessageGenerators.TimeoutNow.ToArbitrary();

    public static Arbitrary<InstallSnapshot> InstallSnapshot() => MessageGenerators.InstallSnapshot.ToArbitrary();

    public static Arbitrary<InstallSnapshotResponse> InstallSnapshotResponse() => MessageGenerators.InstallSnapshotResponse.ToArbitrary();

    public static Arbitrary<ForwardRequest> ForwardRequest() => MessageGenerators.ForwardRequest.ToArbitrary();

    public static Arbitrary<ForwardResponse> ForwardResponse() => MessageGenerators.ForwardResponse.ToArbitrary();

    public static Arbitrary<RaftMessage> RaftMessage() => MessageGenerators.Any.ToArbitrary();
}
