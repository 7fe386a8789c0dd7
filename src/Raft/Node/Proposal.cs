using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Tasks.Sources;

namespace Raft;

/// <summary>
/// A command on its way through <see cref="RaftNode"/>: the source of the <see cref="ValueTask{TResult}"/>
/// that <see cref="RaftNode.ProposeAsync"/> returns. Instances are pooled per node, so a steady
/// stream of proposals allocates nothing per command: the instance goes back to the pool once its
/// result has been read (the awaiter's <see cref="GetResult"/>).
/// </summary>
/// <remarks>
/// Completed at most once (<see cref="TrySetResult"/> / <see cref="TrySetException"/>), by whichever
/// loop holds it: the event loop (refused), the apply loop (applied, dropped, outcome unknown) or
/// shutdown. None of them touches it after completing it, which is what makes reuse safe.
/// </remarks>
internal sealed class Proposal : IValueTaskSource<object?>
{
    private ManualResetValueTaskSourceCore<object?> _source = new() { RunContinuationsAsynchronously = true };
    private ProposalPool? _pool;
    private int _completed;

    public ReadOnlyMemory<byte> Command { get; private set; }

    /// <summary>The kind of entry to append: <see cref="EntryKind.Command"/>, or <see cref="EntryKind.Session"/> for a session entry (set after renting).</summary>
    public EntryKind Kind { get; set; }

    /// <summary>The log index the command was appended at (set by the event loop when accepted).</summary>
    public long Index { get; set; }

    /// <summary>The term it was appended in.</summary>
    public long Term { get; set; }

    /// <summary>
    /// Another proposal registered at the same index before this one (the apply loop's chain): a
    /// node that proposed at an index, lost the entry to a new leader and proposed again there, or
    /// forwarded twice to leaders of different terms. The applied entry's term decides which wins.
    /// </summary>
    public Proposal? NextAtIndex { get; set; }

    /// <summary>When the caller stops waiting (<see cref="RaftNodeOptions.ProposalTimeout"/>), as a <see cref="TimeProvider"/> timestamp; <see cref="long.MaxValue"/> for never.</summary>
    public long Deadline { get; set; } = long.MaxValue;

    /// <summary>Which use of the pooled instance this is: bumped by each <see cref="Start"/>, so a deadline tracked for an earlier use is recognised as done.</summary>
    public int Generation => Volatile.Read(ref _generation);

    /// <summary>Whether this use has completed.</summary>
    public bool IsCompleted => Volatile.Read(ref _completed) != 0;

    private int _generation;

    /// <summary>The caller's view of this use of the instance.</summary>
    public ValueTask<object?> Task => new(this, _source.Version);

    public bool TrySetResult(object? result)
    {
        if (Interlocked.Exchange(ref _completed, 1) != 0)
            return false;
        _source.SetResult(result);
        return true;
    }

    public bool TrySetException(Exception error)
    {
        if (Interlocked.Exchange(ref _completed, 1) != 0)
            return false;
        _source.SetException(error);
        return true;
    }

    /// <inheritdoc />
    public object? GetResult(short token)
    {
        ValidateToken(token);
        try
        {
            return _source.GetResult(token);
        }
        finally
        {
            Release();
        }
    }

    /// <inheritdoc />
    public ValueTaskSourceStatus GetStatus(short token)
    {
        ValidateToken(token);
        return _source.GetStatus(token);
    }

    /// <inheritdoc />
    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
    {
        ValidateToken(token);
        _source.OnCompleted(continuation, state, token, flags);
    }

    private void ValidateToken(short token)
    {
        if (token != _source.Version)
            throw new InvalidOperationException("This proposal's ValueTask was awaited twice, or used after its result was read. Await it once, or call AsTask() first.");
    }

    internal void Start(ProposalPool pool, ReadOnlyMemory<byte> command)
    {
        Debug.Assert(_pool is null);
        _pool = pool;
        Command = command;
        Kind = EntryKind.Command;
        Index = 0;
        Term = 0;
        NextAtIndex = null;
        Deadline = long.MaxValue;
        Interlocked.Increment(ref _generation);
        Volatile.Write(ref _completed, 0);
    }

    private void Release()
    {
        var pool = _pool;
        _pool = null;
        Command = default; // do not keep the caller's buffer alive
        _source.Reset();
        pool?.Return(this);
    }
}

/// <summary>A bounded pool of <see cref="Proposal"/>s; thread-safe and allocation-free once warm.</summary>
/// <summary>
/// The result of <see cref="RaftNode.ProposeAsync"/> for a command that committed but that this node
/// did not apply itself: a follower that forwarded it received the leader's snapshot covering it (or
/// had applied its index before it learned it), so the state machine's result for it exists only on
/// the nodes that applied it. The command took effect exactly once.
/// </summary>
public sealed class CommittedWithoutResult
{
    private CommittedWithoutResult()
    {
    }

    /// <summary>The one instance.</summary>
    public static CommittedWithoutResult Instance { get; } = new();

    /// <inheritdoc />
    public override string ToString() => "committed (result not available on this node)";
}

internal sealed class ProposalPool(int capacity)
{
    private readonly ConcurrentQueue<Proposal> _free = new();
    private int _count;

    public Proposal Rent(ReadOnlyMemory<byte> command)
    {
        if (_free.TryDequeue(out var proposal))
            Interlocked.Decrement(ref _count);
        else
            proposal = new Proposal();
        proposal.Start(this, command);
        return proposal;
    }

    public void Return(Proposal proposal)
    {
        if (Interlocked.Increment(ref _count) > capacity)
        {
            Interlocked.Decrement(ref _count);
            return; // over the bound: left to the GC
        }
        _free.Enqueue(proposal);
    }
}
