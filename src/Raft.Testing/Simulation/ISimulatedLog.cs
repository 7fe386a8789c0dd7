namespace Raft.Testing.Simulation;

/// <summary>
/// A node's log as the simulator drives it: a store that survives simulated power failures, with
/// hooks to tear a write, crash after a hard-state save, and hand what survived to the next
/// incarnation. <see cref="CrashFaithfulLogStore"/> (the default) and <see cref="SimulatedFileLog"/>
/// (the shipped <see cref="FileLogStore"/> over a crash-faithful file system) implement it.
/// </summary>
internal interface ISimulatedLog : ILogStore
{
    /// <summary>Called with every append before it reaches the store; the simulator checks its invariants here.</summary>
    Action<IReadOnlyList<LogEntry>>? Appending { get; set; }

    /// <summary>Writes interrupted by a power failure in their middle (an armed tear that struck, or a crash right after a hard-state save).</summary>
    int TornWrites { get; }

    /// <summary>Makes a coming write tear: part of it reaches the disk, then the power fails.</summary>
    void ArmTear(Random random);

    /// <summary>Makes the power fail right after the next hard-state save became durable.</summary>
    void ArmCrashAfterHardState();

    /// <summary>Cancels an armed tear or crash.</summary>
    void DisarmTear();

    /// <summary>The power fails between operations: nothing more can be written until <see cref="Recover"/>.</summary>
    void Crash();

    /// <summary>Hands what survived to a new incarnation of the process.</summary>
    void Recover();
}
