namespace Raft.Testing.Simulation;

/// <summary>The settings of one deterministic simulation run. Everything random derives from <see cref="Seed"/>.</summary>
public sealed class SimulationOptions
{
    /// <summary>The number of nodes. The default is 3.</summary>
    public int Nodes { get; init; } = 3;

    /// <summary>The seed that drives everything: timeouts, delays, faults, the workload. The same seed replays the same run exactly.</summary>
    public int Seed { get; init; }

    /// <summary>How many events (message deliveries, ticks, client requests, faults) the faulty phase runs. The default is 10,000.</summary>
    public int Steps { get; init; } = 10_000;

    /// <summary>The largest message delay, in ticks; delays are drawn uniformly below it, which reorders messages. The default is 3.</summary>
    public double MaxDelayTicks { get; init; } = 3;

    /// <summary>The largest drop probability a fault may set. The default is 0.3.</summary>
    public double MaxDropRate { get; init; } = 0.3;

    /// <summary>The probability that a delivered message is delivered twice. The default is 0.05.</summary>
    public double DuplicateRate { get; init; } = 0.05;

    /// <summary>The mean number of ticks between two faults (crash, partition, heal, drop-rate change). The default is 15.</summary>
    public double MeanTicksBetweenFaults { get; init; } = 15;

    /// <summary>The probability that a newly elected leader crashes within a few ticks. The default is 0.25.</summary>
    public double NewLeaderCrashRate { get; init; } = 0.25;

    /// <summary>The mean number of ticks between two client proposals. The default is 0.5.</summary>
    public double MeanTicksBetweenProposals { get; init; } = 0.5;

    /// <summary>How many ticks the healed cluster gets to elect a leader and commit a new proposal before liveness is declared violated. The default is 400.</summary>
    public int LivenessTicks { get; init; } = 400;

    /// <summary>
    /// Bounds the work of the healing phase: at most this many events per tick per node, or liveness is
    /// declared violated (a message storm that keeps virtual time from advancing). The default is 5,000.
    /// </summary>
    public long LivenessEventsPerTick { get; init; } = 5000;

    /// <summary>Whether the nodes use PreVote; null lets the seed decide. The default is null.</summary>
    public bool? PreVote { get; init; }

    /// <summary>Whether the nodes use CheckQuorum; null lets the seed decide. The default is null.</summary>
    public bool? CheckQuorum { get; init; }

    /// <summary>
    /// Whether the hosts pipeline their log writes (<see cref="RaftCore.AdvanceBeforePersisting"/>:
    /// the core keeps running while a write is in flight; the write completes at a later event, and a
    /// crash keeps only a prefix of the writes in flight); null lets the seed decide. The default is null.
    /// </summary>
    public bool? PipelinedWrites { get; init; }

    /// <summary>Whether followers forward their clients' writes and reads to the leader (<see cref="RaftNodeOptions.ForwardToLeader"/>, which also turns on eager commit propagation); null lets the seed decide. The default is null.</summary>
    public bool? ForwardToLeader { get; init; }

    /// <summary>The share of client operations that are linearizable reads (the rest are writes, a few garbage commands and leadership transfers). The default is 0.3.</summary>
    public double ReadFraction { get; init; } = 0.3;

    /// <summary>The most client operations in flight at once (more concurrency makes the linearizability check slower). The default is 6.</summary>
    public int MaxClientOperations { get; init; } = 6;

    /// <summary>
    /// How many clients write through exactly-once sessions (<see cref="RaftSession"/>), re-sending
    /// each command (duplicated, delayed, after leader changes and crashes) until it is acknowledged;
    /// the run then checks that each is applied once and every acknowledgement carries its first
    /// result. 0 (the default) leaves them out, and every seed replays as it did before they existed.
    /// </summary>
    public int SessionClients { get; init; }

    /// <summary>
    /// Whether the nodes serve reads from a leader lease (<see cref="RaftNodeOptions.LeaseReads"/>)
    /// in the seeds that run with CheckQuorum (leases need it). The simulated clocks never drift, so
    /// this checks the lease's bookkeeping (rounds, renewal, hand-over, start-up quiet period, joint
    /// quorums), not the drift bound. The default is false, and every seed replays as before.
    /// </summary>
    public bool LeaseReads { get; init; }

