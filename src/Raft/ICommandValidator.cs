using System.Diagnostics.CodeAnalysis;

namespace Raft;

/// <summary>
/// Optional: implemented by an <see cref="IStateMachine"/> that can tell a command it could never
/// apply (undecodable, wrong version, over a size limit) before it is replicated.
/// </summary>
/// <remarks>
/// <para>A command that a state machine cannot apply is a poison pill once committed: every
/// replica that applies it fails the same way, after every restart. When the state machine
/// implements this interface, the leader's <see cref="RaftNode"/> calls
/// <see cref="TryValidate"/> for every command before appending it (its own proposals and those
/// forwarded by followers, including forged ones), and a refused command fails its proposal with
/// <see cref="InvalidCommandException"/>: nothing is appended.</para>
/// <para>The check runs on the consensus loop: it must be quick, must not block, and must depend
/// only on the bytes (not on the state, which may change before the command applies). It is a
/// filter for malformed input, not a precondition check: expected outcomes such as a failed
/// compare-and-swap stay results of <see cref="IStateMachine.ApplyAsync"/>.</para>
/// </remarks>
public interface ICommandValidator
{
    /// <summary>Decides whether <paramref name="command"/> is a command the state machine can apply.</summary>
    /// <param name="command">The command's bytes, as proposed.</param>
    /// <param name="error">When refused, why (shown to the proposer and logged).</param>
    /// <returns><see langword="true"/> to replicate the command; <see langword="false"/> to refuse it.</returns>
    bool TryValidate(ReadOnlySpan<byte> command, [NotNullWhen(false)] out string? error);
}
