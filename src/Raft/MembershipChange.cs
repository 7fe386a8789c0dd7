namespace Raft;

/// <summary>What one step of a <see cref="MembershipChange"/> does.</summary>
public enum MembershipOperationKind
{
    /// <summary>Adds a new voting member (it must not be a member yet).</summary>
    AddVoter = 0,

    /// <summary>Adds a new learner (non-voting member; it must not be a member yet).</summary>
    AddLearner = 1,

    /// <summary>Makes a learner a voter. The leader refuses it while the learner lags more than <see cref="RaftOptions.MaxPromotionLag"/> entries behind.</summary>
    Promote = 2,

    /// <summary>Removes a member, voter or learner (the leader itself included: it steps down once the change commits).</summary>
    Remove = 3,
}

/// <summary>One step of a <see cref="MembershipChange"/>.</summary>
/// <param name="Kind">What it does.</param>
/// <param name="Id">The member it concerns.</param>
/// <param name="Address">For an addition: the new member's address, or null. For a promotion: a new address, or null to keep the old one. Ignored for a removal.</param>
public sealed record MembershipOperation(MembershipOperationKind Kind, int Id, string? Address = null);

/// <summary>
/// A change of the cluster's members, proposed with <see cref="RaftNode.ChangeMembershipAsync"/>: a
/// list of operations applied together, or a whole target configuration. Any number of voters may
/// change at once; the leader goes through a joint configuration (dissertation §4.3) whenever the
/// voters change, and straight to the new configuration when only learners do.
/// </summary>
public sealed class MembershipChange
{
    private MembershipChange(IReadOnlyList<MembershipOperation>? operations, IReadOnlyList<ClusterMember>? target)
    {
        Operations = operations ?? [];
        Target = target;
    }

    /// <summary>A change made of <paramref name="operations"/>, applied in order to the configuration in force.</summary>
    /// <param name="operations">The operations; at least one.</param>
    /// <exception cref="ArgumentException">No operation was given.</exception>
    public MembershipChange(IEnumerable<MembershipOperation> operations)
        : this(Checked(operations), null)
    {
    }

    private static MembershipOperation[] Checked(IEnumerable<MembershipOperation> operations)
    {
        ArgumentNullException.ThrowIfNull(operations);
        MembershipOperation[] list = [.. operations];
        if (list.Length == 0)
            throw new ArgumentException("A membership change needs at least one operation.", nameof(operations));
        if (list.Any(o => o is null))
            throw new ArgumentException("A membership change lists a null operation.", nameof(operations));
        return list;
    }

    /// <summary>The operations (empty when <see cref="Target"/> is set).</summary>
    public IReadOnlyList<MembershipOperation> Operations { get; }

    /// <summary>The whole configuration to reach, when the change was given as a target; otherwise null.</summary>
    public IReadOnlyList<ClusterMember>? Target { get; }

    /// <summary>Adds a voter.</summary>
    /// <param name="id">The new member's id.</param>
    /// <param name="address">Its address, or null.</param>
    /// <returns>The change.</returns>
    public static MembershipChange AddVoter(int id, string? address = null) => new([new MembershipOperation(MembershipOperationKind.AddVoter, id, address)]);

    /// <summary>Adds a learner (the recommended way to add a node: promote it once it has caught up).</summary>
    /// <param name="id">The new member's id.</param>
    /// <param name="address">Its address, or null.</param>
    /// <returns>The change.</returns>
    public static MembershipChange AddLearner(int id, string? address = null) => new([new MembershipOperation(MembershipOperationKind.AddLearner, id, address)]);

    /// <summary>Promotes a learner to voter.</summary>
    /// <param name="id">The learner's id.</param>
    /// <returns>The change.</returns>
    public static MembershipChange Promote(int id) => new([new MembershipOperation(MembershipOperationKind.Promote, id)]);

    /// <summary>Removes a member.</summary>
    /// <param name="id">The member's id.</param>
    /// <returns>The change.</returns>
    public static MembershipChange Remove(int id) => new([new MembershipOperation(MembershipOperationKind.Remove, id)]);

    /// <summary>A change to the configuration <paramref name="members"/> (voters and learners), whatever the current one is.</summary>
    /// <param name="members">The members to end with.</param>
    /// <returns>The change.</returns>
    /// <exception cref="ArgumentException">The members do not form a valid configuration.</exception>
    public static MembershipChange To(IEnumerable<ClusterMember> members)
    {
        var configuration = new ClusterConfiguration(members);
        return new MembershipChange(null, configuration.Members);
    }

    /// <summary>Applies the change to <paramref name="current"/> (which must not be joint) and returns the members it ends with.</summary>
    /// <param name="current">The configuration in force.</param>
    /// <returns>The new configuration (never joint).</returns>
    /// <exception cref="ArgumentException">An operation does not fit <paramref name="current"/> (adding a member twice, removing or promoting a non-member...), or the result is invalid (no voter left).</exception>
    public ClusterConfiguration ApplyTo(ClusterConfiguration current)
    {
        ArgumentNullException.ThrowIfNull(current);
        if (Target is not null)
            return new ClusterConfiguration(Target);
        var members = current.Members.ToList();
        foreach (var op in Operations)
        {
            var at = members.FindIndex(m => m.Id == op.Id);
            switch (op.Kind)
            {
                case MembershipOperationKind.AddVoter or MembershipOperationKind.AddLearner:
                    if (at >= 0)
                        throw new ArgumentException($"Node {op.Id} is already a member ({members[at].Role}); remove it first or promote it.", nameof(current));
                    members.Add(new ClusterMember(op.Id, op.Address, op.Kind == MembershipOperationKind.AddVoter ? MemberRole.Voter : MemberRole.Learner));
                    break;
                case MembershipOperationKind.Promote:
                    if (at < 0)
                        throw new ArgumentException($"Node {op.Id} is not a member, so it cannot be promoted; add it as a learner first.", nameof(current));
                    if (members[at].Role != MemberRole.Learner)
                        throw new ArgumentException($"Node {op.Id} is already a voter.", nameof(current));
                    members[at] = members[at] with { Role = MemberRole.Voter, Address = op.Address ?? members[at].Address };
                    break;
                case MembershipOperationKind.Remove:
                    if (at < 0)
                        throw new ArgumentException($"Node {op.Id} is not a member, so it cannot be removed.", nameof(current));
                    members.RemoveAt(at);
                    break;
                default:
                    throw new ArgumentException($"Unknown membership operation {(int)op.Kind}.", nameof(current));
            }
        }
        if (!members.Any(m => m.Role == MemberRole.Voter))
            throw new ArgumentException("The change would leave the cluster without a voter.", nameof(current));
        return new ClusterConfiguration(members);
    }

    /// <summary>For logs.</summary>
    /// <returns>The operations, or the target.</returns>
    public override string ToString() =>
        Target is not null
            ? "to " + new ClusterConfiguration(Target)
            : string.Join(", ", Operations.Select(o => $"{o.Kind} {o.Id}{(o.Address is null ? "" : " at " + o.Address)}"));
}