    /// <summary>
    /// The probability that a client event is a membership change on the leader (add a learner or a
    /// voter, promote a learner, remove a voter, a learner or the leader itself). 0 (the default)
    /// keeps every seed's run exactly as it was before membership changes existed.
    /// </summary>
    public double MembershipChanges { get; init; }

    /// <summary>
    /// How many of the <see cref="Nodes"/> bootstrap the cluster as voters (nodes 1 to this); the
    /// others start with <see cref="RaftNodeOptions.Join"/> and take part once a membership change
    /// adds them. Null (the default) makes every node a bootstrap voter.
    /// </summary>
    public int? InitialVoters { get; init; }

    /// <summary>
    /// Whether each node's log is the shipped <see cref="Raft.FileLogStore"/> over an in-memory,
    /// crash-faithful file system (seeded from <see cref="Seed"/>) instead of the in-memory
    /// <see cref="CrashFaithfulLogStore"/>. A power failure then drops or tears whatever was not
    /// fsynced (data, and file creations, renames and deletions whose directory was not fsynced), as
    /// the file system's model allows, and the restarted node reopens the store through its real
    /// recovery; a store that refuses to reopen fails the run. The store's file work runs inline on the
    /// simulator's thread. The default is false, and every seed replays as before.
    /// </summary>
    public bool FileLogStore { get; init; }

#if RAFT_MUTANTS
    /// <summary>Deliberate bugs for the nodes (mutant build only).</summary>
    public Mutation Mutations { get; init; }
#endif

    /// <summary>Checks the settings.</summary>
    /// <exception cref="ArgumentException">A setting is invalid.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(Nodes, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(Steps);
        ArgumentOutOfRangeException.ThrowIfNegative(MaxDelayTicks);
        ArgumentOutOfRangeException.ThrowIfNegative(MaxDropRate);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxDropRate, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(DuplicateRate);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(DuplicateRate, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(NewLeaderCrashRate);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(NewLeaderCrashRate, 1);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MeanTicksBetweenFaults);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MeanTicksBetweenProposals);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(LivenessTicks);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(LivenessEventsPerTick);
        ArgumentOutOfRangeException.ThrowIfNegative(ReadFraction);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ReadFraction, 0.9);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxClientOperations);
        ArgumentOutOfRangeException.ThrowIfNegative(SessionClients);
        ArgumentOutOfRangeException.ThrowIfNegative(MembershipChanges);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MembershipChanges, 1);
        if (InitialVoters is { } voters)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(voters, 1);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(voters, Nodes);
        }
    }
}

/// <summary>What one simulated run did: the seed and the counts of what happened, so that a CI run can assert that its seeds exercised every fault and feature.</summary>
/// <param name="Seed">The seed the run used.</param>
public sealed record SimulationResult(int Seed)
{
    /// <summary>Events processed.</summary>
    public long Steps { get; init; }

    /// <summary>Virtual time simulated, in ticks.</summary>
    public double VirtualTicks { get; init; }

    /// <summary>Terms that had a leader.</summary>
    public int Leaders { get; init; }

    /// <summary>Leaders elected (each term's first leader report).</summary>
    public int LeaderChanges { get; init; }

    /// <summary>Indexes at which a client command was committed and applied.</summary>
    public long CommittedCommands { get; init; }

    /// <summary>Writes whose client was told they took effect.</summary>
    public int AcknowledgedWrites { get; init; }

    /// <summary>Writes acknowledged to a client of a follower that forwarded them to the leader.</summary>
    public int ForwardedWrites { get; init; }

    /// <summary>Linearizable reads that completed (ReadIndex on a leader, or through a follower).</summary>
    public int Reads { get; init; }

    /// <summary>Reads that completed on a follower (forwarded read index, or after it became leader).</summary>
    public int FollowerReads { get; init; }

    /// <summary>Leadership transfers that completed.</summary>
    public int Transfers { get; init; }

    /// <summary>Undecodable commands refused before replication.</summary>
    public int RefusedCommands { get; init; }

