using System.Buffers.Binary;
using System.Text;

namespace Raft;

/// <summary>Whether a member votes.</summary>
public enum MemberRole : byte
{
    /// <summary>A voting member: it campaigns, votes, and counts toward commit, election and read quorums.</summary>
    Voter = 0,

    /// <summary>
    /// A non-voting member (a learner): it receives the log and snapshots like a follower, but never
    /// campaigns, and neither its votes nor its acknowledgements count toward any quorum. A new node
    /// joins as a learner, catches up, then is promoted (see <see cref="MembershipChange.Promote"/>).
    /// </summary>
    Learner = 1,
}

/// <summary>One member of a <see cref="ClusterConfiguration"/>.</summary>
/// <param name="Id">The node's id: positive, unique in the cluster.</param>
/// <param name="Address">
/// Where the node is reached (for the TCP transport "host:port"), or null when the transport finds it
/// otherwise. Carried in the configuration entry, so a restarted node knows its peers from its log.
/// At most <see cref="ClusterConfiguration.MaxAddressBytes"/> bytes of UTF-8.
/// </param>
/// <param name="Role">Whether it votes.</param>
public sealed record ClusterMember(int Id, string? Address, MemberRole Role)
{
    /// <summary>A voter with an optional address.</summary>
    /// <param name="id">The node's id.</param>
    /// <param name="address">Its address, or null.</param>
    /// <returns>The member.</returns>
    public static ClusterMember Voter(int id, string? address = null) => new(id, address, MemberRole.Voter);

    /// <summary>A learner (non-voter) with an optional address.</summary>
    /// <param name="id">The node's id.</param>
    /// <param name="address">Its address, or null.</param>
    /// <returns>The member.</returns>
    public static ClusterMember Learner(int id, string? address = null) => new(id, address, MemberRole.Learner);
}

/// <summary>
/// The members of a Raft cluster as one configuration entry of the log records them: the incoming
/// (current) members, voters and learners, and, while a change of voters is under way, the outgoing
/// voters (the joint configuration C(old,new) of the dissertation, §4.3). Immutable and validated.
/// </summary>
/// <remarks>
/// <para>While joint (<see cref="IsJoint"/>), every decision (an election, a commit, a CheckQuorum or
/// ReadIndex round) needs a majority of <see cref="Voters"/> <b>and</b> a majority of
/// <see cref="OutgoingVoters"/>. Learners never count.</para>
/// <para>A configuration is in force on a node as soon as its entry is in the node's log (not when it
/// commits); a conflicting leader that truncates the entry rolls it back.</para>
/// <para>Binary form (<see cref="Encode"/>, little-endian): version byte (1); incoming member count
/// (u16), then per member: id (i32), flags (u8: bit 0 learner, bit 1 has address), and when it has
/// an address its length (u16) and UTF-8 bytes; outgoing voter count (u16) and the same per-member
/// layout (learner flag never set). Decoding is strict: any other byte sequence is refused with a
/// reason (<see cref="TryDecode"/>).</para>
/// </remarks>
public sealed class ClusterConfiguration : IEquatable<ClusterConfiguration>
{
    /// <summary>The largest address, in UTF-8 bytes.</summary>
    public const int MaxAddressBytes = 1024;

    /// <summary>The most members one half of a configuration may list.</summary>
    public const int MaxMembers = 1000;

    private const byte FormatVersion = 1;
    private const byte LearnerFlag = 1;
    private const byte AddressFlag = 2;

    private readonly ClusterMember[] _members;
    private readonly ClusterMember[] _outgoing;

    /// <summary>Creates a configuration, validating it.</summary>
    /// <param name="members">The incoming (current) members: voters and learners.</param>
    /// <param name="outgoing">While joint, the outgoing configuration's voters; null or empty otherwise.</param>
    /// <exception cref="ArgumentException">An id is not positive or appears twice in one half, an outgoing member is a learner, there is no voter, an address is too long, or a half lists more than <see cref="MaxMembers"/>.</exception>
    public ClusterConfiguration(IEnumerable<ClusterMember> members, IEnumerable<ClusterMember>? outgoing = null)
    {
        ArgumentNullException.ThrowIfNull(members);
        _members = [.. members];
        _outgoing = outgoing is null ? [] : [.. outgoing];
        if (Problem(_members, _outgoing) is { } problem)
            throw new ArgumentException(problem, nameof(members));
    }

