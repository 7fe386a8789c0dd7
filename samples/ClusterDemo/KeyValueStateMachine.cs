using System.Text;

namespace Raft.Samples.ClusterDemo;

/// <summary>
/// A tiny replicated dictionary. Commands are UTF-8 "SET key value" or "DEL key"; the result of a
/// command is the previous value (or null).
/// </summary>
public sealed class KeyValueStateMachine : IStateMachine
{
    private readonly Dictionary<string, string> _data = [];
    private readonly Lock _gate = new();

    public string? Get(string key)
    {
        lock (_gate)
            return _data.GetValueOrDefault(key);
    }

    public int Count
    {
        get
        {
            lock (_gate)
                return _data.Count;
        }
    }

    public ValueTask<object?> ApplyAsync(LogEntry entry, CancellationToken cancellationToken = default)
    {
        var text = Encoding.UTF8.GetString(entry.Data.Span);
        var parts = text.Split(' ', 3);
        lock (_gate)
        {
            _data.TryGetValue(parts[1], out var previous);
            if (parts[0] == "SET")
                _data[parts[1]] = parts[2];
            else
                _data.Remove(parts[1]);
            return ValueTask.FromResult<object?>(previous);
        }
    }

    public async ValueTask WriteSnapshotAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        Dictionary<string, string> copy;
        lock (_gate)
            copy = new Dictionary<string, string>(_data);
        await System.Text.Json.JsonSerializer.SerializeAsync(destination, copy, cancellationToken: cancellationToken);
    }

    public async ValueTask RestoreSnapshotAsync(Stream source, CancellationToken cancellationToken = default)
    {
        var copy = await System.Text.Json.JsonSerializer.DeserializeAsync<Dictionary<string, string>>(source, cancellationToken: cancellationToken) ?? [];
        lock (_gate)
        {
            _data.Clear();
            foreach (var (key, value) in copy)
                _data[key] = value;
        }
    }
}
