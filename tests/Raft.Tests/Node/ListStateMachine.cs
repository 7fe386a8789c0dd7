using System.Text;

namespace Raft.Tests.Node;

/// <summary>
/// A test state machine: an append-only list of UTF-8 commands. Applying a command returns its
/// 1-based position in the list (a long), so a proposer can tell its own result apart.
/// </summary>
internal sealed class ListStateMachine : IStateMachine
{
    private readonly Lock _gate = new();
    private readonly List<string> _commands = [];

    /// <summary>A copy of the commands applied so far, in order.</summary>
    public string[] Commands
    {
        get
        {
            lock (_gate)
                return [.. _commands];
        }
    }

    /// <summary>The log index of the last command applied.</summary>
    public long LastIndex { get; private set; }

    public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (entry.Kind != EntryKind.Command)
                throw new InvalidOperationException($"Entry {entry.Index} of kind {entry.Kind} was handed to the state machine.");
            if (entry.Index <= LastIndex)
                throw new InvalidOperationException($"Entry {entry.Index} applied after entry {LastIndex}: out of order or twice.");
            LastIndex = entry.Index;
            _commands.Add(Encoding.UTF8.GetString(entry.Data.Span));
            return ValueTask.FromResult<object?>((long)_commands.Count);
        }
    }

    public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        var text = string.Join('\n', Commands);
        await destination.WriteAsync(Encoding.UTF8.GetBytes(text), cancellationToken);
    }

    public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
    {
        using var reader = new StreamReader(source, Encoding.UTF8, leaveOpen: true);
        var text = await reader.ReadToEndAsync(cancellationToken);
        lock (_gate)
        {
            _commands.Clear();
            if (text.Length > 0)
                _commands.AddRange(text.Split('\n'));
        }
    }
}
