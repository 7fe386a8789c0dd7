using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace Raft.Testing.Simulation;

/// <summary>
/// The simulated nodes' state machine: a small key-value map of the clients' writes, plus a hash of
/// every command applied in order, which the cluster checks against the committed log. Refuses, by
/// its validator, any command it could not apply.
/// </summary>
internal sealed class SimStateMachine(SimulatedCluster cluster, SimulatedCluster.SimNode node) : IStateMachine, ICommandValidator
{
    public Dictionary<string, string> Data { get; } = new(StringComparer.Ordinal);

    // A hash of every command applied, in order, and the index of the last one.
    public ulong State { get; set; }

    public long LastCommandIndex { get; set; }

    public bool TryValidate(ReadOnlySpan<byte> command, [NotNullWhen(false)] out string? error)
    {
        if (SimulatedCluster.TryDecodePut(command, out _, out _, out _))
        {
            error = null;
            return true;
        }
        error = "not a simulated put command";
        return false;
    }

    public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
    {
        if (!SimulatedCluster.TryDecodePut(entry.Data.Span, out var command, out var key, out var value))
            throw new InvalidOperationException($"Index {entry.Index} holds a command the simulated state machine cannot apply.");
        cluster.OnApply(node, this, entry, command);
        Data[key] = value;
        // The index, as the command's result: a session retry must get the first application's.
        return ValueTask.FromResult<object?>(entry.Index);
    }

    public ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        using var writer = new BinaryWriter(destination, Encoding.UTF8, leaveOpen: true);
        writer.Write(LastCommandIndex);
        writer.Write(State);
        writer.Write(Data.Count);
        foreach (var (key, value) in Data.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            writer.Write(key);
            writer.Write(value);
        }
        cluster.OnSnapshotTaken();
        return ValueTask.CompletedTask;
    }

    public ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
    {
        using var reader = new BinaryReader(source, Encoding.UTF8, leaveOpen: true);
        var lastCommandIndex = reader.ReadInt64();
        var state = reader.ReadUInt64();
        var count = reader.ReadInt32();
        Data.Clear();
        for (var i = 0; i < count; i++)
            Data[reader.ReadString()] = reader.ReadString();
        cluster.OnRestore(node, this, lastCommandIndex, state, atStart: !Started);
        return ValueTask.CompletedTask;
    }

    // Set once the node's StartAsync returned: a restore after it is an InstallSnapshot.
    public bool Started { get; set; }
}