    private ClusterConfiguration(ClusterMember[] members, ClusterMember[] outgoing, bool _)
    {
        _members = members;
        _outgoing = outgoing;
    }

    /// <summary>A configuration of voters without addresses (how <see cref="RaftOptions.Members"/> bootstraps a cluster).</summary>
    /// <param name="voters">The voters' ids.</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="ArgumentException">The ids are invalid (see the constructor).</exception>
    public static ClusterConfiguration FromVoters(IEnumerable<int> voters)
    {
        ArgumentNullException.ThrowIfNull(voters);
        return new ClusterConfiguration(voters.Select(id => ClusterMember.Voter(id)));
    }

    /// <summary>
    /// The configuration of a node that knows none yet (<see cref="RaftOptions.Join"/>): no members.
    /// Such a node never campaigns and waits for a leader to add it.
    /// </summary>
    public static ClusterConfiguration Empty { get; } = new([], [], false);

    /// <summary>The incoming (current) members, voters and learners, in the order given.</summary>
    public IReadOnlyList<ClusterMember> Members => _members;

    /// <summary>While joint, the outgoing configuration's voters; empty otherwise.</summary>
    public IReadOnlyList<ClusterMember> Outgoing => _outgoing;

    /// <summary>Whether this is a joint configuration C(old,new): decisions need majorities of both halves.</summary>
    public bool IsJoint => _outgoing.Length > 0;

    /// <summary>Whether this configuration lists nobody (<see cref="Empty"/>).</summary>
    public bool IsEmpty => _members.Length == 0 && _outgoing.Length == 0;

    /// <summary>The incoming voters' ids.</summary>
    public IReadOnlyList<int> Voters => [.. _members.Where(m => m.Role == MemberRole.Voter).Select(m => m.Id)];

    /// <summary>The learners' ids.</summary>
    public IReadOnlyList<int> Learners => [.. _members.Where(m => m.Role == MemberRole.Learner).Select(m => m.Id)];

    /// <summary>The outgoing voters' ids (empty unless joint).</summary>
    public IReadOnlyList<int> OutgoingVoters => [.. _outgoing.Select(m => m.Id)];

    /// <summary>Every id either half lists, voters and learners, each once.</summary>
    public IReadOnlyList<int> AllIds => [.. _members.Select(m => m.Id).Concat(_outgoing.Select(m => m.Id)).Distinct()];

    /// <summary>Whether <paramref name="id"/> is listed by either half, as voter or learner.</summary>
    /// <param name="id">A node id.</param>
    /// <returns>True when listed.</returns>
    public bool Contains(int id) => Find(id) is not null;

    /// <summary>Whether <paramref name="id"/> votes in either half (so it may campaign).</summary>
    /// <param name="id">A node id.</param>
    /// <returns>True when it is a voter of the incoming or the outgoing half.</returns>
    public bool IsVoter(int id)
    {
        foreach (var m in _members)
        {
            if (m.Id == id && m.Role == MemberRole.Voter)
                return true;
        }
        foreach (var m in _outgoing)
        {
            if (m.Id == id)
                return true;
        }
        return false;
    }

    /// <summary>The member with <paramref name="id"/> (the incoming half's entry first), or null.</summary>
    /// <param name="id">A node id.</param>
    /// <returns>The member, or null.</returns>
    public ClusterMember? Find(int id)
    {
        foreach (var m in _members)
        {
            if (m.Id == id)
                return m;
        }
        foreach (var m in _outgoing)
        {
            if (m.Id == id)
                return m;
        }
        return null;
    }

    /// <summary>The configuration that ends a joint change: the incoming members alone.</summary>
    /// <returns>This configuration without its outgoing half (itself when not joint).</returns>
    public ClusterConfiguration LeaveJoint() => IsJoint ? new ClusterConfiguration(_members, [], false) : this;

