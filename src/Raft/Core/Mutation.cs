#if RAFT_MUTANTS
namespace Raft;

/// <summary>
/// Deliberate bugs, compiled only into the test-only mutant build (RAFT_MUTANTS), so the
/// simulator can prove it catches them. Never part of a shipped assembly.
/// </summary>
[Flags]
public enum Mutation
{
    /// <summary>No bug.</summary>
    None = 0,

    /// <summary>Grant votes without the up-to-date log check (breaks Raft §5.4.1).</summary>
    VoteWithoutLogCheck = 1,

    /// <summary>Commit an entry of an older term by counting replicas (the Figure 8 bug, Raft §5.4.2).</summary>
    CommitOldTermByCounting = 2,

    /// <summary>Do not persist the vote: the hard state handed to the host omits it (breaks Raft §5.2 across restarts).</summary>
    ForgetVote = 4,

    /// <summary>The simulated host sends acknowledgements and votes before its write is durable (breaks DESIGN.md §4's ordering).</summary>
    AckBeforePersist = 8,
}
#endif
