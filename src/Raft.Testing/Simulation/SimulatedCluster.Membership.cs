namespace Raft.Testing.Simulation;

// Membership changes in the simulation (SimulationOptions.MembershipChanges): the leader adds
// learners and voters, promotes learners, removes voters, learners and itself, mixed with every
// other fault. Nodes beyond SimulationOptions.InitialVoters start with RaftNodeOptions.Join. The
// invariants are the same (election safety per term holds whatever the configurations); liveness
// and durability are then required of the members of the final configuration only, since a removed
// node is, by design, no longer replicated to.
public sealed partial class SimulatedCluster
{
    private readonly List<MembershipOp> _membershipOps = [];
    private int _membershipChanges;
    private int _leaderRemovals;
    private int _promotions;
    private int _removals;

    private bool MembershipEnabled => _options.MembershipChanges > 0 || _options.InitialVoters is not null;

    private int InitialVoters => _options.InitialVoters ?? _nodes.Length;

    // The bootstrap members of a node's options: 1..InitialVoters, or none for a node that joins.
    private int[] BootstrapMembers(SimNode node) =>
        node.Id <= InitialVoters ? [.. Enumerable.Range(1, InitialVoters)] : [];

    private bool Joins(SimNode node) => node.Id > InitialVoters;

    /// <summary>Called first by <see cref="ClientAct"/>; consumes randomness only when membership changes are on, so other runs replay unchanged.</summary>
    private bool MaybeChangeMembership()
    {
        if (_options.MembershipChanges <= 0 || _random.NextDouble() >= _options.MembershipChanges)
            return false;
        var leader = _nodes.FirstOrDefault(n => n.Alive && n.Role == RaftRole.Leader);
        if (leader is null)
            return true;
        var configuration = leader.Raft.Status.Configuration;
        var voters = configuration.Voters;
        var learners = configuration.Learners;
        var outside = _nodes.Where(n => !configuration.Contains(n.Id)).Select(n => n.Id).ToArray();
        MembershipChange change;
        var kind = _random.Next(6);
        if (kind <= 1 && outside.Length > 0)
        {
            // Usually a learner first (the documented way); now and then a voter straight away.
            var id = outside[_random.Next(outside.Length)];
            change = kind == 0 || _random.Next(4) > 0 ? MembershipChange.AddLearner(id, $"sim-{id}") : MembershipChange.AddVoter(id, $"sim-{id}");
        }
        else if (kind == 2 && learners.Count > 0)
        {
            change = MembershipChange.Promote(learners[_random.Next(learners.Count)]);
        }
        else if (kind == 3 && voters.Count > 1)
        {
            change = MembershipChange.Remove(leader.Id); // the leader removes itself
        }
        else if (kind == 4 && voters.Count > 1)
        {
            change = MembershipChange.Remove(voters[_random.Next(voters.Count)]);
        }
        else if (kind == 5 && learners.Count > 0)
        {
            change = MembershipChange.Remove(learners[_random.Next(learners.Count)]);
        }
        else if (outside.Length > 0)
        {
            var id = outside[_random.Next(outside.Length)];
            change = MembershipChange.AddLearner(id, $"sim-{id}");
        }
        else
        {
            return true;
        }
        var op = new MembershipOp(leader, change, leader.Raft.ChangeMembershipAsync(change));
        _membershipOps.Add(op);
        Pump(leader);
        return true;
    }

    private void PollMembership(SimNode node)
    {
        for (var i = 0; i < _membershipOps.Count; i++)
        {
            var op = _membershipOps[i];
            if (op.Node != node || !op.Task.IsCompleted)
                continue;
            _membershipOps.RemoveAt(i);
            i--;
            if (op.Task.IsCompletedSuccessfully)
            {
                _membershipChanges++;
                var operation = op.Change.Operations[0];
                if (operation.Kind == MembershipOperationKind.Promote)
                    _promotions++;
                if (operation.Kind == MembershipOperationKind.Remove)
                {
                    _removals++;
                    if (operation.Id == node.Id)
                        _leaderRemovals++;
                }
                continue;
            }
            var error = op.Task.Exception!.InnerException!;
            if (error is not (NotLeaderException or MembershipChangeException or RaftBusyException or ArgumentException or ProposalDroppedException))
                throw Violation("Client outcome", $"a membership change ({op.Change}) on node {node.Id} failed with an unexpected {error.GetType().Name}: {error.Message}", error);
        }
    }

    // The clients of a crashed process never hear back.
    private void AbandonMembership(SimNode node) => _membershipOps.RemoveAll(op => op.Node == node);

    // Liveness and durability bind the members of the configuration the current leader has in force
    // (every node when membership changes are off).
    private bool MustConverge(SimNode node)
    {
        if (!MembershipEnabled)
            return true;
        var leader = _nodes.FirstOrDefault(n => n.Alive && n.Role == RaftRole.Leader);
        return leader is null || leader.Raft.Status.Configuration.Contains(node.Id);
    }

    private sealed class MembershipOp(SimNode node, MembershipChange change, Task<ClusterConfiguration> task)
    {
        public SimNode Node { get; } = node;

        public MembershipChange Change { get; } = change;

        public Task<ClusterConfiguration> Task { get; } = task;
    }
}