    /// <summary>Every member except <paramref name="self"/>, with its address (the map <see cref="ITransport.UpdatePeers"/> takes).</summary>
    /// <param name="self">The local node's id.</param>
    /// <returns>The peers.</returns>
    public IReadOnlyDictionary<int, string?> PeersOf(int self)
    {
        var peers = new Dictionary<int, string?>();
        foreach (var m in _outgoing)
        {
            if (m.Id != self)
                peers[m.Id] = m.Address;
        }
        foreach (var m in _members)
        {
            if (m.Id != self)
                peers[m.Id] = m.Address ?? (peers.TryGetValue(m.Id, out var old) ? old : null);
        }
        return peers;
    }

    /// <summary>Encodes this configuration as the payload of an <see cref="EntryKind.Configuration"/> entry (see the remarks for the layout).</summary>
    /// <returns>The bytes.</returns>
    public byte[] Encode()
    {
        var size = 1 + 2 + 2;
        foreach (var m in _members.Concat(_outgoing))
            size += 5 + (m.Address is null ? 0 : 2 + Encoding.UTF8.GetByteCount(m.Address));
        var buffer = new byte[size];
        var span = buffer.AsSpan();
        span[0] = FormatVersion;
        var at = 1;
        WriteHalf(span, ref at, _members);
        WriteHalf(span, ref at, _outgoing);
        return buffer;
    }