    /// <summary>Node crashes (power failures).</summary>
    public int Crashes { get; init; }

    /// <summary>Writes torn by a power failure in their middle.</summary>
    public int TornWrites { get; init; }

    /// <summary>Unsynced file writes and directory operations that power failures dropped or tore (<see cref="SimulationOptions.FileLogStore"/> only).</summary>
    public long FileLogLostOperations { get; init; }

    /// <summary>Reopenings of a file log whose recovery cut a torn or corrupt tail (<see cref="SimulationOptions.FileLogStore"/> only).</summary>
    public int FileLogTornTailsCut { get; init; }

    /// <summary>Reopenings of a file log whose recovery deleted files left by an interrupted write or compaction (<see cref="SimulationOptions.FileLogStore"/> only).</summary>
    public int FileLogLeftoversDeleted { get; init; }

    /// <summary>Partitions injected.</summary>
    public int Partitions { get; init; }

    /// <summary>Messages delivered.</summary>
    public long MessagesDelivered { get; init; }

    /// <summary>Messages dropped (partitions, loss, dead nodes).</summary>
    public long MessagesDropped { get; init; }

    /// <summary>Snapshots taken by state machines.</summary>
    public int SnapshotsTaken { get; init; }

    /// <summary>Snapshots installed from a leader (InstallSnapshot), not counting restores at start.</summary>
    public int SnapshotInstalls { get; init; }

    /// <summary>Writes acknowledged as committed without a result (<see cref="CommittedWithoutResult"/>): their proposer's state covered them through a snapshot or an earlier apply.</summary>
    public int CoveredWrites { get; init; }

    /// <summary>Commands session clients started (<see cref="SimulationOptions.SessionClients"/>).</summary>
    public int SessionWrites { get; init; }

    /// <summary>Copies of session commands sent again (duplicates and retries) while their client waited.</summary>
    public int SessionRetries { get; init; }

    /// <summary>Session commands acknowledged to their client.</summary>
    public int SessionAcknowledged { get; init; }

    /// <summary>Copies of acknowledged session commands answered with the kept first result instead of being applied again.</summary>
    public int SessionDuplicatesAnswered { get; init; }

    /// <summary>Reads the leaders confirmed from their lease, without a heartbeat round (<see cref="SimulationOptions.LeaseReads"/>).</summary>
    public long LeaseReads { get; init; }

    /// <summary>Membership changes that committed (their final configuration) and were reported to the client.</summary>
    public int MembershipChanges { get; init; }

    /// <summary>Committed membership changes that removed the leader that proposed them.</summary>
    public int LeaderRemovals { get; init; }

    /// <summary>Committed membership changes that promoted a learner to voter.</summary>
    public int Promotions { get; init; }

    /// <summary>Committed membership changes that removed a voter or a learner (the leader included).</summary>
    public int Removals { get; init; }
}

/// <summary>A simulation found a broken Raft invariant. The message names the seed and how to replay it.</summary>
public sealed class InvariantViolationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public InvariantViolationException() { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What broke.</param>
    public InvariantViolationException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What broke.</param>
    /// <param name="innerException">The cause.</param>
    public InvariantViolationException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception for a violation found by a run.</summary>
    /// <param name="invariant">The invariant's name.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="step">The event at which it broke.</param>
    /// <param name="detail">What was seen.</param>
    /// <param name="innerException">The exception that revealed it, if any.</param>
    public InvariantViolationException(string invariant, int seed, long step, string detail, Exception? innerException = null)
        : base($"{invariant} violated at step {step} of seed {seed}: {detail}{Environment.NewLine}Replay: RAFT_SIM_SEED={seed} dotnet test tests/Raft.Tests --filter \"FullyQualifiedName~SimulationTests.Replay\"", innerException)
    {
        Invariant = invariant;
        Seed = seed;
        Step = step;
    }

    /// <summary>The name of the broken invariant.</summary>
    public string? Invariant { get; }

    /// <summary>The seed that reproduces it.</summary>
    public int Seed { get; }

    /// <summary>The event at which it broke.</summary>
    public long Step { get; }
}