    private static void WriteHalf(Span<byte> span, ref int at, ClusterMember[] half)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(span[at..], (ushort)half.Length);
        at += 2;
        foreach (var m in half)
        {
            BinaryPrimitives.WriteInt32LittleEndian(span[at..], m.Id);
            at += 4;
            span[at++] = (byte)((m.Role == MemberRole.Learner ? LearnerFlag : 0) | (m.Address is null ? 0 : AddressFlag));
            if (m.Address is null)
                continue;
            var length = Encoding.UTF8.GetBytes(m.Address, span[(at + 2)..]);
            BinaryPrimitives.WriteUInt16LittleEndian(span[at..], (ushort)length);
            at += 2 + length;
        }
    }

    /// <summary>Decodes a configuration entry's payload strictly: a wrong version, a truncated or over-long payload, bad UTF-8, an unknown flag or an invalid configuration are refused. A payload listing nobody decodes as <see cref="Empty"/> (a log entry or snapshot chunk carrying it is refused by the core).</summary>
    /// <param name="data">The payload.</param>
    /// <param name="configuration">The configuration, when decoded.</param>
    /// <param name="error">Why the payload was refused, when it was.</param>
    /// <returns>Whether the payload is a valid configuration.</returns>
    public static bool TryDecode(ReadOnlySpan<byte> data, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ClusterConfiguration? configuration, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        configuration = null;
        if (data.Length < 5)
        {
            error = $"a configuration payload is at least 5 bytes, this one is {data.Length}";
            return false;
        }
        if (data[0] != FormatVersion)
        {
            error = $"unknown configuration format version {data[0]} (this library reads version {FormatVersion})";
            return false;
        }
        var at = 1;
        if (!TryReadHalf(data, ref at, outgoing: false, out var members, out error)
            || !TryReadHalf(data, ref at, outgoing: true, out var outgoing, out error))
            return false;
        if (at != data.Length)
        {
            error = $"{data.Length - at} bytes follow the configuration";
            return false;
        }
        if (members.Length == 0 && outgoing.Length == 0)
        {
            // Recorded in the snapshot of a node that joined before it applied any configuration.
            configuration = Empty;
            error = null;
            return true;
        }
        if (Problem(members, outgoing) is { } problem)
        {
            error = problem;
            return false;
        }
        configuration = new ClusterConfiguration(members, outgoing, false);
        return true;
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static bool TryReadHalf(ReadOnlySpan<byte> data, ref int at, bool outgoing, out ClusterMember[] half, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        half = [];
        var which = outgoing ? "outgoing" : "incoming";
        if (data.Length - at < 2)
        {
            error = $"the {which} member count is cut off";
            return false;
        }
        var count = BinaryPrimitives.ReadUInt16LittleEndian(data[at..]);
        at += 2;
        if (count > MaxMembers)
        {
            error = $"the {which} half lists {count} members, more than {MaxMembers}";
            return false;
        }
        half = new ClusterMember[count];
        for (var i = 0; i < count; i++)
        {
            if (data.Length - at < 5)
            {
                error = $"{which} member {i} is cut off";
                return false;
            }
            var id = BinaryPrimitives.ReadInt32LittleEndian(data[at..]);
            var flags = data[at + 4];
            at += 5;
            if ((flags & ~(LearnerFlag | AddressFlag)) != 0 || (outgoing && (flags & LearnerFlag) != 0))
            {
                error = $"{which} member {id} has unknown flags 0x{flags:X2}";
                return false;
            }
            string? address = null;
            if ((flags & AddressFlag) != 0)
            {
                if (data.Length - at < 2)
                {
                    error = $"the address length of {which} member {id} is cut off";
                    return false;
                }
                var length = BinaryPrimitives.ReadUInt16LittleEndian(data[at..]);
                at += 2;
                if (length > MaxAddressBytes || data.Length - at < length)
                {
                    error = $"the address of {which} member {id} ({length} bytes) is too long or cut off";
                    return false;
                }
                try
                {
                    address = StrictUtf8.GetString(data.Slice(at, length));
                }
                catch (DecoderFallbackException)
                {
                    error = $"the address of {which} member {id} is not valid UTF-8";
                    return false;
                }
                at += length;
            }
            half[i] = new ClusterMember(id, address, (flags & LearnerFlag) != 0 ? MemberRole.Learner : MemberRole.Voter);
        }
        error = null;
        return true;
    }

    private static string? Problem(ClusterMember[] members, ClusterMember[] outgoing)
    {
        if (members.Length > MaxMembers || outgoing.Length > MaxMembers)
            return $"a configuration half lists at most {MaxMembers} members";
        if (HalfProblem(members, "") is { } p)
            return p;
        if (HalfProblem(outgoing, "outgoing ") is { } q)
            return q;
        if (!members.Any(m => m.Role == MemberRole.Voter))
            return "a configuration needs at least one voter";
        if (outgoing.Any(m => m.Role != MemberRole.Voter))
            return "the outgoing half of a joint configuration lists voters only";
        return null;
    }

    private static string? HalfProblem(ClusterMember[] half, string which)
    {
        var seen = new HashSet<int>();
        foreach (var m in half)
        {
            if (m is null)
                return $"the {which}members list a null entry";
            if (m.Id <= 0)
                return $"{which}member id {m.Id} is not positive; node ids must be positive";
            if (!seen.Add(m.Id))
                return $"{which}member id {m.Id} appears more than once";
            if (m.Role is not (MemberRole.Voter or MemberRole.Learner))
                return $"{which}member {m.Id} has an unknown role {(int)m.Role}";
            if (m.Address is not null && Encoding.UTF8.GetByteCount(m.Address) > MaxAddressBytes)
                return $"the address of {which}member {m.Id} is longer than {MaxAddressBytes} bytes";
        }
        return null;
    }

    /// <inheritdoc />
    public bool Equals(ClusterConfiguration? other) =>
        other is not null && _members.AsSpan().SequenceEqual(other._members) && _outgoing.AsSpan().SequenceEqual(other._outgoing);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as ClusterConfiguration);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var m in _members)
            hash.Add(m);
        hash.Add(_outgoing.Length);
        foreach (var m in _outgoing)
            hash.Add(m);
        return hash.ToHashCode();
    }

    /// <summary>For logs: <c>voters [1,2,3] learners [4]</c>, with the outgoing voters when joint.</summary>
    /// <returns>The text.</returns>
    public override string ToString()
    {
        static string Ids(IEnumerable<int> ids) => "[" + string.Join(",", ids) + "]";
        var text = $"voters {Ids(Voters)}";
        if (Learners.Count > 0)
            text += $" learners {Ids(Learners)}";
        if (IsJoint)
            text += $" (joint with outgoing voters {Ids(OutgoingVoters)})";
        return text;
    }
}
